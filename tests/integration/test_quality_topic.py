"""The topic crm.quality (SPEC sections 11 and 13) on real brokers: where `publish` puts the KPI
events, which commands require the topic, and a worker that reads it once it exists.

On a configured broker the topic is required only when the plan has `[kpi]` (or, for `publish`
and `replay`, when a line goes there); otherwise the worker starts without it, subscribed to a
pattern of its input topics, and reads it once someone creates it (aiokafka's metadata refresh,
`stream.consumer.WATCH_METADATA_MAX_AGE_MS`, then a rebalance).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream.consumer import WATCH_METADATA_MAX_AGE_MS
from stream.errors import ConfigError
from stream.kafka import ensure_topics
from stream.plan import DEFAULT_PLAN_PATH
from stream.settings import Topics, bootstrap_servers
from tests.apache_kafka import ApacheKafka
from tests.integration.conftest import (
    WAIT,
    Broker,
    KafkaBroker,
    TansuBroker,
    Worker,
    crmbonus,
    query,
    read_topic,
    wait_until,
)

pytestmark = pytest.mark.integration

COMMON = {"occurred_at": "2026-11-05T12:00:00Z", "customer_id": "c-q1"}
FEEDBACK = {**COMMON, "event_id": "fb-1", "event_type": "feedback", "person_id": "fr-1", "person_role": "field_rep",
            "rating": 5, "sale_id": "S-q1"}
REVIEW = {**COMMON, "event_id": "qr-1", "event_type": "quality_review", "customer_id": "c-q2", "person_id": "tm-1",
          "person_role": "telemarketer", "passed": True, "score": 91}
SALE = {**COMMON, "event_id": "s-1", "event_type": "sale", "sale_id": "S-q1", "seller_id": "fr-1",
        "seller_role": "field_rep", "currency": "EUR",
        "lines": [{"line_id": "L1", "sku": "TV-1", "category": "tv", "quantity": 1, "unit_price": "499.00"}]}
#: rating 5.0 is a float to msgspec: schema_violation (tests/unit/test_decode_quality.py)
BAD_FEEDBACK = {**FEEDBACK, "event_id": "fb-bad", "rating": 5.0}

KPI_SECTION = """
[kpi]
target_bonus = "100.00"

[[kpi.components]]
name = "rating"
weight = "1"
metric = "rating"
target = "4.5"
"""


def lines(path: Path, *events: dict[str, Any]) -> Path:
    path.write_text("".join(json.dumps(event) + "\n" for event in events))
    return path


async def create(url: str, names: list[str], partitions: int = 2) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(url), request_timeout_ms=10_000)
    try:
        await asyncio.wait_for(admin.start(), WAIT)
        await asyncio.wait_for(admin.create_topics([NewTopic(name, partitions, 1) for name in names]), WAIT)
    finally:
        await admin.close()


async def existing(url: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(url), request_timeout_ms=10_000)
    try:
        await asyncio.wait_for(admin.start(), WAIT)
        return set(await admin.list_topics())
    finally:
        await admin.close()


@pytest.fixture
async def bare(broker_kind: str, shared_kafka: ApacheKafka | None, tmp_path: Path) -> AsyncIterator[Broker]:
    """A broker used as a configured one (`--broker`), with the topics of SPEC section 2 only: a
    fresh tansu, or topics of the test's own on the session's Apache Kafka (auto-creation off)."""
    broker: Broker
    if shared_kafka is None:
        broker = await asyncio.to_thread(TansuBroker, tmp_path / "bare")
    else:
        broker = KafkaBroker(shared_kafka, own=False)
    try:
        topics = broker.topics
        await create(broker.url, [topics.sales, topics.callbacks, topics.lead_handoffs, topics.dead_letters])
        yield broker
    finally:
        await broker.close()


def configured(broker: Broker, *flags: str) -> list[str]:
    return ["--broker", broker.url, *flags]


# --- publish ------------------------------------------------------------------------------------


async def test_publish_puts_feedback_and_reviews_on_the_quality_topic(broker: Broker, tmp_path: Path) -> None:
    """SPEC section 8 `publish`: by event_type, keyed by customer_id; the sale stays on crm.sales."""
    path = lines(tmp_path / "quality.jsonl", FEEDBACK, SALE, REVIEW)
    done = await asyncio.to_thread(crmbonus, "publish", *broker.flags(), str(path), data_dir=tmp_path,
                                   env=broker.env())
    assert "published 3 lines" in done.stderr
    found = await read_topic(broker, broker.topics.quality, 2)
    assert sorted((r.key, json.loads(r.value)["event_id"]) for r in found) == [(b"c-q1", "fb-1"), (b"c-q2", "qr-1")]
    sales = await read_topic(broker, broker.topics.sales, 1)
    assert [(r.key, json.loads(r.value)["event_id"]) for r in sales] == [(b"c-q1", "s-1")]


@pytest.mark.brokers("tansu", reason="publish's topic check is the admin client's, the same on both")
async def test_publish_requires_the_quality_topic_only_for_lines_bound_there(bare: Broker, tmp_path: Path) -> None:
    sales_only = lines(tmp_path / "sales.jsonl", SALE)
    done = await asyncio.to_thread(crmbonus, "publish", *configured(bare), str(sales_only), data_dir=tmp_path)
    assert "published 1 lines" in done.stderr

    with_feedback = lines(tmp_path / "feedback.jsonl", SALE, FEEDBACK)
    done = await asyncio.to_thread(crmbonus, "publish", *configured(bare), str(with_feedback), data_dir=tmp_path,
                                   check=False)
    assert done.returncode == 2, done.stderr
    said = " ".join(done.stderr.split())
    assert (f"topics crm.quality missing at {bare.url}: create them, or run `crmbonus publish --create-topics "
            "--partitions 6 --replication-factor -1`") in said
    assert "Traceback" not in done.stderr
    assert "crm.quality" not in await existing(bare.url)  # the refusal created nothing


# --- ensure_topics --------------------------------------------------------------------------------


@pytest.mark.brokers("tansu", reason="the admin client's calls, the same on both")
async def test_ensure_topics_requires_the_quality_topic_only_when_told(bare: Broker) -> None:
    topics = Topics.with_prefix("crm.")
    three = (topics.sales, topics.callbacks, topics.lead_handoffs)
    assert await ensure_topics(bare.url, topics, 6, create=False) == three
    with pytest.raises(ConfigError) as refused:
        await ensure_topics(bare.url, topics, 6, create=False, quality_required=True)
    assert str(refused.value) == (f"topics crm.quality missing at {bare.url}: create them, or run `crmbonus worker "
                                  "--create-topics --partitions 6 --replication-factor 1`")
    assert "crm.quality" not in await existing(bare.url)
    # asked to create (--create-topics, or the embedded broker): the quality topic always
    assert await ensure_topics(bare.url, topics, 6, create=True) == topics.inputs
    assert "crm.quality" in await existing(bare.url)
    assert await ensure_topics(bare.url, topics, 6, create=False, quality_required=True) == topics.inputs


def test_the_embedded_broker_gets_the_quality_topic(tmp_path: Path, pg_url: str) -> None:
    """`replay` on a fresh embedded broker creates all five topics and stores the KPI events."""
    path = lines(tmp_path / "quality.jsonl", SALE, FEEDBACK, REVIEW, BAD_FEEDBACK)
    done = crmbonus("replay", str(path), "--database-url", pg_url, data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    stored = asyncio.run(query(pg_url, "SELECT event_id, event_type FROM events ORDER BY event_id"))
    assert [tuple(row) for row in stored] == [("fb-1", "feedback"), ("qr-1", "quality_review"), ("s-1", "sale")]
    letters = asyncio.run(query(pg_url, "SELECT topic, reason, detail FROM dead_letters"))
    assert [tuple(row) for row in letters] == [
        ("crm.quality", "schema_violation", "Expected `int`, got `float` - at `$.rating`")]


# --- the worker -----------------------------------------------------------------------------------


async def test_a_worker_without_kpi_starts_without_the_quality_topic_and_reads_it_once_it_exists(
        bare: Broker, tmp_path: Path, pg_url: str) -> None:
    """Both brokers: the pattern subscription and the rebalance when its new match appears."""
    topics = bare.topics
    worker = Worker(tmp_path, pg_url, "no-kpi", extra=configured(bare), env=bare.env())
    try:
        await worker.wait_healthy(WAIT)
        assert (f"worker consuming {topics.sales}, {topics.callbacks}, {topics.lead_handoffs} "
                f"({topics.quality} once it exists) at {bare.url}") in " ".join(worker.log().split())
        await bare.publish([json.dumps(SALE).encode()])
        await wait_until(lambda: stored(pg_url, 1), WAIT, "the sale stored", worker)

        await create(bare.url, [bare.topics.quality])
        await bare.publish([json.dumps(event).encode() for event in (FEEDBACK, REVIEW, BAD_FEEDBACK)])
        await wait_until(lambda: stored(pg_url, 3), WAIT + WATCH_METADATA_MAX_AGE_MS / 1000,
                         "the KPI events read from the new topic", worker)
        rows = await query(pg_url, "SELECT event_id, event_type FROM events ORDER BY event_id")
        assert [tuple(row) for row in rows] == [("fb-1", "feedback"), ("qr-1", "quality_review"), ("s-1", "sale")]
        await wait_until(lambda: dead_lettered(pg_url, 1), WAIT, "the bad feedback dead-lettered", worker)
        letters = await query(pg_url, "SELECT topic, reason, detail FROM dead_letters")
        assert [tuple(row) for row in letters] == [
            (topics.quality, "schema_violation", "Expected `int`, got `float` - at `$.rating`")]
        assert worker.alive()
    finally:
        worker.stop()


@pytest.mark.brokers("tansu", reason="the topic check is the admin client's; reading by name is every test's")
async def test_a_worker_with_kpi_requires_the_quality_topic(bare: Broker, tmp_path: Path, pg_url: str) -> None:
    plan = tmp_path / "kpi.toml"
    plan.write_text(DEFAULT_PLAN_PATH.read_text() + KPI_SECTION)
    worker = Worker(tmp_path, pg_url, "kpi", extra=["--broker", bare.url, "--plan", str(plan)])
    try:
        code = await asyncio.to_thread(worker.wait, WAIT)
        said = " ".join(worker.log().split())
        assert code == 2, said
        assert (f"topics crm.quality missing at {bare.url}: create them, or run `crmbonus worker --create-topics "
                "--partitions 6 --replication-factor -1`") in said
    finally:
        worker.stop()

    with contextlib.suppress(Exception):
        await create(bare.url, [bare.topics.quality])
    worker = Worker(tmp_path, pg_url, "kpi-2", extra=["--broker", bare.url, "--plan", str(plan)])
    try:
        await worker.wait_healthy(WAIT)
        assert (f"worker consuming crm.sales, crm.callbacks, crm.lead-handoffs, crm.quality at {bare.url}"
                in " ".join(worker.log().split()))
        await bare.publish([json.dumps(FEEDBACK).encode()])
        await wait_until(lambda: stored(pg_url, 1), WAIT, "the feedback stored", worker)
    finally:
        worker.stop()


async def stored(url: str, at_least: int) -> bool:
    return int((await query(url, "SELECT count(*) AS n FROM events"))[0]["n"]) >= at_least


async def dead_lettered(url: str, at_least: int) -> bool:
    return int((await query(url, "SELECT count(*) AS n FROM dead_letters"))[0]["n"]) >= at_least
