"""The CRM consumer's side of Kafka: the group, the fetches, the offsets, the lag, the dead letters out.

agents/crm.py runs the loop (fetch, pipeline, forward, commit); what it needs of the
broker is here, so that the loop reads as the order of its guarantees and this
module as the client settings that make them hold. Offsets committed here only say
where to resume: Postgres (`consumer_progress`) holds the progress that counts.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

import faust
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from faust.exceptions import NotReady

from schemas.messages import DeadLetter, Message
from stream.kafka import client_options, ensure_topics_of, quality_topic_required
from stream.settings import Resolved, bootstrap_servers

if TYPE_CHECKING:
    from stream.runtime import Runtime

logger = logging.getLogger(__name__)

#: Read-ahead per partition and per fetch: whole batches arrive in one fetch.
MAX_PARTITION_FETCH_BYTES = 4 << 20
FETCH_MAX_BYTES = 16 << 20
#: How long the broker may hold a fetch that has nothing to return. aiokafka's default is
#: 500 ms, and the embedded broker held a fetch over our 18 partitions that long even as
#: records arrived (with one partition it answered at once): a burst into an idle worker was
#: first read ~0.3 s after it began; with 50 ms, after ~50 ms (measured).
FETCH_MAX_WAIT_MS = 50
#: Records of an aborted Kafka transaction are never read, and those of an open one only once it
#: commits (SPEC section 11): a transactional CRM publisher's rollback never reaches the bonus tables.
ISOLATION_LEVEL = "read_committed"
#: Kafka's default message limit is 1 MB; a longer dead letter is cut on the topic (not in Postgres).
MAX_FORWARDED_BYTES = 900 * 1024
#: How often a worker whose quality topic is missing looks for it (aiokafka's metadata refresh,
#: 5 minutes by default): a `feedback` published once the topic is made is read within this.
WATCH_METADATA_MAX_AGE_MS = 30_000
#: How long a dead letter waits for the app's producer to finish starting (tries x seconds).
PRODUCER_START_WAIT_TRIES = 100
PRODUCER_START_WAIT_S = 0.1


#: `Message(...)` runs the named tuple's Python-level `__new__`; this is the C constructor it calls
#: (one Message per record: 0.2 -> 0.1 µs each, measured).
_new_message = tuple.__new__


class BatchConsumer:
    """This worker's member of the consumer group, read a batch at a time with `getmany`."""

    def __init__(self, kafka: AIOKafkaConsumer, settings: Resolved) -> None:
        self.kafka = kafka
        self.settings = settings

    @classmethod
    async def join(cls, runtime: Runtime, idle: asyncio.Event) -> BatchConsumer:
        """Check the topics (created where missing on the embedded broker or with `--create-topics`)
        and join the group; a rebalance waits for `idle` (no batch in flight). The quality topic,
        required only by a plan with `[kpi]`, is otherwise read once it exists: while it is missing
        the subscription is a pattern of the input topics (`inputs_pattern`). Auto-commit is off:
        offsets are committed only after the batch's Postgres commit. The lag's high-water marks
        come from this client's fetches, so it reads them with the same security settings."""
        settings, timing = runtime.settings, runtime.timing
        present = await ensure_topics_of(settings, quality_required=quality_topic_required(runtime.plan))
        topics = settings.topics
        watch = topics.quality not in present  # SPEC section 11: read when it exists
        if watch:
            logger.info("topic %s is not at %s: reading %s, and %s as soon as it is created (within %d s)",
                        topics.quality, settings.broker, ", ".join(present), topics.quality,
                        WATCH_METADATA_MAX_AGE_MS // 1000)
        kafka = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers(settings.broker),
            group_id=settings.group_id,
            client_id=f"crmbonus-{settings.group_id}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level=ISOLATION_LEVEL,
            session_timeout_ms=int(timing.session_timeout * 1000),
            heartbeat_interval_ms=int(timing.heartbeat_interval * 1000),
            rebalance_timeout_ms=int(timing.rebalance_timeout * 1000),
            max_partition_fetch_bytes=MAX_PARTITION_FETCH_BYTES,
            fetch_max_bytes=FETCH_MAX_BYTES,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            max_poll_interval_ms=settings.max_poll_interval_ms,
            **({"metadata_max_age_ms": WATCH_METADATA_MAX_AGE_MS} if watch else {}),
            **client_options(settings.kafka),
        )
        listener = _Rebalance(runtime, idle)
        if watch:
            kafka.subscribe(pattern=inputs_pattern(topics.inputs), listener=listener)
        else:
            kafka.subscribe(list(topics.inputs), listener=listener)
        await kafka.start()
        return cls(kafka, settings)

    async def leave(self) -> None:
        """Leave the group: the partitions move to the other members at once."""
        await self.kafka.stop()

    async def fetch(self) -> list[Message]:
        """What `getmany` has within `batch_within`, up to `batch_max` records; often nothing."""
        records = await self.kafka.getmany(timeout_ms=int(self.settings.batch_within * 1000),
                                           max_records=self.settings.batch_max)
        messages: list[Message] = []
        for tp, partition_records in records.items():  # a partition's records share topic and partition
            topic, partition, make = tp.topic, tp.partition, _new_message
            messages += [make(Message, (topic, partition, r.offset, r.key, r.value or b"", r.timestamp / 1000))
                         for r in partition_records]
        return messages

    async def commit(self, next_offsets: dict[tuple[str, int], int]) -> None:
        """Tell Kafka where to resume. Best effort: Postgres holds the progress that counts."""
        assigned = self.kafka.assignment()
        offsets = {tp: offset for (topic, partition), offset in next_offsets.items()
                   if (tp := TopicPartition(topic, partition)) in assigned}
        if not offsets:
            return
        try:
            await self.kafka.commit(offsets)
        except (CommitFailedError, IllegalStateError, KafkaError) as error:  # a rebalance took them
            logger.info("offsets not committed to Kafka (%s); the next owner reads them again", error)

    def highwaters(self) -> dict[tuple[str, int], int]:
        """The broker's high-water mark of each partition held, where the fetches have told it yet."""
        found: dict[tuple[str, int], int] = {}
        for tp in self.kafka.assignment():
            highwater = self.kafka.highwater(tp)
            if highwater is not None:
                found[(tp.topic, tp.partition)] = highwater
        return found


def inputs_pattern(names: Iterable[str]) -> str:
    """A subscription pattern matching exactly these topic names.

    Subscribed by name, a missing topic would be asked for in every metadata request, which a
    broker with `auto.create.topics.enable` answers by creating it (with its default partitions);
    a pattern asks for all topics and creates none. The group rebalances when a match appears.
    """
    return "^(?:" + "|".join(re.escape(name) for name in names) + r")\Z"


class _Rebalance(ConsumerRebalanceListener):
    """Lets the batch in flight commit before the partitions move, and tracks /health."""

    def __init__(self, runtime: Runtime, idle: asyncio.Event) -> None:
        self.runtime = runtime
        self.idle = idle

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.runtime.rebalancing = True
        try:
            await asyncio.wait_for(self.idle.wait(), self.runtime.timing.rebalance_timeout / 2)
        except TimeoutError:
            logger.warning("rebalancing with a batch still in flight; the next owner may read it again")

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.runtime.rebalancing = False
        self.runtime.consuming = True


async def forward(topic: faust.TopicT, letters: Iterable[DeadLetter]) -> None:
    """Copy dead letters (already in Postgres) to the dead-letter topic, each cut to fit a Kafka message.

    A failure here is logged, not raised: the record of a dead letter is the
    table, and the batch is committed already.
    """
    for letter in letters:
        value = letter.message.value
        cut = len(value) > MAX_FORWARDED_BYTES
        try:
            for attempt in range(PRODUCER_START_WAIT_TRIES):
                try:
                    await topic.send(key=letter.message.key, value=value[:MAX_FORWARDED_BYTES] if cut else value,
                                     headers=headers(letter, original_size=len(value) if cut else None))
                    break
                except NotReady:  # the app's producer is still starting: a backlog's first batch can be quicker
                    if attempt + 1 == PRODUCER_START_WAIT_TRIES:
                        raise
                    await asyncio.sleep(PRODUCER_START_WAIT_S)
        except Exception:  # the producer refusing one record must not stop the consumer
            logger.exception("dead letter %s:%d:%d not forwarded to %s (it is in the dead_letters table)",
                             letter.message.topic, letter.message.partition, letter.message.offset, topic)


def headers(letter: DeadLetter, original_size: int | None = None) -> dict[str, bytes]:
    """Where the dead letter came from and why, so ops can replay it once fixed."""
    msg = letter.message
    found = {
        "reason": letter.reason.encode(),
        "detail": letter.detail.encode(),
        "source_topic": msg.topic.encode(),
        "source_partition": str(msg.partition).encode(),
        "source_offset": str(msg.offset).encode(),
    }
    if original_size is not None:
        found["original_size"] = str(original_size).encode()
    return found
