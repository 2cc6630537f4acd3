"""The broker adapter for what Faust does not do for us: client security, topics and publishing files.

`client_options` is the one place Kafka's security settings become client arguments: the batch
consumer (stream/consumer.py), the admin client here, `publish`'s producer and Faust's own
producer (stream/app.py) all take them from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAlreadyExistsError,
    UnsupportedSaslMechanismError,
    for_code,
)
from aiokafka.helpers import create_ssl_context
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.structs import RecordMetadata

from stream.errors import ConfigError, CrmbonusError, UnreachableError
from stream.plan import Plan
from stream.plan_versions import Plans, as_plans
from stream.settings import (
    ENV_BROKER,
    ENV_KAFKA_SASL_MECHANISM,
    ENV_KAFKA_SASL_USERNAME,
    ENV_KAFKA_SECURITY_PROTOCOL,
    ENV_KAFKA_SSL_CAFILE,
    ENV_KAFKA_SSL_CERTFILE,
    ENV_KAFKA_SSL_KEYFILE,
    PLAINTEXT,
    KafkaSecurity,
    Resolved,
    Topics,
    bootstrap_servers,
)

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 15.0
#: How long the diagnosis of a failed start may take for one bootstrap server.
DIAGNOSE_TIMEOUT_S = 10.0
#: Largest record batch `publish` builds for one partition. Small enough that a large file
#: streams out while the rest is still being read (with 1 MB, 30,000 demo events left in
#: one go at the end: consumers sat idle for the first 0.2 s), large enough to cost no
#: more CPU per message than 1 MB did (3.8 µs).
BATCH_BYTES = 64 << 10


def client_options(security: KafkaSecurity) -> dict[str, Any]:
    """aiokafka's keyword arguments for `security`, the same for every client crmbonus makes.

    `security_protocol` always; `sasl_mechanism`, `sasl_plain_username` and `sasl_plain_password`
    with SASL; `ssl_context` (aiokafka's `create_ssl_context` of the CA, certificate and key files;
    the system's CAs without a CA file) with TLS.
    """
    options: dict[str, Any] = {"security_protocol": security.protocol}
    if security.sasl:
        options.update(sasl_mechanism=security.mechanism, sasl_plain_username=security.sasl_username,
                       sasl_plain_password=security.sasl_password)
    if security.tls:
        options["ssl_context"] = _ssl_context(security)
    return options


@functools.cache
def _ssl_context(security: KafkaSecurity) -> ssl.SSLContext:
    """One context per process for these settings (the files are read once)."""
    def name(path: object) -> str | None:
        return None if path is None else str(path)

    try:
        return create_ssl_context(cafile=name(security.ssl_cafile), certfile=name(security.ssl_certfile),
                                  keyfile=name(security.ssl_keyfile))
    except (ssl.SSLError, OSError, ValueError) as error:
        raise ConfigError(_unloadable(security, error)) from error


def _unloadable(security: KafkaSecurity, error: Exception) -> str:
    """Which of the TLS files is wrong: the CA file on its own, else the certificate and key."""
    if security.ssl_cafile is not None:
        try:
            ssl.create_default_context(cafile=str(security.ssl_cafile))
        except (ssl.SSLError, OSError, ValueError) as ca_error:
            return (f"{security.ssl_cafile} is not a CA certificate file (PEM) ({ca_error}; "
                    f"set by {ENV_KAFKA_SSL_CAFILE})")
    return (f"the client certificate {security.ssl_certfile} (key: {security.ssl_keyfile or 'in the same file'}) "
            f"does not load: {error}; check {ENV_KAFKA_SSL_CERTFILE} and {ENV_KAFKA_SSL_KEYFILE}")


class _BootstrapFailures(logging.Filter):
    """Drops aiokafka's error line for each bootstrap server it could not connect to."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Unable connect to")


@contextlib.contextmanager
def _quiet_bootstrap() -> Iterator[None]:
    """While a client starts: aiokafka logs each failed bootstrap connection as an error (on the
    `aiokafka` logger itself); the one line `connection_error` gives says it better."""
    client_logger = logging.getLogger("aiokafka")
    quiet = _BootstrapFailures()
    client_logger.addFilter(quiet)
    try:
        yield
    finally:
        client_logger.removeFilter(quiet)


async def connection_error(broker: str, security: KafkaSecurity, error: BaseException) -> UnreachableError:
    """One line saying why a client could not start: its broker, what went wrong, what to check.

    aiokafka only says "Unable to bootstrap"; a single connection to each bootstrap server
    tells a refused SASL login from a TLS mismatch from nothing listening.
    """
    if isinstance(error, TimeoutError):
        return UnreachableError(
            f"Kafka at {broker} did not answer within {CONNECT_TIMEOUT_S:.0f} s: check --broker / {ENV_BROKER}, "
            f"that it is reachable from here, and that {ENV_KAFKA_SECURITY_PROTOCOL} ({security.protocol}) "
            "is its listener's protocol"
        )
    options = client_options(security)
    for hostport in bootstrap_servers(broker):
        host, _, port = hostport.rpartition(":")
        try:
            conn = await asyncio.wait_for(create_conn(host, int(port), request_timeout_ms=5_000, **options),
                                          DIAGNOSE_TIMEOUT_S)
        except Exception as probe:  # classified below; anything else is said as it is
            return UnreachableError(_diagnosis(hostport, security, probe))
        conn.close()
    return UnreachableError(
        f"cannot use the Kafka broker at {broker} ({security.describe()}): {error}. Its bootstrap servers answer: "
        "check that its advertised.listeners are reachable from here"
    )


def _diagnosis(hostport: str, security: KafkaSecurity, error: Exception) -> str:
    protocol = f"{ENV_KAFKA_SECURITY_PROTOCOL} ({security.protocol})"
    if isinstance(error, SaslAuthenticationFailed):
        return (f"Kafka at {hostport} refused the SASL login of user {security.sasl_username!r} "
                f"({security.mechanism}): check {ENV_KAFKA_SASL_USERNAME} and {security.password_variable}")
    if isinstance(error, UnsupportedSaslMechanismError):
        return (f"Kafka at {hostport} does not offer the SASL mechanism {security.mechanism}: "
                f"check {ENV_KAFKA_SASL_MECHANISM}")
    if isinstance(error, ssl.SSLCertVerificationError):
        trusted = security.ssl_cafile or "the system's CAs"
        return (f"Kafka at {hostport} sent a TLS certificate that does not verify against {trusted} "
                f"({error.verify_message}): check {ENV_KAFKA_SSL_CAFILE}")
    if isinstance(error, ssl.SSLError):
        return (f"the TLS handshake with Kafka at {hostport} failed ({error.reason or error}): check that its "
                f"listener is TLS ({protocol}) and {ENV_KAFKA_SSL_CERTFILE} / {ENV_KAFKA_SSL_KEYFILE}")
    if isinstance(error, ConnectionRefusedError):
        return f"cannot reach Kafka at {hostport}: connection refused: check that it runs and --broker / {ENV_BROKER}"
    if security.tls and isinstance(error, (ConnectionResetError, KafkaConnectionError, asyncio.IncompleteReadError)):
        return (f"Kafka at {hostport} dropped the TLS handshake: its listener may not be TLS; "
                f"check {protocol} and --broker / {ENV_BROKER}")
    if isinstance(error, (KafkaConnectionError, ConnectionResetError, asyncio.IncompleteReadError)):
        return (f"Kafka at {hostport} closed the connection: its listener may expect TLS or SASL; "
                f"check {protocol} and --broker / {ENV_BROKER}")
    if isinstance(error, TimeoutError):
        return (f"Kafka at {hostport} did not answer within {DIAGNOSE_TIMEOUT_S:.0f} s: check {protocol} "
                f"and --broker / {ENV_BROKER}")
    if isinstance(error, OSError):
        return f"cannot reach Kafka at {hostport}: {error.strerror or error}: check --broker / {ENV_BROKER}"
    return f"Kafka at {hostport} ({security.describe()}): {type(error).__name__}: {error}"


def quality_topic_required(plan: Plan | Plans) -> bool:
    """Whether the topic `crm.quality` must exist (SPEC section 11): when a plan version has `[kpi]`.

    Otherwise the worker reads it when it exists (`BatchConsumer.join`).
    """
    return any(version.kpi is not None for version in as_plans(plan).versions)


async def ensure_topics(
    broker: str,
    topics: Topics,
    partitions: int,
    *,
    security: KafkaSecurity = PLAINTEXT,
    create: bool = True,
    replication_factor: int = 1,
    required: Sequence[str] | None = None,
    quality_required: bool = False,
    command: str = "worker",
) -> tuple[str, ...]:
    """Check that the topics of SPEC sections 2 and 13 exist; create the missing ones if `create`.

    Without `create` (a configured broker, SPEC section 11), missing `required` topics are an error
    naming them and the `crmbonus <command> --create-topics` that would make them. `required`
    defaults to the three input topics of section 2, the quality topic if `quality_required`, and
    the dead-letter topic. With `create`, every missing one of the five is made, the quality topic
    included (existing ones are left as they are). Returns the input topics that exist now, in the
    order of `Topics.inputs`: what a worker can subscribe to.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(broker), request_timeout_ms=10_000,
                                **client_options(security))
    try:
        with _quiet_bootstrap():
            await asyncio.wait_for(admin.start(), CONNECT_TIMEOUT_S)
    except (TimeoutError, KafkaError, OSError) as error:
        await admin.close()
        raise await connection_error(broker, security, error) from error
    try:
        existing = set(await admin.list_topics())
        wanted = [*topics.inputs, topics.dead_letters]
        if not create:
            if required is None:
                required = [*topics.required(quality=quality_required), topics.dead_letters]
            missing = [name for name in required if name not in existing]
            if missing:
                visible = f" (or user {security.sasl_username!r} may not see them)" if security.sasl else ""
                raise ConfigError(
                    f"topics {', '.join(missing)} missing at {broker}{visible}: create them, or run "
                    f"`crmbonus {command} --create-topics --partitions {partitions} --replication-factor "
                    f"{replication_factor}`"
                )
            return tuple(name for name in topics.inputs if name in existing)
        absent = [name for name in wanted if name not in existing]
        if absent:
            await _create(admin, broker, absent, partitions, replication_factor)
        return topics.inputs
    finally:
        await admin.close()


async def ensure_topics_of(settings: Resolved, *, command: str = "worker", required: Sequence[str] | None = None,
                           quality_required: bool = False) -> tuple[str, ...]:
    """`ensure_topics` as `settings` say: created on the embedded broker or with `--create-topics`."""
    return await ensure_topics(settings.broker, settings.topics, settings.partitions, security=settings.kafka,
                               create=settings.creates_topics, replication_factor=settings.topic_replicas,
                               required=required, quality_required=quality_required, command=command)


async def _create(admin: AIOKafkaAdminClient, broker: str, names: Sequence[str], partitions: int,
                  replication_factor: int) -> None:
    """CreateTopics; the broker's refusals are errors (aiokafka returns them, it does not raise them)."""
    requests = []
    for name in names:
        topic = NewTopic(name, partitions, 1)
        # -1: the broker's default.replication.factor (KIP-464, Kafka 2.4+); aiokafka's NewTopic
        # refuses it client-side, Kafka 4.x takes it on the CreateTopics v3 aiokafka speaks (tested).
        topic.replication_factor = replication_factor
        requests.append(topic)
    response = await admin.create_topics(requests)
    refused: dict[str, str] = {}
    for topic, code, message in (entry[:3] for entry in response.topic_errors):
        error = for_code(code)
        if code and error is not TopicAlreadyExistsError:  # already there: another process was quicker
            refused[topic] = message or error.__name__
    created = [name for name in names if name not in refused]
    if created:
        logger.info("created topics %s at %s (%d partitions, replication factor %d)",
                    ", ".join(created), broker, partitions, replication_factor)
    if refused:
        reasons = "; ".join(f"{topic}: {reason}" for topic, reason in refused.items())
        raise CrmbonusError(f"Kafka at {broker} did not create the topics ({reasons}) "
                            f"with --partitions {partitions} --replication-factor {replication_factor}")


@dataclass(frozen=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes


async def publish(
    broker: str,
    messages: Iterable[Outgoing],
    on_sent: Callable[[int], None] = lambda n: None,
    window: int = 20_000,
    *,
    security: KafkaSecurity = PLAINTEXT,
) -> dict[tuple[str, int], int]:
    """Send messages in order (per partition); return the next offset per (topic, partition).

    Messages are packed into one record batch per partition and sent a batch at a
    time: a third of the CPU of one `send` per message (measured: 5 vs 16 µs a
    message). At most `window` messages wait for the broker's acknowledgement, so a
    large file streams through without holding it all in memory.
    """
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers(broker), acks="all", linger_ms=5,
        max_batch_size=BATCH_BYTES, request_timeout_ms=30_000, **client_options(security),
    )
    try:
        with _quiet_bootstrap():
            await asyncio.wait_for(producer.start(), CONNECT_TIMEOUT_S)
    except (TimeoutError, KafkaError, OSError) as error:
        await producer.stop()
        raise await connection_error(broker, security, error) from error
    try:
        return await _Batches(producer, on_sent, window).send_all(messages)
    finally:
        await producer.stop()


class _Batches:
    """Open record batches per (topic, partition), sent in order as they fill up."""

    def __init__(self, producer: AIOKafkaProducer, on_sent: Callable[[int], None], window: int) -> None:
        self.producer = producer
        self.on_sent = on_sent
        self.window = window
        self.partitioner = DefaultPartitioner()  # the one `AIOKafkaProducer.send` uses for keys
        self.partitions: dict[str, list[int]] = {}
        self.by_key: dict[tuple[str, bytes], int] = {}  # murmur2 is pure Python (3 µs); keys repeat
        self.open: dict[tuple[str, int], BatchBuilder] = {}
        self.in_flight: list[tuple[asyncio.Future[RecordMetadata], int]] = []
        self.waiting = 0
        self.ends: dict[tuple[str, int], int] = {}

    async def send_all(self, messages: Iterable[Outgoing]) -> dict[tuple[str, int], int]:
        for message in messages:
            if message.topic not in self.partitions:
                self.partitions[message.topic] = sorted(await self.producer.partitions_for(message.topic))
            full = self.add(message)
            if full is not None:
                await self.send(full)
                self.add(message)  # a first record always fits an empty batch
            if self.waiting >= self.window:
                await self.flush()
        await self.flush()
        return self.ends

    def add(self, message: Outgoing) -> tuple[str, int] | None:
        """Append to its partition's open batch; if that is full, return the partition unappended.

        Not a coroutine: it runs once per message and awaits nothing (a coroutine cost ~1 µs a message).
        """
        key = (message.topic, self.partition_of(message))
        builder = self.open.get(key)
        if builder is None:
            builder = self.open[key] = self.producer.create_batch()
        if builder.append(key=message.key, value=message.value, timestamp=None) is None:
            return key
        self.waiting += 1
        return None

    def partition_of(self, message: Outgoing) -> int:
        partitions = self.partitions[message.topic]
        if message.key is None:  # not random: a file replayed twice lands at the same offsets
            return partitions[zlib.crc32(message.value) % len(partitions)]
        found = self.by_key.get((message.topic, message.key))
        if found is None:
            found = self.by_key[(message.topic, message.key)] = int(
                self.partitioner(message.key, partitions, partitions))
        return found

    async def send(self, key: tuple[str, int]) -> None:
        builder = self.open.pop(key)
        count = builder.record_count()
        if count:
            future = await self.producer.send_batch(builder, key[0], partition=key[1])
            self.in_flight.append((future, count))

    async def flush(self) -> None:
        """Send every open batch and wait for the broker to acknowledge all of them."""
        for key in list(self.open):
            await self.send(key)
        await self.drain()

    async def drain(self) -> None:
        for metadata, (_, count) in zip(await asyncio.gather(*(f for f, _ in self.in_flight)),
                                        self.in_flight, strict=True):
            key = (metadata.topic, metadata.partition)
            self.ends[key] = max(self.ends.get(key, 0), metadata.offset + count)
        self.on_sent(sum(count for _, count in self.in_flight))
        self.in_flight.clear()
        self.waiting = 0
