"""SPEC section 5: the tables are a function of the set of events, not of their arrival order.

A generated month goes through the real pipeline in order and shuffled (with
redeliveries, in small batches so credits come and go between them), and both
must equal the from-scratch computation of `stream.bonus.compute_tables`.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from schemas.decode import InvalidEvent, decode_event
from schemas.events import Event
from stream.bonus import compute_tables
from stream.demo_data import DemoConfig, generate
from stream.plan import load_plan
from tests.integration.conftest import RUNNING_COLUMNS, Brokers, Feeder, create_database, running, snapshot

pytestmark = pytest.mark.integration

def month(customers: int, seed: int) -> list[bytes]:
    return generate(DemoConfig(seed=seed, month="2026-11", customers=customers, telemarketers=6, field_reps=8))


def oracle(lines: list[bytes]) -> list[dict[str, str]]:
    """compute_tables over the valid events, first occurrence of an event_id wins (as in the store)."""
    events: dict[str, Event] = {}
    for raw in lines:
        try:
            event = decode_event(raw)
        except InvalidEvent:
            continue
        events.setdefault(event.event_id, event)
    rows = compute_tables(events.values(), load_plan())
    return [{name: str(getattr(row, name)) for name in RUNNING_COLUMNS} for row in rows]


def nonzero(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """SPEC §6 keeps a zero row for a person whose credits all disappeared; a from-scratch run has none."""
    return [row for row in rows if any(row[c] not in ("0", "0.00") for c in RUNNING_COLUMNS[3:])]


async def credits(url: str) -> list[tuple[object, ...]]:
    return (await snapshot(url))["credits"]


async def test_shuffled_small_batches_with_redeliveries_equal_in_order(pg_url: str, pg_server_url: str) -> None:
    lines = month(customers=150, seed=7)
    await Feeder(pg_url).feed(lines)
    expected = oracle(lines)
    assert nonzero(await running(pg_url)) == expected

    rng = random.Random(11)
    shuffled = lines + rng.sample(lines, len(lines) // 5)  # 20% redelivered
    rng.shuffle(shuffled)
    other = await create_database(pg_server_url)
    await Feeder(other).feed(shuffled, batch_size=13)
    assert nonzero(await running(other)) == expected
    assert await credits(other) == await credits(pg_url)


async def test_shuffled_replay_through_kafka_and_faust_equals_in_order(pg_url: str, pg_server_url: str,
                                                                       brokers: Brokers, tmp_path: Path) -> None:
    """On both brokers (ids tansu, kafka): each replay on a broker (or topics) of its own."""
    lines = month(customers=300, seed=3)
    in_order = tmp_path / "in-order.jsonl"
    in_order.write_bytes(b"\n".join(lines) + b"\n")
    shuffled_lines = list(lines)
    random.Random(5).shuffle(shuffled_lines)
    shuffled = tmp_path / "shuffled.jsonl"
    shuffled.write_bytes(b"\n".join(shuffled_lines) + b"\n")

    await brokers.replay(str(in_order), "--database-url", pg_url, data_dir=tmp_path)
    other = await create_database(pg_server_url)
    await brokers.replay(str(shuffled), "--database-url", other, data_dir=tmp_path)

    expected = oracle(lines)
    assert nonzero(await running(pg_url)) == expected
    assert nonzero(await running(other)) == expected
    assert await credits(other) == await credits(pg_url)

