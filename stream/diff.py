"""One customer's recomputation as a change to what is stored: the ledger's pure core.

The ledger (stream/ledger.py) recomputes a customer's credits and facts from all of its
events (stream/rules.py) whenever a batch brings it new events, and writes only this change:
the rows to retract, those to insert, and what the change adds to each person's month
(`Tally` deltas, SPEC §6, §13) and to each telemarketer's year of leads (`LeadTally` deltas).
Pure, so the property tests drive exactly this code through any batching without Postgres
(tests/unit/test_incremental.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import chain
from typing import NamedTuple, TypeVar

from stream.bonus import NOTHING, PersonKey, Tally, lead_tally, tally
from stream.leads import NO_LEADS, LeadTally, YearKey
from stream.rules import LEAD, Credit, Fact, Outcome

T = TypeVar("T", Credit, Fact)


class CustomerChange(NamedTuple):
    """Credits and facts in force before -> wanted now, for one customer. Row ids ride along,
    so the ledger can delete by id and keep the ids of the rows that stay."""

    kept: dict[Credit, int]
    added: list[Credit]  # in the order of the outcome
    removed: dict[Credit, int]
    facts_kept: dict[Fact, int]
    facts_added: list[Fact]
    facts_removed: dict[Fact, int]
    #: per (period, person) whose credits or month facts changed: after - before
    deltas: dict[PersonKey, Tally]
    #: per (year, telemarketer) whose lead facts changed: after - before
    lead_deltas: dict[YearKey, LeadTally]


def _split(in_force: Mapping[T, int], wanted: list[T]) -> tuple[dict[T, int], list[T], dict[T, int]]:
    wanted_set = dict.fromkeys(wanted)
    kept: dict[T, int] = {}
    removed: dict[T, int] = {}
    for row, row_id in in_force.items():
        if row in wanted_set:
            kept[row] = row_id
        else:
            removed[row] = row_id
    return kept, [row for row in wanted_set if row not in in_force], removed


def diff_customer(
    in_force: Mapping[Credit, int], facts_in_force: Mapping[Fact, int], wanted: Outcome
) -> CustomerChange:
    """Compare one customer's rows in force (with their row ids) with those the rules want.

    The deltas are taken over the customer's whole credits and facts of each person
    concerned, not over the added and removed rows alone: a person who keeps the field rep
    part of a line and loses its telemarketer part still counts the line (SPEC §5.6).
    """
    kept, added, removed = _split(in_force, wanted.credits)
    facts_kept, facts_added, facts_removed = _split(facts_in_force, wanted.facts)
    concerned = {(c.period, c.person_id) for c in chain(added, removed)}
    concerned |= {(f.scope, f.person_id) for f in chain(facts_added, facts_removed) if f.kind != LEAD}
    deltas: dict[PersonKey, Tally] = {}
    if concerned:
        before = tally((c for c in in_force if (c.period, c.person_id) in concerned),
                       (f for f in facts_in_force if f.kind != LEAD and (f.scope, f.person_id) in concerned))
        after = tally((c for c in wanted.credits if (c.period, c.person_id) in concerned),
                      (f for f in wanted.facts if f.kind != LEAD and (f.scope, f.person_id) in concerned))
        deltas = {key: after.get(key, NOTHING) - before.get(key, NOTHING) for key in concerned}
    lead_deltas: dict[YearKey, LeadTally] = {}
    if any(f.kind == LEAD for f in chain(facts_added, facts_removed)):
        gained, lost = lead_tally(facts_added), lead_tally(facts_removed)
        lead_deltas = {key: gained.get(key, NO_LEADS) - lost.get(key, NO_LEADS) for key in {*gained, *lost}}
    return CustomerChange(kept, added, removed, facts_kept, facts_added, facts_removed, deltas, lead_deltas)
