"""Lead sharing (SPEC §13) as pure functions: a year's lead points and turnover per
telemarketer in, badges, the gold holders and the prize split out.

A lead's point and turnover come from one customer (stream/rules.py `appointment_outcomes`,
facts of kind `lead`) and add up over customers into a `LeadTally` per (year, telemarketer).
What follows from a year's tallies is not additive: the gold holders are those with the
greatest turnover of all, so the ledger recomputes a year's gold under a lock of that year
(stream/ledger.py) and `compute_tables` from everything.

Decisions the SPEC leaves open, taken here once:

- **Gold needs a positive turnover** (as SPEC §13 says); a year whose greatest turnover is 0
  has no gold holder and pays no prize.
- **The prize is December's**: its amount and the badge thresholds are those of the plan in
  force for the year's December, and it is paid in the December row whether or not December
  has begun.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from decimal import ROUND_DOWN, Context, Decimal
from typing import NamedTuple

from stream.money import CENT, EXACT, ZERO, round_money
from stream.plan import Plan

YearKey = tuple[int, str]  # (year, person_id)

BADGES = ("none", "bronze", "silver")
#: A division that may be inexact, rounded down (toward the holders' floor of a cent).
_DOWN = Context(prec=60, rounding=ROUND_DOWN)


@dataclass(frozen=True, slots=True)
class LeadTally:
    """A telemarketer's leads of one year, summed over customers; turnover exact."""

    points: int = 0
    turnover: Decimal = ZERO

    def __add__(self, other: LeadTally) -> LeadTally:
        return LeadTally(self.points + other.points, EXACT.add(self.turnover, other.turnover))

    def __neg__(self) -> LeadTally:
        return LeadTally(-self.points, -self.turnover)

    def __sub__(self, other: LeadTally) -> LeadTally:
        return self + -other


NO_LEADS = LeadTally()


class LeadPointsRow(NamedTuple):
    """One `lead_points` row (SPEC §14)."""

    year: int
    person_id: str
    points: int
    turnover: Decimal
    badge: str
    gold: bool


def december(year: int) -> str:
    """The period whose plan sets a year's badge thresholds and gold prize (SPEC §13)."""
    return f"{year:04d}-12"


def badge(points: int, plan: Plan) -> str:
    """SPEC §13: silver at >= silver_points, else bronze at >= bronze_points, else none."""
    if points >= plan.silver_points:
        return "silver"
    if points >= plan.bronze_points:
        return "bronze"
    return "none"


def gold_holders(year: Mapping[str, LeadTally]) -> list[str]:
    """SPEC §13: the telemarkers of one year with the greatest positive exact turnover, by id."""
    best = max((tally.turnover for tally in year.values()), default=ZERO)
    if best <= 0:
        return []
    return sorted(person for person, tally in year.items() if tally.turnover == best)


def split_prize(prize: Decimal, holders: Iterable[str]) -> dict[str, Decimal]:
    """SPEC §13: prize / n rounded down to the cent each, and the cents left over one each to
    the holders in `person_id` order; the parts sum to the prize (rounded to cents)."""
    people = sorted(holders)
    if not people:
        return {}
    total = round_money(prize)
    each = _DOWN.divide(total, Decimal(len(people))).quantize(CENT, rounding=ROUND_DOWN)
    left = int(EXACT.subtract(total, EXACT.multiply(each, Decimal(len(people)))) / CENT)
    return {person: EXACT.add(each, CENT) if index < left else each for index, person in enumerate(people)}


def year_prizes(year: Mapping[str, LeadTally], plan: Plan) -> dict[str, Decimal]:
    """Each gold holder's part of the year's prize, under December's plan; no prize, no part."""
    if plan.gold_prize <= 0:
        return {}
    return split_prize(plan.gold_prize, gold_holders(year))


def lead_points_rows(yr: int, year: Mapping[str, LeadTally], plan: Plan,
                     gold: AbstractSet[str] | None = None) -> list[LeadPointsRow]:
    """The `lead_points` rows of these telemarketers of a year: one per telemarketer with a point,
    by id. `gold`: the year's gold holders, when `year` is only part of the year (the ledger
    rewrites the rows of those concerned); else they are found in `year`."""
    if gold is None:
        gold = set(gold_holders(year))
    return [
        LeadPointsRow(yr, person, tally.points, round_money(tally.turnover), badge(tally.points, plan), person in gold)
        for person, tally in sorted(year.items())
        if tally.points > 0
    ]
