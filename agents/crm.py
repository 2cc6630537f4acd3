"""The CRM consumer: batches from the input topics (SPEC 2, 13) into the pipeline, dead letters out.

It runs as a service of the Faust app (which also owns the web server, the timers
and the producer), but reads with aiokafka's `getmany` rather than a Faust agent's
stream: Faust's per-message path (an event object, a queue hop from its consumer
thread and an ack per record) costs more per message than the whole pipeline costs
per event (`make bench`: row 1b, a bare agent that only acks, against row 4). A batch
here is simply what `getmany` returns, up to `batch_max` records.

Offsets are committed to Kafka only after the batch's Postgres transaction is in.
Postgres is the record (`consumer_progress`, written in that transaction); the
Kafka offset only says where to resume, and may lag: anything read twice is a
duplicate by `event_id` and changes nothing. One task reads and handles batches
in turn, so no offset is ever committed past a batch still in flight.

This module is that loop; how it talks to Kafka (the client's settings, the
rebalance listener, offset commits, dead letters onto their topic) is the Kafka
adapter's, stream/consumer.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING

import faust
from mode import Service

from schemas.messages import Message
from stream.consumer import BatchConsumer, forward
from stream.memory import return_free_memory, settle_garbage_collector
from stream.pipeline import BatchResult, Pipeline
from stream.plan_changes import PlansChanged

if TYPE_CHECKING:
    from stream.runtime import Runtime

logger = logging.getLogger(__name__)

#: On shutdown, how long a batch in flight may take to commit before it is left uncommitted.
SHUTDOWN_GRACE_S = 5.0
#: On shutdown, how long the Kafka commit of the last batch's offsets may take (best effort).
OFFSETS_GRACE_S = 2.0


class CrmConsumer(Service):
    """Reads batches in the consumer group and commits each to Postgres before its offsets."""

    def __init__(self, runtime: Runtime, dead_letters: faust.TopicT, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.runtime = runtime
        self.dead_letters = dead_letters
        self.idle = asyncio.Event()  # set while no batch is in flight: a rebalance waits for it
        self.idle.set()
        self.consumer: BatchConsumer | None = None

    async def on_start(self) -> None:
        self.consumer = await BatchConsumer.join(self.runtime, self.idle)
        settle_garbage_collector()

    async def on_shutdown(self) -> None:
        """After the reading task has stopped (and its batch in flight committed, or given up)."""
        if self.consumer is not None:
            consumer, self.consumer = self.consumer, None
            await consumer.leave()

    @Service.task
    async def _consume(self) -> None:
        assert self.consumer is not None, "joined in on_start"
        assert self.runtime.pipeline is not None, "the Postgres service starts before the consumer"
        consumer, pipeline = self.consumer, self.runtime.pipeline
        while not self.should_stop:
            batch = await consumer.fetch()
            if not batch:
                continue
            self.idle.clear()
            try:
                result, stopping = await commit_even_if_stopped(pipeline, batch)
            except PlansChanged as changed:  # SPEC 12: the worker started last wins; this one stops
                self.runtime.stop_with(str(changed))
                return
            finally:
                self.idle.set()
            # Dead letters first: `batch_done` may end a `replay` (caught up), and a stopping worker
            # still has its grace period; either way they must be on the topic before it exits.
            await forward(self.dead_letters, result.new_dead_letters)
            self.runtime.batch_done(result, batch)
            stopping |= await finish_even_if_stopped(consumer.commit(result.next_offsets), OFFSETS_GRACE_S)
            return_free_memory()
            if stopping:
                raise asyncio.CancelledError


async def finish_even_if_stopped(work: Awaitable[None], grace: float) -> bool:
    """Await `work`; if the worker is stopped meanwhile, give it `grace` seconds to finish first.

    Returns whether the worker is stopping. `batch_done` can end a `replay`, whose SIGTERM then
    arrives during the offsets' commit: left running, that commit met the broker already
    stopped and aiokafka printed its failure as an unretrieved task's traceback.
    """
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
        return False
    except asyncio.CancelledError:
        try:
            await asyncio.wait_for(asyncio.shield(task), grace)
        except TimeoutError:
            task.cancel()
        return True


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
