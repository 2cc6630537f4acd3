"""SPEC §5 invariants over random event sets (hypothesis), for every attribution model.

The generator mixes sales over the matrix categories, refunds (also of unknown lines and
of more units than a line has), cancellations (inside and outside the clawback), callbacks,
bookings and lead lifecycles, over ~100 days, with coarse times so ties happen. The id pools
overlap: `x-1` is both a field rep and a telemarketer (touching, booking and selling in
either role, and so holding both parts of a line), and telemarketers sell too.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.events import Callback, Cancellation, Event, LeadHandoff, Refund, Sale
from stream.bonus import compute_tables, role_of, tally
from stream.plan import Plan
from stream.rules import Credit, can_change_credits, credit_customer
from tests.unit.builders import T0, callback, cancellation, handoff, line, plan, refund, sale

MODELS = ("last_touch", "first_touch", "linear")
CATEGORIES = ("laptops", "phones", "plans", "tv", "insurance", "accessories", "software",
              "warranty", "streaming", "garden")  # fmt: skip
PRICES = ("0", "0.01", "9.99", "50.00", "100", "333.33", "1000.0001")
FIELD_REPS = ("fr-1", "x-1")
TELEMARKETERS = ("tm-1", "tm-2", "x-1")
LEAD_STATUSES = ("booked", "held", "no_show", "cancelled")
#: Property tests run many examples; keep each test near a second.
FAST = settings(max_examples=35, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Draw = Callable[[st.SearchStrategy[Any]], Any]


def _when(draw: Draw, near: list[Sale] | None = None, days_before: int = 40) -> Any:
    """A time within ~100 days on a 6-hour grid (so ties are common); given `near` sales,
    mostly up to `days_before` days before one of them, so windows are often hit.
    """
    if near and draw(st.integers(0, 3)) > 0:
        anchor = draw(st.sampled_from(near)).occurred_at
        return anchor - timedelta(hours=6 * draw(st.integers(-8, 4 * days_before)))
    return T0 + timedelta(hours=6 * draw(st.integers(0, 400)))


def _sale(draw: Draw, customer: str, sale_id: str, event_id: str, earlier: list[Sale]) -> Sale:
    """A sale of one to four lines; often at the very instant of an earlier sale (a tie)."""
    count = draw(st.integers(1, 4))
    lines = [
        line(f"L{i}", draw(st.sampled_from(CATEGORIES)), draw(st.sampled_from(PRICES)),
             draw(st.integers(1, 3)))
        for i in range(count)
    ]  # fmt: skip
    if draw(st.integers(0, 4)) == 0:
        seller, role = draw(st.sampled_from(TELEMARKETERS)), "telemarketer"
    else:
        seller, role = draw(st.sampled_from(FIELD_REPS)), "field_rep"
    tie = earlier and draw(st.integers(0, 2)) == 0
    when = draw(st.sampled_from(earlier)).occurred_at if tie else _when(draw)
    return sale(sale_id, when, *lines, seller=seller, role=role, customer=customer,
                event_id=event_id)  # fmt: skip


def _reversals(draw: Draw, target: Sale, ids: Callable[[], str]) -> list[Event]:
    found: list[Event] = []
    for _ in range(draw(st.sampled_from((0, 0, 1, 2)))):
        units = {f"L{draw(st.integers(0, 4))}": draw(st.integers(1, 4))}
        found.append(refund(target.sale_id, _when(draw), units, target.customer_id, ids()))
    if draw(st.integers(0, 5)) == 0:
        found.append(cancellation(target.sale_id, _when(draw), target.customer_id, ids()))
    return found


def _touches(draw: Draw, customer: str, sales: list[Sale], ids: Callable[[], str]) -> list[Event]:
    found: list[Event] = []
    for _ in range(draw(st.integers(0, 6))):
        outcome = draw(st.sampled_from(("offer_made", "offer_made", "offer_made", "declined", "no_answer")))
        offered = draw(st.lists(st.sampled_from(CATEGORIES[2:]), min_size=1, max_size=5))
        found.append(callback(draw(st.sampled_from(TELEMARKETERS)), _when(draw, sales),
                              *(offered if outcome == "offer_made" else ()), outcome=outcome,
                              customer=customer, event_id=ids()))  # fmt: skip
    for lead in range(draw(st.integers(0, 2))):
        when = _when(draw, sales, 16)
        for step in range(draw(st.integers(1, 3))):
            status = "booked" if step == 0 else draw(st.sampled_from(LEAD_STATUSES))
            when = when if draw(st.integers(0, 2)) == 0 else _when(draw, sales, 16)  # ties
            found.append(handoff(f"{customer}-lead-{lead}", status, when,
                                 draw(st.sampled_from(TELEMARKETERS)),
                                 draw(st.sampled_from(FIELD_REPS)), customer, ids()))  # fmt: skip
    return found


@st.composite
def event_sets(draw: Draw) -> list[Event]:
    """All events of one to three customers, each event_id and sale_id unique."""
    counter = iter(range(10**6))

    def ids() -> str:
        return f"e{next(counter):04d}"

    events: list[Event] = []
    for number in range(draw(st.integers(1, 3))):
        customer = f"c{number}"
        sales: list[Sale] = []
        for index in range(draw(st.integers(0, 5))):
            sales.append(_sale(draw, customer, f"{customer}-S{index}", ids(), sales))
            events += [sales[-1], *_reversals(draw, sales[-1], ids)]
        events += _touches(draw, customer, sales, ids)
    return events


def by_customer(events: list[Event]) -> dict[str, list[Event]]:
    grouped: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        grouped[event.customer_id].append(event)
    return grouped


def reference_net(events: list[Event], the_plan: Plan) -> dict[tuple[str, str], tuple[int, Decimal]]:
    """(sale_id, line_id) -> (net quantity, net amount), straight from SPEC §5.1, the slow
    obvious way."""
    net: dict[tuple[str, str], tuple[int, Decimal]] = {}
    for s in (e for e in events if isinstance(e, Sale)):
        counted = [r for r in events if isinstance(r, (Cancellation, Refund))
                   and r.sale_id == s.sale_id and r.customer_id == s.customer_id
                   and r.occurred_at - s.occurred_at <= the_plan.clawback]  # fmt: skip
        for ln in s.lines:
            if any(isinstance(r, Cancellation) for r in counted):
                gone = ln.quantity
            else:
                gone = sum(u.quantity for r in counted if isinstance(r, Refund)
                           for u in r.lines if u.line_id == ln.line_id)  # fmt: skip
            quantity = max(0, ln.quantity - gone)
            net[(s.sale_id, ln.line_id)] = (quantity, quantity * ln.unit_price)
    return net


def all_credits(events: list[Event], the_plan: Plan) -> list[Credit]:
    return [c for group in by_customer(events).values() for c in credit_customer(group, the_plan)]


@pytest.mark.parametrize("model", MODELS)
@FAST
@given(events=event_sets(), data=st.data())
def test_order_and_duplicates_do_not_matter(model: str, events: list[Event], data: Any) -> None:
    the_plan = plan(attribution_model=model)
    shuffled = data.draw(st.permutations(events))
    repeated = data.draw(st.lists(st.sampled_from(events), max_size=5)) if events else []
    noisy = [*shuffled, *repeated]
    assert compute_tables(noisy, the_plan) == compute_tables(events, the_plan)
    for customer, group in by_customer(events).items():
        mine = [e for e in noisy if e.customer_id == customer]
        assert credit_customer(mine, the_plan) == credit_customer(group, the_plan)


def extra_callbacks(draw: Draw, customer: str, outcomes: tuple[str, ...]) -> list[Event]:
    """One to three more callbacks of `customer` with these outcomes, at any time."""
    chosen = draw(st.lists(st.sampled_from(outcomes), min_size=1, max_size=3))
    return [callback(draw(st.sampled_from(TELEMARKETERS)), _when(draw, None),
                     *draw(st.lists(st.sampled_from(CATEGORIES), min_size=1, max_size=3)),
                     outcome=outcome, customer=customer, event_id=f"extra-{outcome}-{index}")
            for index, outcome in enumerate(chosen)]  # fmt: skip


@pytest.mark.parametrize("model", MODELS)
@FAST
@given(events=event_sets(), data=st.data())
def test_events_the_ledger_skips_change_no_credit(model: str, events: list[Event], data: Any) -> None:
    """The ledger skips recomputing a customer when `can_change_credits` says no; that is
    only right if adding such events never changes the credits."""
    the_plan = plan(attribution_model=model)
    for customer, group in by_customer(events).items():
        no_offers = extra_callbacks(data.draw, customer, ("declined", "no_answer"))
        assert not can_change_credits(no_offers, group) and not can_change_credits(no_offers, None)
        assert credit_customer([*group, *no_offers], the_plan) == credit_customer(group, the_plan)
        without_sales = [e for e in group if not isinstance(e, Sale)]
        touches = [*extra_callbacks(data.draw, customer, ("offer_made", "declined")),
                   *(handoff(f"new-lead-{index}", "booked", _when(data.draw, None), "tm-1",
                             data.draw(st.sampled_from(FIELD_REPS)), customer, f"extra-booked-{index}")
                     for index in range(data.draw(st.integers(0, 2))))]  # fmt: skip
        assert not can_change_credits(touches, without_sales)
        held = handoff("new-lead-held", "held", _when(data.draw, None), customer=customer, event_id="extra-held")
        assert can_change_credits([*touches, held], without_sales)  # a held lead credits its telemarketer
        assert credit_customer([*without_sales, *touches], the_plan) == credit_customer(without_sales, the_plan)
        others = [e for e in group if not isinstance(e, Callback)]
        assert all(can_change_credits([e], without_sales) for e in others if not isinstance(e, LeadHandoff)
                   or e.status != "booked" or any(isinstance(o, LeadHandoff) and o.lead_id == e.lead_id
                                                  for o in without_sales))  # fmt: skip
        if len(without_sales) < len(group) and any(not isinstance(e, Callback) or e.outcome == "offer_made"
                                                   for e in touches):  # a touch, and a sale it may count for
            assert can_change_credits(touches, group) and can_change_credits(touches, None)


@pytest.mark.parametrize("model", MODELS)
@FAST
@given(events=event_sets())
def test_parts_of_a_line_sum_to_its_net_amount(model: str, events: list[Event]) -> None:
    the_plan = plan(attribution_model=model)
    net = reference_net(events, the_plan)
    amounts: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    shares: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for c in all_credits(events, the_plan):
        if c.kind == "cross_sell":
            assert c.sale_id is not None and c.line_id is not None
            amounts[(c.sale_id, c.line_id)] += c.amount
            shares[(c.sale_id, c.line_id)] += c.share
    for key, total in amounts.items():
        assert total == net[key][1], key
        assert shares[key] == 1, key


@pytest.mark.parametrize("model", MODELS)
@FAST
@given(events=event_sets())
def test_credits_only_for_lines_still_sold(model: str, events: list[Event]) -> None:
    the_plan = plan(attribution_model=model)
    net = reference_net(events, the_plan)
    for c in all_credits(events, the_plan):
        if c.kind == "cross_sell":
            assert c.sale_id is not None and c.line_id is not None
            assert net[(c.sale_id, c.line_id)][0] > 0
        elif c.kind == "appointment_converted":
            assert any(qty > 0 for (sale_id, _), (qty, _) in net.items() if sale_id == c.sale_id)


@pytest.mark.parametrize("model", MODELS)
@FAST
@given(events=event_sets())
def test_tallies_count_the_credits(model: str, events: list[Event]) -> None:
    """SPEC §5.6 and §6, the slow obvious way: a line counts once per person whatever
    parts they hold, and the role is the one with more credited items."""
    the_plan = plan(attribution_model=model)
    credits = all_credits(events, the_plan)
    kinds: Counter[tuple[str, str, str]] = Counter((c.period, c.person_id, c.kind) for c in credits)
    lines = {(c.period, c.person_id, c.customer_id, c.sale_id, c.line_id) for c in credits if c.kind == "cross_sell"}
    items = {(c.period, c.person_id, c.role, c.kind, c.customer_id, c.sale_id, c.line_id, c.lead_id)
             for c in credits}  # fmt: skip
    amounts: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for c in credits:
        if c.kind == "cross_sell":
            amounts[(c.period, c.person_id)] += c.amount
    totals = tally(credits)
    assert set(totals) == {(c.period, c.person_id) for c in credits}
    for (period, person), t in totals.items():
        assert t.cross_sell_count == sum(1 for line_ in lines if line_[:2] == (period, person))
        assert t.appointments_held == kinds[(period, person, "appointment_held")]
        assert t.appointments_converted == kinds[(period, person, "appointment_converted")]
        assert t.cross_sell_amount == amounts[(period, person)]
        per_role = Counter(item[2] for item in items if item[:2] == (period, person))
        expected = "telemarketer" if per_role["telemarketer"] > per_role["field_rep"] else "field_rep"
        assert role_of(t) == expected
        if not person.startswith("x-"):
            assert role_of(t) == ("telemarketer" if person.startswith("tm-") else "field_rep")
    rows = compute_tables(events, the_plan)
    assert [(r.period, r.person_id) for r in rows] == sorted(totals)


@FAST
@given(events=event_sets())
def test_one_lead_gives_at_most_one_held_and_one_converted(events: list[Event]) -> None:
    credits = all_credits(events, plan())
    per_lead = Counter((c.customer_id, c.lead_id, c.kind) for c in credits if c.lead_id)
    assert all(count == 1 for count in per_lead.values())
    held = {(c.customer_id, c.lead_id) for c in credits if c.kind == "appointment_held"}
    converted = {(c.customer_id, c.lead_id) for c in credits if c.kind == "appointment_converted"}
    assert converted <= held
    statuses = [e for e in events if isinstance(e, LeadHandoff)]
    assert len(held) <= len({(e.customer_id, e.lead_id) for e in statuses})


@st.composite
def crowded_lines(draw: Draw) -> tuple[list[Event], Decimal]:
    """One cross-sell line (accessories after laptops) and up to eight offers of it."""
    quantity = draw(st.integers(1, 7))
    price = draw(st.decimals(min_value=0, max_value=99999, places=4))
    events: list[Event] = [
        sale("S1", T0, line("L1", "laptops", "9999999"), line("L2", "accessories", str(price), quantity))
    ]
    for index in range(draw(st.integers(1, 8))):
        person = draw(st.sampled_from([f"tm-{n}" for n in range(6)]))
        when = T0 - timedelta(hours=draw(st.integers(0, 30 * 24)))
        events.append(callback(person, when, "accessories", event_id=f"cb-{index}"))
    return events, quantity * price


@FAST
@given(case=crowded_lines(), share=st.sampled_from(["0", "0.3", "0.25", "0.333", "0.5", "1"]))
def test_linear_split_among_many_telemarketers(case: tuple[list[Event], Decimal], share: str) -> None:
    events, amount = case
    the_plan = plan(attribution_model="linear", telemarketer_share=Decimal(share))
    credits = credit_customer(events, the_plan)
    assert sum(c.amount for c in credits) == amount
    assert sum(c.share for c in credits) == 1
    touches = [e for e in events if not isinstance(e, Sale)]
    latest = {t.telemarketer_id: t for t in sorted(touches, key=lambda t: (t.occurred_at, t.event_id))}  # type: ignore[union-attr]
    telemarketers = {c.person_id: c.touch_event_id for c in credits if c.role == "telemarketer"}
    if Decimal(share) > 0:
        assert telemarketers == {person: t.event_id for person, t in latest.items()}
    parts = sorted((c.amount for c in credits if c.role == "telemarketer"), reverse=True)
    assert not parts or parts[0] - parts[-1] < Decimal("1E-9")  # equal up to the remainder
