"""The batch handler: decode, store, credit and record progress in one transaction.

This is the service layer between the consumer (agents/crm.py, which only reads
batches off Kafka) and the Postgres adapters. It knows nothing of Faust, so the tests, the
benchmark and any other consumer drive it the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import asyncpg

from schemas.decode import InvalidEvent, decode_event
from schemas.events import Event, event_type
from schemas.messages import DeadLetter, Decoded, Message
from stream import ledger, settlement, store
from stream.plan import Plan

logger = logging.getLogger(__name__)

#: Errors after which the same batch is simply tried again: the database went away
#: or two transactions crossed. Anything else is a bug: the batch is retried too (a
#: skipped batch would be lost pay), but logged with its traceback and shown on /health.
RETRYABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)
MAX_BACKOFF_S = 5.0


@dataclass
class BatchResult:
    """What a batch did, for metrics, the dead-letter topic and `replay`'s progress."""

    consumed: int = 0
    stored: int = 0
    duplicates: int = 0
    new_dead_letters: list[DeadLetter] = field(default_factory=list)
    credits_inserted: int = 0
    credits_retracted: int = 0
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    attempts: int = 1
    seconds: float = 0.0
    db_seconds: float = 0.0
    #: (topic, event_type or "invalid") -> messages, for the consumed-events metric
    consumed_by: dict[tuple[str, str], int] = field(default_factory=dict)


class Pipeline:
    """Processes batches of Kafka messages into Postgres; safe to call again with the same batch."""

    def __init__(self, pool: asyncpg.Pool, plan: Plan, group_id: str) -> None:
        self.pool = pool
        self.plan = plan
        self.group_id = group_id
        self.cache = ledger.CustomerCache()
        self.on_retry: Callable[[], None] = lambda: None  # the worker counts retries in a metric
        self.healthy = True
        self.last_error: str | None = None

    async def handle(self, batch: Sequence[Message]) -> BatchResult:
        """Commit the batch's effects, retrying with backoff while the database is away."""
        decoded, invalid = split(batch)
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            attempt_started = time.monotonic()
            try:
                result = await self._commit(batch, decoded, invalid)
            except Exception as error:
                self.healthy = False
                self.last_error = f"could not commit the batch to Postgres: {type(error).__name__}: {error}"
                self.on_retry()
                delay = min(MAX_BACKOFF_S, 0.1 * 2 ** min(attempt, 6))
                if isinstance(error, RETRYABLE):
                    logger.warning("batch of %d not committed (%s); retry %d in %.1fs",
                                   len(batch), self.last_error, attempt, delay)
                else:  # a bug: keep the batch (never skip money), say so loudly, /health turns 503
                    logger.exception("batch of %d failed unexpectedly; retry %d in %.1fs",
                                     len(batch), attempt, delay)
                await asyncio.sleep(delay)
                continue
            self.healthy, self.last_error = True, None
            result.attempts, result.seconds = attempt, time.monotonic() - started
            result.db_seconds = time.monotonic() - attempt_started
            result.consumed_by = consumed_by(decoded, invalid)
            return result

    async def _commit(
        self, batch: Sequence[Message], decoded: list[Decoded], invalid: list[DeadLetter]
    ) -> BatchResult:
        result = BatchResult(consumed=len(batch))
        async with self.pool.acquire() as conn, conn.transaction():
            await settlement.share_settlement_lock(conn)
            outcome = await store.insert_events(conn, decoded)
            result.new_dead_letters = await store.insert_dead_letters(
                conn, invalid + outcome.dead_letters
            )
            change = await ledger.recompute_customers(conn, by_customer(outcome.inserted), self.plan, self.cache)
            await settlement.carry_adjustments(conn, sorted(change.persons))
            result.next_offsets = await store.save_progress(conn, self.group_id, batch)
        self.cache.update(change.staged)  # only now: a rolled-back batch must leave no trace
        result.stored, result.duplicates = len(outcome.inserted), outcome.duplicates
        result.credits_inserted, result.credits_retracted = change.inserted, change.retracted
        return result


def by_customer(items: Sequence[Decoded]) -> dict[str, list[Event]]:
    grouped: dict[str, list[Event]] = {}
    for item in items:
        grouped.setdefault(item.event.customer_id, []).append(item.event)
    return grouped


def consumed_by(decoded: list[Decoded], invalid: list[DeadLetter]) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for item in decoded:
        key = (item.message.topic, event_type(item.event))
        counts[key] = counts.get(key, 0) + 1
    for letter in invalid:
        key = (letter.message.topic, "invalid")
        counts[key] = counts.get(key, 0) + 1
    return counts


def split(batch: Sequence[Message]) -> tuple[list[Decoded], list[DeadLetter]]:
    """Decode every message; invalid ones become dead letters, none stops the batch."""
    decoded: list[Decoded] = []
    invalid: list[DeadLetter] = []
    for message in batch:
        try:
            decoded.append(Decoded(message, decode_event(message.value)))
        except InvalidEvent as error:
            invalid.append(DeadLetter(message, error.reason, error.detail))
    return decoded, invalid
