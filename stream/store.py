"""The event store: valid events once by event_id, dead letters, consumer progress.

Every function takes a connection that is inside the batch's transaction, so a
batch's events, dead letters, credits and progress commit together or not at all.
Rows go in through COPY (events) or as arrays through `unnest`, one statement per table per batch.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass

import asyncpg

from schemas.decode import CONFLICTING_DUPLICATE, DUPLICATE_SALE_ID, StoredDecoder, same_content
from schemas.events import Event, Sale, event_type
from schemas.messages import DeadLetter, Decoded, Message

#: Stored events are read back leniently: events stored under version 1 are not validated
#: again (SPEC section 10), so nothing this store took can start failing when read.
_decoder = StoredDecoder()


@dataclass
class InsertOutcome:
    inserted: list[Decoded]
    duplicates: int
    dead_letters: list[DeadLetter]


#: Columns of a new event, as COPY sends them (binary: no per-value checks in the client,
#: which cost ~4 µs an event with `unnest` arrays).
_EVENT_COLUMNS = ("event_id", "event_type", "customer_id", "occurred_at", "sale_id", "raw", "topic",
                  "partition", "offset")
#: When some events may already be stored, they go through a per-session staging table and
#: one statement that skips those, which COPY cannot.
_STAGE_EVENTS = """
CREATE TEMP TABLE IF NOT EXISTS incoming_events (
    n int, event_id text, event_type text, customer_id text, occurred_at timestamptz, sale_id text,
    raw bytea, topic text, "partition" int, "offset" bigint
) ON COMMIT DELETE ROWS
"""
_INSERT_STAGED_EVENTS = """
INSERT INTO events (event_id, event_type, customer_id, occurred_at, sale_id, raw, topic, "partition", "offset")
SELECT event_id, event_type, customer_id, occurred_at, sale_id, raw, topic, "partition", "offset"
FROM incoming_events ORDER BY n
ON CONFLICT DO NOTHING
RETURNING event_id
"""


async def insert_events(conn: asyncpg.Connection, batch: Sequence[Decoded],
                        recent: Container[str] = frozenset()) -> InsertOutcome:
    """Insert new events; sort the rest into duplicates and dead letters (SPEC section 3).

    The first message with an event_id wins. A later one with the same parsed
    JSON is a duplicate, silently dropped; with other content it is a
    `conflicting_duplicate`. A sale whose sale_id another sale already has is a
    `duplicate_sale_id`.

    Usually every event is new but for a repeat or two inside the batch: then the first of
    each id is COPYed straight into `events` (8.5 instead of 15 µs an event) and only the
    repeats are sorted. `recent` are ids this worker committed lately (`RecentIds`): those
    that are stored (one index probe for them all) are sorted as repeats too, before the COPY.
    If the COPY meets a stored id all the same (a repeat of what another worker or an older
    batch stored), the whole batch takes the staged path, which sorts everything out.
    """
    if not batch:
        return InsertOutcome([], 0, [])
    rows = [_event_row(message, event) for message, event in batch]
    first, repeats = _first_of_each_id(rows)
    known = [event_id for i in first if (event_id := batch[i].event.event_id) in recent]
    stored = await _stored_raw(conn, known) if known else {}
    if stored:
        repeats = sorted([*repeats, *(i for i in first if rows[i][0] in stored)])
        first = [i for i in first if rows[i][0] not in stored]
    try:
        if first:
            async with conn.transaction():  # a savepoint: a failed COPY leaves the batch's transaction usable
                await conn.copy_records_to_table("events", records=[rows[i] for i in first], columns=_EVENT_COLUMNS)
    except asyncpg.UniqueViolationError:
        return await _insert_staged(conn, batch, rows)
    duplicates, dead = await _sort_rejected(conn, [batch[i] for i in repeats], stored)
    return InsertOutcome([batch[i] for i in first], duplicates, dead)


def _event_row(message: Message, event: Event) -> tuple[object, ...]:
    """The `_EVENT_COLUMNS` of one event."""
    return (event.event_id, event_type(event), event.customer_id, event.occurred_at,
            event.sale_id if type(event) is Sale else None,
            message.value, message.topic, message.partition, message.offset)


def _first_of_each_id(rows: Sequence[tuple[object, ...]]) -> tuple[list[int], list[int]]:
    """Positions of the first row of each event_id (and sale_id, among sales), and of the rest."""
    seen_events: set[object] = set()
    seen_sales: set[object] = set()
    first: list[int] = []
    repeats: list[int] = []
    for index, row in enumerate(rows):
        event_id, sale_id = row[0], row[4]
        if event_id in seen_events or (sale_id is not None and sale_id in seen_sales):
            repeats.append(index)
        else:
            seen_events.add(event_id)
            if sale_id is not None:
                seen_sales.add(sale_id)
            first.append(index)
    return first, repeats


async def _insert_staged(
    conn: asyncpg.Connection, batch: Sequence[Decoded], rows: Sequence[tuple[object, ...]]
) -> InsertOutcome:
    await conn.execute(_STAGE_EVENTS)
    await conn.copy_records_to_table("incoming_events", records=[(n, *row) for n, row in enumerate(rows)],
                                     columns=("n", *_EVENT_COLUMNS))
    returned = {r["event_id"] for r in await conn.fetch(_INSERT_STAGED_EVENTS)}
    inserted: list[Decoded] = []
    rejected: list[Decoded] = []
    for item in batch:
        if item.event.event_id in returned:
            returned.discard(item.event.event_id)
            inserted.append(item)
        else:
            rejected.append(item)
    duplicates, dead = await _sort_rejected(conn, rejected)
    return InsertOutcome(inserted, duplicates, dead)


async def _stored_raw(conn: asyncpg.Connection, event_ids: Sequence[str]) -> dict[str, bytes]:
    """The stored bytes of those of these events that are stored."""
    rows = await conn.fetch("SELECT event_id, raw FROM events WHERE event_id = ANY($1::text[])", list(event_ids))
    return {row["event_id"]: bytes(row["raw"]) for row in rows}


async def _sort_rejected(
    conn: asyncpg.Connection, rejected: list[Decoded], read: Mapping[str, bytes] | None = None
) -> tuple[int, list[DeadLetter]]:
    """Duplicates and dead letters among events not inserted; `read`: stored bytes already read."""
    if not rejected:
        return 0, []
    read = read or {}
    stored = {**read, **await _stored_raw(conn, [item.event.event_id for item in rejected
                                                 if item.event.event_id not in read])}
    duplicates, dead = 0, []
    for item in rejected:
        first = stored.get(item.event.event_id)
        if first is None:
            sale_id = item.event.sale_id if isinstance(item.event, Sale) else "?"
            dead.append(DeadLetter(item.message, DUPLICATE_SALE_ID,
                                   f"sale_id {sale_id!r} already belongs to another sale"))
        elif same_content(first, item.message.value):
            duplicates += 1
        else:
            dead.append(DeadLetter(item.message, CONFLICTING_DUPLICATE,
                                   f"event_id {item.event.event_id!r} was already processed "
                                   "with different content; the first one wins"))
    return duplicates, dead


#: Largest payload kept per dead letter; the rest is cut and the detail says so. Kafka's default
#: limit is 1 MB, so in practice every payload is kept byte for byte.
MAX_DEAD_LETTER_BYTES = 2 * 1024 * 1024

_INSERT_DEAD_LETTERS = """
INSERT INTO dead_letters (topic, "partition", "offset", key, payload, reason, detail)
SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bytea[], $5::bytea[], $6::text[], $7::text[])
ON CONFLICT DO NOTHING
RETURNING id, topic, "partition", "offset"
"""


async def insert_dead_letters(
    conn: asyncpg.Connection, letters: Sequence[DeadLetter]
) -> list[DeadLetter]:
    """Store dead letters; return those that are new (a redelivered message is not)."""
    if not letters:
        return []
    rows = await conn.fetch(
        _INSERT_DEAD_LETTERS,
        [d.message.topic for d in letters],
        [d.message.partition for d in letters],
        [d.message.offset for d in letters],
        [d.message.key for d in letters],
        [d.message.value[:MAX_DEAD_LETTER_BYTES] for d in letters],
        [d.reason for d in letters],
        [_stored_detail(d) for d in letters],
    )
    new = {(r["topic"], r["partition"], r["offset"]) for r in rows}
    return [d for d in letters if (d.message.topic, d.message.partition, d.message.offset) in new]


def _stored_detail(letter: DeadLetter) -> str:
    detail = letter.detail.replace("\x00", "\\x00")  # text columns cannot hold NUL
    size = len(letter.message.value)
    if size > MAX_DEAD_LETTER_BYTES:
        detail += f" (payload cut: {size} bytes received, the first {MAX_DEAD_LETTER_BYTES} kept)"
    return detail


async def save_progress(
    conn: asyncpg.Connection, group_id: str, batch: Iterable[Message]
) -> dict[tuple[str, int], int]:
    """Record the next offset to read per partition, with the results of the batch.

    The last batch wins, so a new broker (offsets from 0 again) simply starts over.
    """
    next_offsets: dict[tuple[str, int], int] = {}
    for msg in batch:
        key = (msg.topic, msg.partition)
        next_offsets[key] = max(next_offsets.get(key, 0), msg.offset + 1)
    if next_offsets:
        keys = sorted(next_offsets)
        await conn.execute(
            """
            INSERT INTO consumer_progress (group_id, topic, "partition", next_offset, updated_at)
            SELECT $1, t, p, o, now() FROM unnest($2::text[], $3::int[], $4::bigint[]) AS x(t, p, o)
            ON CONFLICT (group_id, topic, "partition") DO UPDATE
            SET next_offset = excluded.next_offset, updated_at = now()
            """,
            group_id,
            [k[0] for k in keys],
            [k[1] for k in keys],
            [next_offsets[k] for k in keys],
        )
    return next_offsets


async def load_customer_events(
    conn: asyncpg.Connection, customer_ids: Sequence[str]
) -> dict[str, list[Event]]:
    """Every stored event of these customers, decoded again from the bytes as received.

    With `StoredDecoder`, not `decode_event`: what version 1 stored and version 2 refuses (a
    space for T, money as " 5 ", a sale over 10,000,000) is still read, never refused.
    """
    grouped: dict[str, list[Event]] = {c: [] for c in customer_ids}
    rows = await conn.fetch(
        "SELECT customer_id, raw FROM events WHERE customer_id = ANY($1::text[])", list(customer_ids)
    )
    for row in rows:
        grouped[row["customer_id"]].append(_decoder.decode(row["raw"]))
    return grouped

