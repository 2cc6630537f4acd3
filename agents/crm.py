"""The agent: batches from the three CRM topics into the pipeline, dead letters out.

One agent reads all three input topics, so a sale and the callback that touched
it can land in one batch and one transaction. `concurrency=1`: Faust would
otherwise commit offsets past batches still in flight.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import faust

from stream.store import DeadLetter, Message

if TYPE_CHECKING:
    from stream.app import Runtime


def register(app: faust.App, runtime: Runtime) -> None:
    """Attach the agent to `app`; it hands every batch to `runtime.pipeline`."""
    topics = runtime.settings.topics
    source = app.topic(*topics.inputs, key_type=bytes, value_type=bytes)
    dead_letter_topic = app.topic(topics.dead_letters, key_type=bytes, value_type=bytes)
    settings = runtime.settings

    @app.agent(source, concurrency=1, name="crm_events")
    async def crm_events(stream: faust.StreamT[Any]) -> None:
        batches = cast(faust.Stream[Any], stream).take_events(settings.batch_max, within=settings.batch_within)
        async for events in batches:
            assert runtime.pipeline is not None, "the Postgres service starts before the agent"
            batch = [to_message(event) for event in events]
            result = await runtime.pipeline.handle(batch)
            for letter in result.new_dead_letters:
                await dead_letter_topic.send(
                    key=letter.message.key, value=letter.message.value, headers=headers(letter)
                )
            runtime.batch_done(result, batch)


def to_message(event: faust.EventT[Any]) -> Message:
    msg = event.message
    return Message(msg.topic, msg.partition, msg.offset, msg.key, msg.value or b"", msg.timestamp or 0.0)


def headers(letter: DeadLetter) -> dict[str, bytes]:
    """Where the dead letter came from and why, so ops can replay it once fixed."""
    msg = letter.message
    return {
        "reason": letter.reason.encode(),
        "detail": letter.detail.encode(),
        "source_topic": msg.topic.encode(),
        "source_partition": str(msg.partition).encode(),
        "source_offset": str(msg.offset).encode(),
    }
