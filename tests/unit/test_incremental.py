"""The incremental path equals the from-scratch one, without Postgres (issue 12).

`Ledger` below is stream/ledger.py with Postgres taken out: the same admission as the
store, the same skip (`can_change_credits`), the same per-customer diff (`diff_credits`)
and the same sums of per-customer tallies (`add_tallies`), kept in dicts instead of tables.
Whatever batching, order and redeliveries, and whether the worker's cache is warm or cold
(a restart), its rows must equal `compute_tables`: the id pools overlap, so one person
holds both parts of a line, and telemarketers sell.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.events import Event, Sale
from stream.bonus import NOTHING, PersonKey, RunningRow, Tally, add_tallies, compute_tables, has_figures, running_row
from stream.diff import diff_customer
from stream.plan import Plan
from stream.rules import Credit, Fact, can_change_credits, credit_customer, customer_outcome
from tests.unit.builders import DEFAULT, at, callback, handoff, line, plan, refund, sale
from tests.unit.test_rules_properties import FAST, MODELS, event_sets


class Ledger:
    """What the ledger keeps per customer and per person, in memory."""

    def __init__(self, the_plan: Plan) -> None:
        self.plan = the_plan
        self.event_ids: set[str] = set()
        self.sale_ids: set[str] = set()
        self.history: dict[str, list[Event]] = defaultdict(list)
        self.in_force: dict[str, dict[Credit, int]] = defaultdict(dict)
        self.facts: dict[str, dict[Fact, int]] = defaultdict(dict)
        self.totals: dict[PersonKey, Tally] = {}
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
        """One batch; a cold cache (after a restart) does not know the customers' histories."""
        deltas: dict[PersonKey, Tally] = {}
        for customer, new in sorted(self.admit(events).items()):
            before = self.history[customer]
            self.history[customer] = [*before, *new]
            if not can_change_credits(new, before if cache_warm else None):
                continue
            change = diff_customer(self.in_force[customer], self.facts[customer],
                                   customer_outcome(self.history[customer], self.plan))
            self.in_force[customer] = {**change.kept, **{c: next(self.row_ids) for c in change.added}}
            self.facts[customer] = {**change.facts_kept, **{f: next(self.row_ids) for f in change.facts_added}}
            add_tallies(deltas, change.deltas)
        add_tallies(self.totals, deltas)

    def rows(self) -> list[RunningRow]:
        """`bonus_running` without the rows of zeros a from-scratch run does not have."""
        return [row for key, totals in sorted(self.totals.items())
                if has_figures(row := running_row(key, totals, self.plan))]  # fmt: skip

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
