"""The agent: batches from the three CRM topics into the pipeline, dead letters out.

One agent reads all three input topics, so a sale and the callback that touched
it can land in one batch and one transaction. `concurrency=1`: Faust would
otherwise commit offsets past batches still in flight.

Offsets are acked by hand, and only after the batch's Postgres transaction has
committed (`noack_take`): `take_events` acks a batch in its `finally`, even when
the batch failed or the worker was stopped half-way, and Faust would then commit
offsets of events that never reached Postgres.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import faust

from stream.pipeline import BatchResult, Pipeline
from stream.store import DeadLetter, Message

if TYPE_CHECKING:
    from stream.app import Runtime

logger = logging.getLogger(__name__)

#: On shutdown, how long a batch in flight may take to commit before it is left unacked.
SHUTDOWN_GRACE_S = 5.0
#: Kafka's default message limit is 1 MB; a longer dead letter is cut on the topic (not in Postgres).
MAX_FORWARDED_BYTES = 900 * 1024


def register(app: faust.App, runtime: Runtime) -> None:
    """Attach the agent to `app`; it hands every batch to `runtime.pipeline`."""
    topics = runtime.settings.topics
    source = app.topic(*topics.inputs, key_type=bytes, value_type=bytes)
    dead_letter_topic = app.topic(topics.dead_letters, key_type=bytes, value_type=bytes)
    settings = runtime.settings

    @app.agent(source, concurrency=1, name="crm_events")
    async def crm_events(stream: faust.StreamT[Any]) -> None:
        stream = cast(faust.Stream[Any], stream)
        async for events in stream.noack_take(settings.batch_max, within=settings.batch_within):
            assert runtime.pipeline is not None, "the Postgres service starts before the agent"
            batch = [to_message(event) for event in events]
            result, stopping = await commit_even_if_stopped(runtime.pipeline, batch)
            for event in events:
                await stream.ack(event)
            runtime.batch_done(result, batch)
            if stopping:
                raise asyncio.CancelledError
            for letter in result.new_dead_letters:
                await forward(dead_letter_topic, letter)


async def commit_even_if_stopped(pipeline: Pipeline, batch: Sequence[Message]) -> tuple[BatchResult, bool]:
    """Handle the batch; if the worker is stopped meanwhile (SIGTERM), let the commit finish first.

    Returns the result and whether the worker is stopping. A batch that cannot commit
    within the grace period (Postgres away) is abandoned unacked: its events are read
    again after the restart, and nothing doubles.
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
        await topic.send(key=letter.message.key, value=value[:MAX_FORWARDED_BYTES] if cut else value,
                         headers=headers(letter, original_size=len(value) if cut else None))
    except Exception:  # the producer refusing one record must not stop the consumer
        logger.exception("dead letter %s:%d:%d not forwarded to %s (it is in the dead_letters table)",
                         letter.message.topic, letter.message.partition, letter.message.offset, topic)


def to_message(event: faust.EventT[Any]) -> Message:
    msg = event.message
    return Message(msg.topic, msg.partition, msg.offset, msg.key, msg.value or b"", msg.timestamp or 0.0)


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
