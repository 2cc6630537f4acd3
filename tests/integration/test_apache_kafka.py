"""The real Apache Kafka broker of tests/apache_kafka.py: both listeners, SCRAM, and a kill -9.

Skipped, with the reason on stderr, where Java 17+ (and, with no cached jars, Maven) is missing:
`make java-deps` installs Debian's.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, UnknownTopicOrPartitionError

from tests import apache_kafka
from tests.apache_kafka import ApacheKafka

_reason = apache_kafka.unavailable()
if _reason is not None:
    print(f"\n{_reason}", file=sys.stderr)  # seen with -s; pytest swallows collection output otherwise,
    warnings.warn(_reason, UserWarning, stacklevel=1)  # but lists warnings in its summary: CI logs show this
    pytest.skip(_reason, allow_module_level=True)

pytestmark = pytest.mark.integration

WAIT = 60.0  # the bound of every single wait below (a broker on a busy 2-core machine)


@pytest.fixture(scope="module")
def kafka() -> Iterator[ApacheKafka]:
    with ApacheKafka() as broker:
        yield broker


def plaintext(kafka: ApacheKafka) -> dict[str, Any]:
    return kafka.aiokafka_options("plaintext")


def sasl_ssl(kafka: ApacheKafka, password: str | None = None) -> dict[str, Any]:
    return kafka.aiokafka_options("sasl_ssl", password=password)


async def create_topic(client: dict[str, Any]) -> str:
    name = f"t-{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(**client)
    try:
        await asyncio.wait_for(admin.start(), WAIT)
        await asyncio.wait_for(admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)]), WAIT)
    finally:
        await admin.close()
    return name


async def produce(client: dict[str, Any], topic: str, value: bytes) -> int:
    """The offset the broker acknowledged (acks=all) for one record."""
    producer = AIOKafkaProducer(acks="all", **client)
    try:
        await asyncio.wait_for(producer.start(), WAIT)
        sent = await asyncio.wait_for(producer.send_and_wait(topic, value, key=b"k"), WAIT)
    finally:
        await producer.stop()
    return int(sent.offset)


async def consume_first(client: dict[str, Any], topic: str) -> bytes:
    """The first record of the topic, read from the beginning without a group."""
    consumer = AIOKafkaConsumer(topic, auto_offset_reset="earliest", enable_auto_commit=False, **client)
    try:
        await asyncio.wait_for(consumer.start(), WAIT)
        record = await asyncio.wait_for(consumer.getone(), WAIT)
    finally:
        await consumer.stop()
    assert record.value is not None
    return bytes(record.value)


async def test_plaintext_create_produce_consume(kafka: ApacheKafka) -> None:
    assert kafka.plaintext.startswith("kafka://127.0.0.1:")
    topic = await create_topic(plaintext(kafka))
    assert await produce(plaintext(kafka), topic, b"over plaintext") == 0
    assert await consume_first(plaintext(kafka), topic) == b"over plaintext"


async def test_sasl_ssl_scram_create_produce_consume(kafka: ApacheKafka) -> None:
    topic = await create_topic(sasl_ssl(kafka))
    assert await produce(sasl_ssl(kafka), topic, b"over sasl_ssl") == 0
    assert await consume_first(sasl_ssl(kafka), topic) == b"over sasl_ssl"
    assert await consume_first(plaintext(kafka), topic) == b"over sasl_ssl"  # one broker behind both


async def test_wrong_password_is_refused(kafka: ApacheKafka, caplog: pytest.LogCaptureFixture) -> None:
    """Refused at once; aiokafka raises 'Unable to bootstrap' and logs the broker's reason as a warning."""
    producer = AIOKafkaProducer(**sasl_ssl(kafka, password="not-" + kafka.password))
    began = time.monotonic()
    try:
        with caplog.at_level(logging.WARNING, logger="aiokafka"), \
                pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
            await asyncio.wait_for(producer.start(), WAIT)
    finally:
        await producer.stop()
    assert time.monotonic() - began < 15
    assert "SaslAuthenticationFailed" in caplog.text and "invalid credentials" in caplog.text, caplog.text


async def test_no_topic_is_created_by_producing(kafka: ApacheKafka) -> None:
    """auto.create.topics.enable=false: a send to a missing topic gives up waiting for its metadata."""
    missing = f"missing-{uuid.uuid4().hex[:10]}"
    producer = AIOKafkaProducer(request_timeout_ms=1500, **plaintext(kafka))
    try:
        await asyncio.wait_for(producer.start(), WAIT)
        with pytest.raises(UnknownTopicOrPartitionError):
            await asyncio.wait_for(producer.send_and_wait(missing, b"x"), WAIT)
    finally:
        await producer.stop()
    admin = AIOKafkaAdminClient(**plaintext(kafka))
    try:
        await asyncio.wait_for(admin.start(), WAIT)
        assert missing not in await asyncio.wait_for(admin.list_topics(), WAIT)
    finally:
        await admin.close()


async def test_a_record_survives_kill_minus_nine(kafka: ApacheKafka) -> None:
    topic = await create_topic(plaintext(kafka))
    await produce(plaintext(kafka), topic, b"before the kill")
    pid = kafka.pid
    kafka.kill()
    assert not kafka.running
    await asyncio.wait_for(kafka.start_async(), WAIT * 2)
    assert kafka.running and kafka.pid != pid
    assert await consume_first(plaintext(kafka), topic) == b"before the kill"
    assert await consume_first(sasl_ssl(kafka), topic) == b"before the kill"  # the SCRAM user survives too


def test_launcher_facts(kafka: ApacheKafka) -> None:
    assert kafka.version == apache_kafka.KAFKA_VERSION
    assert kafka.ca_file.read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert kafka.log_file.is_file() and kafka.workdir in kafka.log_file.parents
    assert "Kafka Server started" in kafka.log_file.read_text()
    assert kafka.startup_seconds is not None and kafka.startup_seconds < WAIT
