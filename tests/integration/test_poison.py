"""SPEC section 10 on a real Postgres through the real pipeline: one bad message never stops it.

A message that passed validation but whose processing fails on its own data is dead-lettered
as `processing_error` and the rest of its batch lands; a systemic fault and every error that
is not the message's fault are retried, never dead-lettered. The poison here is real: a
person's month that no longer fits `bonus_running`'s numeric(18,2), or a count beyond
`credit_totals`' integer, seeded as if by a billion earlier sales.

Every wait is bounded (`asyncio.wait_for`), so a pipeline that hangs fails the test.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.decode import PROCESSING_ERROR, InvalidEvent, StoredDecoder, decode_event
from schemas.events import EARLIEST, LATEST
from schemas.messages import Message
from stream import db
from stream import pipeline as pipeline_module
from stream.bonus import compute_tables
from stream.pipeline import SYSTEMIC, BatchResult, Pipeline
from stream.plan import load_plan
from stream.settlement import SETTLEMENT_LOCK_KEY
from tests.integration.conftest import RUNNING_COLUMNS, Feeder, running

pytestmark = pytest.mark.integration

WAIT = 120.0  # the bound of one pipeline call on a busy 2-core machine
PERIOD = "2026-11"
NUMERIC_18_2_OVERFLOW = Decimal(10) ** 16  # the least amount numeric(18,2) cannot hold
INT_MAX = 2**31 - 1


def sale(n: int, seller: str, accessory: str = "100.00", when: str = "2026-11-10T10:00:00Z") -> bytes:
    """A phone and an accessory: the accessory is a cross-sell credited to the field rep alone."""
    return json.dumps({
        "event_id": f"s-{n}", "event_type": "sale", "occurred_at": when, "customer_id": f"cust-{n}",
        "sale_id": f"S-{n}", "seller_id": seller, "seller_role": "field_rep", "currency": "EUR",
        "lines": [{"line_id": "L1", "sku": "PHN-1", "category": "phones", "quantity": 1, "unit_price": "500.00"},
                  {"line_id": "L2", "sku": "ACC-1", "category": "accessories", "quantity": 1,
                   "unit_price": accessory}],
    }).encode()


def held(n: int, telemarketer: str) -> bytes:
    return json.dumps({
        "event_id": f"h-{n}", "event_type": "lead_handoff", "occurred_at": "2026-11-12T10:00:00Z",
        "customer_id": f"cust-h{n}", "lead_id": f"lead-{n}", "telemarketer_id": telemarketer,
        "field_rep_id": "fr-0", "status": "held",
    }).encode()


async def execute(url: str, sql: str, *args: Any) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close()


async def fetch(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def saturate(url: str, person: str, amount: Decimal = NUMERIC_18_2_OVERFLOW, held_count: int = 0) -> None:
    """`person`'s month as if a billion sales had come before: one more credit overflows."""
    await execute(url, "INSERT INTO credit_totals (period, person_id, cross_sell_amount, appointments_held) "
                       "VALUES ($1, $2, $3, $4)", PERIOD, person, amount, held_count)


async def stored_ids(url: str) -> list[str]:
    return [row["event_id"] for row in await fetch(url, "SELECT event_id FROM events ORDER BY event_id")]


async def dead_letters(url: str) -> list[asyncpg.Record]:
    return await fetch(url, 'SELECT "offset", payload, reason, detail FROM dead_letters ORDER BY "offset"')


def expected_rows(lines: Sequence[bytes]) -> list[dict[str, str]]:
    rows = compute_tables([decode_event(line) for line in lines], load_plan())
    return [{name: str(getattr(row, name)) for name in RUNNING_COLUMNS} for row in rows]


async def feed(url: str, lines: Sequence[bytes], batch_size: int = 500) -> list[BatchResult]:
    return await asyncio.wait_for(Feeder(url).feed(lines, batch_size), WAIT)


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)


# --- a poison message, two, a pair --------------------------------------------------------------


async def test_a_poison_message_in_the_middle_of_a_batch(pg_url: str) -> None:
    await saturate(pg_url, "fr-full")
    good = [sale(i, f"fr-{i % 3}") for i in range(20)]
    poison = sale(99, "fr-full")
    lines = [*good[:10], poison, *good[10:]]
    [result] = await feed(pg_url, lines)

    assert await stored_ids(pg_url) == sorted(f"s-{i}" for i in range(20))
    [letter] = await dead_letters(pg_url)
    assert (letter["offset"], letter["reason"], bytes(letter["payload"])) == (10, PROCESSING_ERROR, poison)
    assert "NumericValueOutOfRangeError" in letter["detail"] and "SQLSTATE 22003" in letter["detail"]
    assert (result.stored, result.attempts, [d.reason for d in result.new_dead_letters]) == (20, 1,
                                                                                             [PROCESSING_ERROR])
    assert await running(pg_url) == expected_rows(good)  # the dead letter left the set of section 5


async def test_two_poison_messages_of_two_kinds(pg_url: str) -> None:
    await saturate(pg_url, "fr-full")
    await saturate(pg_url, "tm-full", amount=Decimal(0), held_count=INT_MAX)
    good = [sale(i, f"fr-{i % 3}") for i in range(12)] + [held(i, "tm-1") for i in range(3)]
    lines = [*good[:4], sale(98, "fr-full"), *good[4:9], held(99, "tm-full"), *good[9:]]
    await feed(pg_url, lines)

    assert await stored_ids(pg_url) == sorted([*(f"s-{i}" for i in range(12)), *(f"h-{i}" for i in range(3))])
    letters = await dead_letters(pg_url)
    assert [(row["offset"], row["reason"]) for row in letters] == [(4, PROCESSING_ERROR), (10, PROCESSING_ERROR)]
    assert all("SQLSTATE 22003" in row["detail"] for row in letters)
    assert "numeric field overflow" in letters[0]["detail"] and "integer out of range" in letters[1]["detail"]
    assert await running(pg_url) == expected_rows(good)


async def test_two_messages_that_fail_only_together_lose_the_later(pg_url: str) -> None:
    """Each fits alone; both overflow. The later in arrival order is dead-lettered (SPEC §10:
    which one may depend on arrival order)."""
    await saturate(pg_url, "fr-near", amount=NUMERIC_18_2_OVERFLOW - 150)
    first, second = sale(1, "fr-near"), sale(2, "fr-near")
    await feed(pg_url, [sale(0, "fr-0"), first, sale(3, "fr-1"), second, sale(4, "fr-2")])
    assert await stored_ids(pg_url) == ["s-0", "s-1", "s-3", "s-4"]
    assert [(row["offset"], bytes(row["payload"])) for row in await dead_letters(pg_url)] == [(3, second)]
    [row] = await fetch(pg_url, "SELECT cross_sell_amount FROM bonus_running WHERE person_id = 'fr-near'")
    assert row["cross_sell_amount"] == NUMERIC_18_2_OVERFLOW - 50


async def test_the_rules_refusing_a_message_isolate_it(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An ArithmeticError raised by the rules for one customer is isolated like a data exception.
    None is reachable from valid input any more, so one is planted: cust-7's sale is decoded
    with a price of 1,001 digits, which decoding never gives (SPEC section 10 caps prices), and
    the rules' exact context (1,000 digits) refuses to round it. The plant is in the decoding,
    not in the rules, so it holds in the compiled build too (setup.py), whose rules and diff
    call each other past any patch."""
    original = pipeline_module.decode_event

    def decode_event(raw: bytes) -> Any:
        event = original(raw)
        if event.customer_id == "cust-7":
            msgspec.structs.force_setattr(event.lines[1], "unit_price", Decimal("1" * 1001))
        return event

    monkeypatch.setattr(pipeline_module, "decode_event", decode_event)
    lines = [sale(i, f"fr-{i % 3}") for i in range(12)]
    await feed(pg_url, lines)
    assert await stored_ids(pg_url) == sorted(f"s-{i}" for i in range(12) if i != 7)
    [letter] = await dead_letters(pg_url)
    assert letter["offset"] == 7 and letter["reason"] == PROCESSING_ERROR
    assert "the rules failed for customer 'cust-7': Inexact: " in letter["detail"]


# --- a systemic fault, and errors that are nobody's data -----------------------------------------


def messages(lines: Sequence[bytes]) -> list[Message]:
    return [Message("crm.sales", 0, offset, None, line) for offset, line in enumerate(lines)]


async def test_a_systemic_fault_is_retried_never_dead_lettered(pg_url: str) -> None:
    await saturate(pg_url, "fr-full")
    lines = [sale(0, "fr-0"), sale(1, "fr-1"), *(sale(10 + i, "fr-full") for i in range(12)), sale(2, "fr-2")]
    pool = await db.create_pool(pg_url)
    try:
        pipeline = Pipeline(pool, load_plan(None), "test")
        retries = 0

        def on_retry() -> None:
            nonlocal retries
            retries += 1

        pipeline.on_retry = on_retry
        task = asyncio.ensure_future(pipeline.handle(messages(lines)))

        async def systemic() -> bool:
            return not pipeline.healthy and pipeline.last_error == SYSTEMIC

        await eventually(systemic, "the pipeline to report the systemic fault")
        assert not task.done()
        assert await dead_letters(pg_url) == [] and await stored_ids(pg_url) == []  # nothing committed
        await execute(pg_url, "UPDATE credit_totals SET cross_sell_amount = 0 WHERE person_id = 'fr-full'")
        result = await asyncio.wait_for(task, WAIT)
    finally:
        await pool.close()
    assert result.attempts >= 2 and retries == result.attempts - 1
    assert await dead_letters(pg_url) == []
    assert len(await stored_ids(pg_url)) == len(lines)
    assert pipeline.healthy and pipeline.last_error is None


async def _blocked_backends(url: str, admin: asyncpg.Connection) -> list[int]:
    rows = await admin.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND wait_event_type = 'Lock' AND query LIKE '%pg_advisory_xact_lock_shared%'")
    return [row["pid"] for row in rows]


@pytest.mark.parametrize("fault", ["terminated-backend", "statement-timeout"])
async def test_an_error_that_is_not_the_data_is_retried_never_dead_lettered(pg_url: str, fault: str) -> None:
    """The batch's backend is killed (pg_terminate_backend: 57P01 or a lost connection), or its
    statement times out (57014), while it waits for a lock another session holds."""
    if fault == "statement-timeout":  # for the connections opened from now on
        [row] = await fetch(pg_url, "SELECT current_database() AS name")
        await execute(pg_url, f"ALTER DATABASE \"{row['name']}\" SET statement_timeout = '1s'")
    lines = [sale(i, f"fr-{i % 3}") for i in range(6)]
    admin = await asyncpg.connect(pg_url)
    locker = await asyncpg.connect(pg_url)
    pool = await db.create_pool(pg_url)
    try:
        holding = locker.transaction()
        await holding.start()
        await locker.execute("SELECT pg_advisory_xact_lock($1)", SETTLEMENT_LOCK_KEY)  # what `settle` takes
        pipeline = Pipeline(pool, load_plan(None), "test")
        task = asyncio.ensure_future(pipeline.handle(messages(lines)))
        first: list[int] = []

        async def blocked() -> bool:
            first[:] = await _blocked_backends(pg_url, admin)
            return bool(first)

        await eventually(blocked, "the batch to wait for the lock")
        if fault == "terminated-backend":
            await admin.execute("SELECT pg_terminate_backend($1)", first[0])
        else:
            await asyncio.sleep(2.5)  # past the timeout, at least once

        async def failed_once() -> bool:
            return not pipeline.healthy

        await eventually(failed_once, "the first attempt to fail")
        assert pipeline.last_error is not None and pipeline.last_error.startswith(
            "could not commit the batch to Postgres: ")
        await holding.rollback()
        result = await asyncio.wait_for(task, WAIT)
    finally:
        await pool.close()
        await locker.close()
        await admin.close()
    assert result.attempts >= 2
    assert await dead_letters(pg_url) == []
    assert await stored_ids(pg_url) == sorted(f"s-{i}" for i in range(6))
    assert pipeline.healthy


# --- extreme values, drawn: each stored or dead-lettered, the others always land ------------------

#: Characters of a valid id: anything but control characters (and surrogates, which JSON text
#: in UTF-8 cannot carry); astral ones make a 128-character id 512 bytes long. Not `~`: ids of
#: one example start with `UNIQUE`, replaced by the example's own token before feeding.
ID_CHARS = st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="~")
UNIQUE = "~~~~~~~~"
OFFSETS = itertools.count(1)


@st.composite
def ids(draw: st.DrawFn, prefix: str) -> str:
    """An id of 1..128 characters starting with `prefix`, often exactly 128."""
    size = draw(st.sampled_from([len(prefix), 32, 128, 128]))
    return prefix + draw(st.text(ID_CHARS, min_size=size - len(prefix), max_size=size - len(prefix)))


@st.composite
def times(draw: st.DrawFn) -> str:
    """A time at or just beyond a bound of SPEC section 10, in some offset, maybe with a long fraction."""
    bound = draw(st.sampled_from([EARLIEST, LATEST, datetime(2026, 11, 30, 23, 59, 59, 999_999, EARLIEST.tzinfo)]))
    step = draw(st.sampled_from([0, 0, 0, 1, -1, 1000, -1000])) * timedelta(microseconds=1)
    offset = draw(st.sampled_from([timedelta(0), timedelta(hours=23, minutes=59), -timedelta(hours=23, minutes=59),
                                   timedelta(hours=5, minutes=30), timedelta(hours=-1)]))
    instant = bound + step
    local = (instant + offset).replace(tzinfo=None)
    zone = "Z" if not offset else ("+" if offset > timedelta(0) else "-") + (
        f"{abs(offset) // timedelta(hours=1):02d}:{abs(offset) % timedelta(hours=1) // timedelta(minutes=1):02d}")
    digits = draw(st.sampled_from(["", f".{local.microsecond:06d}", f".{local.microsecond:06d}999",
                                   f".{local.microsecond:06d}" + "9" * 20]))
    return local.strftime("%Y-%m-%dT%H:%M:%S") + digits + zone


PRICES = ["9999999.9999", "0", "0.0001", "0000012.5", 9999999.9999, 100, "999.9999"]


@st.composite
def extreme_events(draw: st.DrawFn, prefix: str) -> dict[str, Any]:
    kind = draw(st.sampled_from(["sale", "sale", "refund", "callback", "lead_handoff"]))
    event: dict[str, Any] = {"event_id": draw(ids(f"{prefix}e")), "event_type": kind, "occurred_at": draw(times()),
                             "customer_id": draw(ids(f"{prefix}c"))}
    if kind == "sale":
        count = draw(st.sampled_from([1, 2, 1000]))
        price = draw(st.sampled_from(PRICES)) if count < 1000 else "9999.9999"
        quantity = draw(st.sampled_from([1, 1, 10_000]))
        event |= {"sale_id": draw(ids(f"{prefix}s")), "seller_id": draw(ids("fr")),
                  "seller_role": draw(st.sampled_from(["field_rep", "telemarketer"])), "currency": "EUR",
                  "lines": [{"line_id": f"L{i}", "sku": draw(ids("k")) if count < 1000 else f"k{i}",
                             "category": draw(st.sampled_from(["phones", "accessories", "insurance"])),
                             "quantity": quantity, "unit_price": price} for i in range(count)]}
    elif kind == "refund":
        event |= {"sale_id": draw(ids(f"{prefix}s")),
                  "lines": [{"line_id": f"L{i}", "quantity": 10_000} for i in range(draw(st.sampled_from([1, 1000])))]}
    elif kind == "callback":
        event |= {"telemarketer_id": draw(ids("tm")), "outcome": "offer_made",
                  "offered_categories": [draw(ids("cat")) for _ in range(draw(st.sampled_from([1, 100])))]}
    else:
        event |= {"lead_id": draw(ids(f"{prefix}l")), "telemarketer_id": draw(ids("tm")), "field_rep_id": "fr-0",
                  "status": draw(st.sampled_from(["booked", "held"])), "appointment_at": draw(times())}
    return event


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[bytes], list[bytes]]:
    """(normal valid events, extreme ones); their ids start with `UNIQUE`."""
    extremes = [json.dumps(draw(extreme_events(f"{UNIQUE}{i}")), ensure_ascii=draw(st.booleans())).encode()
                for i in range(draw(st.integers(1, 3)))]  # ids unique within the example too
    normal = [json.dumps(json.loads(sale(i, f"fr-{i % 2}")) | {"event_id": f"{UNIQUE}n{i}", "sale_id": f"{UNIQUE}S{i}",
                                                             "customer_id": f"{UNIQUE}c{i}"}).encode()
              for i in range(draw(st.integers(1, 4)))]
    return normal, extremes


@settings(max_examples=100, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=cases(), data=st.data())
async def test_extreme_values_are_stored_or_dead_lettered_and_the_rest_lands(
        pg_url: str, case: tuple[list[bytes], list[bytes]], data: st.DataObject) -> None:
    token = f"{next(OFFSETS):07d}-".encode()  # unique to this run of the example: one database for all
    normal, extremes = ([line.replace(UNIQUE.encode(), token) for line in part] for part in case)
    lines = list(normal)
    for line in extremes:
        lines.insert(data.draw(st.integers(0, len(lines))), line)
    conn = await asyncpg.connect(pg_url)
    try:
        feeder = Feeder(pg_url)
        feeder.offset = first = int(token[:7]) * 10_000  # offsets of this run's own
        await asyncio.wait_for(feeder.feed(lines), WAIT)  # a hang fails here
        stored = {row["event_id"]: bytes(row["raw"]) for row in await conn.fetch(
            "SELECT event_id, raw FROM events WHERE \"offset\" >= $1", first)}
        letters = {row["offset"] - first: row["reason"] for row in await conn.fetch(
            'SELECT "offset", reason FROM dead_letters WHERE "offset" >= $1', first)}
        for position, line in enumerate(lines):
            try:
                event = decode_event(line)
            except InvalidEvent as error:
                assert letters.get(position) == error.reason, (line[:300], letters)
                continue
            if line in normal:
                assert stored.get(event.event_id) == line, "a valid event next to an extreme one did not land"
            else:
                assert stored.get(event.event_id) == line or letters.get(position) == PROCESSING_ERROR, line[:300]
        # and the tables are the from-scratch computation over what is stored (SPEC section 5)
        every = [StoredDecoder().decode(bytes(row["raw"])) for row in await conn.fetch("SELECT raw FROM events")]
    finally:
        await conn.close()
    wanted = [{name: str(getattr(row, name)) for name in RUNNING_COLUMNS} for row in compute_tables(every, load_plan())]
    have = [row for row in await running(pg_url) if any(row[c] not in ("0", "0.00") for c in RUNNING_COLUMNS[3:])]
    by_key = lambda row: (row["period"], row["person_id"])  # noqa: E731  (Python's order, not the collation's)
    assert sorted(have, key=by_key) == sorted(wanted, key=by_key)
