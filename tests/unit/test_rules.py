"""SPEC §5 and §6, rule by rule: parametrised tables with exact amounts."""

from __future__ import annotations

import time
import zoneinfo
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from schemas.events import Event
from stream.bonus import (
    RunningRow,
    Tally,
    appointment_bonus,
    compute_tables,
    cross_sell_bonus,
    role_of,
    running_row,
    tally,
)
from stream.money import round_money
from stream.periods import period_of
from stream.plan import Plan, Tier
from stream.rules import Credit, credit_customer, split_equally
from tests.unit.builders import (
    DEFAULT,
    T0,
    at,
    callback,
    cancellation,
    handoff,
    line,
    num,
    parts,
    plan,
    refund,
    sale,
)

BERLIN = plan(timezone="Europe/Berlin", zone=zoneinfo.ZoneInfo("Europe/Berlin"))
D = Decimal


def cross_sells(*events: Event, with_plan: Plan = DEFAULT) -> list[tuple[str, ...]]:
    return parts(credit_customer(list(events), with_plan))


def laptop_sale(when: datetime = T0, seller: str = "fr-1", role: str = "field_rep") -> Event:
    """Laptops 1000 (primary) + accessories 2 x 50 = 100, a cross-sell of laptops."""
    return sale(
        "S1",
        when,
        line("L1", "laptops", "1000.00"),
        line("L2", "accessories", "50.00", 2),
        seller=seller,
        role=role,
    )


FR_ALL = [("L2", "fr-1", "field_rep", "100", "1", "-")]
SPLIT_70_30 = [
    ("L2", "fr-1", "field_rep", "70", "0.7", "-"),
    ("L2", "tm-1", "telemarketer", "30", "0.3", "cb"),
]

# -- SPEC §5.5 touches: the attribution window ---------------------------------------------


@pytest.mark.parametrize(
    ("touch_at", "expected"),
    [
        pytest.param(at(0), SPLIT_70_30, id="same-instant-as-sale"),
        pytest.param(at(-30), SPLIT_70_30, id="exactly-30-days-before"),
        pytest.param(at(-30, -1), FR_ALL, id="30-days-and-1s-before"),
        pytest.param(at(0, 1), FR_ALL, id="1s-after-the-sale"),
        pytest.param(at(-3), SPLIT_70_30, id="3-days-before"),
    ],
)
def test_attribution_window(touch_at: datetime, expected: list[tuple[str, ...]]) -> None:
    touch = callback("tm-1", touch_at, "accessories", event_id="cb")
    assert cross_sells(touch, laptop_sale()) == expected


def test_window_compares_instants_across_offsets() -> None:
    berlin_time = (T0 - timedelta(days=30)).astimezone(timezone(timedelta(hours=2)))
    touch = callback("tm-1", berlin_time, "accessories", event_id="cb")
    assert cross_sells(touch, laptop_sale()) == SPLIT_70_30


@pytest.mark.parametrize(
    ("outcome", "categories", "expected"),
    [
        pytest.param("offer_made", ("accessories", "tv"), SPLIT_70_30, id="offered"),
        pytest.param("offer_made", ("software",), FR_ALL, id="other-category"),
        pytest.param("declined", ("accessories",), FR_ALL, id="declined-is-no-touch"),
        pytest.param("no_answer", (), FR_ALL, id="no-answer-is-no-touch"),
    ],
)
def test_callback_touches_only_offered_categories(
    outcome: str, categories: tuple[str, ...], expected: list[tuple[str, ...]]
) -> None:
    touch = callback("tm-1", at(-1), *categories, outcome=outcome, event_id="cb")
    assert cross_sells(touch, laptop_sale()) == expected


@pytest.mark.parametrize(
    ("seller", "expected"),
    [
        pytest.param("fr-1", [("L2", "fr-1", "field_rep", "100", "1", "-")], id="other-rep"),
        pytest.param(
            "fr-2",
            [("L2", "fr-2", "field_rep", "70", "0.7", "-"), ("L2", "tm-1", "telemarketer", "30", "0.3", "bk")],
            id="booked-rep",
        ),
    ],
)
def test_booked_touch_counts_only_towards_its_field_rep(seller: str, expected: list[tuple[str, ...]]) -> None:
    booked = handoff("lead-1", "booked", at(-2), "tm-1", "fr-2", event_id="bk")
    assert cross_sells(booked, laptop_sale(seller=seller)) == expected


def test_booked_touch_covers_every_category_even_if_the_lead_later_fails() -> None:
    booked = handoff("lead-1", "booked", at(-2), "tm-1", "fr-1", event_id="bk")
    missed = handoff("lead-1", "no_show", at(-1), "tm-1", "fr-1", event_id="ns")
    s = sale("S1", T0, line("L1", "tv", "900"), line("L2", "streaming", "10"))
    assert cross_sells(booked, missed, s) == [
        ("L2", "fr-1", "field_rep", "7", "0.7", "-"),
        ("L2", "tm-1", "telemarketer", "3", "0.3", "bk"),
    ]


# -- SPEC §5.6 attribution ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "touches", "expected_tm"),
    [
        pytest.param(
            "last_touch", [("tm-a", 0, "cb-b"), ("tm-b", 0, "cb-a")], ("tm-a", "cb-b"), id="last-tie-by-event-id"
        ),
        pytest.param(
            "first_touch", [("tm-a", 0, "cb-b"), ("tm-b", 0, "cb-a")], ("tm-b", "cb-a"), id="first-tie-by-event-id"
        ),
        pytest.param("last_touch", [("tm-b", -5, "cb-b"), ("tm-a", -1, "cb-a")], ("tm-a", "cb-a"), id="last-by-time"),
        pytest.param("first_touch", [("tm-b", -5, "cb-b"), ("tm-a", -1, "cb-a")], ("tm-b", "cb-b"), id="first-by-time"),
        pytest.param(
            "last_touch", [("tm-a", -5, "cb-z"), ("tm-b", -40, "cb-y")], ("tm-a", "cb-z"), id="outside-window-ignored"
        ),
    ],
)
def test_single_touch_models(model: str, touches: list[tuple[str, int, str]], expected_tm: tuple[str, str]) -> None:
    events = [callback(tm, at(-1, offset), "accessories", event_id=eid) for tm, offset, eid in touches]
    credits = cross_sells(*events, laptop_sale(), with_plan=plan(attribution_model=model))
    assert credits == [
        ("L2", "fr-1", "field_rep", "70", "0.7", "-"),
        ("L2", expected_tm[0], "telemarketer", "30", "0.3", expected_tm[1]),
    ]


def test_linear_three_telemarketers_inexact_split_sums_exactly() -> None:
    linear = plan(attribution_model="linear", telemarketer_share=D("0.25"))
    touches = [
        callback("tm-c", at(-3), "accessories", event_id="c1"),
        callback("tm-a", at(-2), "accessories", event_id="a1"),
        callback("tm-b", at(-1), "accessories", event_id="b1"),
        callback("tm-a", at(-1), "accessories", event_id="a2"),  # tm-a's latest touch
    ]
    credits = credit_customer([*touches, laptop_sale()], linear)
    assert parts(credits) == [
        ("L2", "fr-1", "field_rep", "75", "0.75", "-"),
        ("L2", "tm-a", "telemarketer", "8.3333333334", "0.0833333334", "a2"),
        ("L2", "tm-b", "telemarketer", "8.3333333333", "0.0833333333", "b1"),
        ("L2", "tm-c", "telemarketer", "8.3333333333", "0.0833333333", "c1"),
    ]
    assert sum(c.amount for c in credits) == D("100")
    assert sum(c.share for c in credits) == 1


def test_linear_exact_split_is_not_quantized() -> None:
    linear = plan(attribution_model="linear")
    touches = [callback(tm, at(-1), "accessories", event_id=f"cb-{tm}") for tm in ("x", "y")]
    s = sale("S1", T0, line("L1", "laptops", "1000"), line("L2", "accessories", "0.01"))
    assert cross_sells(*touches, s, with_plan=linear) == [
        ("L2", "fr-1", "field_rep", "0.007", "0.7", "-"),
        ("L2", "x", "telemarketer", "0.0015", "0.15", "cb-x"),
        ("L2", "y", "telemarketer", "0.0015", "0.15", "cb-y"),
    ]


def test_linear_counts_a_telemarketer_once_across_callback_and_booking() -> None:
    linear = plan(attribution_model="linear")
    events: list[Event] = [
        callback("tm-1", at(-3), "accessories", event_id="cb"),
        handoff("lead-1", "booked", at(-2), "tm-1", "fr-1", event_id="bk"),
        laptop_sale(),
    ]
    assert cross_sells(*events, with_plan=linear) == [
        ("L2", "fr-1", "field_rep", "70", "0.7", "-"),
        ("L2", "tm-1", "telemarketer", "30", "0.3", "bk"),
    ]


@pytest.mark.parametrize(
    ("total", "count", "expected"),
    [
        (D("30"), 3, ["10", "10", "10"]),
        (D("25"), 3, ["8.3333333334", "8.3333333333", "8.3333333333"]),
        (D("0.01"), 3, ["0.0033333334", "0.0033333333", "0.0033333333"]),
        (D("1E-11"), 2, ["5E-12", "5E-12"]),
        (D("0"), 4, ["0", "0", "0", "0"]),
        (D("100"), 1, ["100"]),
        (
            D("2"),
            7,
            [
                "0.2857142858",
                "0.2857142857",
                "0.2857142857",
                "0.2857142857",
                "0.2857142857",
                "0.2857142857",
                "0.2857142857",
            ],
        ),
    ],
)
def test_split_equally(total: Decimal, count: int, expected: list[str]) -> None:
    split = split_equally(total, count)
    assert split == [D(x) for x in expected]
    assert sum(split) == total


def test_telemarketer_seller_gets_everything_despite_touches() -> None:
    touch = callback("tm-1", at(-1), "accessories", event_id="cb")
    assert cross_sells(touch, laptop_sale(seller="tm-9", role="telemarketer")) == [
        ("L2", "tm-9", "telemarketer", "100", "1", "-")
    ]


@pytest.mark.parametrize(
    ("share", "expected"),
    [
        pytest.param(D("0"), FR_ALL, id="share-0-field-rep-alone"),
        pytest.param(D("1"), [("L2", "tm-1", "telemarketer", "100", "1", "cb")], id="share-1-no-field-rep-row"),
        pytest.param(
            D("0.333"),
            [("L2", "fr-1", "field_rep", "66.7", "0.667", "-"), ("L2", "tm-1", "telemarketer", "33.3", "0.333", "cb")],
            id="odd-share",
        ),
    ],
)
def test_zero_parts_are_not_credited(share: Decimal, expected: list[tuple[str, ...]]) -> None:
    touch = callback("tm-1", at(-1), "accessories", event_id="cb")
    assert cross_sells(touch, laptop_sale(), with_plan=plan(telemarketer_share=share)) == expected


def test_free_cross_sell_line_is_credited_with_zero() -> None:
    s = sale("S1", T0, line("L1", "laptops", "1000"), line("L2", "software", "0"))
    assert cross_sells(s) == [("L2", "fr-1", "field_rep", "0", "1", "-")]


# -- SPEC §5.3 primary line and §5.4 cross-sell ---------------------------------------------


@pytest.mark.parametrize(
    ("lines", "expected_cross_sells"),
    [
        pytest.param([("A", "plans", "500"), ("B", "phones", "500")], ["B"], id="tie-A-plans-primary"),
        pytest.param([("A", "phones", "500"), ("B", "plans", "500")], ["B"], id="tie-A-phones-primary"),
        pytest.param([("B", "phones", "500"), ("A", "plans", "499.99")], ["A"], id="largest-wins"),
        pytest.param([("L1", "laptops", "1000"), ("L2", "tv", "50")], [], id="not-in-matrix"),
        pytest.param([("L1", "laptops", "1000"), ("L2", "laptops", "10")], [], id="same-category"),
        pytest.param([("L1", "accessories", "9")], [], id="lone-line-no-anchor"),
        pytest.param(
            [("L1", "tv", "900"), ("L2", "accessories", "10"), ("L3", "accessories", "5")],
            ["L2", "L3"],
            id="two-lines-one-category",
        ),
        pytest.param(
            [("L1", "laptops", "900"), ("L2", "insurance", "50"), ("L3", "warranty", "20")],
            ["L2", "L3"],
            id="anchor-is-primary-only",
        ),
    ],
)
def test_primary_line_and_cross_sell(lines: list[tuple[str, str, str]], expected_cross_sells: list[str]) -> None:
    s = sale("S1", T0, *(line(i, c, p) for i, c, p in lines))
    assert [p[0] for p in cross_sells(s)] == expected_cross_sells


@pytest.mark.parametrize(
    ("refunded_phones", "expected"),
    [
        pytest.param(0, [("Q", "fr-1", "field_rep", "500", "1", "-")], id="phones-primary"),
        pytest.param(1, [("P", "fr-1", "field_rep", "400", "1", "-")], id="after-refund-plans-primary"),
    ],
)
def test_primary_line_uses_net_amount(refunded_phones: int, expected: list[tuple[str, ...]]) -> None:
    s = sale("S1", T0, line("P", "phones", "400", 2), line("Q", "plans", "500"))
    events: list[Event] = [s]
    if refunded_phones:
        events.append(refund("S1", at(1), {"P": refunded_phones}))
    assert cross_sells(*events) == expected


@pytest.mark.parametrize(
    ("second_lines", "expected"),
    [
        pytest.param([("M1", "accessories", "30")], [], id="category-already-held"),
        pytest.param([("M1", "software", "80")], ["M1"], id="primary-is-cross-sell-via-holdings"),
        pytest.param(
            [("M1", "phones", "600"), ("M2", "accessories", "20"), ("M3", "plans", "25")],
            ["M3"],
            id="held-category-is-not-but-new-one-is",
        ),
        pytest.param(
            [("M1", "phones", "600"), ("M2", "insurance", "20")], ["M2"], id="anchor-via-holdings-and-primary"
        ),
    ],
)
def test_holdings(second_lines: list[tuple[str, str, str]], expected: list[str]) -> None:
    first = sale("S1", at(-10), line("L1", "laptops", "1000"), line("L2", "accessories", "40"))
    second = sale("S2", T0, *(line(i, c, p) for i, c, p in second_lines))
    assert [p[0] for p in cross_sells(first, second) if p[0].startswith("M")] == expected


def test_holdings_ignore_fully_reversed_lines() -> None:
    first = sale("S1", at(-10), line("L1", "laptops", "1000"))
    second = sale("S2", T0, line("M1", "software", "80"))
    assert [p[0] for p in cross_sells(first, second)] == ["M1"]
    assert cross_sells(first, second, cancellation("S1", at(-9))) == []


@pytest.mark.parametrize(
    ("laptop_sale_id", "software_sale_id", "expected"),
    [
        pytest.param("S1", "S2", ["M1"], id="laptops-sorted-first"),
        pytest.param("S2", "S1", [], id="software-sorted-first"),
    ],
)
def test_sales_at_one_instant_are_ordered_by_sale_id(
    laptop_sale_id: str, software_sale_id: str, expected: list[str]
) -> None:
    laptops = sale(laptop_sale_id, T0, line("L1", "laptops", "1000"))
    software = sale(software_sale_id, T0, line("M1", "software", "80"))
    assert [p[0] for p in cross_sells(laptops, software)] == expected


# -- SPEC §5.1 net quantity -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("reversals", "expected_l2"),
    [
        pytest.param([("cancel", 90, 0, {})], None, id="cancel-exactly-90-days"),
        pytest.param([("cancel", 90, 1, {})], "100", id="cancel-90-days-plus-1s-ignored"),
        pytest.param([("refund", 90, 0, {"L2": 1})], "50", id="refund-exactly-90-days"),
        pytest.param([("refund", 90, 1, {"L2": 1})], "100", id="refund-late-ignored"),
        pytest.param([("refund", -1, 0, {"L2": 1})], "50", id="refund-before-its-sale"),
        pytest.param([("refund", 1, 0, {"L2": 5})], None, id="refund-more-than-the-line"),
        pytest.param([("refund", 1, 0, {"L2": 1}), ("refund", 2, 0, {"L2": 1})], None, id="refunds-add-up"),
        pytest.param([("refund", 1, 0, {"L9": 1})], "100", id="unknown-line-reverses-nothing"),
        pytest.param([("refund", 1, 0, {"L1": 1})], None, id="anchor-refunded"),
        pytest.param([("cancel", 1, 0, {}), ("refund", 2, 0, {"L2": 1})], None, id="cancel-and-refund"),
    ],
)
def test_net_quantity(reversals: list[tuple[str, int, int, dict[str, int]]], expected_l2: str | None) -> None:
    events: list[Event] = [laptop_sale()]
    for kind, days, seconds, units in reversals:
        when = at(days, seconds)
        events.append(cancellation("S1", when) if kind == "cancel" else refund("S1", when, units))
    expected = [] if expected_l2 is None else [("L2", "fr-1", "field_rep", expected_l2, "1", "-")]
    assert cross_sells(*events) == expected


def test_reversal_of_another_customers_sale_reverses_nothing() -> None:
    mine = laptop_sale()
    theirs = cancellation("S1", at(1), customer="c2")
    [row] = compute_tables([mine, theirs], DEFAULT)
    assert (row.person_id, row.cross_sell_count, row.cross_sell_amount) == ("fr-1", 1, D("100.00"))


# -- SPEC §5.7 appointments -----------------------------------------------------------------


def appointment(*lifecycle: tuple[str, float, str], sales: tuple[Event, ...] = ()) -> list[tuple[str, ...]]:
    events: list[Event] = [
        handoff("lead-1", status, at(days), "tm-1", "fr-1", event_id=eid) for status, days, eid in lifecycle
    ]
    credits = credit_customer([*events, *sales], DEFAULT)
    return parts(credits, "appointment_held") + parts(credits, "appointment_converted")


HELD = [("lead-1", "tm-1", "telemarketer", "25", "1", "held")]


@pytest.mark.parametrize(
    ("lifecycle", "expected"),
    [
        pytest.param([("booked", -2, "bk"), ("held", 0, "held")], HELD, id="held"),
        pytest.param([("booked", -2, "bk"), ("no_show", 0, "ns")], [], id="no-show"),
        pytest.param([("booked", -2, "bk"), ("cancelled", 0, "cx")], [], id="cancelled"),
        pytest.param([("held", 0, "held"), ("no_show", 1, "ns")], [], id="held-then-no-show"),
        pytest.param([("held", 0, "held"), ("no_show", 0, "a")], HELD, id="tie-greater-event-id-held"),
        pytest.param([("held", 0, "a"), ("no_show", 0, "ns")], [], id="tie-greater-event-id-no-show"),
        pytest.param([("held", 0, "held")], HELD, id="held-without-booking"),
    ],
)
def test_lead_status(lifecycle: list[tuple[str, float, str]], expected: list[tuple[str, ...]]) -> None:
    assert appointment(*lifecycle) == expected


CONVERTED = [("lead-1", "tm-1", "telemarketer", "10", "1", "held")]


@pytest.mark.parametrize(
    ("sales", "converted"),
    [
        pytest.param([sale("S9", at(0, 3600), line("X", "tv", "1"))], True, id="one-hour-after"),
        pytest.param([sale("S9", at(0), line("X", "tv", "1"))], True, id="same-instant"),
        pytest.param([sale("S9", at(14), line("X", "tv", "1"))], True, id="exactly-14-days"),
        pytest.param([sale("S9", at(14, 1), line("X", "tv", "1"))], False, id="14-days-plus-1s"),
        pytest.param([sale("S9", at(0, -1), line("X", "tv", "1"))], False, id="1s-before-held"),
        pytest.param([sale("S9", at(1), line("X", "tv", "1"), seller="fr-2")], False, id="other-seller"),
        pytest.param(
            [sale("S9", at(1), line("X", "tv", "1"), seller="fr-1", role="telemarketer")],
            True,
            id="seller-id-matters-not-role",
        ),
        pytest.param(
            [sale("S9", at(1), line("X", "tv", "1")), cancellation("S9", at(2))], False, id="net-quantity-zero"
        ),
        pytest.param(
            [sale("S9", at(1), line("X", "tv", "1"), line("Y", "tv", "2")), refund("S9", at(2), {"X": 1})],
            True,
            id="some-net-quantity-left",
        ),
    ],
)
def test_conversion(sales: list[Event], converted: bool) -> None:
    lifecycle = [("booked", -2, "bk"), ("held", 0, "held")]
    assert appointment(*lifecycle, sales=tuple(sales)) == HELD + (CONVERTED if converted else [])


def test_conversion_credit_fields_and_earliest_sale_wins() -> None:
    held = handoff("lead-1", "held", at(0), "tm-1", "fr-1", event_id="held")
    later = sale("S1", at(2), line("X", "tv", "1"), event_id="e-later")
    earlier_b = sale("S3", at(1), line("X", "tv", "1"), event_id="e-b")
    earlier_a = sale("S2", at(1), line("X", "tv", "1"), event_id="e-a")
    credits = credit_customer([later, earlier_b, earlier_a, held, held], DEFAULT)
    assert credits == [  # lone tv lines: no cross-sells; S2 beats S3 at one instant by sale_id
        Credit(
            "2026-11",
            "tm-1",
            "telemarketer",
            "appointment_converted",
            "c1",
            "S2",
            None,
            "lead-1",
            D("10.00"),
            D(1),
            "held",
            "e-a",
        ),
        Credit(
            "2026-11",
            "tm-1",
            "telemarketer",
            "appointment_held",
            "c1",
            None,
            None,
            "lead-1",
            D("25.00"),
            D(1),
            "held",
            "held",
        ),
    ]


def test_appointment_credits_belong_to_the_held_period_in_the_plan_zone() -> None:
    held = handoff("lead-1", "held", datetime(2026, 11, 30, 23, 30, tzinfo=UTC))
    bought = sale("S1", datetime(2026, 12, 5, tzinfo=UTC), line("X", "tv", "1"))
    utc = {(c.kind, c.period) for c in credit_customer([held, bought], DEFAULT)}
    berlin = {(c.kind, c.period) for c in credit_customer([held, bought], BERLIN)}
    assert utc == {("appointment_held", "2026-11"), ("appointment_converted", "2026-11")}
    assert berlin == {("appointment_held", "2026-12"), ("appointment_converted", "2026-12")}


# -- SPEC §6 periods and bonus arithmetic ---------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "with_plan", "expected"),
    [
        pytest.param("2026-11-30T23:30:00+00:00", BERLIN, "2026-12", id="berlin-already-december"),
        pytest.param("2026-11-30T22:59:59+00:00", BERLIN, "2026-11", id="berlin-last-second"),
        pytest.param("2026-11-30T23:00:00+00:00", BERLIN, "2026-12", id="berlin-first-instant"),
        pytest.param("2026-06-30T22:30:00+00:00", BERLIN, "2026-07", id="berlin-summer-time"),
        pytest.param("2026-11-30T23:30:00+00:00", DEFAULT, "2026-11", id="utc"),
        pytest.param("2026-12-01T00:30:00+02:00", DEFAULT, "2026-11", id="offset-input-utc-plan"),
        pytest.param("2026-12-31T23:59:59+00:00", DEFAULT, "2026-12", id="year-end"),
    ],
)
def test_period_of(moment: str, with_plan: Plan, expected: str) -> None:
    assert period_of(datetime.fromisoformat(moment), with_plan) == expected


def test_period_of_refuses_naive_time() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        period_of(datetime(2026, 11, 1), DEFAULT)


def test_sale_credits_belong_to_the_sale_period_in_the_plan_zone() -> None:
    late_night = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)
    credits = credit_customer([laptop_sale(late_night)], BERLIN)
    assert [c.period for c in credits] == ["2026-12"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.005", "0.01"),
        ("0.015", "0.02"),
        ("0.025", "0.03"),
        ("2.675", "2.68"),
        ("1.004999", "1.00"),
        ("-0.005", "-0.01"),
        ("10", "10.00"),
        ("84.0000", "84.00"),
    ],
)
def test_round_money_half_up(value: str, expected: str) -> None:
    assert str(round_money(D(value))) == expected


@pytest.mark.parametrize(
    ("count", "amount", "expected"),
    [
        pytest.param(2, "100000.00", "0.00", id="below-gate"),
        pytest.param(3, "0", "0.00", id="gate-met-nothing-sold"),
        pytest.param(3, "100", "3.00", id="first-band"),
        pytest.param(4, "355", "10.65", id="worked-example"),
        pytest.param(3, "5000", "150.00", id="exactly-at-boundary"),
        pytest.param(3, "5000.10", "150.01", id="just-over-boundary"),
        pytest.param(3, "5100", "155.00", id="across-boundary"),
        pytest.param(3, "6000", "200.00", id="well-across"),
        pytest.param(3, "175.50", "5.27", id="half-up-not-half-even"),
        pytest.param(3, "175.4999", "5.26", id="exact-amount-not-rounded-first"),
    ],
)
def test_cross_sell_bonus(count: int, amount: str, expected: str) -> None:
    assert str(cross_sell_bonus(count, D(amount), DEFAULT)) == expected


def test_cross_sell_bonus_three_tiers_and_zero_gate() -> None:
    three = plan(
        min_count=0,
        tiers=(Tier(D("100"), D("0.01")), Tier(D("200"), D("0.02")), Tier(None, D("0.10"))),
    )
    assert str(cross_sell_bonus(0, D("250"), three)) == "8.00"  # 1 + 2 + 5
    assert str(cross_sell_bonus(0, D("150"), three)) == "2.00"  # 1 + 1


@pytest.mark.parametrize(
    ("held", "converted", "held_credit", "expected"),
    [(1, 1, "25.00", "35.00"), (0, 0, "25.00", "0.00"), (3, 2, "25.00", "95.00"), (1, 0, "0.125", "0.13")],
)
def test_appointment_bonus(held: int, converted: int, held_credit: str, expected: str) -> None:
    assert str(appointment_bonus(held, converted, plan(held_credit=D(held_credit)))) == expected


def credit(person: str, role: str, kind: str = "cross_sell", line_id: str = "L1", amount: str = "1") -> Credit:
    return Credit("2026-11", person, role, kind, "c1", "S1", line_id, None, D(amount), D(1), None, "e")


@pytest.mark.parametrize(
    ("credits", "role"),
    [
        pytest.param(
            [credit("p", "field_rep"), credit("p", "telemarketer", line_id="L2")],
            "field_rep",
            id="tie-goes-to-field-rep",
        ),
        pytest.param(
            [
                credit("p", "field_rep"),
                credit("p", "telemarketer", line_id="L2"),
                credit("p", "telemarketer", "appointment_held"),
            ],
            "telemarketer",
            id="more-telemarketer-credits",
        ),
        pytest.param([credit("p", "telemarketer")], "telemarketer", id="only-telemarketer"),
    ],
)
def test_role_of(credits: list[Credit], role: str) -> None:
    assert role_of(tally(credits)[("2026-11", "p")]) == role


def test_person_holding_two_parts_of_one_line_counts_it_once() -> None:
    self_touch = callback("fr-1", at(-1), "accessories", event_id="cb")
    [row] = compute_tables([self_touch, laptop_sale()], DEFAULT)
    assert (row.role, row.cross_sell_count, str(row.cross_sell_amount)) == ("field_rep", 1, "100.00")


def test_tally_and_running_row() -> None:
    credits = [
        credit("p", "field_rep", line_id="L1", amount="0.3333333334"),
        credit("p", "field_rep", line_id="L2", amount="0.3333333333"),
        credit("p", "field_rep", line_id="L3", amount="174.8332333333"),
        credit("q", "telemarketer", "appointment_held", amount="25.00"),
        credit("q", "telemarketer", "appointment_converted", amount="10.00"),
    ]
    totals = tally(credits)
    assert totals[("2026-11", "p")] == Tally(3, D("175.4999"), 0, 0, telemarketer_items=0, field_rep_items=3)
    assert totals[("2026-11", "q")] == Tally(0, D(0), 1, 1, telemarketer_items=2, field_rep_items=0)
    assert running_row(("2026-11", "p"), totals[("2026-11", "p")], DEFAULT, D("-2.40")) == RunningRow(
        # the bonus is 3% of the exact 175.4999 (5.26), not of the shown 175.50 (5.27)
        "2026-11",
        "p",
        "field_rep",
        3,
        D("175.50"),
        0,
        0,
        D("5.26"),
        D("0.00"),
        D("-2.40"),
        D("2.86"),
        0,
        D("0.00"),
        D("0.00"),
        D("0.00"),
        D("0.00"),
        "default-1",
    )
    row = running_row(("2026-11", "q"), totals[("2026-11", "q")], DEFAULT)
    assert [num(x) for x in (row.appointment_bonus, row.prior_adjustments, row.total_bonus)] == ["35", "0", "35"]
    assert str(row.total_bonus) == "35.00" and str(row.prior_adjustments) == "0.00"


# -- order independence, duplicates, compute_tables -----------------------------------------


def test_credit_customer_ignores_order_and_duplicates() -> None:
    events: list[Event] = [
        callback("tm-1", at(-3), "accessories", event_id="cb"),
        laptop_sale(),
        refund("S1", at(5), {"L2": 1}, event_id="r1"),
        handoff("lead-1", "booked", at(-4), "tm-2", "fr-1", event_id="bk"),
        handoff("lead-1", "held", at(-1), "tm-2", "fr-1", event_id="held"),
    ]
    expected = credit_customer(events, DEFAULT)
    assert credit_customer([*reversed(events), *events[:2]], DEFAULT) == expected
    assert parts(expected) == [
        ("L2", "fr-1", "field_rep", "35", "0.7", "-"),
        ("L2", "tm-1", "telemarketer", "15", "0.3", "cb"),
    ]


def test_compute_tables_first_sale_of_a_sale_id_wins() -> None:
    first = laptop_sale()
    second = sale("S1", at(1), line("L1", "tv", "50"), line("L2", "streaming", "7"), seller="fr-9", event_id="other")
    assert [(r.person_id, str(r.cross_sell_amount)) for r in compute_tables([first, second], DEFAULT)] == [
        ("fr-1", "100.00")
    ]
    assert [(r.person_id, str(r.cross_sell_amount)) for r in compute_tables([second, first], DEFAULT)] == [
        ("fr-9", "7.00")
    ]


def test_compute_tables_conflicting_event_id_first_wins() -> None:
    first = laptop_sale()
    clash = cancellation("S1", at(1), event_id=first.event_id)
    assert len(compute_tables([first, clash], DEFAULT)) == 1
    assert compute_tables([clash, first], DEFAULT) == []


def test_large_customer_is_fast() -> None:
    """Thousands of events of one customer: near-linear, not quadratic."""
    events: list[Event] = []
    for i in range(3000):
        events.append(callback(f"tm-{i % 50}", at(-100 + i / 30), "accessories", "software", event_id=f"cb-{i:05d}"))
    for i in range(1000):
        events.append(
            sale(
                f"S{i:05d}",
                at(-100 + i / 10),
                line("A", "laptops", "1000"),
                line("B", "accessories", "10"),
                line("C", "software", "5"),
            )
        )
    for model in ("last_touch", "first_touch", "linear"):
        started = time.perf_counter()
        credits = credit_customer(events, plan(attribution_model=model))
        assert time.perf_counter() - started < 2.0
        assert sum(c.amount for c in credits) == D("15")  # only the first sale has cross-sells


def test_credit_customer_resolves_a_duplicate_sale_id_without_regard_to_order() -> None:
    first = laptop_sale()
    again = sale("S1", at(1), line("L1", "tv", "50"), line("L2", "streaming", "7"), event_id="zz")
    assert credit_customer([again, first], DEFAULT) == credit_customer([first, again], DEFAULT)
    assert parts(credit_customer([again, first], DEFAULT)) == FR_ALL  # earliest (occurred_at, event_id)


def test_credit_customer_refuses_events_of_two_customers() -> None:
    with pytest.raises(ValueError, match="credit_customer takes one customer's events, got 2 customers"):
        credit_customer([laptop_sale(), cancellation("S1", at(1), customer="c2")], DEFAULT)


def test_only_kpi_events_are_told_apart() -> None:
    """SPEC 13: feedback and reviews are read by `kpi_event_fact` alone, so the ledger adds their
    facts without recomputing the customer; any other event, or none, needs the rules."""
    from stream.rules import only_kpi_events
    from tests.unit.builders import feedback, review

    kpi = [feedback("fr-1", at(0), 5), review("tm-1", at(1), True)]
    assert only_kpi_events(kpi)
    assert not only_kpi_events([*kpi, laptop_sale()])
    assert not only_kpi_events([])
