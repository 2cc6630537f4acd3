"""The demo month: valid where it should be, invalid exactly where planned, and realistic
enough that the engine has something to credit (SPEC §3-§5)."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from schemas.decode import InvalidEvent, decode_event
from schemas.events import Callback, Cancellation, Event, LeadHandoff, Refund, Sale
from stream.demo_data import MATRIX, PRICE_RANGES, DemoConfig, customer_history, generate, write_jsonl

DEFAULT = DemoConfig()
SMALL = DemoConfig(customers=300)
MONTH_START = datetime(2026, 11, 1, tzinfo=UTC)
MONTH_END = datetime(2026, 12, 1, tzinfo=UTC)


def decode_all(lines: list[bytes]) -> tuple[list[Event], list[InvalidEvent]]:
    """Split lines into decoded events (arrival order, duplicates kept) and rejections."""
    events: list[Event] = []
    invalid: list[InvalidEvent] = []
    for line in lines:
        try:
            events.append(decode_event(line))
        except InvalidEvent as error:
            invalid.append(error)
    return events, invalid


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    return generate(DEFAULT)


@pytest.fixture(scope="module")
def decoded(lines: list[bytes]) -> tuple[list[Event], list[InvalidEvent]]:
    return decode_all(lines)


@pytest.fixture(scope="module")
def events(decoded: tuple[list[Event], list[InvalidEvent]]) -> list[Event]:
    return decoded[0]


def test_same_seed_same_month_other_seed_other_month() -> None:
    first = generate(SMALL)
    assert generate(SMALL) == first
    other = generate(DemoConfig(customers=300, seed=SMALL.seed + 1))
    assert other != first
    assert len(set(other) & set(first)) < len(first) // 10


def test_only_the_planned_lines_are_invalid_and_for_several_reasons(
    decoded: tuple[list[Event], list[InvalidEvent]],
) -> None:
    _, invalid = decoded
    assert len(invalid) == DEFAULT.invalid_lines
    assert {error.reason for error in invalid} == {"invalid_json", "unknown_event_type", "schema_violation"}


@pytest.mark.parametrize("count", [0, 1, 2, 8, 17])
def test_invalid_lines_count_is_exact(count: int) -> None:
    events, invalid = decode_all(generate(DemoConfig(customers=20, invalid_lines=count)))
    assert len(invalid) == count
    assert len(events) > 20
    if count >= 2:
        assert len({error.reason for error in invalid}) >= 2


def test_default_month_has_sane_counts_per_type(lines: list[bytes], events: list[Event]) -> None:
    assert 15_000 <= len(lines) <= 25_000
    kinds = Counter(type(event) for event in {event.event_id: event for event in events}.values())
    sales = kinds[Sale]
    assert 9_000 <= kinds[Callback] <= 16_000
    assert 2_000 <= kinds[LeadHandoff] <= 5_000
    assert 1_800 <= sales <= 3_500
    assert 0.03 * sales <= kinds[Refund] <= 0.08 * sales
    assert 0.01 * sales <= kinds[Cancellation] <= 0.04 * sales


def test_people_and_customers_match_the_config(events: list[Event]) -> None:
    telemarketers: set[str] = set()
    field_reps: set[str] = set()
    for event in events:
        if isinstance(event, Callback | LeadHandoff):
            telemarketers.add(event.telemarketer_id)
        if isinstance(event, LeadHandoff):
            field_reps.add(event.field_rep_id)
        if isinstance(event, Sale):
            (telemarketers if event.seller_role == "telemarketer" else field_reps).add(event.seller_id)
    assert telemarketers == {f"tm-{i:03d}" for i in range(1, DEFAULT.telemarketers + 1)}
    assert field_reps == {f"fr-{i:03d}" for i in range(1, DEFAULT.field_reps + 1)}
    assert {event.customer_id for event in events} == {f"cust-{i:05d}" for i in range(1, DEFAULT.customers + 1)}


def test_every_event_occurs_within_the_month_with_z_and_offset_times(lines: list[bytes], events: list[Event]) -> None:
    assert all(MONTH_START <= event.occurred_at < MONTH_END for event in events)
    offsets = Counter(event.occurred_at.utcoffset() for event in events)
    assert set(offsets) == {UTC.utcoffset(None), datetime.fromisoformat("2026-11-01T00:00+01:00").utcoffset()}
    assert offsets.most_common(1)[0][0] == UTC.utcoffset(None)
    assert any(b'Z"' in line for line in lines) and any(b'+01:00"' in line for line in lines)


def test_some_events_arrive_late_and_some_after_the_month(events: list[Event]) -> None:
    instants = [event.occurred_at for event in events]
    overtaken = sum(1 for before, after in itertools.pairwise(instants) if after < before)
    assert overtaken >= 50
    tail = instants[-40:]
    assert any(MONTH_END - instant > (MONTH_END - MONTH_START) / 2 for instant in tail)


def test_without_late_fraction_first_arrivals_are_in_time_order() -> None:
    lines = generate(DemoConfig(customers=300, late_fraction=0.0, invalid_lines=0))
    instants = [decode_event(line).occurred_at for line in dict.fromkeys(lines)]  # first arrivals
    assert instants == sorted(instants)


def test_a_handful_of_exact_duplicates_and_otherwise_unique_ids(lines: list[bytes], events: list[Event]) -> None:
    repeats = [line for line, n in Counter(lines).items() if n > 1]
    assert 3 <= len(repeats) <= 30
    assert all(decode_event(line) for line in repeats)
    distinct = {event.event_id: event for event in events}
    assert len(distinct) == len(events) - sum(Counter(lines)[line] - 1 for line in repeats)
    sale_ids = [event.sale_id for event in distinct.values() if isinstance(event, Sale)]
    assert len(sale_ids) == len(set(sale_ids))


def test_sales_look_like_a_shop(lines: list[bytes], events: list[Event]) -> None:
    sales = {event.event_id: event for event in events if isinstance(event, Sale)}.values()
    for sale in sales:
        assert sale.currency == "EUR" and sale.sale_id.startswith("S-")
        assert [line.line_id for line in sale.lines] == [f"L{i}" for i in range(1, len(sale.lines) + 1)]
        for line in sale.lines:
            _, low, high = PRICE_RANGES[line.category]
            assert low <= line.unit_price <= high, (sale.sale_id, line)
            assert line.unit_price == line.unit_price.quantize(Decimal("0.01"))
    assert Counter(sale.lines[0].category in MATRIX for sale in sales)[True] >= 0.8 * len(sales)
    assert max(len(sale.lines) for sale in sales) >= 4
    assert Counter(line.quantity for sale in sales for line in sale.lines).keys() >= {1, 2, 3}
    prices = [
        item["unit_price"]
        for line in lines
        if line.startswith(b'{"event_id":"s-')
        for item in msgspec.json.decode(line)["lines"]
    ]
    assert any(isinstance(p, str) for p in prices) and any(isinstance(p, int | float) for p in prices)


def test_reversals_follow_their_sales_and_stay_within_them(events: list[Event]) -> None:
    sales = {event.sale_id: event for event in events if isinstance(event, Sale)}
    for event in events:
        if isinstance(event, Refund | Cancellation):
            sale = sales[event.sale_id]
            assert sale.customer_id == event.customer_id and sale.occurred_at < event.occurred_at
        if isinstance(event, Refund):
            quantities = {line.line_id: line.quantity for line in sales[event.sale_id].lines}
            assert all(line.quantity <= quantities[line.line_id] for line in event.lines)


def test_matrix_is_the_default_plans() -> None:
    plan_module = pytest.importorskip("stream.plan")
    matrix = plan_module.load_plan().matrix
    assert {anchor: frozenset(add_ons) for anchor, add_ons in MATRIX.items()} == dict(matrix)


def test_customer_history_is_exactly_n_valid_events_of_one_customer() -> None:
    history = customer_history(42, 100, seed=7)
    events = [decode_event(line) for line in history]
    assert len(events) == 100
    assert {event.customer_id for event in events} == {"cust-00042"}
    assert len({event.event_id for event in events}) == 100
    assert {type(event) for event in events} == {Callback, Sale, Refund}
    assert customer_history(42, 100, seed=7) == history
    other = {decode_event(line).event_id for line in customer_history(43, 100, seed=7)}
    assert not other & {event.event_id for event in events}


@pytest.mark.parametrize("count", [0, 1, 1000])
def test_customer_history_sizes(count: int) -> None:
    assert len([decode_event(line) for line in customer_history(1, count, seed=1)]) == count


def test_write_jsonl_writes_one_line_per_event(tmp_path: Path) -> None:
    lines = generate(DemoConfig(customers=10))
    path = tmp_path / "month.jsonl"
    assert write_jsonl(iter(lines), path) == len(lines)
    assert path.read_bytes().splitlines() == lines


@pytest.mark.parametrize(
    "changes",
    [{"month": "2026-13"}, {"month": "Nov"}, {"telemarketers": 0}, {"late_fraction": 1.5}, {"customers": -1}],
)
def test_bad_config_is_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="DemoConfig"):
        DemoConfig(**changes)  # type: ignore[arg-type]


def test_other_month_and_no_customers() -> None:
    events, _ = decode_all(generate(DemoConfig(month="2027-02", customers=50)))
    assert all(datetime(2027, 2, 1, tzinfo=UTC) <= e.occurred_at < datetime(2027, 3, 1, tzinfo=UTC) for e in events)
    assert generate(DemoConfig(customers=0, invalid_lines=0)) == []
    assert len(generate(DemoConfig(customers=0, invalid_lines=3))) == 3


def test_default_month_is_generated_in_under_two_seconds() -> None:
    started = time.perf_counter()
    generate()
    assert time.perf_counter() - started < 2.0


def test_the_engine_finds_gated_cross_sells_and_appointments(events: list[Event]) -> None:
    bonus = pytest.importorskip("stream.bonus", reason="stream/bonus.py is not importable yet")
    plan = pytest.importorskip("stream.plan").load_plan()
    rows = bonus.compute_tables(events, plan)
    passing = [row for row in rows if row.cross_sell_count >= plan.min_count and row.cross_sell_bonus > 0]
    assert len(passing) >= 10
    assert {row.role for row in passing} == {"telemarketer", "field_rep"}
    assert sum(row.appointments_held for row in rows) >= 500
    assert 0 < sum(row.appointments_converted for row in rows) < sum(row.appointments_held for row in rows)
    assert all(row.cross_sell_bonus == 0 for row in rows if row.cross_sell_count < plan.min_count)
