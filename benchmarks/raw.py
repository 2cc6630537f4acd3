"""The machine's raw rates for the same events: reading them from the broker, COPYing them into Postgres.

These are ceilings, not products: the consumer decodes nothing and the COPY checks nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime

import asyncpg
import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream.kafka import ensure_topics, publish
from stream.publishing import to_outgoing
from stream.settings import Resolved, Topics, bootstrap_servers


@dataclass
class RawMeasure:
    events: int
    seconds: float
    rate: float
    detail: str
    rates: list[float] = field(default_factory=list)  # every run's, when repeated (benchmarks.run)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


async def consume(broker: str, topics: Sequence[str], expected: int, partitions_each: int | None = None
                  ) -> RawMeasure:
    """Read every record of `topics` from the start with a plain aiokafka consumer (no group).

    `partitions_each`: the topics' partitions, as the benchmark made them; without it, the
    consumer's metadata says (tansu's bootstrap metadata lists every topic; Apache Kafka's does not).
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers(broker), enable_auto_commit=False, group_id=None,
        auto_offset_reset="earliest", max_partition_fetch_bytes=4 << 20, fetch_max_bytes=16 << 20,
    )
    await consumer.start()
    try:
        if partitions_each is None:
            await consumer.topics()  # fetches the metadata of every topic
        partitions = [TopicPartition(topic, p) for topic in topics
                      for p in (range(partitions_each) if partitions_each is not None
                                else sorted(consumer.partitions_for_topic(topic) or ()))]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        # Read until every published record is in: tansu's ListOffsets does not give true end offsets.
        count, started, idle_since = 0, time.monotonic(), time.monotonic()
        while count < expected:
            got = sum(len(records) for records in
                      (await consumer.getmany(timeout_ms=500, max_records=10_000)).values())
            count += got
            now = time.monotonic()
            if got:
                idle_since = now
            elif now - idle_since > 10:
                raise RuntimeError(f"read {count} records of {topics}, {expected} were published")
        seconds = time.monotonic() - started
    finally:
        await consumer.stop()
    return RawMeasure(count, seconds, count / seconds, f"aiokafka, {len(partitions)} partitions, no group")


class _Keys(msgspec.Struct):
    event_id: str = ""
    event_type: str = ""
    customer_id: str = ""
    occurred_at: datetime | None = None


_keys = msgspec.json.Decoder(_Keys)
_EVENTS_LIKE = """
CREATE TABLE raw_events (
    event_id text PRIMARY KEY, event_type text NOT NULL, customer_id text NOT NULL,
    occurred_at timestamptz, raw bytea NOT NULL, topic text NOT NULL, "partition" integer NOT NULL,
    "offset" bigint NOT NULL, received_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX raw_events_customer_idx ON raw_events (customer_id);
"""
_BARE = """
CREATE TABLE raw_events (
    event_id text, event_type text, customer_id text, occurred_at timestamptz, raw bytea,
    topic text, "partition" integer, "offset" bigint);
"""
COLUMNS = ("event_id", "event_type", "customer_id", "occurred_at", "raw", "topic", "partition", "offset")


def copy_records(lines: Sequence[bytes], topics: Topics) -> list[tuple[object, ...]]:
    """The rows the COPY writes: the raw bytes and the key columns, parsed beforehand (not timed).

    Lines that are not events (the demo's garbage, duplicate ids) are left out: a
    primary key would refuse them and the pipeline dead-letters them elsewhere.
    """
    rows: list[tuple[object, ...]] = []
    seen: set[str] = set()
    for offset, raw in enumerate(lines):
        try:
            keys = _keys.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError):
            continue
        if not keys.event_id or keys.event_id in seen:
            continue
        seen.add(keys.event_id)
        rows.append((keys.event_id, keys.event_type, keys.customer_id, keys.occurred_at, raw,
                     to_outgoing(raw, topics).topic, 0, offset))
    return rows


async def copy(database_url: str, rows: Sequence[tuple[object, ...]], chunk: int, like_events: bool) -> RawMeasure:
    """COPY the rows with asyncpg `copy_records_to_table`, one transaction per `chunk` rows."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("DROP TABLE IF EXISTS raw_events")
        await conn.execute(_EVENTS_LIKE if like_events else _BARE)
        started = time.monotonic()
        for start in range(0, len(rows), chunk):
            await conn.copy_records_to_table("raw_events", records=rows[start:start + chunk], columns=COLUMNS)
        seconds = time.monotonic() - started
        stored = await conn.fetchval("SELECT count(*) FROM raw_events")
    finally:
        await conn.close()
    shape = "events-shaped table: primary key + customer index" if like_events else "bare heap table, no index"
    return RawMeasure(int(stored), seconds, int(stored) / seconds, f"{shape}, COPY of {chunk} rows per transaction")


def run_copy(database_url: str, rows: Sequence[tuple[object, ...]], chunk: int, like_events: bool) -> RawMeasure:
    return asyncio.run(copy(database_url, rows, chunk, like_events))


def run_consume(broker: str, topics: Sequence[str], expected: int, partitions_each: int | None = None
                ) -> RawMeasure:
    return asyncio.run(consume(broker, topics, expected, partitions_each))


def run_publish(settings: Resolved, lines: Sequence[bytes]) -> None:
    """Publish as `crmbonus publish` does (used when the e2e run, which publishes too, is skipped).

    Untimed. Right after CreateTopics, Apache Kafka answers the first produce requests with
    NOT_LEADER_OR_FOLLOWER while the new partitions load; the producer retries them, and its
    warnings about that are kept out of the benchmark's output.
    """

    async def go() -> None:
        await ensure_topics(settings.broker, settings.topics, settings.partitions)
        await publish(settings.broker, [to_outgoing(line, settings.topics) for line in lines])

    sender = logging.getLogger("aiokafka.producer.sender")
    level = sender.level
    sender.setLevel(logging.ERROR)
    try:
        asyncio.run(go())
    finally:
        sender.setLevel(level)
