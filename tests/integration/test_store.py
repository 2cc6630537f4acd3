"""The event store sorts repeats the same way whichever path a batch takes (SPEC section 3).

A batch whose ids are new is COPYed straight into `events`; repeats inside it are sorted
apart; a batch meeting stored ids takes the staged path. Batch sizes here force each.
"""

from __future__ import annotations

import asyncpg
import pytest

from schemas.decode import decode_event
from schemas.messages import Decoded, Message
from stream import db, store
from stream.pipeline import Pipeline
from stream.plan import load_plan
from tests.examples import EXAMPLES
from tests.integration.conftest import Feeder, create_database, drop_database

pytestmark = pytest.mark.integration

MONTH = (EXAMPLES / "month.jsonl").read_bytes().splitlines()
REPEATS = [
    MONTH[0],  # an exact duplicate
    MONTH[0].replace(b'"tm-1"', b'"tm-9"'),  # same event_id, other content
    MONTH[1].replace(b'"event_id":"s1"', b'"event_id":"s1-again"'),  # a new event claiming sale S1
]
LINES = [*MONTH, *REPEATS]


async def outcome(url: str) -> tuple[list[str], list[str]]:
    conn = await asyncpg.connect(url)
    try:
        stored = [row["event_id"] for row in await conn.fetch("SELECT event_id FROM events ORDER BY event_id")]
        reasons = [row["reason"] for row in await conn.fetch("SELECT reason FROM dead_letters ORDER BY reason")]
    finally:
        await conn.close()
    return stored, reasons


@pytest.mark.parametrize("batch_size", [len(LINES), 4, 1], ids=["one-batch", "across-batches", "one-by-one"])
async def test_repeats_sort_the_same_in_a_batch_across_batches_and_on_redelivery(
    pg_server_url: str, batch_size: int
) -> None:
    url = await create_database(pg_server_url)
    try:
        feeder = Feeder(url)
        first = await feeder.feed(LINES, batch_size)
        assert sum(r.stored for r in first) == len(MONTH)
        assert sum(r.duplicates for r in first) == 1
        assert sorted(d.reason for r in first for d in r.new_dead_letters) == [
            "conflicting_duplicate", "duplicate_sale_id"]
        feeder.offset = 0  # the same messages again, as after a crash before the Kafka commit
        again = await feeder.feed(LINES, batch_size)
        assert sum(r.stored for r in again) == 0 and not any(r.new_dead_letters for r in again)
        assert sum(r.duplicates for r in again) == len(MONTH) + 1
        stored, reasons = await outcome(url)
        assert len(stored) == len(MONTH) and reasons == ["conflicting_duplicate", "duplicate_sale_id"]
    finally:
        await drop_database(pg_server_url, url)


async def test_ids_remembered_by_the_worker_are_a_hint_checked_against_events(pg_server_url: str) -> None:
    """`recent` (the worker's `RecentIds`) only says where to look: an id it names that is not
    stored (a hint gone stale, another database) is inserted, one that is stored is sorted as a
    repeat without failing the COPY, and the outcome is that of a batch without the hint."""
    url = await create_database(pg_server_url)
    try:
        pool = await db.create_pool(url)
        try:
            pipeline = Pipeline(pool, load_plan(None), "test")
            first = [Message("crm.sales", 0, n, None, raw) for n, raw in enumerate(MONTH[:5])]
            await pipeline.handle(first)
            decoded = [Decoded(m, decode_event(m.value)) for m in
                       [Message("crm.sales", 0, 100 + n, None, raw) for n, raw in enumerate([*MONTH[:7], *REPEATS])]]
            hint = {item.event.event_id for item in decoded} | {"never-stored"}
            async with pool.acquire() as conn, conn.transaction():
                found = await store.insert_events(conn, decoded, hint)
            assert sorted(item.event.event_id for item in found.inserted) == sorted(
                decode_event(raw).event_id for raw in MONTH[5:7])
            assert found.duplicates == 6  # MONTH[:5] again and REPEATS[0]
            assert sorted(letter.reason for letter in found.dead_letters) == ["conflicting_duplicate",
                                                                              "duplicate_sale_id"]
        finally:
            await pool.close()
    finally:
        await drop_database(pg_server_url, url)
