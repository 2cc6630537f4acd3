"""`crmbonus replay` and `crmbonus worker` through a real broker, Faust and Postgres (SPEC sections 3 and 8).

The tests that take `brokers` or `broker` run on both brokers (ids `tansu`, `kafka`); the two
that fail before any broker is used run on the embedded default only.
"""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import pytest

from tests.examples import EXAMPLES
from tests.integration.conftest import (
    Broker,
    Brokers,
    StartWorker,
    crmbonus,
    read_csv,
    read_topic,
    running,
    snapshot,
    wait_caught_up,
)

pytestmark = pytest.mark.integration

MONTH = (EXAMPLES / "month.jsonl").read_bytes().splitlines()

#: One invalid line per reason code the pipeline decides, with the topic it lands on.
INVALID = [
    (b'{"event_id": "broken", ', "crm.sales", "invalid_json"),
    (b'\xff\xfe not utf-8', "crm.sales", "invalid_json"),
    (b'[1, 2, 3]', "crm.sales", "schema_violation"),
    (b'{"event_id":"n1","event_type":"callback","occurred_at":"2026-11-02T10:00:00",'
     b'"customer_id":"c1","telemarketer_id":"tm-1","outcome":"declined"}', "crm.callbacks", "schema_violation"),
    (b'{"event_id":"m1","event_type":"sale","occurred_at":"2026-11-02T10:00:00Z","customer_id":"c9",'
     b'"sale_id":"S9","seller_id":"fr-1","seller_role":"field_rep","currency":"EUR","lines":[{"line_id":"a",'
     b'"sku":"x","category":"tv","quantity":1,"unit_price":"NaN"}]}', "crm.sales", "schema_violation"),
    (b'{"event_id":"u1","event_type":"teleport","customer_id":"c1"}', "crm.sales", "unknown_event_type"),
    # cb1 again with another telemarketer: same event_id, different content
    (MONTH[0].replace(b'"tm-1"', b'"tm-9"'), "crm.callbacks", "conflicting_duplicate"),
    # a new event claiming sale S1 again
    (MONTH[1].replace(b'"event_id":"s1"', b'"event_id":"s1-again"'), "crm.sales", "duplicate_sale_id"),
]


def write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


async def test_valid_events_once_and_one_dead_letter_per_invalid_line(
    pg_url: str, brokers: Brokers, tmp_path: Path,
) -> None:
    # valid events, exact duplicates (one re-spelled: other key order and 80 -> 80.0), then garbage
    respelled = json.dumps(dict(reversed(list(json.loads(MONTH[1]).items())))).encode().replace(
        b'"unit_price": 80}', b'"unit_price": 80.0}')
    lines = [*MONTH, MONTH[0], MONTH[2], respelled, *(raw for raw, _, _ in INVALID)]
    done = await brokers.replay(str(write(tmp_path / "mixed.jsonl", lines)), "--database-url", pg_url,
                                data_dir=tmp_path)
    assert f"replayed {len(lines)} lines" in done.stderr
    assert f"{len(MONTH)} events stored, 3 duplicates ignored, {len(INVALID)} dead letters" in done.stderr

    conn = await asyncpg.connect(pg_url)
    try:
        stored = await conn.fetch("SELECT event_id, raw FROM events ORDER BY event_id")
        letters = await conn.fetch('SELECT topic, payload, reason, key FROM dead_letters ORDER BY id')
    finally:
        await conn.close()
    assert sorted(json.loads(line)["event_id"] for line in MONTH) == [row["event_id"] for row in stored]
    assert {bytes(row["raw"]) for row in stored} == set(MONTH)
    prefix = brokers.replayed_prefix  # on Kafka, the replay's topics are of the test's own
    assert sorted((row["topic"], bytes(row["payload"]), row["reason"]) for row in letters) == sorted(
        (prefix + topic.removeprefix("crm."), raw, reason) for raw, topic, reason in INVALID)
    keyed = {bytes(row["payload"]): row["key"] for row in letters}
    assert keyed[INVALID[6][0]] == b"c1"  # the original key travels with the dead letter
    assert keyed[INVALID[0][0]] is None


async def test_replaying_the_same_file_twice_changes_nothing(pg_url: str, brokers: Brokers, tmp_path: Path) -> None:
    path = write(tmp_path / "mixed.jsonl", [*MONTH, *(raw for raw, _, _ in INVALID)])
    # on a fresh broker each time (own: on Kafka too), each line comes back at the same topic,
    # partition and offset, so the dead letters are the same ones
    await brokers.replay(str(path), "--database-url", pg_url, data_dir=tmp_path, own=True)
    first = await snapshot(pg_url)
    done = await brokers.replay(str(path), "--database-url", pg_url, data_dir=tmp_path, own=True)
    assert f"0 events stored, {len(MONTH)} duplicates ignored, 0 dead letters" in done.stderr
    assert await snapshot(pg_url) == first


async def test_worked_example_matches_to_the_cent(pg_url: str, brokers: Brokers, tmp_path: Path) -> None:
    await brokers.replay(str(EXAMPLES / "month.jsonl"), "--database-url", pg_url, data_dir=tmp_path)
    assert await running(pg_url) == read_csv(EXAMPLES / "expected_running_after_month.csv")


async def test_worked_example_through_the_worker(pg_url: str, broker: Broker, workers: StartWorker) -> None:
    """`crmbonus worker` running, the month published to it as `crmbonus publish` does: the same table."""
    worker = workers(pg_url, "month")
    await worker.wait_healthy()
    ends = await broker.publish(MONTH)
    await wait_caught_up(pg_url, ends, 60, worker)
    assert await running(pg_url) == read_csv(EXAMPLES / "expected_running_after_month.csv")
    worker.stop()
    assert worker.process.returncode == 0, worker.log()


def test_unreachable_database_is_named(tmp_path: Path) -> None:
    done = crmbonus("replay", str(EXAMPLES / "month.jsonl"), "--database-url",
                    "postgresql://nobody@127.0.0.1:1/nothing", data_dir=tmp_path, check=False)
    assert done.returncode == 2
    assert "cannot reach Postgres at 127.0.0.1:1/nothing" in done.stderr


def test_missing_file_is_named(tmp_path: Path) -> None:
    done = crmbonus("replay", str(tmp_path / "nope.jsonl"), data_dir=tmp_path, check=False)
    assert done.returncode == 2
    assert f"cannot read {tmp_path / 'nope.jsonl'}" in done.stderr


async def test_every_dead_letter_is_forwarded_to_the_dead_letter_topic(
    pg_url: str, broker: Broker, tmp_path: Path,
) -> None:
    """SPEC section 2: each dead letter also goes to the dead-letter topic, with its reason.

    `replay` starts its worker on a backlog, so the first batch (these dead letters among
    it) is read at once; the dead-letter producer must be up by the time it is forwarded.
    """
    path = write(tmp_path / "mixed.jsonl", [*MONTH, *(raw for raw, _, _ in INVALID)])
    crmbonus("replay", *broker.flags(), str(path), "--database-url", pg_url, data_dir=tmp_path,
             env=broker.env())
    records = await read_topic(broker, broker.topics.dead_letters, len(INVALID))
    found = [(dict(r.headers)["reason"].decode(), r.value or b"") for r in records]
    assert sorted(found) == sorted((reason, raw) for raw, _, reason in INVALID)
