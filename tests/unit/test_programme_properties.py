"""SPEC §13-§14 invariants over random event sets (hypothesis): upsells, lead sharing, KPI.

`programme_sets` draws one to four customers over late November 2026 to late January 2027 (so
December, the prize's month, and the year boundary are dense), on a grid of six hours starting
at 11:00 UTC (so 23:00 UTC on 31 December is already 2027 in Europe/Berlin, one of the plans'
zones). Each customer gets:
- leads (booked, then mostly held, sometimes later no_show or cancelled) by telemarketers of one
  pool, and sales by the held event's field rep 0..16 days later (so most convert, some just miss
  the 14-day window, and a lead held in late December converts in January);
- sales that buy a held category again at a dearer price (upsells), and refunds, often the whole
  of an earlier line, which take a category out of the holdings (an upsell becomes a cross-sell,
  or nothing);
- offers and bookings (touches, so upsells are split like cross-sells);
- feedback and quality reviews about anyone, x-1 in either role.
The pools overlap as in tests/unit/test_rules_properties.py: `x-1` is a field rep and a
telemarketer. Plans switch every programme on (`tests.unit.builders.programmes`), with draws of
the amounts that make splits and rounding uneven (a 1000.01 or 0.05 prize, a 0.333 upsell rate),
thresholds low enough that badges differ, and KPI roles of both, one or the other.

The checks recompute what the SPEC says the slow, obvious way, from the events and credits,
not through stream/bonus.py's tallies.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.events import Event, Feedback, LeadHandoff, QualityReview, Sale
from stream.bonus import Results, compute_results
from stream.periods import period_of
from stream.plan import Plan
from stream.rules import APPOINTMENT_CONVERTED, CROSS_SELL, UPSELL, Credit, customer_outcome, only_inert_events
from tests.unit.builders import callback, feedback, handoff, kpi, line, programmes, refund, review, sale
from tests.unit.test_incremental import Ledger
from tests.unit.test_rules_properties import FAST, MODELS, reference_net

START = datetime(2026, 11, 20, 11, 0, tzinfo=UTC)
STEPS = 4 * 62  # six-hour steps: up to 21 January 2027
CATEGORIES = ("laptops", "phones", "plans", "tv", "insurance", "accessories", "software", "warranty", "garden")
PRICES = ("0", "9.99", "50.00", "100", "333.33", "1000.0001", "2500.00")
FIELD_REPS = ("fr-1", "fr-2", "x-1")
TELEMARKETERS = ("tm-1", "tm-2", "tm-3", "x-1")
ROLES = {"fr-1": ("field_rep",), "fr-2": ("field_rep",), "tm-1": ("telemarketer",), "tm-2": ("telemarketer",),
         "tm-3": ("telemarketer",), "x-1": ("field_rep", "telemarketer")}  # fmt: skip

Draw = Callable[[st.SearchStrategy[Any]], Any]


def _grid(draw: Draw) -> datetime:
    return START + timedelta(hours=6 * draw(st.integers(0, STEPS)))


def _person(draw: Draw) -> tuple[str, str]:
    person = draw(st.sampled_from(sorted(ROLES)))
    return person, draw(st.sampled_from(ROLES[person]))


@st.composite
def programme_sets(draw: Draw) -> list[Event]:
    """All events of one to four customers, each event_id and sale_id unique (see the module doc)."""
    counter = itertools.count()

    def ids() -> str:
        return f"e{next(counter):04d}"

    events: list[Event] = []
    for number in range(draw(st.integers(1, 4))):
        customer = f"c{number}"
        held: list[LeadHandoff] = []
        for lead in range(draw(st.integers(0, 3))):
            when = _grid(draw)
            tm, fr = draw(st.sampled_from(TELEMARKETERS)), draw(st.sampled_from(FIELD_REPS))
            events.append(handoff(f"{customer}-lead-{lead}", "booked", when - timedelta(days=draw(st.integers(0, 3))),
                                  tm, fr, customer, ids()))  # fmt: skip
            if draw(st.integers(0, 4)):
                events.append(handoff(f"{customer}-lead-{lead}", "held", when, tm, fr, customer, ids()))
                held.append(events[-1])  # type: ignore[arg-type]
                if draw(st.integers(0, 5)) == 0:
                    later = when + timedelta(hours=6 * draw(st.integers(0, 8)))
                    status = draw(st.sampled_from(("no_show", "cancelled", "held")))
                    events.append(handoff(f"{customer}-lead-{lead}", status, later, tm, fr, customer, ids()))
        sales: list[Sale] = []
        bought: list[tuple[str, int]] = []  # (category, price index) of the lines so far
        for index in range(draw(st.integers(0, 5))):
            lines = []
            for n in range(draw(st.integers(1, 3))):
                if bought and draw(st.integers(0, 2)) == 0:  # a held category again, mostly dearer
                    category, was = draw(st.sampled_from(bought))
                    price = min(len(PRICES) - 1, was + draw(st.integers(-1, 3)))
                else:
                    category, price = draw(st.sampled_from(CATEGORIES)), draw(st.integers(0, len(PRICES) - 1))
                quantity = draw(st.integers(1, 3))
                lines.append(line(f"L{n}", category, PRICES[max(price, 0)], quantity))
                bought.append((category, max(price, 0)))
            if held and draw(st.integers(0, 2)):  # after a held lead, by its field rep: a conversion
                lead = draw(st.sampled_from(held))
                seller, role = lead.field_rep_id, "field_rep"
                when = lead.occurred_at + timedelta(hours=6 * draw(st.integers(0, 4 * 16)))
            else:
                if draw(st.integers(0, 4)) == 0:
                    seller, role = draw(st.sampled_from(TELEMARKETERS)), "telemarketer"
                else:
                    seller, role = draw(st.sampled_from(FIELD_REPS)), "field_rep"
                when = draw(st.sampled_from(sales)).occurred_at if sales and draw(st.integers(0, 3)) == 0 \
                    else _grid(draw)
            sales.append(sale(f"{customer}-S{index}", when, *lines, seller=seller, role=role, customer=customer,
                              event_id=ids()))  # fmt: skip
            events.append(sales[-1])
        for _ in range(draw(st.sampled_from((0, 1, 1, 2, 3)))):
            if not sales:
                break
            target = draw(st.sampled_from(sales))
            chosen = draw(st.sampled_from(target.lines))
            units = chosen.quantity if draw(st.booleans()) else draw(st.integers(1, 3))
            # mostly soon after the sale (inside the clawback); sometimes before a later sale
            when = target.occurred_at + timedelta(hours=6 * draw(st.integers(-2, 4 * 30)))
            events.append(refund(target.sale_id, when, {chosen.line_id: units}, customer, ids()))
        for _ in range(draw(st.integers(0, 3))):
            offered = draw(st.lists(st.sampled_from(CATEGORIES), min_size=1, max_size=4))
            near = draw(st.sampled_from(sales)).occurred_at if sales else _grid(draw)
            events.append(callback(draw(st.sampled_from(TELEMARKETERS)),
                                   near - timedelta(hours=6 * draw(st.integers(0, 40))), *offered,
                                   customer=customer, event_id=ids()))  # fmt: skip
        for _ in range(draw(st.integers(0, 4))):
            person, role = _person(draw)
            when = _grid(draw)
            if draw(st.booleans()):
                events.append(feedback(person, when, draw(st.integers(1, 5)), role, customer, ids()))
            else:
                events.append(review(person, when, draw(st.booleans()), role, customer, ids()))
    return events


@st.composite
def programme_plans(draw: Draw, model: str) -> Plan:
    """A plan with every SPEC §13 programme on; uneven amounts and low badge thresholds."""
    bronze = draw(st.integers(1, 2))
    return programmes(
        attribution_model=model,
        timezone=draw(st.sampled_from(("UTC", "Europe/Berlin"))),
        min_amount=Decimal(draw(st.sampled_from(("0", "100.00")))),
        upsell_rate=Decimal(draw(st.sampled_from(("0.10", "0.333")))),
        bronze_points=bronze,
        silver_points=bronze + draw(st.integers(0, 2)),
        gold_prize=Decimal(draw(st.sampled_from(("500.00", "1000.01", "0.05")))),
        kpi=kpi("200.00", draw(st.sampled_from((("telemarketer", "field_rep"), ("telemarketer",), ("field_rep",))))),
    )


def _noisy(events: list[Event], data: Any) -> list[Event]:
    """A permutation of `events` with up to six redeliveries."""
    repeats = data.draw(st.lists(st.sampled_from(events), max_size=6)) if events else []
    return data.draw(st.permutations([*events, *repeats]))


# -- order, duplicates, batching -------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
@FAST
@given(events=programme_sets(), data=st.data())
def test_any_order_with_duplicates_gives_the_same_four_tables(model: str, events: list[Event], data: Any) -> None:
    the_plan = data.draw(programme_plans(model))
    assert compute_results(_noisy(events, data), the_plan) == compute_results(events, the_plan)


@pytest.mark.parametrize("model", MODELS)
@FAST
@given(events=programme_sets(), data=st.data())
def test_the_ledger_in_any_batching_equals_compute_results(model: str, events: list[Event], data: Any) -> None:
    """Running rows with figures, lead_points, kpi_scores and credits, batch by batch, with the
    worker's cache warm or cold (a restart) at each batch."""
    the_plan = data.draw(programme_plans(model))
    arrival = _noisy(events, data)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(arrival)), max_size=8)))
    ledger = Ledger(the_plan)
    for start, end in itertools.pairwise([0, *cuts, len(arrival)]):
        ledger.batch(arrival[start:end], cache_warm=data.draw(st.booleans()))
    expected = compute_results(events, the_plan)
    assert ledger.rows() == expected.running
    assert ledger.lead_points() == expected.lead_points
    assert ledger.kpi_scores() == expected.kpi_scores
    assert ledger.credits() == set(expected.credits)


@pytest.mark.parametrize("model", MODELS)
@FAST
@given(events=programme_sets(), data=st.data())
def test_the_ledger_one_event_a_batch_equals_compute_results(model: str, events: list[Event], data: Any) -> None:
    """Every intermediate state written: gold moves between telemarketers, rows come and go."""
    the_plan = data.draw(programme_plans(model))
    ledger = Ledger(the_plan)
    for event in _noisy(events, data):
        ledger.batch([event], cache_warm=data.draw(st.booleans()))
    expected = compute_results(events, the_plan)
    assert (ledger.rows(), ledger.lead_points(), ledger.kpi_scores()) == expected[0:1] + expected[2:4]



@pytest.mark.parametrize("model", MODELS)
@FAST
@given(events=programme_sets(), data=st.data())
def test_callbacks_without_an_offer_change_nothing(model: str, events: list[Event], data: Any) -> None:
    """The ledger does not even take a customer whose new events are all callbacks without an
    offer (`only_inert_events`); right only if they change no credit, no fact, no table, every
    programme on, whoever makes them and whenever."""
    the_plan = data.draw(programme_plans(model))
    customers = sorted({event.customer_id for event in events}) or ["c-new"]
    extra = [callback(data.draw(st.sampled_from(TELEMARKETERS)),
                      START + timedelta(hours=6 * data.draw(st.integers(-8, STEPS))),
                      *data.draw(st.lists(st.sampled_from(CATEGORIES), max_size=2)), outcome=outcome,
                      customer=data.draw(st.sampled_from(customers)), event_id=f"inert-{index}")
             for index, outcome in enumerate(data.draw(st.lists(st.sampled_from(("declined", "no_answer")),
                                                                min_size=1, max_size=6)))]  # fmt: skip
    assert only_inert_events(extra)
    assert compute_results([*events, *extra], the_plan) == compute_results(events, the_plan)
    for customer in customers:
        mine = [event for event in events if event.customer_id == customer]
        theirs = [event for event in extra if event.customer_id == customer]
        assert customer_outcome([*mine, *theirs], the_plan) == customer_outcome(mine, the_plan)

# -- the tables against the SPEC, the slow way -------------------------------------------------


def _round(value: Fraction | Decimal, places: int = 2) -> Decimal:
    fraction = Fraction(value)
    exponent = Decimal(1).scaleb(-places)
    # exact: a Fraction's decimal digits to well beyond the places, then half-up
    scaled = fraction * 10**places
    floor = scaled.numerator // scaled.denominator
    rest = scaled - floor
    whole = floor + (1 if rest >= Fraction(1, 2) else 0)
    return (Decimal(whole) * exponent).quantize(exponent, rounding=ROUND_HALF_UP)


def _held_event(events: list[Event], credit: Credit) -> LeadHandoff:
    """SPEC §5.7: the lead's status event, its greatest (occurred_at, event_id)."""
    lifecycle = [e for e in events if isinstance(e, LeadHandoff) and e.lead_id == credit.lead_id
                 and e.customer_id == credit.customer_id]  # fmt: skip
    return max(lifecycle, key=lambda e: (e.occurred_at, e.event_id))


@pytest.mark.parametrize("model", MODELS)
@FAST
@given(events=programme_sets(), data=st.data())
def test_credits_summed_per_person_give_the_running_rows(model: str, events: list[Event], data: Any) -> None:
    the_plan = data.draw(programme_plans(model))
    results = compute_results(events, the_plan)
    rows = {(row.period, row.person_id): row for row in results.running}
    lines: dict[tuple[str, str, str], set[tuple[str, str | None, str | None]]] = defaultdict(set)
    amounts: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
    kinds: Counter[tuple[str, str, str]] = Counter()
    for c in results.credits:
        key = (c.period, c.person_id, c.kind)
        kinds[key] += 1
        if c.kind in (CROSS_SELL, UPSELL):
            lines[key].add((c.customer_id, c.sale_id, c.line_id))
            amounts[key] += c.amount
    assert {(c.period, c.person_id) for c in results.credits} <= set(rows)  # a credit is a figure
    for (period, person), row in rows.items():
        assert row.cross_sell_count == len(lines[(period, person, CROSS_SELL)])
        assert row.cross_sell_amount == _round(amounts[(period, person, CROSS_SELL)])
        assert row.upsell_count == len(lines[(period, person, UPSELL)])
        assert row.upsell_amount == _round(amounts[(period, person, UPSELL)])
        assert row.upsell_bonus == _round(the_plan.upsell_rate * amounts[(period, person, UPSELL)])
        assert row.appointments_held == kinds[(period, person, "appointment_held")]
        assert row.appointments_converted == kinds[(period, person, APPOINTMENT_CONVERTED)]
        assert row.total_bonus == (row.cross_sell_bonus + row.upsell_bonus + row.appointment_bonus + row.kpi_bonus
                                   + row.prize_bonus + row.prior_adjustments)  # fmt: skip
    # an upsell's amount is the uplift over the highest price held before, never the whole line
    for c in results.credits:
        if c.kind == UPSELL:
            assert c.amount >= 0


def _kpi_inputs(events: list[Event], results: Results, the_plan: Plan) -> dict[tuple[str, str], dict[str, Any]]:
    """SPEC §13 per (period, person): conversions, ratings, reviews, and the role of the row."""
    found: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {"conversions": 0, "ratings": [], "reviews": [], "latest": None})
    for c in results.credits:
        if c.kind == APPOINTMENT_CONVERTED:
            held = _held_event(events, c)
            for person in {held.telemarketer_id, held.field_rep_id}:
                found[(c.period, person)]["conversions"] += 1
    distinct = {e.event_id: e for e in events}
    for e in distinct.values():
        if isinstance(e, (Feedback, QualityReview)):
            mine = found[(period_of(e.occurred_at, the_plan), e.person_id)]
            if isinstance(e, Feedback):
                mine["ratings"].append(e.rating)
            else:
                mine["reviews"].append(e.passed)
            if mine["latest"] is None or (e.occurred_at, e.event_id) > mine["latest"][:2]:
                mine["latest"] = (e.occurred_at, e.event_id, e.person_role)
    items: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for item in {(c.period, c.person_id, c.role, c.kind, c.customer_id, c.sale_id, c.line_id, c.lead_id)
                 for c in results.credits}:  # fmt: skip
        items[(item[0], item[1])][item[2]] += 1
    for key, mine in found.items():
        per_role = items.get(key)
        if per_role:
            mine["role"] = "telemarketer" if per_role["telemarketer"] > per_role["field_rep"] else "field_rep"
        else:
            mine["role"] = mine["latest"][2] if mine["latest"] else "field_rep"
    return found


@pytest.mark.parametrize("model", MODELS)
@FAST
@given(events=programme_sets(), data=st.data())
def test_kpi_bonus_is_the_weighted_attainments_of_the_scores(model: str, events: list[Event], data: Any) -> None:
    """Who gets kpi_scores rows, their values and attainments (exact, then to 10 places), and
    kpi_bonus = target_bonus x sum(weight x attainment), exact before the one rounding; the
    attainments as stored (10 places) give the same cents."""
    the_plan = data.draw(programme_plans(model))
    assert the_plan.kpi is not None
    results = compute_results(events, the_plan)
    rows = {(row.period, row.person_id): row for row in results.running}
    scores: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for score in results.kpi_scores:
        scores[(score.period, score.person_id)].append(score)
    inputs = _kpi_inputs(events, results, the_plan)
    taking_part = {key for key, mine in inputs.items() if mine["role"] in the_plan.kpi.roles}
    assert set(scores) == taking_part
    for key in set(rows) - taking_part:
        assert rows[key].kpi_bonus == 0
    for key in taking_part:
        mine = inputs[key]
        values = {
            "conversions": Fraction(mine["conversions"]) if mine["conversions"] else None,
            "rating": Fraction(sum(mine["ratings"]), len(mine["ratings"])) if mine["ratings"] else None,
            "compliance": Fraction(sum(mine["reviews"]), len(mine["reviews"])) if mine["reviews"] else None,
        }
        exact = Fraction(0)
        stored = Decimal(0)
        assert [s.component for s in scores[key]] == [c.name for c in the_plan.kpi.components]
        for score, component in zip(scores[key], the_plan.kpi.components, strict=True):
            value = values[component.metric]
            attained = Fraction(0) if value is None else min(value / Fraction(component.target),
                                                            Fraction(component.cap))
            assert score.metric == component.metric and score.weight == component.weight
            assert score.value == (None if value is None else _round(value, 10))
            assert score.attainment == _round(attained, 10)
            exact += Fraction(score.weight) * attained
            stored += score.weight * score.attainment
        bonus = rows[key].kpi_bonus if key in rows else Decimal("0.00")
        assert bonus == _round(Fraction(the_plan.kpi.target_bonus) * exact), key
        assert bonus == _round(the_plan.kpi.target_bonus * stored), key


def _turnovers(events: list[Event], results: Results, the_plan: Plan) -> dict[int, dict[str, Decimal]]:
    """SPEC §13 per year and telemarketer, exact: the sum over converted leads of every converting
    sale's net amount."""
    net = reference_net(events, the_plan)
    sales = [e for e in {e.event_id: e for e in events}.values() if isinstance(e, Sale)]
    years: dict[int, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for c in results.credits:
        if c.kind != APPOINTMENT_CONVERTED:
            continue
        held = _held_event(events, c)
        converting = [s for s in sales if s.customer_id == held.customer_id and s.seller_id == held.field_rep_id
                      and timedelta(0) <= s.occurred_at - held.occurred_at <= the_plan.conversion_window
                      and any(net[(s.sale_id, ln.line_id)][0] > 0 for ln in s.lines)]  # fmt: skip
        assert converting
        years[int(c.period[:4])][c.person_id] += sum(net[(s.sale_id, ln.line_id)][1] for s in converting
                                                     for ln in s.lines)  # fmt: skip
    return years


@pytest.mark.parametrize("model", MODELS)
@FAST
@given(events=programme_sets(), data=st.data())
def test_lead_points_badges_gold_and_the_prize_split(model: str, events: list[Event], data: Any) -> None:
    """Points are the converted appointments of the year, turnover the converting sales' net
    amounts, gold the greatest positive turnover; the prize parts sum to gold_prize exactly when
    there is a holder, each a floor of the cent or one cent more (to the first in id order), and
    nobody else has a prize."""
    the_plan = data.draw(programme_plans(model))
    results = compute_results(events, the_plan)
    points = Counter((int(c.period[:4]), c.person_id) for c in results.credits if c.kind == APPOINTMENT_CONVERTED)
    turnovers = _turnovers(events, results, the_plan)
    assert [(r.year, r.person_id, r.points) for r in results.lead_points] == sorted(
        (year, person, n) for (year, person), n in points.items())
    prizes = {(row.period, row.person_id): row.prize_bonus for row in results.running if row.prize_bonus}
    for row in results.lead_points:
        assert row.turnover == _round(turnovers[row.year][row.person_id])
        expected_badge = ("silver" if row.points >= the_plan.silver_points
                          else "bronze" if row.points >= the_plan.bronze_points else "none")  # fmt: skip
        assert row.badge == expected_badge
    for year in {r.year for r in results.lead_points} | {int(p[:4]) for p, _ in prizes}:
        of_year = turnovers.get(year, {})
        best = max(of_year.values(), default=Decimal(0))
        holders = sorted(p for p, t in of_year.items() if t == best) if best > 0 else []
        assert sorted(r.person_id for r in results.lead_points if r.year == year and r.gold) == holders
        paid = {person: prize for (period, person), prize in prizes.items() if period == f"{year}-12"}
        assert set(paid) == set(holders)
        if holders:
            assert sum(paid.values()) == the_plan.gold_prize
            floor = (the_plan.gold_prize / len(holders)).quantize(Decimal("0.01"), rounding="ROUND_DOWN")
            extra = int((the_plan.gold_prize - floor * len(holders)) / Decimal("0.01"))
            assert [paid[p] for p in holders] == [floor + Decimal("0.01")] * extra + [floor] * (len(holders) - extra)
    assert all(period.endswith("-12") for period, _ in prizes)
