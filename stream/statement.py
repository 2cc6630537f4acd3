"""A person's month, spelled out (SPEC §15): "why is my pay this number".

Pure: the person's credits (with each sale line's category and the touch's time), the KPI facts
of the month, the year's lead points, the adjustments into and out of the month and what was
settled go in; a `Statement` comes out, with every figure of the person's `bonus_running` row
and the arithmetic that makes it. The figures come from the rules' own functions
(stream/bonus.py `tally`, `running_row`, `cross_sell_bonus`, `upsell_bonus`,
`appointment_bonus`; stream/kpi.py; stream/leads.py), so a statement and the ledger cannot
disagree on a rule. What only a statement shows is computed here: the gates and what is
missing, the tier bands with the part of the amount in each, the distance to the next band and
to the next badge, each KPI component's weighted part. The property test
(tests/unit/test_statement_properties.py) recomputes every total from what a statement lists.

`sections` lays the statement out once, as titled prose and tables of plain strings; the page,
the PDF, the CSV and the terminal (stream/statements.py, stream/cli.py) only render it, each
escaping for its own medium.

Reading it from Postgres is stream/statements.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_CEILING, Decimal
from fractions import Fraction
from typing import Any

from schemas.events import FIELD_REP, TELEMARKETER
from stream import kpi, leads
from stream.bonus import (
    EARNED_COLUMNS,
    FIGURE_COLUMNS,
    NOTHING,
    RUNNING_COLUMNS,
    Band,
    RunningRow,
    Tally,
    appointment_bonus,
    cross_sell_bonus,
    has_figures,
    kpi_roles,
    running_row,
    tally,
    tier_bands,
    upsell_bonus,
)
from stream.leads import LeadTally
from stream.money import CENT, EXACT, ZERO, round_fraction, round_money
from stream.plan import Plan
from stream.rules import KINDS, Credit, Fact

#: The figures of a row shown as money (two decimals), in the table's order.
MONEY_FIGURES = tuple(name for name in FIGURE_COLUMNS if name.endswith(("_amount", "_bonus", "_adjustments")))
#: KPI values and attainments are exact rationals; a statement shows them to this many places.
SHOWN_PLACES = 4


@dataclass(frozen=True)
class CreditLine:
    """A credit in force (a `credits` row) with what the statement adds to it: the category of its
    sale line (from the stored sale event) and the time of the touch that earned a telemarketer part."""

    credit: Credit
    category: str | None = None
    touch_at: datetime | None = None


@dataclass(frozen=True)
class Adjustment:
    """A `bonus_adjustments` row (SPEC §7): earned(source) - paid(source), carried into `target`."""

    source_period: str
    target_period: str
    role: str
    amount: Decimal
    earned: Decimal
    paid: Decimal
    #: whether `target` is closed, so the adjustment was paid with that month
    settled: bool = False


@dataclass(frozen=True)
class LeadYear:
    """The person's `lead_points` row of the period's year (SPEC §13-14), and the year's gold holders
    with their turnover (each holder's is the year's greatest), which split the prize."""

    year: int
    points: int = 0
    turnover: Decimal = ZERO
    badge: str = "none"
    gold: bool = False
    gold_holders: Mapping[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True)
class Settled:
    """The month's settlement: its id and time, and the person's `bonus_settled` row (None: they
    had no row when the month was settled)."""

    settlement_id: str
    settled_at: datetime
    row: Mapping[str, Any] | None


@dataclass(frozen=True)
class Gate:
    """One condition of the cross-sell bonus (SPEC §6 count, §13 amount) and what it still lacks."""

    name: str  # "count" or "amount"
    required: Decimal | int
    actual: Decimal | int
    missing: Decimal | int  # 0 when met; an amount is rounded up to the cent that is enough

    @property
    def met(self) -> bool:
        return self.missing == 0


@dataclass(frozen=True)
class KpiLine:
    """One KPI component of the person's month (SPEC §13): value, attainment and weighted part, exact."""

    name: str
    metric: str
    value: Fraction | None
    target: Decimal
    cap: Decimal
    weight: Decimal
    attainment: Fraction
    #: target_bonus x weight x attainment
    part: Fraction


@dataclass(frozen=True)
class Statement:
    person_id: str
    period: str
    #: None: the person has no row in the month (SPEC §15: zeros and a null role)
    role: str | None
    plan: Plan
    credits: tuple[CreditLine, ...]
    facts: tuple[Fact, ...]
    #: the row the listed inputs compute (stream/bonus.py `running_row`)
    computed: RunningRow
    #: the stored `bonus_running` row, when it was read and has a figure; `totals` otherwise shows `computed`
    stored: Mapping[str, Any] | None
    #: whether the stored row was read (then `differences` compares it with `computed`)
    compared: bool
    totals: Tally
    gates: tuple[Gate, ...]
    bands: tuple[Band, ...]
    kpi_lines: tuple[KpiLine, ...]
    kpi_takes_part: bool
    lead_year: LeadYear
    adjustments_in: tuple[Adjustment, ...]
    adjustments_out: tuple[Adjustment, ...]
    settled: Settled | None

    # -- the arithmetic, spelled out -------------------------------------------------------

    @property
    def row(self) -> Mapping[str, Any]:
        """The `totals` of SPEC §15: the person's bonus_running columns (the stored row, else computed)."""
        if self.stored is not None:
            return {name: self.stored[name] for name in RUNNING_COLUMNS}
        values = {name: getattr(self.computed, name) for name in RUNNING_COLUMNS}
        values["role"] = self.role
        return values

    @property
    def differences(self) -> list[str]:
        """The figures in which the stored row differs from what the listed inputs compute (none when
        the ledger is right and the plan is the one the row was computed under)."""
        if not self.compared:
            return []
        if self.stored is None:  # no row (or one of zeros) where the inputs make figures
            return [name for name in FIGURE_COLUMNS if getattr(self.computed, name)]
        return [name for name in FIGURE_COLUMNS if self.stored[name] != getattr(self.computed, name)]

    @property
    def gates_met(self) -> bool:
        return all(gate.met for gate in self.gates)

    @property
    def gate_message(self) -> str:
        """What the gates say, in words: "2 more cross-sells unlock the bonus"."""
        missing = [gate for gate in self.gates if not gate.met]
        if not missing:
            return "The gates are met: the cross-sell bonus is paid."
        words = []
        for gate in missing:
            if gate.name == "count":
                words.append(f"{gate.missing} more cross-sell{'s' if gate.missing != 1 else ''}")
            else:
                words.append(f"{money(Decimal(gate.missing))} more in cross-sell amount")
        verb = "unlock" if len(words) > 1 or (missing[0].name == "count" and missing[0].missing != 1) else "unlocks"
        return f"{' and '.join(words)} {verb} the bonus."

    @property
    def band_bonus(self) -> Decimal:
        """The tiers on the exact amount, rounded: the cross-sell bonus once the gates are met."""
        return round_money(sum((band.bonus for band in self.bands), ZERO))

    @property
    def next_band(self) -> tuple[Decimal, Decimal] | None:
        """(the amount still to reach the next band, that band's rate); None in the last band."""
        for index, band in enumerate(self.bands):
            if band.current and band.upper is not None and index + 1 < len(self.bands):
                return EXACT.subtract(band.upper, self.totals.cross_sell_amount), self.bands[index + 1].rate
        return None

    @property
    def next_badge(self) -> tuple[int, str] | None:
        """(lead points still to earn, the badge they reach); None at silver."""
        points = self.lead_year.points
        for threshold, name in ((self.plan.bronze_points, "bronze"), (self.plan.silver_points, "silver")):
            if points < threshold:
                return threshold - points, name
        return None

    @property
    def kpi_sum(self) -> Fraction:
        return sum((line.part for line in self.kpi_lines), Fraction(0))

    @property
    def is_december(self) -> bool:
        return self.period == leads.december(self.lead_year.year)


def build_statement(
    person_id: str,
    period: str,
    plan: Plan,
    credits: Sequence[CreditLine] = (),
    facts: Sequence[Fact] = (),
    lead_year: LeadYear | None = None,
    adjustments_in: Sequence[Adjustment] = (),
    adjustments_out: Sequence[Adjustment] = (),
    settled: Settled | None = None,
    stored: Mapping[str, Any] | None = None,
    compared: bool = False,
) -> Statement:
    """The person's statement for `period` from its inputs (each already the person's and the month's:
    `credits` of (period, person), KPI `facts` of that scope, `adjustments_in` targeting the month,
    `adjustments_out` from it). `compared`: `stored` is the `bonus_running` row as read (None: there is
    none), to be checked against the arithmetic; a stored row of zeros counts as none (SPEC §14)."""
    key = (period, person_id)
    ours = [line for line in credits if (line.credit.period, line.credit.person_id) == key]
    kpi_facts = [fact for fact in facts if (fact.scope, fact.person_id) == key]
    year = lead_year or LeadYear(int(period[:4]))
    totals = tally([line.credit for line in ours], kpi_facts).get(key, NOTHING)
    if period == leads.december(year.year):
        holders = {person: LeadTally(1, turnover) for person, turnover in year.gold_holders.items()}
        prize = leads.year_prizes(holders, plan).get(person_id)
        if prize:
            totals = totals + Tally(prize=prize)
    prior = sum((adj.amount for adj in adjustments_in), ZERO)
    kpi_role = kpi_roles(kpi_facts).get(key)
    computed = running_row(key, totals, plan, prior, kpi_role)
    if stored is not None and not any(stored[name] for name in FIGURE_COLUMNS):
        stored = None
    role: str | None = computed.role
    if not (totals.items or kpi_role or totals.prize):  # no credit says which role: the row's, else none
        if stored is not None:
            role = stored["role"]
        elif adjustments_in:
            role = max(adjustments_in, key=lambda adj: adj.source_period).role
        elif not has_figures(computed):
            role = None
        else:
            role = FIELD_REP
    counts = totals.kpi_counts()
    kpi_lines: list[KpiLine] = []
    if plan.kpi is not None:
        for component in plan.kpi.components:
            value = kpi.metric_value(component.metric, counts)
            attained = kpi.attainment(value, component)
            kpi_lines.append(KpiLine(component.name, component.metric, value, component.target, component.cap,
                                     component.weight, attained,
                                     Fraction(plan.kpi.target_bonus) * Fraction(component.weight) * attained))
    return Statement(
        person_id=person_id, period=period, role=role, plan=plan,
        credits=tuple(sorted(ours, key=_credit_order)), facts=tuple(sorted(kpi_facts, key=lambda f: (f.kind, f.key))),
        computed=computed, stored=stored, compared=compared, totals=totals,
        gates=gates(totals.cross_sell_count, totals.cross_sell_amount, plan),
        bands=tier_bands(totals.cross_sell_amount, plan), kpi_lines=tuple(kpi_lines),
        kpi_takes_part=kpi.takes_part(plan.kpi, computed.role, counts),
        lead_year=year, adjustments_in=tuple(sorted(adjustments_in, key=lambda a: a.source_period)),
        adjustments_out=tuple(sorted(adjustments_out, key=lambda a: a.target_period)), settled=settled,
    )


def _credit_order(line: CreditLine) -> tuple[int, str, str, str, str, str]:
    c = line.credit
    return KINDS.index(c.kind), c.customer_id, c.sale_id or "", c.line_id or "", c.lead_id or "", c.role


def gates(count: int, amount: Decimal, plan: Plan) -> tuple[Gate, ...]:
    """SPEC §6 and §13: at least `min_count` cross-sells and an exact amount of at least `min_amount`
    (shown only when the plan sets one)."""
    found = [Gate("count", plan.min_count, count, max(plan.min_count - count, 0))]
    if plan.min_amount > 0:
        short = EXACT.subtract(plan.min_amount, amount)
        found.append(Gate("amount", plan.min_amount, amount,
                          short.quantize(CENT, rounding=ROUND_CEILING) if short > 0 else 0))
    return tuple(found)


# -- text -------------------------------------------------------------------------------------


def money(value: Decimal) -> str:
    """Money for people: thousands separated, two decimals, or every decimal an exact part has
    ("1,000.0001"); never rounded."""
    if value == value.quantize(CENT):
        return f"{value:,.2f}"
    return f"{value.normalize():,f}"


def exact(value: Decimal) -> str:
    """Money as an exact machine string with at least two decimals: "355.00", "1000.0001", "-12.50"."""
    if value == value.quantize(CENT):
        return str(value.quantize(CENT))
    return f"{value.normalize():f}"


def number(value: Decimal) -> str:
    """A plain decimal without trailing zeros: 0.30 -> "0.3"."""
    return f"{value.normalize():f}"


def percent(rate: Decimal) -> str:
    return f"{number(EXACT.multiply(rate, Decimal(100)))}%"


def fraction(value: Fraction | None) -> str:
    """An exact rational for people: 4.5, 0.6667 (rounded half-up to `SHOWN_PLACES`), or "-" for none."""
    if value is None:
        return "-"
    return number(round_fraction(value, SHOWN_PLACES))


def label(name: str) -> str:
    return name.replace("_", " ")


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    #: the columns shown right-aligned (figures)
    numeric: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Section:
    """A part of the statement as plain strings; every renderer escapes them for its medium."""

    title: str
    lines: tuple[str, ...] = ()
    table: Table | None = None
    after: tuple[str, ...] = ()


def status_line(statement: Statement) -> str:
    if statement.settled is None:
        return f"{statement.period} is open: not settled yet; the figures can still change."
    when = statement.settled.settled_at.isoformat(timespec="seconds")
    return f"{statement.period} is settled: settlement {statement.settled.settlement_id} at {when}."


def sections(statement: Statement) -> list[Section]:
    """The statement, laid out: summary, cross-sells (gates, bands), upsells, appointments, KPI, lead
    points, adjustments, credits, settlement."""
    s, plan, t = statement, statement.plan, statement.totals
    row = s.row
    found: list[Section] = []
    heading = [f"Role: {label(s.role) if s.role else 'none (no bonus row this month)'}",
               f"Plan: {plan.version}", status_line(s)]
    if s.differences:
        heading.append("Note: the stored row differs from these inputs in " + ", ".join(s.differences)
                       + (f" (the row was computed under plan {s.stored.get('plan_version')})." if s.stored else
                          " (there is no stored row)."))
    summary = tuple((label(name), money(row[name])) for name in (*EARNED_COLUMNS, "prior_adjustments"))
    found.append(Section(f"Statement of {s.person_id} for {s.period}", tuple(heading),
                         Table(("bonus", "amount"), (*summary, ("total bonus", money(row["total_bonus"]))),
                               frozenset({1}))))

    amount = t.cross_sell_amount
    lines = [f"{t.cross_sell_count} cross-sell{'s' if t.cross_sell_count != 1 else ''}, amount {money(amount)}"
             + (f" (stored {money(round_money(amount))})" if amount != round_money(amount) else "") + "."]
    for gate in s.gates:
        if gate.name == "count":
            lines.append(f"Gate: at least {gate.required} cross-sells; {gate.actual} so far"
                         + (": met." if gate.met else f": {gate.missing} more needed."))
        else:
            lines.append(f"Gate: an amount of at least {money(Decimal(gate.required))}; {money(amount)} so far"
                         + (": met." if gate.met else f": {money(Decimal(gate.missing))} more needed."))
    lines.append(s.gate_message)
    band_rows = tuple((f"{money(b.lower)} - {money(b.upper) if b.upper is not None else 'and above'}",
                       percent(b.rate), money(b.amount), money(b.bonus), "reached" if b.current else "")
                      for b in s.bands)
    after = []
    nxt = s.next_band
    if nxt is not None:
        distance, rate = nxt
        after.append(f"{money(distance)} more reaches the {percent(rate)} band." if distance > 0 else
                     f"The next cross-sell amount is paid at {percent(rate)}.")
    else:
        after.append("The amount is in the last band.")
    paid = cross_sell_bonus(t.cross_sell_count, amount, plan)
    after.append(f"Cross-sell bonus: {money(paid)}" + ("" if s.gates_met else
                 f" (the bands would pay {money(s.band_bonus)} once the gates are met)") + ".")
    found.append(Section("Cross-sells", tuple(lines),
                         Table(("band", "rate", "amount in band", "bonus", ""), band_rows, frozenset({1, 2, 3})),
                         tuple(after)))

    if plan.upsell_rate is None:
        up = ("The plan has no upsell programme." + (f" {t.upsell_count} upsell line(s) are credited."
                                                     if t.upsell_count else ""),)
    else:
        up = (f"{t.upsell_count} upsell{'s' if t.upsell_count != 1 else ''}, uplift {money(t.upsell_amount)} x "
              f"{percent(plan.upsell_rate)} = {money(upsell_bonus(t.upsell_amount, plan))} (no gate).",)
    found.append(Section("Upsells", up))

    found.append(Section("Appointments", (
        f"{t.appointments_held} held x {money(plan.held_credit)} + {t.appointments_converted} converted x "
        f"{money(plan.conversion_bonus)} = "
        f"{money(appointment_bonus(t.appointments_held, t.appointments_converted, plan))}.",)))

    if plan.kpi is None:
        found.append(Section("KPI", ("The plan has no KPI bonus.",)))
    else:
        if s.kpi_takes_part:
            words = (f"KPI bonus: {money(plan.kpi.target_bonus)} x the sum of weight x attainment "
                     f"({fraction(s.kpi_sum / Fraction(plan.kpi.target_bonus))}) = {money(s.computed.kpi_bonus)}.",)
        elif s.computed.role not in plan.kpi.roles:
            words = (f"The KPI bonus is for {', '.join(label(r) + 's' for r in plan.kpi.roles)} only.",)
        else:
            words = ("No KPI event (feedback, quality review) and no converted appointment this month: "
                     "no KPI bonus.",)
        kpi_rows = tuple((line.name, line.metric, fraction(line.value), number(line.target), number(line.cap),
                          fraction(line.attainment), number(line.weight), money(round_fraction(line.part)))
                         for line in s.kpi_lines)
        found.append(Section("KPI", words, Table(("component", "metric", "value", "target", "cap", "attainment",
                                                  "weight", "part"), kpi_rows, frozenset({2, 3, 4, 5, 6, 7}))))

    year = s.lead_year
    lead_lines = [f"{year.points} lead point{'s' if year.points != 1 else ''} in {year.year}, turnover "
                  f"{money(year.turnover)}, badge {year.badge}" + (", gold" if year.gold else "") + "."]
    badge_next = s.next_badge
    if year.points == 0 and s.role != TELEMARKETER:
        lead_lines = ["Lead points are a telemarketer's: one per converted appointment."]
    elif badge_next is not None:
        lead_lines.append(f"{badge_next[0]} more converted appointment{'s' if badge_next[0] != 1 else ''} "
                          f"reach{'es' if badge_next[0] == 1 else ''} {badge_next[1]} "
                          f"(bronze at {plan.bronze_points}, silver at {plan.silver_points}).")
    if plan.gold_prize > 0:
        lead_lines.append(f"Gold prize {money(plan.gold_prize)}, split between the year's gold holders, paid in "
                          f"{leads.december(year.year)}" + (f": {money(s.computed.prize_bonus)} this month."
                                                            if s.is_december else "."))
    found.append(Section(f"Lead points {year.year}", tuple(lead_lines)))

    adj_rows = tuple((adj.source_period, money(adj.earned), money(adj.paid), money(adj.amount))
                     for adj in s.adjustments_in)
    found.append(Section("Prior adjustments",
                         (f"Changes to closed months paid this month: {money(s.computed.prior_adjustments)}.",),
                         Table(("from month", "earned now", "paid", "adjustment"), adj_rows, frozenset({1, 2, 3}))
                         if adj_rows else None))

    credit_rows = tuple(credit_row(line) for line in s.credits)
    found.append(Section("Credits", (f"{len(s.credits)} credit{'s' if len(s.credits) != 1 else ''} in force.",),
                         Table(CREDIT_HEADERS, credit_rows, frozenset({6, 7})) if credit_rows else None))

    if s.settled is None:
        settle_lines: tuple[str, ...] = (status_line(s),)
        settled_table = None
    else:
        settle_lines = (status_line(s),) if s.settled.row is not None else (
            status_line(s), "The person had no row when the month was settled.")
        settled_table = None if s.settled.row is None else Table(
            ("figure", "settled", "now"),
            tuple((label(name), money(s.settled.row[name]), money(row[name])) for name in MONEY_FIGURES),
            frozenset({1, 2}))
    out_lines = tuple(f"Sent to {adj.target_period}: {money(adj.amount)} (earned {money(adj.earned)}, paid "
                      f"{money(adj.paid)}){', settled' if adj.settled else ''}." for adj in s.adjustments_out)
    found.append(Section("Settlement", settle_lines, settled_table, out_lines))
    return found


CREDIT_HEADERS = ("kind", "role", "customer", "sale / lead", "line", "category", "amount", "share", "touch",
                  "source event")


def credit_row(line: CreditLine) -> tuple[str, ...]:
    c = line.credit
    touch = "" if c.touch_event_id is None else c.touch_event_id + (
        f" at {line.touch_at.isoformat(timespec='seconds')}" if line.touch_at else "")
    return (label(c.kind), label(c.role), c.customer_id, c.sale_id or c.lead_id or "", c.line_id or "",
            line.category or "", money(c.amount), number(c.share), touch, c.source_event_id)


# -- JSON (SPEC §15) -------------------------------------------------------------------------------


def _value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return exact(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _adjustment_json(adj: Adjustment) -> dict[str, Any]:
    return {"source_period": adj.source_period, "target_period": adj.target_period, "role": adj.role,
            "amount": exact(adj.amount), "earned": exact(adj.earned), "paid": exact(adj.paid),
            "settled": adj.settled}


def statement_json(s: Statement) -> dict[str, Any]:
    """SPEC §15's JSON: person_id, period, role, settled, settlement_id, credits (each with kind), totals
    (the bonus_running columns), settled_totals (the bonus_settled row, or null), adjustments_out; and
    the arithmetic. Money as exact strings with two decimals (a credit's exact part keeps its places),
    counts as integers."""
    t, plan = s.totals, s.plan
    nxt = s.next_band
    badge_next = s.next_badge
    settled_row = None if s.settled is None or s.settled.row is None else {
        name: _value(s.settled.row[name]) for name in RUNNING_COLUMNS}
    return {
        "person_id": s.person_id,
        "period": s.period,
        "role": s.role,
        "plan_version": plan.version,
        "settled": s.settled is not None,
        "settlement_id": None if s.settled is None else s.settled.settlement_id,
        "settled_at": None if s.settled is None else s.settled.settled_at.isoformat(),
        "credits": [{
            "kind": line.credit.kind, "role": line.credit.role, "customer_id": line.credit.customer_id,
            "sale_id": line.credit.sale_id, "line_id": line.credit.line_id, "lead_id": line.credit.lead_id,
            "category": line.category, "amount": exact(line.credit.amount), "share": number(line.credit.share),
            "touch_event_id": line.credit.touch_event_id,
            "touch_at": None if line.touch_at is None else line.touch_at.isoformat(),
            "source_event_id": line.credit.source_event_id,
        } for line in s.credits],
        "totals": {name: _value(value) for name, value in s.row.items()},
        "settled_totals": settled_row,
        "adjustments_out": [_adjustment_json(adj) for adj in s.adjustments_out],
        "adjustments_in": [_adjustment_json(adj) for adj in s.adjustments_in],
        "arithmetic_agrees": not s.differences,
        "cross_sell": {
            "count": t.cross_sell_count, "amount": exact(t.cross_sell_amount),
            "gates": [{"name": g.name, "required": _value(g.required), "actual": _value(g.actual),
                       "missing": _value(g.missing), "met": g.met} for g in s.gates],
            "gates_met": s.gates_met, "gate_message": s.gate_message,
            "bands": [{"lower": exact(b.lower), "upper": None if b.upper is None else exact(b.upper),
                       "rate": number(b.rate), "amount": exact(b.amount), "bonus": exact(b.bonus),
                       "current": b.current} for b in s.bands],
            "to_next_band": None if nxt is None else exact(nxt[0]),
            "next_rate": None if nxt is None else number(nxt[1]),
            "bonus": exact(s.computed.cross_sell_bonus),
        },
        "upsell": {"count": t.upsell_count, "amount": exact(t.upsell_amount),
                   "rate": None if plan.upsell_rate is None else number(plan.upsell_rate),
                   "bonus": exact(s.computed.upsell_bonus)},
        "appointments": {"held": t.appointments_held, "converted": t.appointments_converted,
                         "held_credit": exact(plan.held_credit), "conversion_bonus": exact(plan.conversion_bonus),
                         "bonus": exact(s.computed.appointment_bonus)},
        "kpi": None if plan.kpi is None else {
            "takes_part": s.kpi_takes_part, "target_bonus": exact(plan.kpi.target_bonus),
            "components": [{"name": k.name, "metric": k.metric,
                            "value": None if k.value is None else number(round_fraction(k.value, kpi.SCORE_PLACES)),
                            "target": number(k.target), "cap": number(k.cap), "weight": number(k.weight),
                            "attainment": number(round_fraction(k.attainment, kpi.SCORE_PLACES))}
                           for k in s.kpi_lines],
            "inputs": [{"kind": f.kind, "key": f.key, "value": number(f.value)} for f in s.facts],
            "bonus": exact(s.computed.kpi_bonus),
        },
        "lead_year": {"year": s.lead_year.year, "points": s.lead_year.points,
                      "turnover": exact(round_money(s.lead_year.turnover)), "badge": s.lead_year.badge,
                      "gold": s.lead_year.gold,
                      "to_next_badge": None if badge_next is None else badge_next[0],
                      "next_badge": None if badge_next is None else badge_next[1],
                      "prize_bonus": exact(s.computed.prize_bonus)},
    }

