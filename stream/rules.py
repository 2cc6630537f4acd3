"""The crediting rules (SPEC §5) as pure functions: one customer's events in, its credits out.

No broker, no database, no clock: events and a plan in, `credits` rows out. The ledger
calls `credit_customer` with every valid event of one customer each time a batch touches
that customer and writes the difference to the credits in force (stream/diff.py); the
bonus arithmetic of SPEC §6 that turns credits into `bonus_running` rows is
stream/bonus.py, whose `compute_tables` is the from-scratch reference the tests compare
the pipeline with.

One function per rule, each citing its SPEC section, so a payslip number leads to its rule
in one hop:

==========================  ===========================================================
SPEC §5.1 net quantity      `reversal_counts`, `net_quantities`
SPEC §5.2 holdings          `holdings_before`
SPEC §5.3 primary line      `primary_line`
SPEC §5.4 cross-sell        `is_cross_sell`
SPEC §5.5 touches           `touches_of`, `TouchIndex.eligible`
SPEC §5.6 attribution       `attribute`, `split_equally`
SPEC §5.7 appointments      `lead_status`, `conversion_sale`, `appointment_outcomes`
SPEC §6 the credit's period `stream.periods.period_of`
SPEC §13 upsells            `upsell_uplift` (attributed by `attribute`, as §5.6)
SPEC §13 lead sharing       `converting_sales`, `appointment_outcomes` (the year: stream/leads.py)
SPEC §13 KPI inputs         `appointment_outcomes`, `kpi_event_fact` (the bonus: stream/kpi.py)
==========================  ===========================================================

Besides credits, a customer's events yield **facts** (`Fact`): what SPEC §13 adds up across
customers without it being a credit: a converted appointment counted for a KPI, a lead's point
and turnover, a rating, a quality review. The ledger keeps them like credits, as the rows in
force, and writes only their change.

Decisions the SPEC leaves open, taken here once for every caller:

- **Order independence** (SPEC §5, first paragraph). Events sharing an `event_id` are one
  event; should their contents differ (the pipeline dead-letters that), the one with the
  smallest ``repr`` is kept, so the result never depends on arrival order. Likewise two
  sales of one `sale_id` (also dead-lettered upstream): the one with the smallest
  (`occurred_at`, `event_id`) is kept. `stream.bonus.compute_tables` instead mimics the
  pipeline: the first in the input wins.
- **Reversals** (SPEC §5.1) are matched to a sale of the same customer by `sale_id`; one
  naming a sale of another customer reverses nothing. A reversal that occurred *before*
  its sale still counts; only one later than `clawback_days` after the sale is ignored.
  Refunds of one line add up; the net quantity floors at 0; an unknown `line_id` reverses
  nothing.
- **Upsells** (SPEC §13). U is the highest `unit_price` of the category among the lines with
  net quantity > 0 of the sales sorted before s (the same lines that make up H(s)); a line of
  s at exactly U is no upsell, so an uplift is never 0. Two lines of one category in s are
  judged against the same U, each on its own.
- **Conversions for the KPI and lead sharing** (SPEC §13). A converted lead counts once for its
  telemarketer and once for the held event's field rep (once, should they be one person). Its
  turnover sums every converting sale's net amount (all its lines, not only cross-sells).
- **Zero parts** (SPEC §5.6). A part whose amount and share are both 0 is not credited:
  with `telemarketer_share` 0 the field rep alone is credited, with 1 the field rep gets
  no row. A free line (net amount 0) that is a cross-sell is credited with amount 0: it is
  a cross-sell by SPEC §5.4, so it counts.
- **Linear** (SPEC §5.6). The telemarketer part T = share x A is split equally among the
  distinct telemarketers of the eligible touches, in id order, by `split_equally`: parts
  are T/n, quantized down to 10 places when T/n is not exact, and the remainder goes to
  the first telemarketer, so the parts always sum exactly to A. The `share` column is
  split by the same rule, so shares always sum exactly to 1. The touch named in a linear
  part is that telemarketer's latest eligible touch.
- **Both roles** (SPEC §5.6, §6). A field rep who also made the touch holds both parts of
  the line, one per role; stream/bonus.py counts the line once for them and picks the
  role shown.
- **Appointments** (SPEC §5.7). A lead's status is its event with the greatest
  (`occurred_at`, `event_id`); a booked event is a touch (SPEC §5.5) whatever the lead's
  later status. The converting sale is the earliest by (`occurred_at`, `sale_id`); a lead
  converts at most once. Appointment credits are kept even when the plan's flat amount is 0,
  because the counts are what the appointment columns report.
- **Money** is `Decimal` throughout, computed in `stream.money.EXACT`, which raises rather
  than rounds. Times are compared as instants; days are exact 24-hour `timedelta`s.
"""

from __future__ import annotations

import bisect
import functools
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, Context, Decimal, Inexact
from types import MappingProxyType
from typing import Any, NamedTuple

from schemas.events import (
    FIELD_REP,
    TELEMARKETER,
    Callback,
    Cancellation,
    Event,
    Feedback,
    KpiEvent,
    LeadHandoff,
    QualityReview,
    Refund,
    Sale,
    SaleLine,
)
from stream.money import EXACT, ONE, ZERO
from stream.periods import period_of
from stream.plan import Plan
from stream.plan_versions import Plans

#: `split_equally` quantizes inexact equal parts down to this many decimal places.
SPLIT_PLACES = 10

#: The kinds of `credits` rows (SPEC §6), defined once here.
CROSS_SELL = "cross_sell"
UPSELL = "upsell"
APPOINTMENT_HELD = "appointment_held"
APPOINTMENT_CONVERTED = "appointment_converted"
KINDS = (CROSS_SELL, UPSELL, APPOINTMENT_HELD, APPOINTMENT_CONVERTED)

#: The kinds of `Fact`: period-scoped inputs of the KPI bonus, and a lead's year (SPEC §13).
CONVERSION = "conversion"
RATING = "rating"
REVIEW = "review"
LEAD = "lead"
FACT_KINDS = (CONVERSION, RATING, REVIEW, LEAD)


class Credit(NamedTuple):
    """One row of the `credits` table (SPEC §6): one credited part now in force.

    A named tuple, in the table's column order: every recomputation builds and hashes
    all of a customer's credits, and a tuple does both in C (a frozen dataclass cost
    ~4x). Sort lists of credits with `credit_sort_key`: the optional fields are None
    for some kinds, and None does not compare with str.
    """

    period: str
    person_id: str
    role: str
    kind: str
    customer_id: str
    sale_id: str | None
    line_id: str | None
    lead_id: str | None
    amount: Decimal
    share: Decimal
    touch_event_id: str | None
    source_event_id: str


class Fact(NamedTuple):
    """Something a customer's events add to a person's month or year that is not a credit
    (SPEC §13), kept in `customer_facts` like a credit in `credits`.

    ==========  ===========  ===========  ===========================================
    kind        scope        key          value
    ==========  ===========  ===========  ===========================================
    conversion  period       lead_id      1 (a converted appointment, SPEC §13 KPI)
    lead        year "YYYY"  lead_id      the lead's turnover (and one lead point)
    rating      period       event_id     the feedback's rating
    review      period       event_id     1 passed, 0 not
    ==========  ===========  ===========  ===========================================

    `role` and `occurred_at` are the KPI event's `person_role` and time (the latest decides
    the role of a person known only from KPI events); a lead's `occurred_at` is its held
    event's, whose period picks the plan version (SPEC §12); None otherwise.
    """

    kind: str
    scope: str
    person_id: str
    customer_id: str
    key: str
    value: Decimal
    role: str | None
    occurred_at: datetime | None


class Outcome(NamedTuple):
    """All that a customer's events yield (SPEC §5, §13): its credits and facts, each sorted."""

    credits: list[Credit]
    facts: list[Fact]


def credit_sort_key(credit: Credit) -> tuple[str | Decimal, ...]:
    """Total order over credits, field by field, with None before any id."""
    return (
        credit.period,
        credit.person_id,
        credit.role,
        credit.kind,
        credit.customer_id,
        credit.sale_id or "",
        credit.line_id or "",
        credit.lead_id or "",
        credit.amount,
        credit.share,
        credit.touch_event_id or "",
        credit.source_event_id,
    )


# -- the customer's events ------------------------------------------------------------------


@dataclass
class _CustomerEvents:
    """One customer's distinct events, sorted into what the rules need."""

    sales: list[Sale]  # sorted by (occurred_at, sale_id), one per sale_id
    reversals: dict[str, list[Cancellation | Refund]]  # by sale_id
    callbacks: list[Callback]
    leads: dict[str, list[LeadHandoff]]  # by lead_id
    kpi_events: list[KpiEvent]


def _distinct(events: Iterable[Event]) -> list[Event]:
    """One event per `event_id`; a conflicting copy resolves by smallest repr (see module doc)."""
    chosen: dict[str, Event] = {}
    for event in events:
        kept = chosen.get(event.event_id)
        if kept is None or (kept != event and repr(event) < repr(kept)):
            chosen[event.event_id] = event
    return list(chosen.values())


def _sort_events(events: Iterable[Event]) -> _CustomerEvents:
    """Split one customer's events by kind; refuse a mix of customers (a grouping bug upstream
    would otherwise match reversals and holdings across customers)."""
    distinct = _distinct(events)
    customers = {event.customer_id for event in distinct}
    if len(customers) > 1:
        raise ValueError(f"credit_customer takes one customer's events, got {len(customers)} customers")
    sales: dict[str, Sale] = {}
    reversals: dict[str, list[Cancellation | Refund]] = defaultdict(list)
    callbacks: list[Callback] = []
    leads: dict[str, list[LeadHandoff]] = defaultdict(list)
    kpi_events: list[KpiEvent] = []
    for event in distinct:
        if isinstance(event, Sale):
            kept = sales.get(event.sale_id)
            if kept is None or (event.occurred_at, event.event_id) < (kept.occurred_at, kept.event_id):
                sales[event.sale_id] = event
        elif isinstance(event, (Cancellation, Refund)):
            reversals[event.sale_id].append(event)
        elif isinstance(event, Callback):
            callbacks.append(event)
        elif isinstance(event, LeadHandoff):
            leads[event.lead_id].append(event)
        else:
            kpi_events.append(event)
    ordered = sorted(sales.values(), key=lambda sale: (sale.occurred_at, sale.sale_id))
    return _CustomerEvents(ordered, reversals, callbacks, leads, kpi_events)


# -- SPEC §5.1 net quantity -----------------------------------------------------------------


def reversal_counts(sale: Sale, reversal: Cancellation | Refund, plan: Plan) -> bool:
    """SPEC §5.1: a reversal counts unless it occurred later than `clawback_days` after the sale.

    One that occurred before its sale (the CRM's clocks disagree) still counts.
    """
    return reversal.occurred_at - sale.occurred_at <= plan.clawback


def net_quantities(sale: Sale, reversals: Iterable[Cancellation | Refund], plan: Plan) -> dict[str, int]:
    """SPEC §5.1 Net quantity: line_id -> quantity minus counted reversed units, floor 0.

    A cancellation reverses every line in full; refunds of one line add up; a refund line
    naming a line the sale does not have reverses nothing.
    """
    reversed_units: Counter[str] = Counter()
    for reversal in reversals:
        if not reversal_counts(sale, reversal, plan):
            continue
        if isinstance(reversal, Cancellation):
            return {line.line_id: 0 for line in sale.lines}
        for refunded in reversal.lines:
            reversed_units[refunded.line_id] += refunded.quantity
    return {line.line_id: max(0, line.quantity - reversed_units[line.line_id]) for line in sale.lines}


def net_amount(line: SaleLine, net_quantity: int) -> Decimal:
    """SPEC §5.1: net amount = net quantity x unit_price, exact."""
    return EXACT.multiply(Decimal(net_quantity), line.unit_price)


# -- SPEC §5.2 holdings, §5.3 primary line, §5.4 cross-sell ---------------------------------


def holdings_before(
    sales: Sequence[Sale], nets: Mapping[str, Mapping[str, int]]
) -> Iterator[tuple[Sale, Mapping[str, Decimal]]]:
    """SPEC §5.2 Holdings: each sale with H(s), the categories of lines with net quantity > 0
    in the customer's sales sorted before it, each mapped to the highest `unit_price` among
    those lines (U of an upsell, SPEC §13). `sales` must be sorted by (occurred_at, sale_id).

    A mapping once yielded never changes: a sale that adds to the holdings makes a new one.
    """
    held: dict[str, Decimal] = {}
    for sale in sales:
        yield sale, held
        grown: dict[str, Decimal] | None = None
        for line in sale.lines:
            if nets[sale.sale_id][line.line_id] > 0:
                top = held.get(line.category) if grown is None else grown.get(line.category)
                if top is None or line.unit_price > top:
                    if grown is None:
                        grown = dict(held)
                    grown[line.category] = line.unit_price
        if grown is not None:
            held = grown


def primary_line(sale: Sale, nets: Mapping[str, int]) -> SaleLine | None:
    """SPEC §5.3 Primary line: the largest net amount, ties to the smallest line_id.

    Lines with net quantity 0 take no part (SPEC §5.1), so a fully reversed sale has none.
    """
    live = [line for line in sale.lines if nets[line.line_id] > 0]
    if not live:
        return None
    return min(live, key=lambda line: (-net_amount(line, nets[line.line_id]), line.line_id))


@functools.lru_cache(maxsize=8)
def anchors_by_category(plan: Plan) -> Mapping[str, frozenset[str]]:
    """The plan's matrix inverted: category -> anchors whose cross-sells include it.

    Cached: a worker has one plan, and inverting it for every customer cost a fifth
    of `credit_customer`.
    """
    anchors: dict[str, set[str]] = defaultdict(set)
    for anchor, categories in plan.matrix.items():
        for category in categories:
            anchors[category].add(anchor)
    return MappingProxyType({category: frozenset(found) for category, found in anchors.items()})


def is_cross_sell(
    line: SaleLine,
    primary: SaleLine,
    holdings: AbstractSet[str] | Mapping[str, Decimal],
    anchors_of: Mapping[str, frozenset[str]],
) -> bool:
    """SPEC §5.4 Cross-sell: the category is new to the customer and some anchor lists it.

    The anchors are H(s) plus, unless `line` is the primary line, the primary's category;
    so the primary line itself can be a cross-sell of what the customer already holds.
    `anchors_of` is `anchors_by_category(plan)`. The caller checks net quantity > 0.
    """
    if line.category in holdings:
        return False
    for anchor in anchors_of.get(line.category, ()):
        if anchor in holdings or (line.line_id != primary.line_id and anchor == primary.category):
            return True
    return False


# -- SPEC §5.5 touches ----------------------------------------------------------------------


class Touch(NamedTuple):
    """SPEC §5.5: a telemarketer's touch; ordered by (occurred_at, event_id) as §5.6 ranks them.

    A named tuple: built for every callback of a customer at each recomputation, and sorted;
    tuples compare in C.
    """

    occurred_at: datetime
    event_id: str
    telemarketer_id: str


def touches_of(
    callbacks: Iterable[Callback], leads: Iterable[Iterable[LeadHandoff]]
) -> tuple[dict[str, list[Touch]], dict[str, list[Touch]]]:
    """SPEC §5.5 Touches: (by offered category, by field rep booked for), each sorted.

    A callback with outcome `offer_made` touches its offered categories; a lead_handoff
    with status `booked` touches every category, towards sales by its `field_rep_id` only.
    """
    by_category: dict[str, list[Touch]] = defaultdict(list)
    by_field_rep: dict[str, list[Touch]] = defaultdict(list)
    for callback in callbacks:
        if callback.outcome == "offer_made":
            touch = Touch(callback.occurred_at, callback.event_id, callback.telemarketer_id)
            for category in set(callback.offered_categories):
                by_category[category].append(touch)
    for lifecycle in leads:
        for event in lifecycle:
            if event.status == "booked":
                touch = Touch(event.occurred_at, event.event_id, event.telemarketer_id)
                by_field_rep[event.field_rep_id].append(touch)
    for touches in (*by_category.values(), *by_field_rep.values()):
        touches.sort()
    return by_category, by_field_rep


@dataclass(frozen=True)
class Eligible:
    """The touches eligible for one (sale, category): ranges of sorted touch lists."""

    runs: tuple[tuple[Sequence[Touch], int, int], ...]

    def __bool__(self) -> bool:
        return any(high > low for _, low, high in self.runs)

    def __iter__(self) -> Iterator[Touch]:
        for touches, low, high in self.runs:
            for index in range(low, high):
                yield touches[index]

    def last(self) -> Touch:
        """The greatest (occurred_at, event_id), in O(1) per run."""
        return max(touches[high - 1] for touches, low, high in self.runs if high > low)

    def first(self) -> Touch:
        """The smallest (occurred_at, event_id), in O(1) per run."""
        return min(touches[low] for touches, low, high in self.runs if high > low)

    def latest_by_telemarketer(self) -> dict[str, Touch]:
        """Each distinct telemarketer's latest eligible touch (runs are ascending, so within
        a run the last one seen wins; only the runs' winners need comparing)."""
        latest: dict[str, Touch] = {}
        for touches, low, high in self.runs:
            in_run = {touches[i].telemarketer_id: touches[i] for i in range(low, high)}
            for person, touch in in_run.items():
                kept = latest.get(person)
                if kept is None or touch > kept:
                    latest[person] = touch
        return latest


class TouchIndex:
    """A customer's touches, indexed so each line finds its eligible ones by binary search."""

    def __init__(self, events: _CustomerEvents, plan: Plan) -> None:
        by_category, by_field_rep = touches_of(events.callbacks, events.leads.values())
        self._by_category = {key: (ts, [t.occurred_at for t in ts]) for key, ts in by_category.items()}
        self._by_field_rep = {key: (ts, [t.occurred_at for t in ts]) for key, ts in by_field_rep.items()}
        self._window = plan.attribution_window

    def eligible(self, sale: Sale, category: str) -> Eligible:
        """SPEC §5.5: touches covering `category` with 0 <= sale - touch <= the window.

        Booked touches count only when the sale's seller is the booked field rep.
        """
        runs = []
        for index, key in ((self._by_category, category), (self._by_field_rep, sale.seller_id)):
            found = index.get(key)
            if found is None:
                continue
            touches, times = found
            low = bisect.bisect_left(times, sale.occurred_at - self._window)
            high = bisect.bisect_right(times, sale.occurred_at)
            runs.append((touches, low, high))
        return Eligible(tuple(runs))


# -- SPEC §5.6 attribution ------------------------------------------------------------------


class Part(NamedTuple):
    """One person's part of a cross-sell line (SPEC §5.6)."""

    person_id: str
    role: str
    amount: Decimal
    share: Decimal
    touch_event_id: str | None


def split_equally(total: Decimal, count: int) -> list[Decimal]:
    """SPEC §5.6 linear: `total` in `count` equal parts that sum exactly to `total`.

    Each part is total/count; when that is not exact it is quantized down to
    `SPLIT_PLACES` places and the remainder goes to the first part.
    """
    # Any, not Context: typeshed types `flags` as a dict, but it is a SignalDict, which the
    # compiled build (setup.py) would check against dict and refuse.
    probe: Any = Context(prec=len(total.as_tuple().digits) + 64, rounding=ROUND_DOWN)
    part = probe.divide(total, Decimal(count))
    if probe.flags[Inexact]:
        part = part.quantize(Decimal(1).scaleb(-SPLIT_PLACES), rounding=ROUND_DOWN, context=probe)
    rest = EXACT.subtract(total, EXACT.multiply(part, Decimal(count - 1)))
    return [rest] + [part] * (count - 1)


def attribute(sale: Sale, amount: Decimal, eligible: Eligible, plan: Plan) -> list[Part]:
    """SPEC §5.6 Attribution of a cross-sell line of net amount `amount`.

    A telemarketer seller gets 100%; a field rep seller with no eligible touch gets 100%;
    otherwise the field rep gets (1 - share) x A and the telemarketer share goes by the
    plan's model. Parts with zero amount and zero share are dropped (see module doc).
    """
    if sale.seller_role == TELEMARKETER:
        return [Part(sale.seller_id, TELEMARKETER, amount, ONE, None)]
    if not eligible:
        return [Part(sale.seller_id, FIELD_REP, amount, ONE, None)]
    share = plan.telemarketer_share
    to_telemarketers = EXACT.multiply(share, amount)
    parts = [
        Part(
            sale.seller_id,
            FIELD_REP,
            EXACT.subtract(amount, to_telemarketers),
            EXACT.subtract(ONE, share),
            None,
        )
    ]
    parts += _telemarketer_parts(to_telemarketers, share, eligible, plan.attribution_model)
    return [part for part in parts if part.amount or part.share]


def _telemarketer_parts(amount: Decimal, share: Decimal, eligible: Eligible, model: str) -> list[Part]:
    """SPEC §5.6: last_touch / first_touch take one touch; linear splits by telemarketer."""
    if model != "linear":
        touch = eligible.last() if model == "last_touch" else eligible.first()
        return [Part(touch.telemarketer_id, TELEMARKETER, amount, share, touch.event_id)]
    latest = eligible.latest_by_telemarketer()
    people = sorted(latest)
    amounts = split_equally(amount, len(people))
    shares = split_equally(share, len(people))
    return [
        Part(person, TELEMARKETER, part, part_share, latest[person].event_id)
        for person, part, part_share in zip(people, amounts, shares, strict=True)
    ]


def upsell_uplift(line: SaleLine, net: int, holdings: Mapping[str, Decimal]) -> Decimal | None:
    """SPEC §13 Upsell: a line of a held category at a unit price above U, the highest price
    the customer holds it at; its amount is the uplift (unit_price - U) x net quantity.
    None when the line is no upsell (the caller checks net quantity > 0)."""
    top = holdings.get(line.category)
    if top is None or line.unit_price <= top:
        return None
    return EXACT.multiply(EXACT.subtract(line.unit_price, top), Decimal(net))


def _line_credits(
    sale: Sale,
    nets: Mapping[str, int],
    holdings: Mapping[str, Decimal],
    touches: TouchIndex,
    anchors_of: Mapping[str, frozenset[str]],
    plan: Plan,
) -> Iterator[Credit]:
    """SPEC §5.4-§5.6 and §13 for one sale: its cross-sell and upsell lines, attributed, in
    the sale's period. A line is at most one of the two: a cross-sell's category is new to the
    customer, an upsell's is held."""
    primary = primary_line(sale, nets)
    if primary is None:
        return
    period = period_of(sale.occurred_at, plan)
    upsells = plan.upsell_rate is not None
    eligible_by_category: dict[str, Eligible] = {}
    for line in sale.lines:
        net = nets[line.line_id]
        if net == 0:
            continue
        if is_cross_sell(line, primary, holdings, anchors_of):
            kind, amount = CROSS_SELL, net_amount(line, net)
        elif upsells and (uplift := upsell_uplift(line, net, holdings)) is not None:
            kind, amount = UPSELL, uplift
        else:
            continue
        eligible = eligible_by_category.get(line.category)
        if eligible is None:
            eligible = eligible_by_category[line.category] = touches.eligible(sale, line.category)
        for part in attribute(sale, amount, eligible, plan):
            yield Credit(
                period=period,
                person_id=part.person_id,
                role=part.role,
                kind=kind,
                customer_id=sale.customer_id,
                sale_id=sale.sale_id,
                line_id=line.line_id,
                lead_id=None,
                amount=part.amount,
                share=part.share,
                touch_event_id=part.touch_event_id,
                source_event_id=sale.event_id,
            )


# -- SPEC §5.7 appointments -----------------------------------------------------------------


def lead_status(lifecycle: Iterable[LeadHandoff]) -> LeadHandoff:
    """SPEC §5.7: a lead's status is its event with the greatest (occurred_at, event_id)."""
    return max(lifecycle, key=lambda event: (event.occurred_at, event.event_id))


@dataclass(frozen=True)
class _SalesBySeller:
    """Sales with some net quantity > 0, per seller, sorted for binary search by time."""

    sales: dict[str, list[Sale]]
    times: dict[str, list[datetime]]

    @classmethod
    def of(cls, sales: Iterable[Sale], nets: Mapping[str, Mapping[str, int]]) -> _SalesBySeller:
        by_seller: dict[str, list[Sale]] = defaultdict(list)
        for sale in sales:  # already sorted by (occurred_at, sale_id)
            if any(quantity > 0 for quantity in nets[sale.sale_id].values()):
                by_seller[sale.seller_id].append(sale)
        times = {seller: [sale.occurred_at for sale in found] for seller, found in by_seller.items()}
        return cls(dict(by_seller), times)


def converting_sales(held: LeadHandoff, sales: _SalesBySeller, plan: Plan) -> Sequence[Sale]:
    """SPEC §5.7 / §13: the sales by the held event's field rep, with some net quantity > 0,
    occurring 0..`conversion_window_days` after the held event, earliest first."""
    found = sales.sales.get(held.field_rep_id)
    if not found:
        return ()
    times = sales.times[held.field_rep_id]
    low = bisect.bisect_left(times, held.occurred_at)
    high = bisect.bisect_right(times, held.occurred_at + plan.conversion_window)
    return found[low:high]


def conversion_sale(held: LeadHandoff, sales: _SalesBySeller, plan: Plan) -> Sale | None:
    """SPEC §5.7 converted: the earliest converting sale (`converting_sales`), or None."""
    found = converting_sales(held, sales, plan)
    return found[0] if found else None


def appointment_outcomes(
    leads: Iterable[Sequence[LeadHandoff]],
    sales: _SalesBySeller,
    nets: Mapping[str, Mapping[str, int]],
    plan: Plan,
) -> Iterator[Credit | Fact]:
    """SPEC §5.7 Appointments and what SPEC §13 reads of them.

    A held lead credits its telemarketer a flat `held_credit`, plus a flat `conversion_bonus`
    when converted, both in the period of the held event. A converted lead is also a KPI
    conversion of its telemarketer and of the held event's field rep (in that period), and a
    lead point of the telemarketer with the lead's turnover (in the held event's year).
    """
    for lifecycle in leads:
        held = lead_status(lifecycle)
        if held.status != "held":
            continue
        yield _appointment_credit(held, APPOINTMENT_HELD, plan.held_credit, None, plan)
        converting = converting_sales(held, sales, plan)
        if not converting:
            continue
        yield _appointment_credit(held, APPOINTMENT_CONVERTED, plan.conversion_bonus, converting[0], plan)
        period = period_of(held.occurred_at, plan)
        for person in {held.telemarketer_id, held.field_rep_id}:
            yield Fact(CONVERSION, period, person, held.customer_id, held.lead_id, ONE, None, None)
        turnover = ZERO
        for sale in converting:
            for line in sale.lines:
                turnover = EXACT.add(turnover, net_amount(line, nets[sale.sale_id][line.line_id]))
        # occurred_at: the held event's, whose period's plan version the lead is computed under (SPEC §12)
        yield Fact(LEAD, period[:4], held.telemarketer_id, held.customer_id, held.lead_id, turnover, None,
                   held.occurred_at)


def kpi_event_fact(event: KpiEvent, plan: Plan) -> Fact:
    """SPEC §13: a feedback's rating, or a quality review's pass (1) or fail (0), in the
    period of the event, about its `person_id`."""
    if isinstance(event, Feedback):
        kind, value = RATING, Decimal(event.rating)
    else:
        kind, value = REVIEW, ONE if event.passed else ZERO
    return Fact(kind, period_of(event.occurred_at, plan), event.person_id, event.customer_id, event.event_id,
                value, event.person_role, event.occurred_at)


def _appointment_credit(held: LeadHandoff, kind: str, amount: Decimal, sale: Sale | None, plan: Plan) -> Credit:
    """A flat appointment credit, in the period of the held event (SPEC §5.7)."""
    return Credit(
        period=period_of(held.occurred_at, plan),
        person_id=held.telemarketer_id,
        role=TELEMARKETER,
        kind=kind,
        customer_id=held.customer_id,
        sale_id=None if sale is None else sale.sale_id,
        line_id=None,
        lead_id=held.lead_id,
        amount=amount,
        share=ONE,
        touch_event_id=held.event_id,
        source_event_id=held.event_id if sale is None else sale.event_id,
    )


# -- one customer ---------------------------------------------------------------------------


def only_inert_events(new: Sequence[Event]) -> bool:
    """Whether `new` holds only callbacks without an offer: events no rule reads (a callback is
    read only as a touch, SPEC §5.5, and one without an offer is none; no fact comes of it), so
    adding them to any customer's events changes no credit and no fact. The ledger leaves such
    a customer alone: not locked, not recomputed, its cached history without them."""
    for event in new:
        if type(event) is not Callback or event.outcome == "offer_made":
            return False
    return bool(new)


def only_kpi_events(new: Sequence[Event]) -> bool:
    """Whether `new` holds KPI events only (SPEC 13): no rule but `kpi_event_fact` reads them, and
    it reads each alone, so adding them changes no credit and no other fact."""
    for event in new:
        if not isinstance(event, (Feedback, QualityReview)):
            return False
    return bool(new)


def can_change_credits(new: Sequence[Event], history: Sequence[Event] | None) -> bool:
    """Whether adding `new` to a customer's stored `history` (None: not known) can change the
    customer's credits, so that the ledger may skip recomputing it (three recomputations in four).

    A callback is read only as a touch (SPEC §5.5), and one without an offer is none. A
    `booked` hand-off is a touch too, and as the first event of its lead it leaves the lead
    `booked`, which credits nothing (§5.7). Touches only matter for a sale's lines (§5.6),
    so while the customer has no sale, neither kind can change a credit.
    """
    # Loops rather than any()/all() over generators: this runs for every customer of every batch.
    for event in new:
        if not isinstance(event, Callback) or event.outcome == "offer_made":
            break
    else:
        return False  # only callbacks without an offer
    if history is None:
        return True
    leads: set[str] = set()
    for event in history:
        if isinstance(event, Sale):
            return True
        if isinstance(event, LeadHandoff):
            leads.add(event.lead_id)
    for event in new:
        if isinstance(event, Callback):
            continue
        if not (isinstance(event, LeadHandoff) and event.status == "booked" and event.lead_id not in leads):
            return True
    return False


def customer_outcome(events: Iterable[Event], plan: Plan) -> Outcome:
    """SPEC §5 and §13: every credit and fact now in force for ONE customer, each sorted.

    `events` are all valid events of the customer, in any order, possibly repeated; the
    result depends only on the set of distinct events. O(n log n) in the event count, plus
    the eligible touches scanned by the linear model. Events of more than one customer are
    a grouping bug upstream and raise `ValueError`.
    """
    customer = _sort_events(events)
    nets = {
        sale.sale_id: net_quantities(sale, customer.reversals.get(sale.sale_id, ()), plan) for sale in customer.sales
    }
    touches = TouchIndex(customer, plan)
    anchors_of = anchors_by_category(plan)
    credits: list[Credit] = []
    facts: list[Fact] = []
    for sale, holdings in holdings_before(customer.sales, nets):
        credits.extend(_line_credits(sale, nets[sale.sale_id], holdings, touches, anchors_of, plan))
    if customer.leads:
        sellers = _SalesBySeller.of(customer.sales, nets)
        for found in appointment_outcomes(customer.leads.values(), sellers, nets, plan):
            if isinstance(found, Credit):
                credits.append(found)
            else:
                facts.append(found)
    facts.extend(kpi_event_fact(event, plan) for event in customer.kpi_events)
    credits.sort(key=credit_sort_key)
    facts.sort(key=fact_sort_key)
    return Outcome(credits, facts)


def outcome_under(events: Iterable[Event], plans: Plans) -> Outcome:
    """SPEC §12: the customer's credits and facts of each period as the version in force for that
    period computes them, as if it had been the only plan ever (net quantities, holdings,
    touches and windows all read under it). A lead's facts follow its held event's period.

    One version computes the customer once; several compute it once per version that some
    event's period calls for, keeping from each what belongs to its periods.
    """
    if plans.single:
        return customer_outcome(events, plans.first)
    events = list(events)
    zone_plan = plans.first
    chosen = {period: plans.for_period(period) for period in {period_of(e.occurred_at, zone_plan) for e in events}}
    versions = list({id(plan): plan for plan in chosen.values()}.values())
    if len(versions) == 1:
        return customer_outcome(events, versions[0])
    credits: list[Credit] = []
    facts: list[Fact] = []
    for plan in versions:
        outcome = customer_outcome(events, plan)
        credits += [c for c in outcome.credits if chosen.get(c.period) is plan]
        facts += [f for f in outcome.facts if chosen.get(_fact_period(f, zone_plan)) is plan]
    credits.sort(key=credit_sort_key)
    facts.sort(key=fact_sort_key)
    return Outcome(credits, facts)


def _fact_period(fact: Fact, plan: Plan) -> str:
    """The period whose plan version a fact is computed under: a lead's held event's, else its scope."""
    if fact.kind == LEAD:
        assert fact.occurred_at is not None
        return period_of(fact.occurred_at, plan)
    return fact.scope


def credit_customer(events: Iterable[Event], plan: Plan) -> list[Credit]:
    """SPEC §5: every credit now in force for ONE customer (`customer_outcome` without facts)."""
    return customer_outcome(events, plan).credits


def fact_sort_key(fact: Fact) -> tuple[str, str, str, str, str]:
    """Total order over one customer's facts (kind, scope, person and key identify a fact)."""
    return (fact.kind, fact.scope, fact.person_id, fact.customer_id, fact.key)
