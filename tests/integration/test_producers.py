"""Producers nobody here wrote: librdkafka (confluent-kafka), as a CRM system would publish (SPEC section 11).

The worked example goes out through `confluent_kafka.Producer`, routed as `crmbonus publish`
routes (stream.publishing.to_outgoing: the topic of its event_type, keyed by customer_id),
compressed with each of gzip, snappy, lz4 and zstd, idempotent, with headers on every record;
a `crmbonus worker` reads it until Postgres has committed every offset, and the table is the
example's to the cent. A transactional producer commits one transaction and aborts another:
the worker reads with isolation_level=read_committed, so the aborted sale is never credited.

On both brokers (ids tansu, kafka); the transactional case only on Apache Kafka: tansu hands an
aborted transaction's records to read_committed consumers (see TANSU_TRANSACTIONS).
"""

from __future__ import annotations

import asyncio
import json
import struct
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from stream.publishing import to_outgoing
from stream.settings import DEFAULT_TOPIC_PREFIX
from tests.conftest import TANSU
from tests.examples import EXAMPLES
from tests.integration.conftest import (
    WAIT,
    Broker,
    KafkaBroker,
    Offsets,
    StartWorker,
    merge_ends,
    query,
    read_csv,
    running,
    wait_caught_up,
)
from tests.integration.test_replay import INVALID, MONTH

pytestmark = pytest.mark.integration

COMPRESSIONS = ("gzip", "snappy", "lz4", "zstd")
EXPECTED = EXAMPLES / "expected_running_after_month.csv"

#: Measured with tansu as embedded here (aiokafka, isolation_level=read_committed): the record of an
#: aborted transaction is returned like a committed one, so no consumer can leave it out.
TANSU_TRANSACTIONS = ("tansu returns the records of an aborted transaction to a read_committed consumer "
                      "(its fetch responses list no aborted transactions): it cannot honour an abort")


class ThirdPartyProducer:
    """A confluent_kafka.Producer sending JSON lines where `crmbonus publish` would send them."""

    def __init__(self, broker: Broker, **config: Any) -> None:
        self.broker = broker
        self.producer = Producer({"bootstrap.servers": broker.url.removeprefix("kafka://").replace(";kafka://", ","),
                                  "acks": "all", "linger.ms": 20, **config})
        self.sent = 0

    def __enter__(self) -> ThirdPartyProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.producer.close()  # else librdkafka's threads go on reconnecting to a stopped broker

    def send(self, lines: Iterable[bytes]) -> Offsets:
        """Produce `lines` and wait for every delivery report; the next offset per (topic, partition)."""
        reports: list[tuple[KafkaError | None, Message]] = []
        for raw in lines:
            message = to_outgoing(raw, self.broker.topics)
            self.sent += 1
            self.producer.produce(message.topic, value=message.value, key=message.key,
                                  headers=[("producer", b"librdkafka"), ("trace-id", uuid.uuid4().bytes),
                                           ("sequence", str(self.sent).encode())],
                                  on_delivery=lambda error, sent: reports.append((error, sent)))
        left = self.producer.flush(WAIT)
        assert left == 0, f"{left} records not delivered within {WAIT:.0f} s"
        failed = [error for error, _ in reports if error is not None]
        assert not failed, f"delivery failed: {failed[:3]}"
        ends: Offsets = {}
        for _, sent in reports:
            key = (str(sent.topic()), int(sent.partition() or 0))
            ends[key] = max(ends.get(key, 0), int(sent.offset() or 0) + 1)
        return ends


#: The codec bits (0-2) of a record batch's attributes (Kafka's message format v2).
CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}


def batch_codecs(broker: KafkaBroker, ends: Offsets) -> set[str]:
    """The codec of every record batch in the broker's log files of the partitions in `ends`:
    proof that the batches the worker read were compressed as the producer was told."""
    codecs = set()
    for (topic, partition), end in ends.items():
        segment = broker.kafka.workdir / "data" / f"{topic}-{partition}" / "00000000000000000000.log"
        data = segment.read_bytes()
        position = 0
        while end and position + 23 <= len(data):  # baseOffset 8, length 4, epoch 4, magic 1, crc 4, attributes 2
            (length,) = struct.unpack(">i", data[position + 8:position + 12])
            (attributes,) = struct.unpack(">h", data[position + 21:position + 23])
            codecs.add(CODECS[attributes & 7])
            position += 12 + length
    return codecs


def on_prefix(topic: str, broker: Broker) -> str:
    """A default topic name (crm.sales) as `broker` names it."""
    return broker.prefix + topic.removeprefix(DEFAULT_TOPIC_PREFIX)


async def stored_ids(url: str) -> list[str]:
    return [row["event_id"] for row in await query(url, "SELECT event_id FROM events ORDER BY event_id")]


@pytest.mark.parametrize("compression", COMPRESSIONS)
async def test_compressed_idempotent_producer_with_headers(
    compression: str, pg_url: str, broker: Broker, workers: StartWorker,
) -> None:
    lines = [*MONTH, *(raw for raw, _, _ in INVALID)]  # the invalid ones after what they copy
    with ThirdPartyProducer(broker, **{"compression.type": compression, "enable.idempotence": True}) as producer:
        ends = await asyncio.to_thread(producer.send, lines)
    worker = workers(pg_url, compression)
    await wait_caught_up(pg_url, ends, WAIT, worker)
    assert await running(pg_url) == read_csv(EXPECTED)
    assert await stored_ids(pg_url) == sorted(json.loads(raw)["event_id"] for raw in MONTH)
    if isinstance(broker, KafkaBroker):  # tansu keeps its log in memory: nothing to look at
        # librdkafka sends a batch uncompressed where compressing does not make it smaller (a lone
        # short record, measured), so "none" may be there too; the rest went as told
        codecs = batch_codecs(broker, ends)
        assert compression in codecs and codecs <= {compression, "none"}, codecs
    letters = await query(pg_url, 'SELECT topic, payload, reason FROM dead_letters')
    assert sorted((r["topic"], bytes(r["payload"]), r["reason"]) for r in letters) == sorted(
        (on_prefix(topic, broker), raw, reason) for raw, topic, reason in INVALID)


#: Sent in the aborted transaction: each would change the worked example's table if credited.
ABORTED = [
    json.dumps({"event_id": "tx-x1", "event_type": "cancellation", "occurred_at": "2026-11-06T10:00:00Z",
                "customer_id": "c1", "sale_id": "S1"}).encode(),  # would reverse fr-1's and tm-1's S1
    json.dumps({"event_id": "tx-s9", "event_type": "sale", "occurred_at": "2026-11-25T10:00:00Z",
                "customer_id": "c3", "sale_id": "S-TX", "seller_id": "fr-1", "seller_role": "field_rep",
                "currency": "EUR", "lines": [  # streaming: a cross-sell of the primary line's tv
                    {"line_id": "A", "sku": "TV-55", "category": "tv", "quantity": 1, "unit_price": "1000.00"},
                    {"line_id": "B", "sku": "STREAM-12", "category": "streaming", "quantity": 1,
                     "unit_price": "100.00"}]}).encode(),  # would give fr-1 a fifth cross-sell
]


async def test_transactional_producer_aborted_sale_is_never_credited(
    broker_kind: str, pg_url: str, broker: Broker, workers: StartWorker,
) -> None:
    """Committed, aborted, committed: the aborted records lie between committed ones on their
    partitions (same customers, same topic), so once every committed offset is in Postgres the
    worker has read past them: they are not merely late."""
    if broker_kind == TANSU:
        pytest.skip(TANSU_TRANSACTIONS)
    first, rest = MONTH[:2], MONTH[2:]  # c1's callback and sale; then c1's refund, c2, c3 ...
    assert {json.loads(raw)["customer_id"] for raw in rest} >= {"c1", "c3"}
    with ThirdPartyProducer(broker, **{"transactional.id": f"crm-{uuid.uuid4().hex[:8]}",
                                       "compression.type": "zstd"}) as producer:
        ends = await asyncio.to_thread(_transactions, producer, [(first, True), (ABORTED, False), (rest, True)])
    worker = workers(pg_url, "read-committed")
    await wait_caught_up(pg_url, ends, WAIT, worker)
    assert await running(pg_url) == read_csv(EXPECTED)
    assert await stored_ids(pg_url) == sorted(json.loads(raw)["event_id"] for raw in MONTH)
    assert await query(pg_url, "SELECT 1 FROM dead_letters") == []


def _transactions(producer: ThirdPartyProducer, transactions: Sequence[tuple[Sequence[bytes], bool]]) -> Offsets:
    """Each (lines, commit) as a transaction of its own; the ends of the committed records only.

    An aborted transaction's records are flushed (written to the log) before the abort, which
    otherwise may purge them unsent, and then no consumer could be tested on them.
    """
    kafka = producer.producer
    try:
        kafka.init_transactions(WAIT)
        committed: list[Offsets] = []
        for lines, commit in transactions:
            kafka.begin_transaction()
            ends = producer.send(lines)
            if commit:
                kafka.commit_transaction(WAIT)
                committed.append(ends)
            else:
                kafka.abort_transaction(WAIT)
    except KafkaException as error:
        raise AssertionError(f"the transactional producer failed: {error}") from error
    return merge_ends(*committed)
