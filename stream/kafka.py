"""The broker adapter for what Faust does not do for us: topics and publishing files."""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from stream.errors import UnreachableError
from stream.settings import Topics, bootstrap_servers

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 15.0


def _unreachable(broker: str, error: Exception) -> UnreachableError:
    return UnreachableError(
        f"cannot reach the Kafka broker at {broker}: {error}. Check that it runs and that "
        "--broker / CRMBONUS_BROKER is kafka://host:port (several joined by ';')."
    )


async def ensure_topics(broker: str, topics: Topics, partitions: int) -> None:
    """Create the four topics of SPEC section 2 where missing (existing ones are left as they are)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(broker), request_timeout_ms=10_000)
    try:
        await asyncio.wait_for(admin.start(), CONNECT_TIMEOUT_S)
    except (TimeoutError, KafkaError, OSError) as error:
        await admin.close()
        raise _unreachable(broker, error) from error
    try:
        existing = set(await admin.list_topics())
        wanted = [*topics.inputs, topics.dead_letters]
        missing = [NewTopic(name, partitions, 1) for name in wanted if name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:  # another process was quicker
                pass
            logger.info("created topics %s", ", ".join(t.name for t in missing))
    finally:
        await admin.close()


@dataclass(frozen=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes


async def publish(
    broker: str,
    messages: Iterable[Outgoing],
    on_sent: Callable[[int], None] = lambda n: None,
    window: int = 2_000,
) -> dict[tuple[str, int], int]:
    """Send messages in order (per partition); return the next offset per (topic, partition).

    Up to `window` sends are in flight at once, so a large file streams through
    without holding every future in memory.
    """
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers(broker), acks="all", linger_ms=5,
        max_batch_size=1 << 20, request_timeout_ms=30_000,
    )
    try:
        await asyncio.wait_for(producer.start(), CONNECT_TIMEOUT_S)
    except (TimeoutError, KafkaConnectionError, KafkaError, OSError) as error:
        await producer.stop()
        raise _unreachable(broker, error) from error
    ends: dict[tuple[str, int], int] = {}
    pending: list[asyncio.Future[object]] = []

    async def drain() -> None:
        for metadata in await asyncio.gather(*pending):
            key = (metadata.topic, metadata.partition)  # type: ignore[attr-defined]
            ends[key] = max(ends.get(key, 0), metadata.offset + 1)  # type: ignore[attr-defined]
        on_sent(len(pending))
        pending.clear()

    partitions: dict[str, int] = {}
    try:
        for message in messages:
            partition = None
            if message.key is None:  # not random: a file replayed twice lands at the same offsets
                if message.topic not in partitions:
                    partitions[message.topic] = len(await producer.partitions_for(message.topic))
                partition = zlib.crc32(message.value) % partitions[message.topic]
            pending.append(await producer.send(message.topic, message.value, key=message.key,
                                               partition=partition))
            if len(pending) >= window:
                await drain()
        await drain()
    finally:
        await producer.stop()
    return ends
