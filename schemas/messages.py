"""What crosses the edge between Kafka and the pipeline: records, decoded events, dead letters.

Plain values, so that the consumer, the pipeline, the Postgres adapter, the tests and the
benchmarks share them without importing a Kafka or Postgres driver.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from schemas.events import Event


class Message(NamedTuple):
    """One Kafka record as the pipeline sees it, whatever client read it.

    A named tuple, not a frozen dataclass: one is built per record, and that is 4x cheaper.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp: float = 0.0  # the broker's time of the record, unix seconds (0: unknown)


@dataclass(frozen=True)
class DeadLetter:
    message: Message
    reason: str
    detail: str


class Decoded(NamedTuple):
    """A message and its event; a named tuple, as one is built per message."""

    message: Message
    event: Event
