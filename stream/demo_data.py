"""A realistic month of CRM activity, for `crmbonus demo` and the benchmark.

The demo must show every path of the pipeline at once, so the generated stream is not a
tidy replay of a fixture: it has per-customer stories (callbacks, lead hand-offs, multi-line
sales, refunds, cancellations, repeat purchases), mixed time offsets, events that arrive
late or after the month ended, exact redeliveries and a few garbage lines for the dead
letters (SPEC §3). Everything is drawn from one `random.Random(seed)`, so a seed names a
month exactly; `generate` does no I/O and is O(n log n) (one sort, for the arrival order).

Categories and add-ons mirror the default plan (SPEC §4, `deploy/plans/default.toml`); the
tests check that they agree, so the demo keeps producing cross-sells if the plan changes.

With `DemoConfig.programmes` (the default) the month also feeds SPEC §13's programmes:
customers upgrade to dearer versions of what they hold (upsells), rate the people who served
them (`feedback`) and have their calls and visits reviewed (`quality_review`), and the earlier
months of the year hold just enough converted hand-offs (SPEC §5.7) that telemarketers reach
the lead-sharing badges (bronze 5, silver 15 points by default). These draws come from a second
random stream and their ids from their own series (`-U`, `-Y`), so the version-1 events are the
same with and without programmes: `programmes=False` is the version-1 month, byte for byte.
"""

from __future__ import annotations

import bisect
import collections
import itertools
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
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

# -- SPEC §13 programmes (drawn from the second stream) -------------------------------------
#: Yearly converted appointments a telemarketer is headed for: silver, bronze or below bronze
#: with the default thresholds (5 / 15). The year's earlier months make up what the demo month
#: lacks; new hires aim at nothing (they have no earlier months).
_YEAR_TARGETS = _Weighted(((15, 22), (5, 12), (1, 3)), (40, 45, 15))
#: Ratings 1..5 by how well a person serves: most are liked, a few are not.
_RATINGS = _Weighted(
    (
        _Weighted(range(1, 6), (1, 2, 7, 30, 60)),
        _Weighted(range(1, 6), (3, 6, 16, 40, 35)),
        _Weighted(range(1, 6), (10, 15, 30, 30, 15)),
    ),
    (30, 50, 20),
)
_UPGRADE_SHARE = 0.2  # customers with a purchase who later buy a dearer version of it
_FEEDBACK_SHARE = 0.25  # sales the customer rates (with the sale_id)
_VISIT_FEEDBACK_SHARE = 0.2  # held appointments without a sale the customer rates anyway
_CALL_FEEDBACK_SHARE = 0.08  # customers called who rate their telemarketer
_REVIEW_SHARE = 0.12  # sales, and customers' calls, that a supervisor reviews
_SCORE_SHARE = 0.7  # reviews that carry a score
_UNCONVERTED_SHARE = 0.25  # extra earlier-year leads that end held-without-sale or no-show


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
    programmes: bool = True  # SPEC §13 data: upgrades, feedback, quality reviews, the year's hand-offs

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
        self.new_hires = frozenset(self.ids[count - count // 12 :])
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


@dataclass(frozen=True)
class _Sold:
    """A sale of the month as the programmes need it: who sold, when, and whether it survived."""

    sale_id: str
    at: int
    seller: str
    role: str
    reversed: bool  # cancelled, or every unit refunded: it converts nothing (SPEC §5.7)


@dataclass
class _Story:
    """What one customer has done so far this month, so later steps follow from earlier ones."""

    customer_id: str
    telemarketer: str
    interest: str
    offered: set[str] = field(default_factory=set)
    sales: int = 0
    last: int = 0  # instant of the latest step, so a repeat purchase comes after the first
    called: int | None = None  # instant after the last callback, if the customer was called
    sold: list[_Sold] = field(default_factory=list)
    held: list[tuple[str, int]] = field(default_factory=list)  # (field rep, held instant)
    holdings: dict[str, Decimal] = field(default_factory=dict)  # category -> dearest unit_price bought


def _price(line: dict[str, Any]) -> Decimal:
    """A line's unit_price, whichever way it was written (decimal string or JSON number)."""
    price = line["unit_price"]
    return Decimal(bytes(price).decode() if isinstance(price, msgspec.Raw) else price)


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
        # SPEC §13: a second stream, so the version-1 events do not move when programmes are on
        self.extra = random.Random(f"programmes:{config.seed}")
        self.extra_clock = _Clock(start, self.extra)
        self.year_start = int((start.replace(month=1) - start).total_seconds())  # <= 0
        self.converted: collections.Counter[str] = collections.Counter()  # the month's, per telemarketer
        self.traits = {
            person: (_RATINGS.draw(self.extra), self.extra.uniform(0.7, 0.99))
            for person in (*self.telemarketers.ids, *self.field_reps.ids)
        }

    # -- ids and low-level helpers ------------------------------------------------------

    def next_id(self, prefix: str, series: str = "") -> str:
        """`prefix-YYYYMMsSEED-000042`: stable, readable, unique within the month and seed.

        The programmes number their own series (`S-...-U000001`), so they shift no other id.
        """
        number = self.counters.get(prefix + series, 0) + 1
        self.counters[prefix + series] = number
        return f"{prefix}-{self.tag}-{series}{number:06d}"

    def after(self, at: int, low_hours: float, high_hours: float, rng: random.Random | None = None) -> int:
        """An instant some hours after `at`, in shop hours."""
        rng = rng or self.rng
        return _business_time(rng, at + int(rng.uniform(low_hours, high_hours) * _HOUR))

    def emit(self, at: int, event_type: str, prefix: str, customer_id: str, series: str = "", **fields: Any) -> bool:
        """Record an event; refuse (False) one that would occur after the month ends.

        A `series` event (the programmes') takes its id from that series and its spelling of
        time from the second stream.
        """
        if at >= self.length:
            return False
        head = {
            "event_id": self.next_id(prefix, series),
            "event_type": event_type,
            "occurred_at": (self.extra_clock if series else self.clock).render(at),
            "customer_id": customer_id,
        }
        self.drafts.append(_Draft(at, head | fields))
        return True

    # -- one customer's month -------------------------------------------------------------

    def customer(self, index: int) -> None:
        """One customer's month: the version-1 story, then what the programmes add to it."""
        story = _Story(
            customer_id=f"cust-{index:05d}",
            telemarketer=self.telemarketers.pick(),
            interest=_ANCHORS.draw(self.rng),
        )
        self.story(story)
        if self.config.programmes:
            self.upgrade(story)
            self.kpi_events(story)
        for field_rep, held_at in story.held:  # SPEC §5.7, as far as the month goes
            if any(
                sold.seller == field_rep and 0 <= sold.at - held_at <= 14 * _DAY and not sold.reversed
                for sold in story.sold
            ):
                self.converted[story.telemarketer] += 1

    def story(self, story: _Story) -> None:
        """A small story: maybe callbacks, maybe an appointment, maybe sales and reversals."""
        rng = self.rng
        at = _business_time(rng, rng.randrange(int(self.length * 0.6)))
        if rng.random() < 0.10:  # a walk-in: no call centre involved
            self.sale(story, at, self.field_reps.pick(), "field_rep")
            return
        at = self.callbacks(story, at)
        story.called = at
        held = self.lead(story, at) if rng.random() < (0.65 if story.offered else 0.3) else None
        if held is not None:
            field_rep, held_at = held
            story.held.append(held)
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
        self.bought(story, lines)
        reversed_ = self.reversal(story, at, sale_id, lines)
        story.sold.append(_Sold(sale_id, at, seller, role, reversed_))

    @staticmethod
    def bought(story: _Story, lines: list[dict[str, Any]]) -> None:
        """Remember the dearest unit_price bought per category: an upgrade must beat it."""
        for line in lines:
            price = _price(line)
            if price > story.holdings.get(line["category"], Decimal(-1)):
                story.holdings[line["category"]] = price

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

    def line(
        self, index: int, category: str, rng: random.Random | None = None, product: _Product | None = None
    ) -> dict[str, Any]:
        """One sale line; cheap add-ons come in twos and threes more often."""
        rng = rng or self.rng
        product = product or rng.choice(self.catalog[category])
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

    def reversal(self, story: _Story, at: int, sale_id: str, lines: list[dict[str, Any]]) -> bool:
        """~5% of sales refund some units within days; ~2% are cancelled. True: nothing is left."""
        roll = self.rng.random()
        if roll < 0.06:
            refunded = self.rng.sample(lines, min(len(lines), self.rng.choice((1, 1, 2))))
            when = self.after(at, 24, 10 * 24)
            units = [
                {"line_id": line["line_id"], "quantity": self.rng.randint(1, line["quantity"])} for line in refunded
            ]
            emitted = self.emit(when, "refund", "rf", story.customer_id, sale_id=sale_id, lines=units)
            everything = len(refunded) == len(lines) and all(
                unit["quantity"] == line["quantity"] for unit, line in zip(units, refunded, strict=True)
            )
            return emitted and everything
        if roll < 0.085:
            return self.emit(self.after(at, 12, 14 * 24), "cancellation", "cx", story.customer_id, sale_id=sale_id)
        return False

    # -- SPEC §13 programmes: upgrades, feedback, quality reviews, the year's hand-offs ---------

    def upgrade(self, story: _Story) -> None:
        """A dearer version of a product the customer holds, days later: an upsell candidate.

        Often the customer's telemarketer offered it first (a touch for the upsell, SPEC §13).
        The uplift is an upsell only while the earlier line still has units; a refund or
        cancellation of it turns the upgrade into whatever the rules make of it.
        """
        x = self.extra
        if not story.sold or x.random() >= _UPGRADE_SHARE:
            return
        dearer = {
            category: [product for product in self.catalog[category] if Decimal(product.price) > held]
            for category, held in sorted(story.holdings.items())
        }
        candidates = [category for category, products in dearer.items() if products]
        if not candidates:
            return
        category = x.choice(candidates)
        at = self.after(story.last, 3 * 24, 18 * 24, x)
        if x.random() < 0.5:
            self.emit(
                max(0, self.after(at, -72, -14, x)),
                "callback",
                "cb",
                story.customer_id,
                series="U",
                telemarketer_id=story.telemarketer,
                outcome="offer_made",
                offered_categories=[category],
            )
        last = story.sold[-1]
        roll = x.random()
        if roll < 0.5:
            seller, role = last.seller, last.role
        elif roll < 0.75:
            seller, role = story.telemarketer, "telemarketer"
        else:
            seller, role = str(self.field_reps.weighted.draw(x)), "field_rep"
        lines = [self.line(1, category, x, x.choice(dearer[category]))]
        sale_id = self.next_id("S", "U")
        if self.emit(
            at,
            "sale",
            "s",
            story.customer_id,
            series="U",
            sale_id=sale_id,
            seller_id=seller,
            seller_role=role,
            currency=CURRENCY,
            lines=lines,
        ):
            story.sales += 1
            story.last = at
            self.bought(story, lines)
            story.sold.append(_Sold(sale_id, at, seller, role, reversed=False))

    def kpi_events(self, story: _Story) -> None:
        """The month's `feedback` and `quality_review` events about the people who served the customer."""
        x = self.extra
        for sold in story.sold:
            if x.random() < _FEEDBACK_SHARE:
                self.feedback(story, self.after(sold.at, 2, 96, x), sold.seller, sold.role, sold.sale_id)
            if x.random() < _REVIEW_SHARE:
                self.review(story, self.after(sold.at, 1, 120, x), sold.seller, sold.role)
        for field_rep, held_at in story.held:
            if not any(sold.seller == field_rep for sold in story.sold) and x.random() < _VISIT_FEEDBACK_SHARE:
                self.feedback(story, self.after(held_at, 2, 72, x), field_rep, "field_rep")
        if story.called is not None:
            if x.random() < _CALL_FEEDBACK_SHARE:
                self.feedback(story, self.after(story.called, 1, 48, x), story.telemarketer, "telemarketer")
            if x.random() < _REVIEW_SHARE:
                self.review(story, self.after(story.called, 1, 72, x), story.telemarketer, "telemarketer")

    def feedback(self, story: _Story, at: int, person: str, role: str, sale_id: str | None = None) -> None:
        """A customer's rating 1..5 of a person, drawn from how well that person serves."""
        ratings, _ = self.traits[person]
        extra = {} if sale_id is None else {"sale_id": sale_id}
        rating = ratings.draw(self.extra)
        self.emit(
            at,
            "feedback",
            "fb",
            story.customer_id,
            series="U",
            person_id=person,
            person_role=role,
            rating=rating,
            **extra,
        )

    def review(self, story: _Story, at: int, person: str, role: str) -> None:
        """A supervisor's check that a call or visit followed the instructions, mostly with a score."""
        x = self.extra
        _, compliance = self.traits[person]
        passed = x.random() < compliance
        extra = {"score": x.randint(70, 100) if passed else x.randint(20, 69)} if x.random() < _SCORE_SHARE else {}
        self.emit(
            at,
            "quality_review",
            "qr",
            story.customer_id,
            series="U",
            person_id=person,
            person_role=role,
            passed=passed,
            **extra,
        )

    def year_of_handoffs(self) -> None:
        """Converted hand-offs in the year's earlier months, where the demo month falls short.

        Each telemarketer heads for a yearly count of converted appointments (SPEC §5.7, §13
        lead points); the earlier months hold what the demo month does not give, one new
        customer per lead, booked then held, the field rep selling 0.5-72 hours later, plus a
        share of leads that do not convert. At most `customers` leads, shared round-robin, so
        the size parameter still bounds the output. A January month has no earlier months.
        """
        x = self.extra
        earliest, latest = self.year_start + 7 * _DAY, -5 * _DAY  # every step stays in the year, before the month
        shortfall: dict[str, int] = {}
        for telemarketer in self.telemarketers.ids:
            low, high = (0, 0) if telemarketer in self.telemarketers.new_hires else _YEAR_TARGETS.draw(x)
            shortfall[telemarketer] = max(0, x.randint(low, high) - self.converted[telemarketer])
        if latest <= earliest:
            return
        leads: list[tuple[str, bool]] = []
        budget = self.config.customers
        while budget > 0 and any(shortfall.values()):
            for telemarketer, missing in shortfall.items():
                if missing and budget > 0:
                    leads.append((telemarketer, True))
                    shortfall[telemarketer] -= 1
                    budget -= 1
                    if budget > 0 and x.random() < _UNCONVERTED_SHARE:
                        leads.append((telemarketer, False))
                        budget -= 1
        for index, (telemarketer, converts) in enumerate(leads, 1):
            self.past_lead(
                f"cust-y{index:05d}", telemarketer, converts, _business_time(x, x.randrange(earliest, latest))
            )

    def past_lead(self, customer_id: str, telemarketer: str, converts: bool, ended: int) -> None:
        """One earlier-year lead: booked 1-6 days ahead, held (or missed), maybe sold within 3 days."""
        x = self.extra
        appointment = ended - x.randrange(_HOUR, 2 * _HOUR)
        booked = _business_time(x, appointment - int(x.uniform(24, 6 * 24) * _HOUR))
        lead = {
            "lead_id": self.next_id("L", "Y"),
            "telemarketer_id": telemarketer,
            "field_rep_id": str(self.field_reps.weighted.draw(x)),
        }
        outcome = "held" if converts or x.random() < 0.6 else "no_show"
        for at, status in ((booked, "booked"), (ended, outcome)):
            self.emit(
                at,
                "lead_handoff",
                "lh",
                customer_id,
                series="Y",
                **lead,
                status=status,
                appointment_at=self.extra_clock.render(appointment),
            )
        if not converts:
            return
        anchor = _ANCHORS.draw(x)
        categories = [anchor, *x.sample(MATRIX[anchor], x.choice((0, 0, 1)))]
        self.emit(
            self.after(ended, 0.5, 72, x),
            "sale",
            "s",
            customer_id,
            series="Y",
            sale_id=self.next_id("S", "Y"),
            seller_id=lead["field_rep_id"],
            seller_role="field_rep",
            currency=CURRENCY,
            lines=[self.line(index, category, x) for index, category in enumerate(categories, 1)],
        )


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
        if kind in ("refund", "cancellation", "callback", "feedback", "quality_review") and rng.random() < 0.5:
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
    if config.programmes:
        month.year_of_handoffs()
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
        extra: dict[str, Any] = (
            {"offered_categories": rng.sample(MATRIX[story.interest], 1)} if outcome == "offer_made" else {}
        )
        story.offered.update(extra.get("offered_categories", ()))
        caller = month.telemarketers.pick()
        month.emit(at, "callback", "cb", cid, telemarketer_id=caller, outcome=outcome, **extra)
