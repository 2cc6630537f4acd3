"""One customer's recomputation as a change to what is stored: the ledger's pure core.

The ledger (stream/ledger.py) recomputes a customer's credits from all of its events
(stream/rules.py) whenever a batch brings it new events, and writes only this change:
the credits to retract, those to insert, and what the change adds to each person's
month (`Tally` deltas, SPEC §6). Pure, so the property tests drive exactly this code
through any batching without Postgres (tests/unit/test_incremental.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import chain
from typing import NamedTuple

from stream.bonus import NOTHING, PersonKey, Tally, tally
from stream.rules import Credit


class CustomerChange(NamedTuple):
    """Credits in force before -> wanted now, for one customer. Row ids ride along, so the
    ledger can delete by id and keep the ids of the credits that stay."""

    kept: dict[Credit, int]
    added: list[Credit]  # in the order of `wanted`
    removed: dict[Credit, int]
    #: per (period, person) whose credits changed: tally(wanted) - tally(before)
    deltas: dict[PersonKey, Tally]


def diff_credits(in_force: Mapping[Credit, int], wanted: Sequence[Credit]) -> CustomerChange:
    """Compare one customer's credits in force (with their row ids) with those the rules want.

    The deltas are taken over the customer's whole credits of each person concerned, not
    over the added and removed rows alone: a person who keeps the field rep part of a line
    and loses its telemarketer part still counts the line (SPEC §5.6).
    """
    wanted_set = dict.fromkeys(wanted)
    kept: dict[Credit, int] = {}
    removed: dict[Credit, int] = {}
    for credit, row_id in in_force.items():
        if credit in wanted_set:
            kept[credit] = row_id
        else:
            removed[credit] = row_id
    added = [credit for credit in wanted_set if credit not in in_force]
    concerned = {(credit.period, credit.person_id) for credit in chain(added, removed)}
    if not concerned:
        return CustomerChange(kept, added, removed, {})
    before = tally(credit for credit in in_force if (credit.period, credit.person_id) in concerned)
    after = tally(credit for credit in wanted_set if (credit.period, credit.person_id) in concerned)
    deltas = {key: after.get(key, NOTHING) - before.get(key, NOTHING) for key in concerned}
    return CustomerChange(kept, added, removed, deltas)
