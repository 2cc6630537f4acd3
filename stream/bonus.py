"""The bonus arithmetic (SPEC §6, §7) as pure functions: credits summed per person and month,
the role a person is shown under, the bonuses, and what a closed month still owes.

Both paths that fill `bonus_running` go through here: `compute_tables` from scratch, and
the ledger (stream/ledger.py), which keeps one `Tally` per (period, person) in
`credit_totals` by adding each recomputed customer's change (stream/diff.py). So a count,
a role or a bonus has one implementation, whichever path computed it.

==========================  ===========================================================
SPEC §5.6 counts, §6 sums   `Tally`, `tally`
SPEC §6 role                `role_of`
SPEC §6 bonus columns       `cross_sell_bonus`, `appointment_bonus`, `running_row`
SPEC §7 adjustments         `earned`, `paid` (and `stream.periods.adjustment_target`)
==========================  ===========================================================
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from decimal import Decimal, localcontext

from schemas.events import FIELD_REP, TELEMARKETER, Event, Role, Sale
from stream.money import EXACT, ZERO, round_money
from stream.plan import Plan
from stream.rules import APPOINTMENT_CONVERTED, APPOINTMENT_HELD, CROSS_SELL, Credit, credit_customer

PersonKey = tuple[str, str]  # (period, person_id)


@dataclass(frozen=True, slots=True)
class Tally:
    """What a set of credits adds to one person's month (SPEC §5.6, §6); exact, unrounded.

    Tallies add up over customers, because everything a credit counts belongs to one
    customer: a sale line, an appointment. That is what lets the ledger keep a person's
    month as a sum of per-customer changes. Within one customer they do not add up credit
    by credit: a person holding both parts of a line (field rep and telemarketer) counts
    it once, so a customer's tally is always taken over all of its credits (`tally`).

    `telemarketer_items` and `field_rep_items` count the credited items (cross-sell lines,
    appointments held and converted) per role; they decide the role (`role_of`).
    """

    cross_sell_count: int = 0
    cross_sell_amount: Decimal = ZERO
    appointments_held: int = 0
    appointments_converted: int = 0
    telemarketer_items: int = 0
    field_rep_items: int = 0

    def __add__(self, other: Tally) -> Tally:
        with localcontext(EXACT):
            return Tally(
                self.cross_sell_count + other.cross_sell_count,
                self.cross_sell_amount + other.cross_sell_amount,
                self.appointments_held + other.appointments_held,
                self.appointments_converted + other.appointments_converted,
                self.telemarketer_items + other.telemarketer_items,
                self.field_rep_items + other.field_rep_items,
            )

    def __neg__(self) -> Tally:
        return Tally(-self.cross_sell_count, -self.cross_sell_amount, -self.appointments_held,
                     -self.appointments_converted, -self.telemarketer_items, -self.field_rep_items)

    def __sub__(self, other: Tally) -> Tally:
        return self + -other


NOTHING = Tally()


def tally(credits: Iterable[Credit]) -> dict[PersonKey, Tally]:
    """SPEC §5.6/§6: sum credits per (period, person_id).

    A person counts each cross-sell line once, however many parts of it they hold (both
    roles on their own sale). A person holds at most one part of a line in each role
    (§5.6: one field rep part; one touch, or one part per distinct telemarketer), so the
    credits of a role are its items.
    """
    lines: dict[PersonKey, set[tuple[str, str | None, str | None]]] = defaultdict(set)
    counts: dict[PersonKey, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # held, converted, tm, fr
    amounts: dict[PersonKey, Decimal] = defaultdict(Decimal)
    for credit in credits:
        key = (credit.period, credit.person_id)
        found = counts[key]
        if credit.kind == CROSS_SELL:
            lines[key].add((credit.customer_id, credit.sale_id, credit.line_id))
            amounts[key] = EXACT.add(amounts[key], credit.amount)
        elif credit.kind == APPOINTMENT_HELD:
            found[0] += 1
        elif credit.kind == APPOINTMENT_CONVERTED:
            found[1] += 1
        found[2 if credit.role == TELEMARKETER else 3] += 1
    return {key: Tally(len(lines[key]), amounts[key], held, converted, tm, fr)
            for key, (held, converted, tm, fr) in counts.items()}


def add_tallies(into: dict[PersonKey, Tally], more: Mapping[PersonKey, Tally]) -> None:
    """Add `more` into `into`, key by key (the ledger sums a batch's customers this way)."""
    for key, value in more.items():
        into[key] = into.get(key, NOTHING) + value


def role_of(totals: Tally) -> Role:
    """SPEC §6: the role with more credited items; a tie goes to field_rep."""
    return TELEMARKETER if totals.telemarketer_items > totals.field_rep_items else FIELD_REP


def cross_sell_bonus(count: int, amount: Decimal, plan: Plan) -> Decimal:
    """SPEC §6 cross_sell_bonus: 0 below `min_count`, else the marginal tiers on the EXACT
    amount (each rate on the part of the amount inside its band), then rounded half-up.
    """
    if count < plan.min_count:
        return round_money(ZERO)
    with localcontext(EXACT):
        bonus = ZERO
        lower = ZERO
        for tier in plan.tiers:
            if amount <= lower:
                break
            upper = amount if tier.up_to is None else min(amount, tier.up_to)
            bonus += (upper - lower) * tier.rate
            if tier.up_to is None:
                break
            lower = tier.up_to
    return round_money(bonus)


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


#: The columns of SPEC section 6, in its order; payroll files carry them by these names.
RUNNING_COLUMNS = tuple(field.name for field in fields(RunningRow))
#: The `bonus_running` columns that make up earned(P) of SPEC §7: the bonus without adjustments.
EARNED_COLUMNS = ("cross_sell_bonus", "appointment_bonus")


def running_row(key: PersonKey, totals: Tally, plan: Plan, prior_adjustments: Decimal = ZERO) -> RunningRow:
    """SPEC §6: a `bonus_running` row; the cross-sell bonus uses the exact, unrounded amount."""
    sell = cross_sell_bonus(totals.cross_sell_count, totals.cross_sell_amount, plan)
    appointments = appointment_bonus(totals.appointments_held, totals.appointments_converted, plan)
    prior = round_money(prior_adjustments)
    return RunningRow(
        period=key[0],
        person_id=key[1],
        role=role_of(totals),
        cross_sell_count=totals.cross_sell_count,
        cross_sell_amount=round_money(totals.cross_sell_amount),
        appointments_held=totals.appointments_held,
        appointments_converted=totals.appointments_converted,
        cross_sell_bonus=sell,
        appointment_bonus=appointments,
        prior_adjustments=prior,
        total_bonus=EXACT.add(EXACT.add(sell, appointments), prior),
    )


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


def compute_tables(events: Iterable[Event], plan: Plan) -> list[RunningRow]:
    """SPEC §5-§6 from scratch: the `bonus_running` rows of all `events`, by (period, person).

    The reference the pipeline must agree with. It knows nothing of settlement (SPEC §7):
    `prior_adjustments` is 0.00, and a person whose every credit disappeared has no row here
    (the database keeps their row of zeros).
    """
    by_customer: dict[str, list[Event]] = defaultdict(list)
    for event in _as_admitted(events):
        by_customer[event.customer_id].append(event)
    credits = [credit for found in by_customer.values() for credit in credit_customer(found, plan)]
    totals = tally(credits)
    return [running_row(key, totals[key], plan) for key in sorted(totals)]
