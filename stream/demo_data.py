"""A realistic month of CRM activity, for `crmbonus demo` and the benchmark.

The demo must show every path of the pipeline at once, so the generated stream is not a
tidy replay of a fixture: it has per-customer stories (callbacks, lead hand-offs, multi-line
sales, refunds, cancellations, repeat purchases), mixed time offsets, events that arrive
late or after the month ended, exact redeliveries and a few garbage lines for the dead
letters (SPEC §3). Everything is drawn from one `random.Random(seed)`, so a seed names a
month exactly; `generate` does no I/O and is O(n log n) (one sort, for the arrival order).

Categories and add-ons mirror the default plan (SPEC §4, `deploy/plans/default.toml`); the
tests check that they agree, so the demo keeps producing cross-sells if the plan changes.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

#: The default plan's cross-sell matrix (SPEC §4): anchor -> categories that cross-sell.
MATRIX: dict[str, tuple[str, ...]] = {
    "laptops": ("accessories", "software", "insurance", "warranty"),
    "phones": ("accessories", "insurance", "plans", "warranty"),
    "plans": ("phones", "insurance"),
    "tv": ("accessories", "warranty", "streaming"),
    "insurance": ("warranty",),
}
#: How often each anchor is what a customer is mainly after.
ANCHOR_WEIGHTS: dict[str, int] = {"phones": 30, "laptops": 25, "plans": 20, "tv": 15, "insurance": 10}
#: category -> (SKU prefix, lowest and highest unit price in whole euros).
PRICE_RANGES: dict[str, tuple[str, int, int]] = {
    "laptops": ("LAP", 600, 2000),
    "phones": ("PHN", 300, 1200),
    "tv": ("TV", 400, 2500),
    "plans": ("PLN", 10, 60),
    "accessories": ("ACC", 10, 120),
    "software": ("SW", 30, 200),
    "insurance": ("INS", 50, 250),
    "warranty": ("WAR", 40, 300),
    "streaming": ("STR", 5, 20),
}
SKUS_PER_CATEGORY = 12
CURRENCY = "EUR"

_DAY = 86_400
_HOUR = 3_600
#: Share of timestamps written with a +01:00 offset (CET publishers) instead of `Z`.
_OFFSET_SHARE = 0.12
#: Share of prices written as JSON numbers instead of decimal strings (both are valid money).
_NUMBER_PRICE_SHARE = 0.15


class _Weighted:
    """A fixed discrete distribution, drawn with one bisect (hot: ~10 draws per event)."""

    def __init__(self, options: Iterable[Any], weights: Iterable[float]) -> None:
        self.options = tuple(options)
        self.cum = tuple(itertools.accumulate(weights))

    def draw(self, rng: random.Random) -> Any:
        return self.options[bisect.bisect(self.cum, rng.random() * self.cum[-1])]


_ANCHORS = _Weighted(ANCHOR_WEIGHTS, ANCHOR_WEIGHTS.values())
_CALLS = _Weighted(range(1, 9), (8, 12, 15, 16, 15, 13, 11, 10))
_CALL_OUTCOMES = _Weighted(("no_answer", "declined", "offer_made"), (40, 25, 35))
_LEAD_OUTCOMES = _Weighted(("held", "no_show", "cancelled", "booked"), (65, 20, 10, 5))
_ADD_ON_COUNTS = _Weighted((0, 1, 2, 3), (30, 35, 25, 10))
_QUANTITIES = _Weighted((1, 2, 3), (95, 4, 1))
_SMALL_QUANTITIES = _Weighted((1, 2, 3), (80, 15, 5))  # cables, licences: often several


@dataclass(frozen=True)
class DemoConfig:
    """What to generate; the defaults give ~20k lines, the size of the shipped demo."""

    seed: int = 2026
    month: str = "2026-11"  # YYYY-MM, UTC
    telemarketers: int = 24
    field_reps: int = 36
    customers: int = 3000
    late_fraction: float = 0.02  # share of events whose arrival is shuffled late
    invalid_lines: int = 5  # garbage lines mixed in, to show dead letters

    def __post_init__(self) -> None:
        _month_bounds(self.month)
        if self.telemarketers < 1 or self.field_reps < 1:
            raise ValueError("DemoConfig needs at least one telemarketer and one field rep")
        if self.customers < 0 or self.invalid_lines < 0:
            raise ValueError("DemoConfig.customers and invalid_lines must be >= 0")
        if not 0.0 <= self.late_fraction <= 1.0:
            raise ValueError(f"DemoConfig.late_fraction must be within 0..1, got {self.late_fraction}")


def _month_bounds(month: str) -> tuple[datetime, datetime]:
    """[start, end) of a `YYYY-MM` month in UTC; refuses anything else by name."""
    try:
        start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    except ValueError as error:
        raise ValueError(f"DemoConfig.month must be YYYY-MM, got {month!r}") from error
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


#: Price endings, as a shop writes them.
_CENTS = ("00", "00", "99", "99", "49", "90", "95")


@dataclass(frozen=True)
class _Product:
    sku: str
    category: str
    price: str  # two decimal places, e.g. "899.99"


def _catalog(rng: random.Random) -> dict[str, list[_Product]]:
    """A fixed price list per category, so one SKU always sells at one price, as in a shop."""
    catalog: dict[str, list[_Product]] = {}
    for category, (prefix, low, high) in PRICE_RANGES.items():
        catalog[category] = [
            _Product(f"{prefix}-{index:03d}", category, f"{rng.randrange(low, high)}.{rng.choice(_CENTS)}")
            for index in range(1, SKUS_PER_CATEGORY + 1)
        ]
    return catalog


class _Clock:
    """Renders seconds-since-month-start as RFC 3339, mostly `Z`, sometimes `+01:00`."""

    def __init__(self, start: datetime, rng: random.Random) -> None:
        self.start = start
        self.rng = rng

    def render(self, seconds: int) -> str:
        if self.rng.random() < _OFFSET_SHARE:
            local = self.start + timedelta(seconds=seconds + _HOUR)
            return local.strftime("%Y-%m-%dT%H:%M:%S") + "+01:00"
        return (self.start + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _business_time(rng: random.Random, seconds: int) -> int:
    """Move an instant into shop hours (08:00-20:00 UTC): CRM activity happens at work."""
    day, in_day = divmod(seconds, _DAY)
    if in_day < 8 * _HOUR:
        return day * _DAY + 8 * _HOUR + rng.randrange(2 * _HOUR)
    if in_day >= 20 * _HOUR:
        return (day + 1) * _DAY + 8 * _HOUR + rng.randrange(2 * _HOUR)
    return seconds


class _Staff:
    """People of one role (`tm-007`), some busier than others and a few new hires.

    Uneven workloads make the leaderboard look real and put the new hires below the
    cross-sell `min_count` gate (SPEC §4), so the demo shows the gate at work. The first
    picks go to each person once, so everyone on the payroll shows up in the month.
    """

    def __init__(self, prefix: str, count: int, rng: random.Random) -> None:
        self.ids = [f"{prefix}-{index:03d}" for index in range(1, count + 1)]
        weights = [rng.lognormvariate(0, 0.5) for _ in self.ids]
        for new_hire in range(count - count // 12, count):
            weights[new_hire] = 0.01
        self.weighted = _Weighted(self.ids, weights)
        self.rng = rng
        self.unseen = self.ids[::-1]

    def pick(self) -> str:
        if self.unseen:
            return self.unseen.pop()
        return str(self.weighted.draw(self.rng))


@dataclass
class _Draft:
    """An event before serialisation: its instant (seconds into the month) and its fields."""

    at: int
    fields: dict[str, Any]


@dataclass
class _Story:
    """What one customer has done so far this month, so later steps follow from earlier ones."""

    customer_id: str
    telemarketer: str
    interest: str
    offered: set[str] = field(default_factory=set)
    sales: int = 0
    last: int = 0  # instant of the latest step, so a repeat purchase comes after the first


class _Month:
    """Builds the events of one month, customer by customer; `drafts` collects them."""

    def __init__(self, config: DemoConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        start, end = _month_bounds(config.month)
        self.length = int((end - start).total_seconds())
        self.clock = _Clock(start, self.rng)
        # the seed is in every id: months generated with two seeds can share one database
        self.tag = f"{config.month.replace('-', '')}s{config.seed}"
        self.catalog = _catalog(self.rng)
        self.telemarketers = _Staff("tm", config.telemarketers, self.rng)
        self.field_reps = _Staff("fr", config.field_reps, self.rng)
        self.counters: dict[str, int] = {}
        self.drafts: list[_Draft] = []

    # -- ids and low-level helpers ------------------------------------------------------

    def next_id(self, prefix: str) -> str:
        """`prefix-YYYYMMsSEED-000042`: stable, readable, unique within the month and seed."""
        number = self.counters.get(prefix, 0) + 1
        self.counters[prefix] = number
        return f"{prefix}-{self.tag}-{number:06d}"

    def after(self, at: int, low_hours: float, high_hours: float) -> int:
        """An instant some hours after `at`, in shop hours."""
        return _business_time(self.rng, at + int(self.rng.uniform(low_hours, high_hours) * _HOUR))

    def emit(self, at: int, event_type: str, prefix: str, customer_id: str, **fields: Any) -> bool:
        """Record an event; refuse (False) one that would occur after the month ends."""
        if at >= self.length:
            return False
        head = {
            "event_id": self.next_id(prefix),
            "event_type": event_type,
            "occurred_at": self.clock.render(at),
            "customer_id": customer_id,
        }
        self.drafts.append(_Draft(at, head | fields))
        return True

    # -- one customer's month -------------------------------------------------------------

    def customer(self, index: int) -> None:
        """A small story: maybe callbacks, maybe an appointment, maybe sales and reversals."""
        rng = self.rng
        story = _Story(
            customer_id=f"cust-{index:05d}",
            telemarketer=self.telemarketers.pick(),
            interest=_ANCHORS.draw(rng),
        )
        at = _business_time(rng, rng.randrange(int(self.length * 0.6)))
        if rng.random() < 0.10:  # a walk-in: no call centre involved
            self.sale(story, at, self.field_reps.pick(), "field_rep")
            return
        at = self.callbacks(story, at)
        held = self.lead(story, at) if rng.random() < (0.65 if story.offered else 0.3) else None
        if held is not None:
            field_rep, held_at = held
            if rng.random() < 0.75:
                self.sale(story, self.after(held_at, 0.5, 72), field_rep, "field_rep")
        elif rng.random() < 0.6:
            seller, role = self.any_seller(story)
            self.sale(story, self.after(at, 2, 96), seller, role)
        if story.sales and rng.random() < 0.35:
            self.repeat_purchase(story, self.after(story.last, 48, 14 * 24))

    def any_seller(self, story: _Story) -> tuple[str, str]:
        """Who closes a sale nobody booked: the customer's telemarketer or any field rep."""
        if self.rng.random() < 0.4:
            return story.telemarketer, "telemarketer"
        return self.field_reps.pick(), "field_rep"

    def callbacks(self, story: _Story, at: int) -> int:
        """1-8 calls, mostly by the customer's own telemarketer; offers name add-ons."""
        rng = self.rng
        for _ in range(_CALLS.draw(rng)):
            caller = story.telemarketer if rng.random() < 0.85 else self.telemarketers.pick()
            outcome = _CALL_OUTCOMES.draw(rng)
            extra: dict[str, Any] = {}
            if outcome == "offer_made":
                pool = [*MATRIX[story.interest], story.interest]
                offered = sorted(rng.sample(pool, min(len(pool), rng.choice((1, 1, 2, 2, 3)))))
                story.offered.update(offered)
                extra["offered_categories"] = offered
            fields = {"telemarketer_id": caller, "outcome": outcome, **extra}
            if not self.emit(at, "callback", "cb", story.customer_id, **fields):
                break
            at = self.after(at, 4, 60)
        return at

    def lead(self, story: _Story, at: int) -> tuple[str, int] | None:
        """A hand-off: booked, then held / no_show (sometimes rebooked) / cancelled.

        Returns (field rep, held instant) when the appointment was held within the month.
        """
        rng = self.rng
        lead = {
            "lead_id": self.next_id("L"),
            "telemarketer_id": story.telemarketer,
            "field_rep_id": self.field_reps.pick(),
        }
        for _attempt in range(2):
            appointment = self.after(at, 24, 6 * 24)
            if not self.handoff(story, at, lead, "booked", appointment):
                return None
            outcome = _LEAD_OUTCOMES.draw(rng)
            if outcome == "booked":  # still pending when the month closes
                return None
            if outcome == "cancelled":
                self.handoff(story, self.after(at, 2, 20), lead, outcome, appointment)
                return None
            ended = appointment + rng.randrange(_HOUR, 2 * _HOUR)
            if not self.handoff(story, ended, lead, outcome, appointment):
                return None
            if outcome == "held":
                return lead["field_rep_id"], ended
            if rng.random() < 0.6:
                return None
            at = self.after(ended, 4, 48)  # the no-show is called again and rebooked
        return None

    def handoff(self, story: _Story, at: int, lead: dict[str, str], status: str, appointment: int) -> bool:
        """One step of a lead's lifecycle; every step repeats the appointment time."""
        return self.emit(
            at,
            "lead_handoff",
            "lh",
            story.customer_id,
            **lead,
            status=status,
            appointment_at=self.clock.render(appointment),
        )

    def repeat_purchase(self, story: _Story, at: int) -> None:
        """A second sale later in the month, often prepared by a new offer on the phone."""
        rng = self.rng
        if rng.random() < 0.5:
            offered = sorted(rng.sample(MATRIX[story.interest], 1))
            story.offered.update(offered)
            if not self.emit(
                max(0, self.after(at, -72, -14)),
                "callback",
                "cb",
                story.customer_id,
                telemarketer_id=story.telemarketer,
                outcome="offer_made",
                offered_categories=offered,
            ):
                return
        seller, role = self.any_seller(story)
        self.sale(story, at, seller, role, anchor=rng.random() < 0.4)

    # -- sales and reversals --------------------------------------------------------------

    def sale(self, story: _Story, at: int, seller: str, role: str, anchor: bool = True) -> None:
        """A multi-line sale: an anchor plus 0-3 add-ons (or add-ons only), then maybe reversed."""
        lines = self.sale_lines(story, anchor)
        sale_id = self.next_id("S")
        if not self.emit(
            at,
            "sale",
            "s",
            story.customer_id,
            sale_id=sale_id,
            seller_id=seller,
            seller_role=role,
            currency=CURRENCY,
            lines=lines,
        ):
            return
        story.sales += 1
        story.last = at
        self.reversal(story, at, sale_id, lines)

    def sale_lines(self, story: _Story, anchor: bool) -> list[dict[str, Any]]:
        """Categories for one sale; add-ons the customer was offered are likelier."""
        rng = self.rng
        if anchor:
            main = story.interest if story.sales == 0 else rng.choice(list(MATRIX))
            add_ons = _ADD_ON_COUNTS.draw(rng)
            categories = [main, *self.pick_add_ons(story, main, add_ons)]
        else:
            categories = self.pick_add_ons(story, story.interest, rng.choice((1, 1, 2)))
        if rng.random() < 0.04:  # something off-matrix: the engine must not count it
            categories.append(rng.choice(list(PRICE_RANGES)))
        return [self.line(index, category) for index, category in enumerate(categories, 1)]

    def pick_add_ons(self, story: _Story, anchor: str, count: int) -> list[str]:
        """Up to `count` distinct add-on categories of `anchor`, offered ones weighted x3."""
        pool = list(MATRIX[anchor])
        chosen: list[str] = []
        while pool and len(chosen) < count:
            weights = [3 if category in story.offered else 1 for category in pool]
            chosen.append(pool.pop(self.rng.choices(range(len(pool)), weights=weights)[0]))
        return chosen

    def line(self, index: int, category: str) -> dict[str, Any]:
        """One sale line; cheap add-ons come in twos and threes more often."""
        rng = self.rng
        product = rng.choice(self.catalog[category])
        quantities = _SMALL_QUANTITIES if category in ("accessories", "software") else _QUANTITIES
        price: Any = product.price
        if rng.random() < _NUMBER_PRICE_SHARE:
            price = msgspec.Raw(price.removesuffix(".00").encode())
        return {
            "line_id": f"L{index}",
            "sku": product.sku,
            "category": category,
            "quantity": quantities.draw(rng),
            "unit_price": price,
        }

    def reversal(self, story: _Story, at: int, sale_id: str, lines: list[dict[str, Any]]) -> None:
        """~5% of sales refund some units within days; ~2% are cancelled."""
        roll = self.rng.random()
        if roll < 0.06:
            refunded = self.rng.sample(lines, min(len(lines), self.rng.choice((1, 1, 2))))
            self.emit(
                self.after(at, 24, 10 * 24),
                "refund",
                "rf",
                story.customer_id,
                sale_id=sale_id,
                lines=[
                    {"line_id": line["line_id"], "quantity": self.rng.randint(1, line["quantity"])} for line in refunded
                ],
            )
        elif roll < 0.085:
            self.emit(self.after(at, 12, 14 * 24), "cancellation", "cx", story.customer_id, sale_id=sale_id)


# -- arrival order, duplicates and garbage ------------------------------------------------


def _arrival_keys(month: _Month, late_fraction: float) -> list[float]:
    """When each draft reaches the broker: on time, a little late, or after the month ended.

    Late-arriving reversals and callbacks are the cases the engine must get right (a refund
    before its sale, a touch after the credit), so about half of theirs go to the very end.
    """
    rng = month.rng
    keys = [float(draft.at) for draft in month.drafts]
    late = rng.sample(range(len(keys)), round(late_fraction * len(keys)))
    for index in late:
        kind = month.drafts[index].fields["event_type"]
        if kind in ("refund", "cancellation", "callback") and rng.random() < 0.5:
            keys[index] = month.length + rng.uniform(0, 2 * _DAY)
        else:
            keys[index] += rng.uniform(2 * _HOUR, 5 * _DAY)
    return keys


def _garbage(rng: random.Random, count: int, month: str) -> list[bytes]:
    """Invalid lines, cycling through every dead-letter reason a publisher can cause."""
    stamp = f"{month}-13T10:00:00"
    cust = '"customer_id":"cust-99999"'
    kinds = [
        b'{"event_id":"bad-1","event_type":"sale","occurred_at":"' + stamp.encode() + b'Z","custo',
        f'{{"event_id":"bad-2","event_type":"loyalty_points","occurred_at":"{stamp}Z",{cust}}}'.encode(),
        f'{{"event_id":"bad-3","event_type":"callback","occurred_at":"{stamp}",{cust},'
        f'"telemarketer_id":"tm-001","outcome":"declined"}}'.encode(),
        f'{{"event_id":"bad-4","event_type":"refund","occurred_at":"{stamp}Z",{cust},'
        f'"sale_id":"S-x","lines":[{{"line_id":"L1","quantity":0}}]}}'.encode(),
        f'{{"event_id":"bad-5","event_type":"callback","occurred_at":"{stamp}Z",{cust},'
        f'"telemarketer_id":"tm-001","outcome":"offer_made","offered_categories":[]}}'.encode(),
        b'["not", "an", "object"]',
        f'{{"event_type":"cancellation","occurred_at":"{stamp}Z",{cust},"sale_id":"S-x"}}'.encode(),
        b"ERROR 502 Bad Gateway",
    ]
    return [kinds[i % len(kinds)].replace(b'"bad-', f'"bad-{i // len(kinds)}-'.encode(), 1) for i in range(count)]


def generate(config: DemoConfig = DemoConfig()) -> list[bytes]:
    """A month of CRM events as JSON lines (no newline), in the order they arrive."""
    month = _Month(config)
    for index in range(1, config.customers + 1):
        month.customer(index)
    rng = month.rng
    lines = [msgspec.json.encode(draft.fields) for draft in month.drafts]
    keyed = list(zip(_arrival_keys(month, config.late_fraction), range(len(lines)), lines, strict=True))
    if keyed:  # redeliveries: the same bytes again, a little later
        for key, _, line in rng.sample(keyed, min(len(keyed), max(3, len(keyed) // 2000))):
            keyed.append((key + rng.uniform(60, 6 * _HOUR), len(keyed), line))
    for line in _garbage(rng, config.invalid_lines, config.month):
        keyed.append((rng.uniform(0, month.length), len(keyed), line))
    keyed.sort()
    return [line for _, _, line in keyed]


def write_jsonl(lines: Iterable[bytes], path: Path) -> int:
    """Write one line per event (for `crmbonus publish`/`replay`); returns the line count."""
    count = 0
    with Path(path).open("wb") as out:
        for line in lines:
            out.write(line + b"\n")
            count += 1
    return count


def customer_history(customer_index: int, events_per_customer: int, seed: int) -> list[bytes]:
    """Exactly N valid events of one customer, in time order: the benchmark's cost-vs-history input.

    A mix of callbacks (about half offers), multi-line sales and refunds of units still held,
    spread evenly over November 2026 so every refund is within the clawback window.
    """
    if events_per_customer < 0:
        raise ValueError(f"events_per_customer must be >= 0, got {events_per_customer}")
    config = DemoConfig(seed=seed, customers=0, telemarketers=4, field_reps=4)
    month = _Month(config)
    month.rng.seed(f"history:{seed}:{customer_index}")
    month.tag = f"h{customer_index:05d}"  # ids unique across customers of one benchmark
    story = _Story(f"cust-{customer_index:05d}", "tm-001", month.rng.choice(list(MATRIX)))
    step = max(1, month.length // max(1, events_per_customer + 1))
    month.length = events_per_customer * step + step  # a huge N may run past the month
    open_lines: _OpenLines = []
    for number in range(events_per_customer):
        _history_event(month, story, number * step + step // 2, open_lines)
    return [msgspec.json.encode(draft.fields) for draft in month.drafts]


_OpenLines = list[tuple[str, dict[str, Any]]]


def _history_event(month: _Month, story: _Story, at: int, open_lines: _OpenLines) -> None:
    """One event of `customer_history`: a refund when units are held, else a sale or a callback."""
    rng, cid = month.rng, story.customer_id
    roll = rng.random()
    if roll < 0.15 and open_lines:
        sale_id, line = open_lines.pop(rng.randrange(len(open_lines)))
        month.emit(
            at, "refund", "rf", cid, sale_id=sale_id, lines=[{"line_id": line["line_id"], "quantity": line["quantity"]}]
        )
    elif roll < 0.55:
        lines = month.sale_lines(story, anchor=rng.random() < 0.5)
        sale_id = month.next_id("S")
        seller, role = month.any_seller(story)
        month.emit(
            at, "sale", "s", cid, sale_id=sale_id, seller_id=seller, seller_role=role, currency=CURRENCY, lines=lines
        )
        story.sales += 1
        open_lines.extend((sale_id, line) for line in lines)
    else:
        outcome = _CALL_OUTCOMES.draw(rng) if rng.random() < 0.5 else "offer_made"
        extra = {"offered_categories": rng.sample(MATRIX[story.interest], 1)} if outcome == "offer_made" else {}
        story.offered.update(extra.get("offered_categories", ()))
        caller = month.telemarketers.pick()
        month.emit(at, "callback", "cb", cid, telemarketer_id=caller, outcome=outcome, **extra)
