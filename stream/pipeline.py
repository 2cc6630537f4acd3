"""The batch handler: decode, store, credit and record progress in one transaction.

This is the service layer between the consumer (agents/crm.py, which only reads
batches off Kafka) and the Postgres adapters. It knows nothing of Faust, so the tests, the
benchmark and any other consumer drive it the same way.

Poison isolation (SPEC section 10). A batch whose commit fails is retried with backoff, as
it always was, unless the error is one that a message's own data can cause (`ERROR_KINDS`,
entries with `isolate`): a Postgres data exception (SQLSTATE class 22) or an ArithmeticError
or ValueError raised by the rules (`diff.RulesError`). Then the batch is split, in one
transaction, into halves applied in arrival order, each in a savepoint: a half that fails is
split again, until the messages that fail on their own are single. Those are dead-lettered
as `processing_error`, with the error in `detail` and the raw bytes as received, and the rest
of the batch commits with them, in the same cycle. Two messages that fail only together are
applied in arrival order, so the later one is the one dead-lettered (another arrival order
may pick the other: SPEC section 10 allows it). A dead-lettered message is not stored, so it
leaves the set of events the tables are computed from (SPEC section 5).

Every other error (a lost connection, a server restarting, a serialization failure, a
deadlock, a full disk, too many connections, a read-only server after a failover, a
statement timeout, a unique violation between racing workers, a bug) says nothing about
one message: the whole batch is retried with backoff and nothing is dead-lettered. A
failure of that kind during isolation stops it the same way.

When more than `MAX_POISON_IN_A_ROW` messages in a row (no processed message between them,
across batches) would be dead-lettered, the fault is not in the messages: nothing is
dead-lettered, the batch is retried with backoff, and the pipeline reports unhealthy. Those
retries do not isolate again, except every `ISOLATE_AGAIN_EVERY`-th attempt, so that once
the fault is repaired a message that does fail on its own cannot hold the batch for ever.

What can still make a valid event fail, now that decoding is strict (schemas.decode, SPEC
section 10): not its times (1970..2199 keep every datetime and timestamptz operation in
range), nor its money (at most 4 places, under 10,000,000, and a sale's total too, so the
exact context of stream.money never rounds); what is left is sums, which no bound on one
message can cap: a person's month beyond numeric(18,2) in `bonus_running` or an integer
count beyond 2^31 in `credit_totals` (SQLSTATE 22003, after a billion sales in a month).
Those, and whatever nobody foresaw of the same kinds, are isolated.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import asyncpg

from schemas.decode import MAX_DETAIL, PROCESSING_ERROR, InvalidEvent, decode_event
from schemas.events import Event, event_type
from schemas.messages import DeadLetter, Decoded, Message
from stream import ledger, settlement, store
from stream.customer_cache import CachedCustomer, CustomerCache, RecentIds
from stream.diff import RulesError
from stream.ledger import LedgerChange
from stream.plan import Plan
from stream.plan_changes import PlansChanged, check_generation
from stream.plan_versions import Plans
from stream.store import InsertOutcome

logger = logging.getLogger(__name__)

MAX_BACKOFF_S = 5.0
#: SPEC section 10: more processing errors in a row than this is a systemic fault.
MAX_POISON_IN_A_ROW = 10
#: After a systemic verdict, the retries of the batch isolate again only every this many attempts.
ISOLATE_AGAIN_EVERY = 10


@dataclass(frozen=True)
class ErrorKind:
    """A class of errors a batch can fail with, and what the pipeline does about it."""

    name: str  # what the log and /health say: never the error's own text
    sqlstate: str  # the SQLSTATE or class it stands for; "client" for errors raised in this process
    types: tuple[type[BaseException], ...]
    isolate: bool  # the message's own data (SPEC section 10): split the batch; else retry it whole


#: Every error class SPEC section 10 names, classified on purpose; the first entry that
#: matches wins (a subclass is listed before its base). Anything else is `UNEXPECTED`.
ERROR_KINDS: tuple[ErrorKind, ...] = (
    ErrorKind("a data exception", "class 22", (asyncpg.DataError,), True),
    ErrorKind("the rules refused the data", "client", (RulesError,), True),
    # asyncpg's own "invalid input for query argument" (a value it cannot encode, such as an int
    # beyond int4), raised before Postgres sees it. Not a Postgres data exception, so SPEC section 10
    # has it retried; named for what it is (it subclasses InterfaceError, hence before that entry).
    ErrorKind("a value the driver cannot send", "client", (asyncpg.exceptions._base.DataError,), False),
    ErrorKind("a serialization failure", "40001", (asyncpg.SerializationError,), False),
    ErrorKind("a deadlock", "40P01", (asyncpg.DeadlockDetectedError,), False),
    ErrorKind("a unique violation (another worker raced this one)", "23505", (asyncpg.UniqueViolationError,), False),
    ErrorKind("a full disk on the server", "53100", (asyncpg.DiskFullError,), False),
    ErrorKind("too many connections", "53300", (asyncpg.TooManyConnectionsError,), False),
    ErrorKind("too few server resources", "class 53", (asyncpg.InsufficientResourcesError,), False),
    ErrorKind("a read-only server (after a failover)", "25006", (asyncpg.ReadOnlySQLTransactionError,), False),
    ErrorKind("a statement timeout", "57014", (asyncpg.QueryCanceledError,), False),
    ErrorKind("the server shutting down", "57P01", (asyncpg.AdminShutdownError,), False),
    ErrorKind("the server crashing", "57P02", (asyncpg.CrashShutdownError,), False),
    ErrorKind("the server starting up", "57P03", (asyncpg.CannotConnectNowError,), False),
    ErrorKind("a lost connection", "class 08", (asyncpg.PostgresConnectionError,), False),
    ErrorKind("a timeout", "client", (TimeoutError,), False),  # asyncio.TimeoutError is TimeoutError
    ErrorKind("a lost connection", "client", (asyncpg.InterfaceError, OSError), False),
)
UNEXPECTED = ErrorKind("an unexpected error (see the worker's log)", "", (), False)
SYSTEMIC = (f"more than {MAX_POISON_IN_A_ROW} messages in a row failed processing: the fault looks systemic, "
            "so nothing is dead-lettered and the batch is retried")


def classify(error: BaseException) -> ErrorKind:
    """The entry of `ERROR_KINDS` that `error` belongs to, else `UNEXPECTED`."""
    for kind in ERROR_KINDS:
        if isinstance(error, kind.types):
            return kind
    return UNEXPECTED


class SystemicFault(Exception):
    """More than `MAX_POISON_IN_A_ROW` messages in a row would have been dead-lettered."""


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


@dataclass
class _Isolation:
    """What the parts of a batch that went in added up to, while isolating (`Pipeline._bisect`)."""

    streak: int  # processing errors in a row so far, carried over from earlier batches
    poison: list[DeadLetter] = field(default_factory=list)
    store_letters: list[DeadLetter] = field(default_factory=list)
    staged: dict[str, CachedCustomer] = field(default_factory=dict)
    inserted_ids: list[str] = field(default_factory=list)
    stored: int = 0
    duplicates: int = 0
    credits_inserted: int = 0
    credits_retracted: int = 0

    def add(self, outcome: InsertOutcome, change: LedgerChange) -> None:
        self.store_letters += outcome.dead_letters
        self.staged.update(change.staged)  # a later part's copy of a customer is the current one
        self.stored += len(outcome.inserted)
        self.inserted_ids += [item.event.event_id for item in outcome.inserted]
        self.duplicates += outcome.duplicates
        self.credits_inserted += change.inserted
        self.credits_retracted += change.retracted


class Pipeline:
    """Processes batches of Kafka messages into Postgres; safe to call again with the same batch."""

    def __init__(self, pool: asyncpg.Pool, plan: Plan | Plans, group_id: str, plan_generation: int | None = None
                 ) -> None:
        self.pool = pool
        self.plan = plan
        #: the plans' generation this worker started under (stream/plan_changes.py); None: not checked
        self.plan_generation = plan_generation
        self.group_id = group_id
        self.cache = CustomerCache()
        self.recent = RecentIds()  # ids committed lately: a redelivery is sorted out before the COPY
        self.on_retry: Callable[[], None] = lambda: None  # the worker counts retries in a metric
        self.healthy = True
        self.last_error: str | None = None  # why not healthy, for /health: no internal error text
        #: Messages dead-lettered as processing_error since the last message processed (SPEC §10).
        self.poison_streak = 0

    async def handle(self, batch: Sequence[Message]) -> BatchResult:
        """Commit the batch's effects, retrying with backoff while the database is away.

        A failure that a message's own data can cause is isolated (module docstring).
        """
        decoded, invalid = split(batch)
        started = time.monotonic()
        attempt = 0
        isolate_from = 1  # the first attempt that may isolate
        systemic = False
        while True:
            attempt += 1
            attempt_started = time.monotonic()
            try:
                try:
                    result = await self._commit(batch, decoded, invalid)
                except PlansChanged:
                    raise
                except Exception as error:
                    kind = classify(error)
                    if not kind.isolate or attempt < isolate_from:
                        raise
                    logger.warning("batch of %d failed with %s (%s); isolating the messages that fail on their own",
                                   len(batch), kind.name, _sqlstate(error, kind))
                    result = await self._isolate(batch, decoded, invalid)
            except PlansChanged:
                self.healthy, self.last_error = False, "the plans changed: this worker stops"
                raise
            except SystemicFault as fault:
                systemic, isolate_from = True, attempt + ISOLATE_AGAIN_EVERY
                self.healthy, self.last_error = False, SYSTEMIC
                logger.error("batch of %d: %s (%s); retry %d", len(batch), SYSTEMIC, fault, attempt)
            except Exception as error:
                kind = classify(error)
                self.healthy = False
                self.last_error = SYSTEMIC if systemic and kind.isolate else (
                    f"could not commit the batch to Postgres: {kind.name}; retrying")
                if kind is UNEXPECTED:  # a bug: keep the batch (never skip money), say so loudly
                    logger.exception("batch of %d failed unexpectedly; retry %d", len(batch), attempt)
                else:
                    logger.warning("batch of %d not committed (%s, %s: %s); retry %d", len(batch), kind.name,
                                   _sqlstate(error, kind), type(error).__name__, attempt)
            else:
                self.healthy, self.last_error = True, None
                result.attempts, result.seconds = attempt, time.monotonic() - started
                result.db_seconds = time.monotonic() - attempt_started
                result.consumed_by = consumed_by(decoded, invalid)
                return result
            self.on_retry()
            await asyncio.sleep(min(MAX_BACKOFF_S, 0.1 * 2 ** min(attempt, 6)))

    async def _commit(
        self, batch: Sequence[Message], decoded: list[Decoded], invalid: list[DeadLetter]
    ) -> BatchResult:
        result = BatchResult(consumed=len(batch))
        async with self.pool.acquire() as conn, conn.transaction():
            await settlement.share_settlement_lock(conn)
            if self.plan_generation is not None:
                await check_generation(conn, self.plan_generation)
            outcome = await store.insert_events(conn, decoded, self.recent)
            result.new_dead_letters = await store.insert_dead_letters(
                conn, invalid + outcome.dead_letters
            )
            change = await self._credit(conn, outcome)
            result.next_offsets = await store.save_progress(conn, self.group_id, batch)
        self.cache.update(change.staged)  # only now: a rolled-back batch must leave no trace
        self.recent.add_all([item.event.event_id for item in outcome.inserted])
        if decoded:
            self.poison_streak = 0
        result.stored, result.duplicates = len(outcome.inserted), outcome.duplicates
        result.credits_inserted, result.credits_retracted = change.inserted, change.retracted
        return result

    async def _credit(self, conn: asyncpg.Connection, outcome: InsertOutcome) -> LedgerChange:
        change = await ledger.recompute_customers(conn, by_customer(outcome.inserted), self.plan, self.cache)
        await settlement.carry_adjustments(conn, sorted(change.persons), self.plan)
        return change

    async def _apply(self, conn: asyncpg.Connection, part: Sequence[Decoded]) -> tuple[InsertOutcome, LedgerChange]:
        """A part of a batch, as `_commit` does it, inside the caller's transaction."""
        outcome = await store.insert_events(conn, part, self.recent)
        return outcome, await self._credit(conn, outcome)

    async def _isolate(
        self, batch: Sequence[Message], decoded: list[Decoded], invalid: list[DeadLetter]
    ) -> BatchResult:
        """Commit the batch but for the messages that fail on their own, dead-lettered (SPEC §10)."""
        found = _Isolation(streak=self.poison_streak)
        result = BatchResult(consumed=len(batch))
        async with self.pool.acquire() as conn, conn.transaction():
            await settlement.share_settlement_lock(conn)
            await self._bisect(conn, decoded, found)
            result.new_dead_letters = await store.insert_dead_letters(
                conn, invalid + found.store_letters + found.poison
            )
            result.next_offsets = await store.save_progress(conn, self.group_id, batch)
        self.cache.update(found.staged)
        self.recent.add_all(found.inserted_ids)
        self.poison_streak = found.streak
        for letter in found.poison:
            logger.warning("dead-lettered %s[%d]@%d as %s: %s", letter.message.topic, letter.message.partition,
                           letter.message.offset, PROCESSING_ERROR, letter.detail)
        result.stored, result.duplicates = found.stored, found.duplicates
        result.credits_inserted, result.credits_retracted = found.credits_inserted, found.credits_retracted
        return result

    async def _bisect(self, conn: asyncpg.Connection, part: Sequence[Decoded], found: _Isolation) -> None:
        """Apply `part` in a savepoint; if it fails on data, its halves in order, down to single messages."""
        if not part:
            return
        try:
            async with conn.transaction():  # a savepoint: a failure undoes this part only
                outcome, change = await self._apply(conn, part)
        except Exception as error:
            kind = classify(error)
            if not kind.isolate:
                raise  # not the data's fault: the whole batch is retried
            if len(part) > 1:
                middle = len(part) // 2
                await self._bisect(conn, part[:middle], found)
                await self._bisect(conn, part[middle:], found)
                return
            found.streak += 1
            if found.streak > MAX_POISON_IN_A_ROW:
                raise SystemicFault(f"the last one failed with {kind.name}, {_sqlstate(error, kind)}") from error
            found.poison.append(DeadLetter(part[0].message, PROCESSING_ERROR, processing_detail(error, kind)))
            return
        found.streak = 0
        found.add(outcome, change)


def _sqlstate(error: BaseException, kind: ErrorKind) -> str:
    code = getattr(error, "sqlstate", None)
    return f"SQLSTATE {code}" if isinstance(code, str) else kind.sqlstate or "no SQLSTATE"


def processing_detail(error: BaseException, kind: ErrorKind) -> str:
    """The `detail` of a processing_error dead letter: what failed, with the error's own text."""
    text = f"processing failed on this message: {kind.name} ({_sqlstate(error, kind)}): {type(error).__name__}: {error}"
    return text[:MAX_DETAIL]


def by_customer(items: Sequence[Decoded]) -> dict[str, list[Event]]:
    grouped: dict[str, list[Event]] = {}
    for _, event in items:
        if (events := grouped.get(event.customer_id)) is None:
            grouped[event.customer_id] = [event]
        else:
            events.append(event)
    return grouped


def consumed_by(decoded: list[Decoded], invalid: list[DeadLetter]) -> dict[tuple[str, str], int]:
    counts = Counter((message.topic, event_type(event)) for message, event in decoded)
    counts.update((letter.message.topic, "invalid") for letter in invalid)
    return dict(counts)


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
