"""SPEC section 10, poison input: the error classifier, class by class, and the pipeline's
isolation (bisection, the run of processing errors, the systemic verdict) on a fake database.

The real thing, on a real Postgres, is tests/integration/test_poison.py.
"""

from __future__ import annotations

import asyncio
import decimal
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest

from schemas.decode import PROCESSING_ERROR, SCHEMA_VIOLATION, decode_event
from schemas.messages import DeadLetter, Decoded, Message
from stream import pipeline as pipeline_module
from stream import settlement, store
from stream.bonus import compute_tables
from stream.diff import RulesError
from stream.ledger import LedgerChange
from stream.pipeline import (
    ERROR_KINDS,
    ISOLATE_AGAIN_EVERY,
    MAX_POISON_IN_A_ROW,
    SYSTEMIC,
    UNEXPECTED,
    ErrorKind,
    Pipeline,
    classify,
)
from stream.plan import load_plan
from stream.rules import credit_customer
from stream.store import InsertOutcome
from tests.unit import builders
from tests.unit.test_decode import VALID, raw

E = asyncpg.exceptions

# --- the classifier, one error class at a time --------------------------------------------------

#: (an error, its SQLSTATE or None, isolated?, the name the pipeline gives its class)
CLASSES: list[Any] = [
    # a message's own data (SPEC section 10): isolated
    pytest.param(E.NumericValueOutOfRangeError("numeric field overflow"), "22003", True, "a data exception",
                 id="22003-numeric-out-of-range"),
    pytest.param(E.DatetimeFieldOverflowError("date/time field value out of range"), "22008", True,
                 "a data exception", id="22008-datetime-overflow"),
    pytest.param(E.InvalidTextRepresentationError("invalid input syntax"), "22P02", True, "a data exception",
                 id="22P02-invalid-text"),
    pytest.param(E.DivisionByZeroError("division by zero"), "22012", True, "a data exception", id="22012-division"),
    pytest.param(E.CharacterNotInRepertoireError("invalid byte sequence"), "22021", True, "a data exception",
                 id="22021-not-in-repertoire"),
    pytest.param(E.StringDataRightTruncationError("value too long"), "22001", True, "a data exception",
                 id="22001-truncation"),
    pytest.param(E.DataError("invalid input for query argument $1"), "22000", True, "a data exception",
                 id="22000-client-side-encoding"),
    pytest.param(RulesError("c1", OverflowError("date value out of range")), None, True, "the rules refused the data",
                 id="rules-OverflowError"),
    pytest.param(RulesError("c1", decimal.Rounded()), None, True, "the rules refused the data",
                 id="rules-decimal-trap"),
    pytest.param(RulesError(None, ValueError("bad")), None, True, "the rules refused the data", id="rules-ValueError"),
    # not the message's fault: the whole batch is retried, nothing dead-lettered
    pytest.param(E.SerializationError("could not serialize access"), "40001", False, "a serialization failure",
                 id="40001-serialization"),
    pytest.param(E.DeadlockDetectedError("deadlock detected"), "40P01", False, "a deadlock", id="40P01-deadlock"),
    pytest.param(E.UniqueViolationError("duplicate key"), "23505", False,
                 "a unique violation (another worker raced this one)", id="23505-unique-violation"),
    pytest.param(E.DiskFullError("could not extend file"), "53100", False, "a full disk on the server",
                 id="53100-disk-full"),
    pytest.param(E.TooManyConnectionsError("too many clients"), "53300", False, "too many connections",
                 id="53300-too-many-connections"),
    pytest.param(E.OutOfMemoryError("out of memory"), "53200", False, "too few server resources",
                 id="53200-out-of-memory"),
    pytest.param(E.ReadOnlySQLTransactionError("read-only transaction"), "25006", False,
                 "a read-only server (after a failover)", id="25006-read-only"),
    pytest.param(E.QueryCanceledError("canceling statement due to statement timeout"), "57014", False,
                 "a statement timeout", id="57014-statement-timeout"),
    pytest.param(E.AdminShutdownError("terminating connection"), "57P01", False, "the server shutting down",
                 id="57P01-admin-shutdown"),
    pytest.param(E.CrashShutdownError("crash"), "57P02", False, "the server crashing", id="57P02-crash"),
    pytest.param(E.CannotConnectNowError("the database system is starting up"), "57P03", False,
                 "the server starting up", id="57P03-starting-up"),
    pytest.param(E.ConnectionDoesNotExistError("connection was closed"), "08003", False, "a lost connection",
                 id="08003-connection-gone"),
    pytest.param(E.ConnectionFailureError("connection failure"), "08006", False, "a lost connection",
                 id="08006-connection-failure"),
    pytest.param(asyncpg.InterfaceError("connection is closed"), None, False, "a lost connection",
                 id="client-connection-closed"),
    pytest.param(asyncpg.exceptions._base.DataError("invalid input for query argument $1"), None, False,
                 "a value the driver cannot send", id="client-DataError"),
    pytest.param(ConnectionResetError("reset by peer"), None, False, "a lost connection", id="client-reset"),
    pytest.param(OSError("network unreachable"), None, False, "a lost connection", id="client-OSError"),
    pytest.param(asyncio.TimeoutError(), None, False, "a timeout", id="client-timeout"),  # noqa: UP041
    # a bug elsewhere: retried, loudly, never isolated
    pytest.param(ValueError("raised outside the rules"), None, False, UNEXPECTED.name, id="bare-ValueError"),
    pytest.param(OverflowError("date value out of range"), None, False, UNEXPECTED.name,
                 id="bare-OverflowError-from-the-driver"),
    pytest.param(decimal.InvalidOperation(), None, False, UNEXPECTED.name, id="bare-decimal-trap"),
    pytest.param(KeyError("x"), None, False, UNEXPECTED.name, id="KeyError"),
    pytest.param(E.CheckViolationError("violates check constraint"), "23514", False, UNEXPECTED.name,
                 id="23514-check-violation"),
    pytest.param(E.UndefinedTableError("relation does not exist"), "42P01", False, UNEXPECTED.name,
                 id="42P01-undefined-table"),
]


@pytest.mark.parametrize(("error", "sqlstate", "isolated", "name"), CLASSES)
def test_each_error_class_is_classified_on_purpose(error: BaseException, sqlstate: str | None, isolated: bool,
                                                    name: str) -> None:
    kind = classify(error)
    assert (kind.isolate, kind.name) == (isolated, name)
    assert getattr(error, "sqlstate", None) == sqlstate


@pytest.mark.parametrize("kind", ERROR_KINDS, ids=lambda kind: f"{kind.sqlstate}-{kind.name}")
def test_every_entry_of_the_table_is_reachable(kind: ErrorKind) -> None:
    """The first type of each entry classifies to that entry: no entry is hidden by an earlier one."""
    error_type = kind.types[0]
    error = error_type(None, ValueError("x")) if error_type is RulesError else error_type("x")
    assert classify(error) is kind
    assert kind.sqlstate  # each entry says the SQLSTATE (or class) it stands for


def test_only_data_exceptions_and_the_rules_are_isolated() -> None:
    assert {kind.name for kind in ERROR_KINDS if kind.isolate} == {"a data exception", "the rules refused the data"}
    assert [kind.sqlstate for kind in ERROR_KINDS if kind.isolate] == ["class 22", "client"]


def test_every_class_22_error_of_asyncpg_is_isolated() -> None:
    found = [cls for cls in vars(E).values() if isinstance(cls, type) and issubclass(cls, E.PostgresError)
             and str(getattr(cls, "sqlstate", "")).startswith("22")]
    assert len(found) > 30
    assert all(classify(cls("x")).isolate for cls in found)
    others = [cls for cls in vars(E).values() if isinstance(cls, type) and issubclass(cls, E.PostgresError)
              and not str(getattr(cls, "sqlstate", "")).startswith("22")]
    assert not any(classify(cls("x")).isolate for cls in others)


# --- isolation, on a fake database ------------------------------------------------------------


def message(offset: int, kind: str = "callback") -> Message:
    event = dict(VALID[kind], event_id=f"ev-{offset}", customer_id=f"c{offset}")
    return Message("crm.callbacks", 0, offset, None, raw(event))


class FakeConnection:
    """Applies messages to a list; nested `transaction()` blocks behave like savepoints."""

    def __init__(self, db: FakeDatabase) -> None:
        self.db = db

    def transaction(self) -> Any:
        @asynccontextmanager
        async def savepoint() -> AsyncIterator[None]:
            before = list(self.db.pending)
            try:
                yield
            except BaseException:
                self.db.pending[:] = before
                raise
        return savepoint()


class FakeDatabase:
    def __init__(self, fails: Callable[[list[int]], BaseException | None]) -> None:
        self.fails = fails  # offsets applied so far in the transaction -> the error it raises, or None
        self.pending: list[int] = []
        self.committed: list[int] = []
        self.dead_letters: list[DeadLetter] = []
        self.transactions = 0

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[FakeConnection]:
        self.pending = []
        self.transactions += 1
        letters_before = len(self.dead_letters)
        try:
            yield FakeConnection(self)
        except BaseException:
            del self.dead_letters[letters_before:]
            raise
        self.committed += self.pending


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[Pipeline, FakeDatabase]]:
    def make(fails: Callable[[list[int]], BaseException | None]) -> tuple[Pipeline, FakeDatabase]:
        db = FakeDatabase(fails)

        async def insert_events(conn: FakeConnection, part: Sequence[Decoded], recent: object = None) -> InsertOutcome:
            db.pending += [item.message.offset for item in part]
            error = db.fails(db.pending)
            if error is not None:
                raise error
            return InsertOutcome(list(part), 0, [])

        async def insert_dead_letters(conn: FakeConnection, letters: Sequence[DeadLetter]) -> list[DeadLetter]:
            db.dead_letters += letters
            return list(letters)

        async def nothing(*args: Any) -> Any:
            return {}

        async def credit(self: Pipeline, conn: FakeConnection, outcome: InsertOutcome) -> LedgerChange:
            return LedgerChange()

        monkeypatch.setattr(store, "insert_events", insert_events)
        monkeypatch.setattr(store, "insert_dead_letters", insert_dead_letters)
        monkeypatch.setattr(store, "save_progress", nothing)
        monkeypatch.setattr(settlement, "share_settlement_lock", nothing)
        monkeypatch.setattr(Pipeline, "_credit", credit)
        pipeline = Pipeline(db, load_plan(None), "test")  # a fake pool
        pipeline.cache.update = lambda staged: None  # type: ignore[method-assign]
        return pipeline, db

    return make


def overflow(*poison: int) -> Callable[[list[int]], BaseException | None]:
    """Fails, like a numeric field overflow, while any of these offsets is applied."""
    def fails(applied: list[int]) -> BaseException | None:
        hit = [offset for offset in applied if offset in poison]
        return E.NumericValueOutOfRangeError(f"numeric field overflow ({hit})") if hit else None
    return fails


def dead(db: FakeDatabase) -> list[int]:
    return [letter.message.offset for letter in db.dead_letters if letter.reason == PROCESSING_ERROR]


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) > 200:
            raise AssertionError("retried for ever")

    monkeypatch.setattr(pipeline_module.asyncio, "sleep", sleep)
    return slept


async def test_a_poison_message_is_dead_lettered_and_the_rest_commits(fake: Any, no_backoff: list[float]) -> None:
    pipeline, db = fake(overflow(7))
    result = await pipeline.handle([message(i) for i in range(20)])
    assert dead(db) == [7]
    assert db.committed == [i for i in range(20) if i != 7]  # in arrival order, in the same cycle
    assert (result.attempts, result.stored, no_backoff) == (1, 19, [])
    letter = db.dead_letters[0]
    assert letter.message.value == message(7).value  # the raw bytes as received
    assert letter.detail.startswith("processing failed on this message: a data exception (SQLSTATE 22003): "
                                    "NumericValueOutOfRangeError: numeric field overflow")
    assert [d.message.offset for d in result.new_dead_letters] == [7]
    assert pipeline.healthy and pipeline.poison_streak == 0


async def test_two_poison_messages(fake: Any, no_backoff: list[float]) -> None:
    pipeline, db = fake(overflow(3, 16))
    await pipeline.handle([message(i) for i in range(20)])
    assert dead(db) == [3, 16]
    assert db.committed == [i for i in range(20) if i not in (3, 16)]


@pytest.mark.parametrize("order", [[0, 1, 2, 3, 4, 5], [0, 5, 2, 3, 4, 1]])
async def test_messages_that_fail_only_together_lose_the_later_one(fake: Any, no_backoff: list[float],
                                                                   order: list[int]) -> None:
    """SPEC section 10: which one is dead-lettered may depend on arrival order (here: the later)."""
    pipeline, db = fake(lambda applied: E.NumericValueOutOfRangeError("sum") if {1, 5} <= set(applied) else None)
    await pipeline.handle([message(i) for i in order])
    later = 5 if order.index(5) > order.index(1) else 1
    assert dead(db) == [later]
    assert sorted(db.committed) == sorted(set(order) - {later})


async def test_ten_in_a_row_are_dead_lettered(fake: Any, no_backoff: list[float]) -> None:
    poison = range(5, 5 + MAX_POISON_IN_A_ROW)
    pipeline, db = fake(overflow(*poison))
    await pipeline.handle([message(i) for i in range(30)])
    assert dead(db) == list(poison)
    assert pipeline.healthy


async def test_more_than_ten_in_a_row_is_systemic_retried_never_dead_lettered(fake: Any,
                                                                              no_backoff: list[float]) -> None:
    poison = set(range(5, 6 + MAX_POISON_IN_A_ROW))  # 11 in a row
    pipeline, db = fake(overflow(*poison))
    seen: list[tuple[bool, str | None]] = []
    retries = 0

    def on_retry() -> None:  # the operator repairs the fault after a few retries
        nonlocal retries
        retries += 1
        seen.append((pipeline.healthy, pipeline.last_error))
        if retries == 3:
            db.fails = overflow()

    pipeline.on_retry = on_retry
    result = await pipeline.handle([message(i) for i in range(30)])
    assert seen[0] == (False, SYSTEMIC) and all(state == (False, SYSTEMIC) for state in seen)
    assert db.dead_letters == [] and dead(db) == []  # nothing was dead-lettered, ever
    assert db.committed == list(range(30)) and result.attempts == 4
    assert pipeline.healthy and pipeline.last_error is None


async def test_eleven_not_in_a_row_are_each_dead_lettered(fake: Any, no_backoff: list[float]) -> None:
    poison = [i for i in range(0, 44, 4)][:MAX_POISON_IN_A_ROW + 1]
    pipeline, db = fake(overflow(*poison))
    await pipeline.handle([message(i) for i in range(44)])
    assert dead(db) == poison


async def test_the_run_counts_across_batches(fake: Any, no_backoff: list[float]) -> None:
    pipeline, db = fake(overflow(*range(14, 25)))  # 6 at the end of one batch, 5 at the start of the next
    await pipeline.handle([message(i) for i in range(20)])
    assert dead(db) == list(range(14, 20)) and pipeline.poison_streak == 6
    seen: list[str | None] = []

    def on_retry() -> None:
        seen.append(pipeline.last_error)
        db.fails = overflow()  # repaired

    pipeline.on_retry = on_retry
    await pipeline.handle([message(i) for i in range(20, 30)])
    assert seen == [SYSTEMIC]  # 6 + 5 = 11 in a row
    assert dead(db) == list(range(14, 20)) and db.committed[-10:] == list(range(20, 30))
    assert pipeline.poison_streak == 0


async def test_a_processed_message_ends_the_run(fake: Any, no_backoff: list[float]) -> None:
    pipeline, db = fake(overflow(*range(14, 20), *range(21, 26)))
    await pipeline.handle([message(i) for i in range(20)])
    await pipeline.handle([message(i) for i in range(20, 30)])  # 20 goes in: the run starts again
    assert dead(db) == [*range(14, 20), *range(21, 26)] and no_backoff == []


async def test_after_a_systemic_verdict_isolation_waits(fake: Any, no_backoff: list[float],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    poison = set(range(MAX_POISON_IN_A_ROW + 1))
    pipeline, db = fake(overflow(*poison))
    isolations: list[int] = []
    original = Pipeline._isolate

    async def counted(self: Pipeline, *args: Any) -> Any:
        isolations.append(len(no_backoff) + 1)  # the attempt it runs in
        return await original(self, *args)

    monkeypatch.setattr(Pipeline, "_isolate", counted)

    def on_retry() -> None:
        if len(no_backoff) + 1 == 2 * ISOLATE_AGAIN_EVERY + 3:  # repaired, but two messages still fail alone
            db.fails = overflow(2, 7)

    pipeline.on_retry = on_retry
    await pipeline.handle([message(i) for i in range(15)])
    assert isolations == [1, 1 + ISOLATE_AGAIN_EVERY, 1 + 2 * ISOLATE_AGAIN_EVERY, 1 + 3 * ISOLATE_AGAIN_EVERY]
    assert dead(db) == [2, 7]


async def test_a_retryable_error_while_isolating_retries_the_whole_batch(fake: Any, no_backoff: list[float]) -> None:
    calls = 0

    def fails(applied: list[int]) -> BaseException | None:
        nonlocal calls
        calls += 1
        if calls == 1:
            return E.NumericValueOutOfRangeError("overflow")  # starts an isolation...
        if calls == 2:
            return E.SerializationError("could not serialize access")  # ...which a conflict stops
        return None

    pipeline, db = fake(fails)
    result = await pipeline.handle([message(i) for i in range(8)])
    assert db.dead_letters == [] and db.committed == list(range(8)) and result.attempts == 2
    assert len(no_backoff) == 1


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(E.SerializationError("could not serialize access due to concurrent update"), id="40001"),
        pytest.param(E.AdminShutdownError("terminating connection due to administrator command"), id="57P01"),
        pytest.param(E.QueryCanceledError("canceling statement due to statement timeout"), id="57014"),
        pytest.param(E.UniqueViolationError("duplicate key value violates unique constraint"), id="23505"),
        pytest.param(ValueError("a bug in the store, not the rules"), id="ValueError-not-from-the-rules"),
    ],
)
async def test_other_errors_are_retried_and_never_dead_lettered(fake: Any, no_backoff: list[float],
                                                                error: BaseException) -> None:
    attempts = 0

    def fails(applied: list[int]) -> BaseException | None:
        nonlocal attempts
        attempts += 1
        return error if attempts <= 3 else None

    pipeline, db = fake(fails)
    states: list[tuple[bool, str | None]] = []
    pipeline.on_retry = lambda: states.append((pipeline.healthy, pipeline.last_error))
    result = await pipeline.handle([message(i) for i in range(5)])
    assert db.dead_letters == [] and db.committed == list(range(5)) and result.attempts == 4
    assert len(states) == 3 and all(not healthy for healthy, _ in states)
    for _, reason in states:  # a reason without internals: the class, never the error's text
        assert reason is not None and reason.startswith("could not commit the batch to Postgres: ")
        assert str(error) not in reason


async def test_the_rules_error_is_isolated(fake: Any, no_backoff: list[float]) -> None:
    pipeline, db = fake(lambda applied: RulesError("c4", OverflowError("date value out of range"))
                        if 4 in applied else None)
    await pipeline.handle([message(i) for i in range(6)])
    assert dead(db) == [4]
    assert db.dead_letters[0].detail == (
        "processing failed on this message: the rules refused the data (client): RulesError: the rules failed for "
        "customer 'c4': OverflowError: date value out of range")


async def test_invalid_messages_keep_their_own_reason(fake: Any, no_backoff: list[float]) -> None:
    pipeline, db = fake(overflow(2))
    batch = [message(0), Message("crm.callbacks", 0, 1, None, b"{}"), message(2), message(3)]
    await pipeline.handle(batch)
    assert sorted((letter.message.offset, letter.reason) for letter in db.dead_letters) == [
        (1, SCHEMA_VIOLATION), (2, PROCESSING_ERROR)]
    assert db.committed == [0, 3]


# --- what could make a valid event fail in the rules: nothing, by the bounds ----------------------


def _extreme_customer(customer: str) -> list[bytes]:
    """A customer at every bound at once: first and last instants, a price spelled with 2,000
    trailing zeros, the largest quantity, a 1,000-line sale just under 10,000,000, touches, a
    refund and a held lead."""
    def line(i: int, category: str, price: str, quantity: int = 1) -> dict[str, Any]:
        return {"line_id": f"L{i}", "sku": "x" * 64, "category": category, "quantity": quantity, "unit_price": price}

    def event(kind: str, n: int, when: str, **fields: Any) -> bytes:
        return raw({"event_id": f"{customer}-{n}", "event_type": kind, "occurred_at": when, "customer_id": customer,
                    **fields})

    first, last = "1970-01-01T00:00:00Z", "2199-12-31T23:59:59.9999999999Z"
    categories = ("laptops", "software", "warranty")
    big = [line(i, categories[i % 3], "@" if i < 10 else "9999.9999") for i in range(1000)]
    return [
        event("callback", 1, first, telemarketer_id="tm-1", outcome="offer_made",
              offered_categories=["accessories", "insurance", "warranty"]),
        event("lead_handoff", 2, first, lead_id="l1", telemarketer_id="tm-2", field_rep_id="fr-1", status="booked",
              appointment_at=last),
        event("sale", 3, "1970-01-01T00:00:00.0000001Z", sale_id=f"{customer}-S1", seller_id="fr-1",
              seller_role="field_rep", currency="EUR", lines=[line(0, "phones", "999", 10_000),
                                                               line(1, "accessories", "0.0001")]),
        event("sale", 4, last, sale_id=f"{customer}-S2", seller_id="fr-1", seller_role="field_rep", currency="EUR",
              lines=big).replace(b'"@"', b"9999.99990" + b"0" * 2000),
        event("refund", 5, last, sale_id=f"{customer}-S2", lines=[{"line_id": "L1", "quantity": 10_000}]),
        event("lead_handoff", 6, last, lead_id="l2", telemarketer_id="tm-2", field_rep_id="fr-1", status="held"),
    ]


@pytest.mark.parametrize("model", ["last_touch", "first_touch", "linear"])
def test_the_exact_context_never_traps_on_valid_events_at_the_bounds(model: str) -> None:
    """SPEC section 10: the Decimal traps of stream.money (Inexact, Rounded, Overflow...) and the
    ranges of datetime cannot be reached by a valid event, so no valid event fails in the rules."""
    events = [decode_event(line) for line in _extreme_customer("c-max")]
    chosen = builders.plan(attribution_model=model)
    assert credit_customer(events, chosen)
    assert compute_tables(events, chosen)
