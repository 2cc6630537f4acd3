"""The bonus arithmetic (SPEC §6, §7) as pure functions: credits summed per person and month,
the role a person is shown under, the bonuses, and what a closed month still owes.

Both paths that fill `bonus_running` go through here: `compute_tables` from scratch, and
the ledger (stream/ledger.py), which keeps one `Tally` per (period, person) in
`credit_totals` by adding each recomputed customer's change (stream/diff.py). So a count,
a role or a bonus has one implementation, whichever path computed it.

==========================  ===========================================================
SPEC §5.6 counts, §6 sums   `Tally`, `tally`
SPEC §6 role                `role_of`, `row_role`
SPEC §6 bonus columns       `cross_sell_bonus`, `appointment_bonus`, `running_row`
SPEC §13 new columns        `upsell_bonus`, `stream.kpi.kpi_bonus`, prize (`stream.leads`)
SPEC §7 adjustments         `earned`, `paid` (and `stream.periods.adjustment_target`)
SPEC §5-§14 from scratch    `compute_results`, `compute_tables`
==========================  ===========================================================
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import Field, dataclass, fields
from datetime import datetime
from decimal import Decimal, localcontext
from typing import Any, NamedTuple

from schemas.events import FIELD_REP, TELEMARKETER, Event, Role, Sale
from stream import kpi, leads
from stream.leads import LeadPointsRow, LeadTally, YearKey
from stream.money import EXACT, ZERO, round_money
from stream.plan import Plan
from stream.plan_versions import Plans, as_plans
from stream.rules import (
    APPOINTMENT_CONVERTED,
    APPOINTMENT_HELD,
    CONVERSION,
    CROSS_SELL,
    LEAD,
    RATING,
    REVIEW,
    UPSELL,
    Credit,
    Fact,
    credit_sort_key,
    outcome_under,
)

PersonKey = tuple[str, str]  # (period, person_id)


@dataclass(frozen=True, slots=True)
class Tally:
    """What a set of credits adds to one person's month (SPEC §5.6, §6); exact, unrounded.

    Tallies add up over customers, because everything a credit counts belongs to one
    customer: a sale line, an appointment. That is what lets the ledger keep a person's
    month as a sum of per-customer changes. Within one customer they do not add up credit
    by credit: a person holding both parts of a line (field rep and telemarketer) counts
    it once, so a customer's tally is always taken over all of its credits (`tally`).

    `telemarketer_items` and `field_rep_items` count the credited items (cross-sell and
    upsell lines, appointments held and converted) per role; they decide the role (`role_of`).
    The KPI inputs (SPEC §13) come from facts, and `prize` is the person's part of a gold
    prize, in a December (stream/leads.py).
    """

    cross_sell_count: int = 0
    cross_sell_amount: Decimal = ZERO
    appointments_held: int = 0
    appointments_converted: int = 0
    telemarketer_items: int = 0
    field_rep_items: int = 0
    upsell_count: int = 0
    upsell_amount: Decimal = ZERO
    kpi_conversions: int = 0
    rating_sum: int = 0
    rating_count: int = 0
    reviews: int = 0
    reviews_passed: int = 0
    prize: Decimal = ZERO

    # `+` and `-` in EXACT (it raises rather than rounds), through its methods rather than a
    # `localcontext` per call: tallies are added and subtracted for every recomputed customer.
    def __add__(self, other: Tally) -> Tally:
        add = EXACT.add
        return Tally(
            self.cross_sell_count + other.cross_sell_count,
            add(self.cross_sell_amount, other.cross_sell_amount),
            self.appointments_held + other.appointments_held,
            self.appointments_converted + other.appointments_converted,
            self.telemarketer_items + other.telemarketer_items,
            self.field_rep_items + other.field_rep_items,
            self.upsell_count + other.upsell_count,
            add(self.upsell_amount, other.upsell_amount),
            self.kpi_conversions + other.kpi_conversions,
            self.rating_sum + other.rating_sum,
            self.rating_count + other.rating_count,
            self.reviews + other.reviews,
            self.reviews_passed + other.reviews_passed,
            add(self.prize, other.prize),
        )

    def __neg__(self) -> Tally:
        minus = EXACT.minus
        return Tally(
            -self.cross_sell_count,
            minus(self.cross_sell_amount),
            -self.appointments_held,
            -self.appointments_converted,
            -self.telemarketer_items,
            -self.field_rep_items,
            -self.upsell_count,
            minus(self.upsell_amount),
            -self.kpi_conversions,
            -self.rating_sum,
            -self.rating_count,
            -self.reviews,
            -self.reviews_passed,
            minus(self.prize),
        )

    @property
    def items(self) -> int:
        """Credited items in either role (SPEC §6): whether the person has a credit at all."""
        return self.telemarketer_items + self.field_rep_items

    def kpi_counts(self) -> kpi.KpiCounts:
        return kpi.KpiCounts(self.kpi_conversions, self.rating_sum, self.rating_count, self.reviews,
                             self.reviews_passed)

    def __sub__(self, other: Tally) -> Tally:
        subtract = EXACT.subtract
        return Tally(
            self.cross_sell_count - other.cross_sell_count,
            subtract(self.cross_sell_amount, other.cross_sell_amount),
            self.appointments_held - other.appointments_held,
            self.appointments_converted - other.appointments_converted,
            self.telemarketer_items - other.telemarketer_items,
            self.field_rep_items - other.field_rep_items,
            self.upsell_count - other.upsell_count,
            subtract(self.upsell_amount, other.upsell_amount),
            self.kpi_conversions - other.kpi_conversions,
            self.rating_sum - other.rating_sum,
            self.rating_count - other.rating_count,
            self.reviews - other.reviews,
            self.reviews_passed - other.reviews_passed,
            subtract(self.prize, other.prize),
        )


NOTHING = Tally()


def tally(credits: Iterable[Credit], facts: Iterable[Fact] = ()) -> dict[PersonKey, Tally]:
    """SPEC §5.6/§6/§13: sum credits and a month's facts per (period, person_id).

    A person counts each cross-sell or upsell line once, however many parts of it they hold
    (both roles on their own sale). A person holds at most one part of a line in each role
    (§5.6: one field rep part; one touch, or one part per distinct telemarketer), so the
    credits of a role are its items. Facts of kind `lead` belong to a year (`lead_tally`).
    """
    lines: dict[PersonKey, set[tuple[str, str, str | None, str | None]]] = defaultdict(set)
    #: cross_sell_amount, upsell_amount; held, converted, tm items, fr items, conversions, rating
    #: sum, ratings, reviews, passed
    amounts: dict[PersonKey, list[Decimal]] = defaultdict(lambda: [ZERO, ZERO])
    counts: dict[PersonKey, list[int]] = defaultdict(lambda: [0] * 9)
    for credit in credits:
        key = (credit.period, credit.person_id)
        found = counts[key]
        if credit.kind == CROSS_SELL or credit.kind == UPSELL:
            lines[key].add((credit.kind, credit.customer_id, credit.sale_id, credit.line_id))
            money = amounts[key]
            index = 0 if credit.kind == CROSS_SELL else 1
            money[index] = EXACT.add(money[index], credit.amount)
        elif credit.kind == APPOINTMENT_HELD:
            found[0] += 1
        elif credit.kind == APPOINTMENT_CONVERTED:
            found[1] += 1
        found[2 if credit.role == TELEMARKETER else 3] += 1
    for fact in facts:
        if fact.kind == LEAD:
            continue
        found = counts[(fact.scope, fact.person_id)]
        if fact.kind == CONVERSION:
            found[4] += 1
        elif fact.kind == RATING:
            found[5] += int(fact.value)
            found[6] += 1
        elif fact.kind == REVIEW:
            found[7] += 1
            found[8] += int(fact.value)
    result = {}
    for key, (held, converted, tm, fr, conversions, rating_sum, ratings, reviews, passed) in counts.items():
        credited = lines.get(key, ())
        upsells = sum(1 for line in credited if line[0] == UPSELL)
        money = amounts.get(key, [ZERO, ZERO])
        result[key] = Tally(len(credited) - upsells, money[0], held, converted, tm, fr, upsells, money[1],
                            conversions, rating_sum, ratings, reviews, passed)
    return result


def lead_tally(facts: Iterable[Fact]) -> dict[YearKey, LeadTally]:
    """SPEC §13: a lead point and its turnover per (year, telemarketer), from facts of kind `lead`."""
    years: dict[YearKey, LeadTally] = {}
    for fact in facts:
        if fact.kind == LEAD:
            key = (int(fact.scope), fact.person_id)
            years[key] = years.get(key, leads.NO_LEADS) + LeadTally(1, fact.value)
    return years


def kpi_roles(facts: Iterable[Fact]) -> dict[PersonKey, str]:
    """SPEC §13: per (period, person), the `person_role` of their KPI event with the greatest
    (occurred_at, event_id): the role of a person who has no credit."""
    latest: dict[PersonKey, tuple[datetime, str, str]] = {}
    for fact in facts:
        if fact.role is not None and fact.occurred_at is not None:
            key = (fact.scope, fact.person_id)
            found = (fact.occurred_at, fact.key, fact.role)
            if key not in latest or found[:2] > latest[key][:2]:
                latest[key] = found
    return {key: found[2] for key, found in latest.items()}


def add_tallies(into: dict[PersonKey, Tally], more: Mapping[PersonKey, Tally]) -> None:
    """Add `more` into `into`, key by key (the ledger sums a batch's customers this way)."""
    for key, value in more.items():
        into[key] = into.get(key, NOTHING) + value


def role_of(totals: Tally) -> Role:
    """SPEC §6: the role with more credited items; a tie goes to field_rep."""
    return TELEMARKETER if totals.telemarketer_items > totals.field_rep_items else FIELD_REP


def row_role(totals: Tally, kpi_role: str | None) -> str:
    """The role of a person's row: that of their credits (SPEC §6); without a credit, that of
    their latest KPI event (SPEC §13); else telemarketer for a gold prize (only telemarketers
    earn lead points), else field_rep (a field rep counted only through conversions)."""
    if totals.items:
        return role_of(totals)
    if kpi_role is not None:
        return kpi_role
    return TELEMARKETER if totals.prize else FIELD_REP


@dataclass(frozen=True)
class Band:
    """One marginal tier band (SPEC §4): the part of the exact cross-sell amount inside it and that
    part times the band's rate (exact)."""

    lower: Decimal
    upper: Decimal | None
    rate: Decimal
    amount: Decimal
    bonus: Decimal
    #: the band the amount has reached (its last cent is paid at this rate)
    current: bool



def tier_bands(amount: Decimal, plan: Plan) -> tuple[Band, ...]:
    """SPEC §4, §6: every tier band of the plan with the part of the exact `amount` inside it and
    that part times the band's rate (marginal: each rate on the part of the amount in its band).
    `cross_sell_bonus` is their sum, rounded; statements show them band by band."""
    found = []
    lower = ZERO
    reached = False
    for tier in plan.tiers:
        upper = tier.up_to
        inside = max(ZERO, EXACT.subtract(amount if upper is None else min(amount, upper), lower))
        current = not reached and (upper is None or amount <= upper)
        reached = reached or current
        found.append(Band(lower, upper, tier.rate, inside, EXACT.multiply(inside, tier.rate), current))
        if upper is None:
            break
        lower = upper
    return tuple(found)



def cross_sell_bonus(count: int, amount: Decimal, plan: Plan) -> Decimal:
    """SPEC §6 cross_sell_bonus: 0 below `min_count` or (SPEC §13) an exact amount below
    `min_amount`, else the marginal tiers on the EXACT amount (`tier_bands`), then rounded half-up.
    """
    if count < plan.min_count or amount < plan.min_amount:
        return round_money(ZERO)
    bonus = ZERO
    for band in tier_bands(amount, plan):
        bonus = EXACT.add(bonus, band.bonus)
    return round_money(bonus)


def upsell_bonus(amount: Decimal, plan: Plan) -> Decimal:
    """SPEC §13 upsell_bonus: rate x the exact sum of the upsell parts, no gate; 0 without [upsell]."""
    if plan.upsell_rate is None:
        return round_money(ZERO)
    return round_money(EXACT.multiply(plan.upsell_rate, amount))


def appointment_bonus(held: int, converted: int, plan: Plan) -> Decimal:
    """SPEC §6 appointment_bonus: held x `held_credit` + converted x `conversion_bonus`."""
    with localcontext(EXACT):
        return round_money(held * plan.held_credit + converted * plan.conversion_bonus)


@dataclass(frozen=True)
class RunningRow:
    """One `bonus_running` row (SPEC §6), `updated_at` left to the database."""

    period: str
    person_id: str
    role: str
    cross_sell_count: int
    cross_sell_amount: Decimal
    appointments_held: int
    appointments_converted: int
    cross_sell_bonus: Decimal
    appointment_bonus: Decimal
    prior_adjustments: Decimal
    total_bonus: Decimal
    # SPEC §14, after the version-1 columns (a reader by position keeps its figures)
    upsell_count: int
    upsell_amount: Decimal
    upsell_bonus: Decimal
    kpi_bonus: Decimal
    prize_bonus: Decimal
    plan_version: str


#: The columns of SPEC sections 6 and 14, in the table's order; payroll files carry them by these names.
RUNNING_COLUMNS = tuple(field.name for field in fields(RunningRow))


def type_name(field: Field[Any]) -> str:
    """The name of a dataclass field's type ("int", "Decimal", "str"), read the same in both builds:
    interpreted, `from __future__ import annotations` leaves the annotation a string; compiled by
    mypyc (setup.py, CRMBONUS_COMPILE=1) it is the class. Comparing `field.type` with a string
    would find no figure in the compiled build."""
    return field.type if isinstance(field.type, str) else field.type.__name__


#: The figures of a row (counts and money), not its key, role or plan version.
FIGURE_COLUMNS = tuple(f.name for f in fields(RunningRow) if type_name(f) in ("int", "Decimal"))


def has_figures(row: RunningRow) -> bool:
    """Whether some figure of the row is not zero: SPEC §14 readers omit the others."""
    return any(getattr(row, name) for name in FIGURE_COLUMNS)
#: The `bonus_running` columns that make up earned(P) of SPEC §7 (§13): the bonus without adjustments.
EARNED_COLUMNS = ("cross_sell_bonus", "upsell_bonus", "appointment_bonus", "kpi_bonus", "prize_bonus")


def running_row(key: PersonKey, totals: Tally, plan: Plan, prior_adjustments: Decimal = ZERO,
                kpi_role: str | None = None) -> RunningRow:
    """SPEC §6, §13: a `bonus_running` row; bonuses use the exact, unrounded amounts.

    `kpi_role` is the role of the person's latest KPI event in the month (`kpi_roles`).
    """
    role = row_role(totals, kpi_role)
    counts = totals.kpi_counts()
    figures = {
        "cross_sell_bonus": cross_sell_bonus(totals.cross_sell_count, totals.cross_sell_amount, plan),
        "upsell_bonus": upsell_bonus(totals.upsell_amount, plan),
        "appointment_bonus": appointment_bonus(totals.appointments_held, totals.appointments_converted, plan),
        "kpi_bonus": kpi.kpi_bonus(plan.kpi, counts) if plan.kpi and kpi.takes_part(plan.kpi, role, counts)
        else round_money(ZERO),
        "prize_bonus": round_money(totals.prize),
    }
    prior = round_money(prior_adjustments)
    total = prior
    for name in EARNED_COLUMNS:
        total = EXACT.add(total, figures[name])
    return RunningRow(
        period=key[0],
        person_id=key[1],
        role=role,
        cross_sell_count=totals.cross_sell_count,
        cross_sell_amount=round_money(totals.cross_sell_amount),
        appointments_held=totals.appointments_held,
        appointments_converted=totals.appointments_converted,
        cross_sell_bonus=figures["cross_sell_bonus"],
        appointment_bonus=figures["appointment_bonus"],
        prior_adjustments=prior,
        total_bonus=total,
        upsell_count=totals.upsell_count,
        upsell_amount=round_money(totals.upsell_amount),
        upsell_bonus=figures["upsell_bonus"],
        kpi_bonus=figures["kpi_bonus"],
        prize_bonus=figures["prize_bonus"],
        plan_version=plan.version,
    )


def person_kpi_scores(key: PersonKey, totals: Tally, plan: Plan, kpi_role: str | None = None) -> list[kpi.KpiScore]:
    """SPEC §14 `kpi_scores` rows of a person's month: none unless they take part (SPEC §13)."""
    counts = totals.kpi_counts()
    if plan.kpi is None or not kpi.takes_part(plan.kpi, row_role(totals, kpi_role), counts):
        return []
    return kpi.kpi_scores(key[0], key[1], plan.kpi, counts)


def earned(row: Mapping[str, Decimal] | None) -> Decimal:
    """SPEC §7 earned(P) of a `bonus_running` or `bonus_settled` row: its bonus without
    prior adjustments; no row earned nothing."""
    if row is None:
        return round_money(ZERO)
    return round_money(sum((row[name] for name in EARNED_COLUMNS), ZERO))


def paid(settled: Mapping[str, Decimal] | None, adjusted_before: Decimal) -> Decimal:
    """SPEC §7 paid(P): what P's settled row earned plus the adjustments for P already
    settled in later periods. An adjustment carries earned(P) - paid(P)."""
    return EXACT.add(earned(settled), adjusted_before)


def _as_admitted(events: Iterable[Event]) -> Iterable[Event]:
    """What the pipeline lets through (SPEC §3): the first of an event_id, the first sale of a
    sale_id; later conflicting duplicates and duplicate sale_ids are dead-lettered.
    """
    seen_events: set[str] = set()
    seen_sales: set[str] = set()
    for event in events:
        if event.event_id in seen_events:
            continue
        seen_events.add(event.event_id)
        if isinstance(event, Sale):
            if event.sale_id in seen_sales:
                continue
            seen_sales.add(event.sale_id)
        yield event


class Results(NamedTuple):
    """Every table SPEC §5-§14 derives from a set of events, from scratch (no settlement)."""

    running: list[RunningRow]
    credits: list[Credit]
    lead_points: list[LeadPointsRow]
    kpi_scores: list[kpi.KpiScore]


def compute_results(events: Iterable[Event], plans: Plan | Plans) -> Results:
    """SPEC §5-§14 from scratch: the rows of `bonus_running`, `credits`, `lead_points` and
    `kpi_scores` of all `events`, each sorted by its key. Each period under the plan version in
    force for it (SPEC §12); a year's badges and prize under its December's.

    The reference the pipeline must agree with. It knows nothing of settlement (SPEC §7):
    `prior_adjustments` is 0.00, and a row whose every figure is zero is left out (SPEC §14:
    the database may keep one, readers omit it).
    """
    by_customer: dict[str, list[Event]] = defaultdict(list)
    for event in _as_admitted(events):
        by_customer[event.customer_id].append(event)
    versions = as_plans(plans)
    credits: list[Credit] = []
    facts: list[Fact] = []
    for found in by_customer.values():
        outcome = outcome_under(found, versions)
        credits += outcome.credits
        facts += outcome.facts
    totals = tally(credits, facts)
    years: dict[int, dict[str, LeadTally]] = defaultdict(dict)
    for (yr, person), found_tally in lead_tally(facts).items():
        years[yr][person] = found_tally
    lead_rows: list[LeadPointsRow] = []
    for yr in sorted(years):
        december = versions.for_period(leads.december(yr))
        lead_rows += leads.lead_points_rows(yr, years[yr], december)
        for person, prize in leads.year_prizes(years[yr], december).items():
            key = (leads.december(yr), person)
            totals[key] = totals.get(key, NOTHING) + Tally(prize=prize)
    roles = kpi_roles(facts)
    running = [row for key in sorted(totals) if has_figures(
        row := running_row(key, totals[key], versions.for_period(key[0]), kpi_role=roles.get(key)))]
    scores = [score for key in sorted(totals)
              for score in person_kpi_scores(key, totals[key], versions.for_period(key[0]), roles.get(key))]
    return Results(running, sorted(credits, key=credit_sort_key), lead_rows, scores)


def compute_tables(events: Iterable[Event], plan: Plan | Plans) -> list[RunningRow]:
    """The `bonus_running` rows of `compute_results`."""
    return compute_results(events, plan).running
