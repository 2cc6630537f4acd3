"""The incremental path equals the from-scratch one, without Postgres (issue 12).

`Ledger` below is stream/ledger.py with Postgres taken out: the same admission as the
store, the same skips (`only_inert_events`: the customer is not taken, and the cache never
learns of those events; `can_change_credits`), the same per-customer diff of credits and facts
(`diff_customer`), the same sums of per-customer tallies (`add_tallies`), the same lead years
(`lead_totals` moved by deltas, then each touched year's prizes recomputed from the whole year
and their changes added to the December months, `lead_points` rewritten for the concerned
telemarketers only: those moved, the gold holders before and after) and the same write sets
(`bonus_running` and `kpi_scores` rewritten only for the persons whose totals moved, a row left
without figures zeroed, never created), kept in dicts instead of tables. Whatever batching,
order and redeliveries, and whether the worker's cache is warm or cold (a restart), its tables
must equal `compute_results`: the id pools overlap, so one person holds both parts of a line,
and telemarketers sell. The SPEC 13 programmes are driven through it by
tests/unit/test_programme_properties.py.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.events import Event, Sale
from stream import leads
from stream.bonus import (
    NOTHING,
    PersonKey,
    RunningRow,
    Tally,
    add_tallies,
    compute_tables,
    has_figures,
    kpi_roles,
    person_kpi_scores,
    running_row,
)
from stream.diff import diff_customer
from stream.kpi import KpiScore
from stream.leads import NO_LEADS, LeadPointsRow, LeadTally, YearKey
from stream.money import ZERO
from stream.plan import Plan
from stream.rules import Credit, Fact, can_change_credits, credit_customer, customer_outcome, only_inert_events
from tests.unit.builders import DEFAULT, at, callback, handoff, line, plan, refund, sale
from tests.unit.test_rules_properties import FAST, MODELS, event_sets


class Ledger:
    """What the ledger keeps per customer and per person, in memory."""

    def __init__(self, the_plan: Plan) -> None:
        self.plan = the_plan
        self.event_ids: set[str] = set()
        self.sale_ids: set[str] = set()
        self.history: dict[str, list[Event]] = defaultdict(list)  # as the worker's cache knows them
        self.stored: dict[str, list[Event]] = defaultdict(list)  # as `events` holds them
        self.in_force: dict[str, dict[Credit, int]] = defaultdict(dict)
        self.facts: dict[str, dict[Fact, int]] = defaultdict(dict)
        self.totals: dict[PersonKey, Tally] = {}  # credit_totals
        self.years: dict[YearKey, LeadTally] = {}  # lead_totals: points, turnover
        self.prizes: dict[YearKey, Decimal] = {}  # lead_totals.prize
        self.lead_rows: dict[YearKey, LeadPointsRow] = {}  # lead_points
        self.running: dict[PersonKey, RunningRow] = {}  # bonus_running
        self.scores: dict[PersonKey, list[KpiScore]] = {}  # kpi_scores
        self.row_ids = itertools.count(1)

    def admit(self, events: list[Event]) -> dict[str, list[Event]]:
        """The store's admission: the first of an event_id, the first sale of a sale_id."""
        new: dict[str, list[Event]] = defaultdict(list)
        for event in events:
            if event.event_id in self.event_ids:
                continue
            if isinstance(event, Sale):
                if event.sale_id in self.sale_ids:
                    continue
                self.sale_ids.add(event.sale_id)
            self.event_ids.add(event.event_id)
            new[event.customer_id].append(event)
        return new

    def batch(self, events: list[Event], cache_warm: bool = True) -> None:
        """One batch (`recompute_customers`); a cold cache (after a restart) does not know the
        customers' histories."""
        deltas: dict[PersonKey, Tally] = {}
        lead_deltas: dict[YearKey, LeadTally] = {}
        for customer, new in sorted(self.admit(events).items()):
            self.stored[customer] += new
            if only_inert_events(new):  # not taken at all: the cache does not learn of them
                continue
            before = self.history[customer]
            self.history[customer] = [*before, *new]
            if not can_change_credits(new, before if cache_warm else None):
                continue
            # warm: from the cache, which lacks the inert events; cold: every stored event
            known = self.history[customer] if cache_warm else self.stored[customer]
            self.history[customer] = list(known)  # what the ledger stages
            change = diff_customer(self.in_force[customer], self.facts[customer],
                                   customer_outcome(known, self.plan))
            self.in_force[customer] = {**change.kept, **{c: next(self.row_ids) for c in change.added}}
            self.facts[customer] = {**change.facts_kept, **{f: next(self.row_ids) for f in change.facts_added}}
            add_tallies(deltas, change.deltas)
            for key, lead_delta in change.lead_deltas.items():
                lead_deltas[key] = lead_deltas.get(key, NO_LEADS) + lead_delta
        lead_deltas = {key: delta for key, delta in lead_deltas.items() if delta != NO_LEADS}
        add_tallies(deltas, self.move_leads(lead_deltas))
        deltas = {key: delta for key, delta in deltas.items() if delta != NOTHING}
        add_tallies(self.totals, deltas)
        self.refresh(sorted(deltas))

    def move_leads(self, deltas: dict[YearKey, LeadTally]) -> dict[PersonKey, Tally]:
        """`_move_leads`: add to the years, recompute each touched year's prizes from the whole
        year, rewrite the concerned `lead_points` rows; the prize changes as December deltas."""
        for key, delta in deltas.items():
            self.years[key] = self.years.get(key, NO_LEADS) + delta
        prize_deltas: dict[PersonKey, Tally] = {}
        for year in sorted({year for year, _ in deltas}):
            tallies = {person: found for (yr, person), found in self.years.items() if yr == year}
            prizes = leads.year_prizes(tallies, self.plan)
            for person in tallies:
                was, now = self.prizes.get((year, person), ZERO), prizes.get(person, ZERO)
                if now != was:
                    prize_deltas[(leads.december(year), person)] = Tally(prize=now - was)
                    self.prizes[(year, person)] = now
            gold_before = {person for (yr, person), row in self.lead_rows.items() if yr == year and row.gold}
            concerned = ({person for yr, person in deltas if yr == year} | gold_before
                         | set(leads.gold_holders(tallies)))  # fmt: skip
            gold = set(leads.gold_holders(tallies))
            mine = {person: tallies[person] for person in concerned if person in tallies}
            for person, found in mine.items():
                if found.points <= 0:
                    self.lead_rows.pop((year, person), None)
            for row in leads.lead_points_rows(year, mine, self.plan):
                self.lead_rows[(year, row.person_id)] = row._replace(gold=row.person_id in gold)
        return prize_deltas

    def refresh(self, persons: list[PersonKey]) -> None:
        """`refresh_running`: these persons' `bonus_running` and `kpi_scores` rows from their totals."""
        facts = [fact for found in self.facts.values() for fact in found]
        roles = kpi_roles(facts)
        for key in persons:
            found = self.totals[key]
            role = roles.get(key) if not found.items and (found.rating_count or found.reviews) else None
            row = running_row(key, found, self.plan, kpi_role=role)
            if has_figures(row) or key in self.running:  # a row of zeros is never created
                self.running[key] = row
            if self.plan.kpi is not None:
                self.scores.pop(key, None)
                if scores := person_kpi_scores(key, found, self.plan, role):
                    self.scores[key] = scores

    def rows(self) -> list[RunningRow]:
        """`bonus_running` without the rows of zeros a from-scratch run does not have."""
        return [row for _, row in sorted(self.running.items()) if has_figures(row)]

    def lead_points(self) -> list[LeadPointsRow]:
        return [row for _, row in sorted(self.lead_rows.items())]

    def kpi_scores(self) -> list[KpiScore]:
        return [score for _, found in sorted(self.scores.items()) for score in found]

    def credits(self) -> set[Credit]:
        return {credit for found in self.in_force.values() for credit in found}


def from_scratch_credits(events: list[Event], the_plan: Plan) -> set[Credit]:
    by_customer: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_customer[event.customer_id].append(event)
    return {credit for found in by_customer.values() for credit in credit_customer(found, the_plan)}


@pytest.mark.parametrize("model", MODELS)
@FAST
@given(events=event_sets(), data=st.data())
def test_any_batching_with_redeliveries_equals_compute_tables(model: str, events: list[Event], data: Any) -> None:
    the_plan = plan(attribution_model=model)
    repeats = data.draw(st.lists(st.sampled_from(events), max_size=6)) if events else []
    arrival = data.draw(st.permutations([*events, *repeats]))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(arrival)), max_size=6)))
    ledger = Ledger(the_plan)
    for start, end in itertools.pairwise([0, *cuts, len(arrival)]):
        ledger.batch(arrival[start:end], cache_warm=data.draw(st.booleans()))
    assert ledger.rows() == compute_tables(arrival, the_plan)
    assert ledger.credits() == from_scratch_credits(events, the_plan)


@st.composite
def own_touches(draw: Any) -> list[Event]:
    """One customer where x-1 sells and touches: offers and bookings by x-1 and others before
    x-1's sales of a laptop with add-ons, so x-1 holds both parts of lines, then loses one."""
    people = ("x-1", "tm-1", "tm-2")
    events: list[Event] = []
    for index in range(draw(st.integers(1, 2))):
        seller, role = draw(st.sampled_from((("x-1", "field_rep"), ("x-1", "field_rep"), ("x-1", "telemarketer"))))
        add_ons = [line(f"L{n}", category, draw(st.sampled_from(("10.00", "99.99", "0.01"))))
                   for n, category in enumerate(draw(st.lists(st.sampled_from(("accessories", "software")),
                                                              min_size=1, max_size=2, unique=True)), start=2)]
        events.append(sale(f"S{index}", at(index), line("L1", "laptops", "1000.00"), *add_ons, seller=seller,
                           role=role, event_id=f"s{index}"))
    for index in range(draw(st.integers(1, 5))):
        when = at(-draw(st.integers(0, 40)) / 4)
        if draw(st.integers(0, 3)) == 0:
            events.append(handoff(f"lead-{index}", "booked", when, draw(st.sampled_from(people)), "x-1",
                                  event_id=f"bk{index}"))
        else:
            events.append(callback(draw(st.sampled_from(people)), when,
                                   *draw(st.lists(st.sampled_from(("accessories", "software")), min_size=1,
                                                  unique=True)), event_id=f"cb{index}"))
    return events


@pytest.mark.parametrize("model", MODELS)
@FAST
@given(events=own_touches(), data=st.data())
def test_a_person_in_both_roles_in_any_batching_equals_compute_tables(model: str, events: list[Event],
                                                                      data: Any) -> None:
    the_plan = plan(attribution_model=model)
    arrival = data.draw(st.permutations([*events, *data.draw(st.lists(st.sampled_from(events), max_size=3))]))
    ledger = Ledger(the_plan)
    for event in arrival:  # one event a batch: every intermediate state is written
        ledger.batch([event], cache_warm=data.draw(st.booleans()))
    assert ledger.rows() == compute_tables(arrival, the_plan)


def test_one_person_in_both_roles_counts_the_line_once_across_batches() -> None:
    """The case issue 12 found: x-1 offers accessories, then sells them as field rep."""
    offer = callback("x-1", at(-1), "accessories", event_id="cb")
    laptop = sale("S1", at(0), line("L1", "laptops", "1000.00"), line("L2", "accessories", "100.00"),
                  seller="x-1", event_id="s1")  # fmt: skip
    ledger = Ledger(DEFAULT)
    ledger.batch([offer])
    ledger.batch([laptop, offer])
    [row] = ledger.rows()
    assert (row.person_id, row.role, row.cross_sell_count, str(row.cross_sell_amount)) == (
        "x-1", "field_rep", 1, "100.00")
    ledger.batch([refund("S1", at(1), {"L2": 1}, event_id="r1")])
    assert ledger.rows() == [] and ledger.totals[("2026-11", "x-1")] == NOTHING


def test_losing_one_part_of_a_line_keeps_its_count() -> None:
    """x-1 keeps the field rep part when a later touch by tm-2 takes the telemarketer part."""
    laptop = sale("S1", at(0), line("L1", "laptops", "1000.00"), line("L2", "accessories", "100.00"),
                  seller="x-1", event_id="s1")  # fmt: skip
    ledger = Ledger(DEFAULT)
    ledger.batch([callback("x-1", at(-2), "accessories", event_id="cb-x"), laptop])
    ledger.batch([callback("tm-2", at(-1), "accessories", event_id="cb-tm")])
    rows = {row.person_id: (row.role, row.cross_sell_count, str(row.cross_sell_amount)) for row in ledger.rows()}
    assert rows == {"x-1": ("field_rep", 1, "70.00"), "tm-2": ("telemarketer", 1, "30.00")}
