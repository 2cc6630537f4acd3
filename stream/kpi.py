"""The KPI bonus (SPEC §13) as pure functions: a person's month of KPI inputs in, the bonus
and its `kpi_scores` rows out.

The inputs add up over customers (stream/bonus.py keeps them in a person's `Tally`): the
converted appointments the person took part in, the sum and number of ratings, the number of
quality reviews and of those passed. Values and attainments are exact rationals (`Fraction`);
only what is stored is rounded: the bonus to the cent, `kpi_scores`' value and attainment to
10 places.

Decisions the SPEC leaves open, taken here once:

- **No event, no value.** A component whose metric has nothing to measure in the month (no
  converted appointment, no feedback, no review) has `value` null and attainment 0; a count
  of 0 conversions is "no event" too, so all three metrics read alike.
- **Who.** Only a person of the plan's `kpi.roles` who has a feedback, a quality review or a
  converted appointment in the month gets a KPI bonus and `kpi_scores` rows; everybody else
  gets neither, not even rows of zeros.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import NamedTuple

from stream.money import round_fraction
from stream.plan import Kpi, KpiComponent

#: `kpi_scores.value` and `.attainment` are stored rounded half-up to this many places (SPEC §14).
SCORE_PLACES = 10


class KpiCounts(NamedTuple):
    """A person's KPI inputs for one month (SPEC §13), summed over customers."""

    conversions: int
    rating_sum: int
    rating_count: int
    reviews: int
    reviews_passed: int

    @property
    def any(self) -> bool:
        """Whether the person has anything the KPI bonus reads in the month."""
        return bool(self.conversions or self.rating_count or self.reviews)


class KpiScore(NamedTuple):
    """One `kpi_scores` row (SPEC §14)."""

    period: str
    person_id: str
    component: str
    metric: str
    value: Decimal | None
    attainment: Decimal
    weight: Decimal


def metric_value(metric: str, counts: KpiCounts) -> Fraction | None:
    """SPEC §13: conversions (a count), rating (the mean), compliance (the share passed);
    None when the person has no event for it."""
    if metric == "conversions":
        return Fraction(counts.conversions) if counts.conversions else None
    if metric == "rating":
        return Fraction(counts.rating_sum, counts.rating_count) if counts.rating_count else None
    if metric == "compliance":
        return Fraction(counts.reviews_passed, counts.reviews) if counts.reviews else None
    raise ValueError(f"unknown KPI metric {metric!r}")


def attainment(value: Fraction | None, component: KpiComponent) -> Fraction:
    """SPEC §13: min(value / target, cap), 0 when there is no event."""
    if value is None:
        return Fraction(0)
    return min(value / Fraction(component.target), Fraction(component.cap))


def takes_part(kpi: Kpi | None, role: str, counts: KpiCounts) -> bool:
    """SPEC §13: the KPI bonus is computed for a person of the plan's roles with some KPI input."""
    return kpi is not None and role in kpi.roles and counts.any


def kpi_bonus(kpi: Kpi, counts: KpiCounts) -> Decimal:
    """SPEC §13: target_bonus x sum(weight x attainment), exact, then rounded half-up to cents."""
    weighted = sum(
        (Fraction(c.weight) * attainment(metric_value(c.metric, counts), c) for c in kpi.components), Fraction(0)
    )
    return round_fraction(Fraction(kpi.target_bonus) * weighted)


def kpi_scores(period: str, person_id: str, kpi: Kpi, counts: KpiCounts) -> list[KpiScore]:
    """The person's `kpi_scores` rows, one per component, in the plan's order."""
    rows = []
    for component in kpi.components:
        value = metric_value(component.metric, counts)
        rows.append(KpiScore(
            period, person_id, component.name, component.metric,
            None if value is None else round_fraction(value, SCORE_PLACES),
            round_fraction(attainment(value, component), SCORE_PLACES),
            component.weight,
        ))
    return rows
