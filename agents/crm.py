"""The CRM consumer: batches from the three input topics into the pipeline, dead letters out.

It runs as a service of the Faust app (which also owns the web server, the timers
and the producer), but reads with aiokafka's `getmany` rather than a Faust agent's
stream: Faust's per-message path (an event object, a queue hop from its consumer
thread and an ack per record) costs ~150 µs a message on a 2-core machine, ten
times the pipeline's own cost per event (`benchmarks`, row 1b). A batch here is
simply what `getmany` returns, up to `batch_max` records.

Offsets are committed to Kafka only after the batch's Postgres transaction is in.
Postgres is the record (`consumer_progress`, written in that transaction); the
Kafka offset only says where to resume, and may lag: anything read twice is a
duplicate by `event_id` and changes nothing. One task reads and handles batches
in turn, so no offset is ever committed past a batch still in flight.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import faust
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from faust.exceptions import NotReady
from mode import Service

from schemas.messages import DeadLetter, Message
from stream.kafka import ensure_topics
from stream.memory import return_free_memory, settle_garbage_collector
from stream.pipeline import BatchResult, Pipeline
from stream.settings import bootstrap_servers

if TYPE_CHECKING:
    from stream.app import GroupTiming, Runtime

logger = logging.getLogger(__name__)

#: On shutdown, how long a batch in flight may take to commit before it is left uncommitted.
SHUTDOWN_GRACE_S = 5.0
#: Kafka's default message limit is 1 MB; a longer dead letter is cut on the topic (not in Postgres).
MAX_FORWARDED_BYTES = 900 * 1024
#: How long a dead letter waits for the app's producer to finish starting (tries x seconds).
PRODUCER_START_WAIT_TRIES = 100
PRODUCER_START_WAIT_S = 0.1
#: Read-ahead per partition and per fetch: whole batches arrive in one fetch.
MAX_PARTITION_FETCH_BYTES = 4 << 20
FETCH_MAX_BYTES = 16 << 20
#: How long the broker may hold a fetch that has nothing to return. aiokafka's default is
#: 500 ms, and the embedded broker held a fetch over our 18 partitions that long even as
#: records arrived (with one partition it answered at once): a burst into an idle worker was
#: first read ~0.3 s after it began; with 50 ms, after ~50 ms (measured).
FETCH_MAX_WAIT_MS = 50


class CrmConsumer(Service):
    """Reads batches in the consumer group and commits each to Postgres before its offsets."""

    def __init__(self, runtime: Runtime, timing: GroupTiming, dead_letters: faust.TopicT,
                 **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.runtime = runtime
        self.timing = timing
        self.dead_letters = dead_letters
        self.idle = asyncio.Event()  # set while no batch is in flight
        self.idle.set()
        self.consumer: AIOKafkaConsumer | None = None

    async def on_start(self) -> None:
        settings = self.runtime.settings
        await ensure_topics(settings.broker, settings.topics, settings.partitions)
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers(settings.broker),
            group_id=settings.group_id,
            client_id=f"crmbonus-{settings.group_id}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(self.timing.session_timeout * 1000),
            heartbeat_interval_ms=int(self.timing.heartbeat_interval * 1000),
            rebalance_timeout_ms=int(self.timing.rebalance_timeout * 1000),
            max_partition_fetch_bytes=MAX_PARTITION_FETCH_BYTES,
            fetch_max_bytes=FETCH_MAX_BYTES,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )
        self.consumer.subscribe(list(settings.topics.inputs), listener=_Rebalance(self))
        await self.consumer.start()
        settle_garbage_collector()

    async def on_shutdown(self) -> None:
        """After the reading task has stopped (and its batch in flight committed, or given up)."""
        if self.consumer is not None:
            consumer, self.consumer = self.consumer, None
            await consumer.stop()  # leaves the group: the partitions move at once

    @Service.task
    async def _consume(self) -> None:
        settings = self.runtime.settings
        while not self.should_stop:
            assert self.consumer is not None
            records = await self.consumer.getmany(timeout_ms=int(settings.batch_within * 1000),
                                                  max_records=settings.batch_max)
            batch = [Message(r.topic, r.partition, r.offset, r.key, r.value or b"", r.timestamp / 1000)
                     for partition_records in records.values() for r in partition_records]
            if batch:
                await self.handle(batch)

    async def handle(self, batch: Sequence[Message]) -> None:
        assert self.runtime.pipeline is not None, "the Postgres service starts before the consumer"
        self.idle.clear()
        try:
            result, stopping = await commit_even_if_stopped(self.runtime.pipeline, batch)
        finally:
            self.idle.set()
        # Dead letters first: `batch_done` may end a `replay` (caught up), and a stopping worker
        # still has its grace period; either way they must be on the topic before it exits.
        for letter in result.new_dead_letters:
            await forward(self.dead_letters, letter)
        self.runtime.batch_done(result, batch)
        await self.commit_offsets(result.next_offsets)
        return_free_memory()
        if stopping:
            raise asyncio.CancelledError

    async def commit_offsets(self, next_offsets: dict[tuple[str, int], int]) -> None:
        """Tell Kafka where to resume. Best effort: Postgres holds the progress that counts."""
        assert self.consumer is not None
        assigned = self.consumer.assignment()
        offsets = {tp: offset for (topic, partition), offset in next_offsets.items()
                   if (tp := TopicPartition(topic, partition)) in assigned}
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError, KafkaError) as error:  # a rebalance took them
            logger.info("offsets not committed to Kafka (%s); the next owner reads them again", error)


class _Rebalance(ConsumerRebalanceListener):
    """Lets the batch in flight commit before the partitions move, and tracks /health."""

    def __init__(self, service: CrmConsumer) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.service.runtime.rebalancing = True
        try:
            await asyncio.wait_for(self.service.idle.wait(), self.service.timing.rebalance_timeout / 2)
        except TimeoutError:
            logger.warning("rebalancing with a batch still in flight; the next owner may read it again")

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.service.runtime.rebalancing = False
        self.service.runtime.consuming = True


async def commit_even_if_stopped(pipeline: Pipeline, batch: Sequence[Message]) -> tuple[BatchResult, bool]:
    """Handle the batch; if the worker is stopped meanwhile (SIGTERM), let the commit finish first.

    Returns the result and whether the worker is stopping. A batch that cannot commit
    within the grace period (Postgres away) is abandoned uncommitted: its events are
    read again after the restart, and nothing doubles.
    """
    work = asyncio.ensure_future(pipeline.handle(batch))
    try:
        return await asyncio.shield(work), False
    except asyncio.CancelledError:
        try:
            result = await asyncio.wait_for(asyncio.shield(work), SHUTDOWN_GRACE_S)
        except TimeoutError:
            work.cancel()
            logger.warning("stopping: a batch of %d was not committed and stays unacked", len(batch))
            raise asyncio.CancelledError from None
        logger.info("stopping: the batch in flight (%d messages) was committed first", len(batch))
        return result, True


async def forward(topic: faust.TopicT, letter: DeadLetter) -> None:
    """Copy a dead letter (already in Postgres) to the dead-letter topic, cut to fit a Kafka message.

    A failure here is logged, not raised: the record of the dead letter is the
    table, and the batch is committed already.
    """
    value = letter.message.value
    cut = len(value) > MAX_FORWARDED_BYTES
    try:
        for attempt in range(PRODUCER_START_WAIT_TRIES):
            try:
                await topic.send(key=letter.message.key, value=value[:MAX_FORWARDED_BYTES] if cut else value,
                                 headers=headers(letter, original_size=len(value) if cut else None))
                return
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
