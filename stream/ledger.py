"""Keeps `credits`, `credit_totals` and `bonus_running` equal to a from-scratch computation.

When events of a customer arrive, the customer's credits are computed again from
all of its stored events (the rules are per customer, SPEC section 5), compared
with the credits in force, and only the difference is written: removed credits
are deleted (a retraction), new ones inserted, and the per-person totals moved by
the same deltas. That is what makes the tables independent of arrival order.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import asyncpg

from schemas.events import Event
from stream import rules, settlement, store
from stream.bonus import NOTHING, RUNNING_COLUMNS, PersonKey, Tally, add_tallies, running_row, tally
from stream.diff import diff_credits
from stream.plan import Plan
from stream.rules import Credit

logger = logging.getLogger(__name__)


class RulesError(Exception):
    """The pure rules (`stream.rules`, `stream.bonus`, `stream.diff`) raised an ArithmeticError
    or a ValueError on a customer's events: what SPEC section 10 counts, with a Postgres data
    exception, as a message failing on its own data. Raised here, where the rules are called,
    so the pipeline can tell it from the same exception raised anywhere else (a bug there).
    """

    def __init__(self, customer_id: str | None, error: ArithmeticError | ValueError) -> None:
        self.customer_id = customer_id
        self.error = error
        where = "the bonus rows" if customer_id is None else f"customer {customer_id[:64]!r}"
        super().__init__(f"the rules failed for {where}: {type(error).__name__}: {error}")


#: Credit fields in table order; the named tuple and the table share these names.
CREDIT_FIELDS = Credit._fields


@dataclass
class CachedCustomer:
    """A customer as this worker last committed it: valid while the database's version matches."""

    version: int
    events: list[Event]
    credits: dict[Credit, int]  # credit in force -> its row id


class CustomerCache:
    """Decoded events and credits in force of recently seen customers, least recently used out.

    It saves reading and decoding a customer's whole history on every batch that touches
    the customer. It is never trusted blindly: an entry is used only when the customer's
    version in Postgres is the one it was cached at, so another worker's writes, or a
    batch that rolled back, simply make it miss.

    Bounded by events, not customers: a cached event costs ~0.9 KB of worker memory
    (measured), so the default bound keeps the cache under ~45 MB; with two workers, a 300,000-event
    burst ran as fast with 50,000 as with 100,000.
    """

    def __init__(self, max_events: int = 50_000) -> None:
        self.max_events = max_events
        self.entries: OrderedDict[str, CachedCustomer] = OrderedDict()
        self.events = 0
        self.hits = 0
        self.misses = 0

    def get(self, customer_id: str, version: int) -> CachedCustomer | None:
        """The customer as committed at `version`, or None if not cached at that version.

        Version 0 is a customer whose row this very batch created (`_take_customers`
        starts at 1, and migration 0004 gave every older customer a row): nothing of
        it was stored before, so there is nothing to read back.
        """
        if version == 0:
            return CachedCustomer(0, [], {})
        entry = self.entries.get(customer_id)
        if entry is None or entry.version != version:
            self.misses += 1
            return None
        self.entries.move_to_end(customer_id)
        self.hits += 1
        return entry

    def update(self, staged: dict[str, CachedCustomer]) -> None:
        """Take in what a batch committed; call only after its transaction is in."""
        for customer_id, entry in staged.items():
            self.discard([customer_id])
            self.entries[customer_id] = entry
            self.events += len(entry.events)
        while self.events > self.max_events and self.entries:
            _, oldest = self.entries.popitem(last=False)
            self.events -= len(oldest.events)

    def discard(self, customer_ids: Iterable[str]) -> None:
        for customer_id in customer_ids:
            entry = self.entries.pop(customer_id, None)
            if entry is not None:
                self.events -= len(entry.events)


@dataclass
class LedgerChange:
    """What one recomputation wrote, for metrics, the adjustment step and the cache."""

    inserted: int = 0
    retracted: int = 0
    persons: set[PersonKey] = field(default_factory=set)
    staged: dict[str, CachedCustomer] = field(default_factory=dict)


async def recompute_customers(
    conn: asyncpg.Connection, new_events: Mapping[str, Sequence[Event]], plan: Plan, cache: CustomerCache
) -> LedgerChange:
    """Bring the credits of the customers with new events, and the bonus rows they feed, up to date.

    `new_events` are the events this batch stored, per customer. The rest of each
    customer's history comes from the cache when current, else from Postgres.
    """
    ids = sorted(new_events)
    change = LedgerChange()
    if not ids:
        return change
    versions = await _take_customers(conn, ids)
    cached = {cid: entry for cid in ids if (entry := cache.get(cid, versions[cid] - 1)) is not None}
    # Credits in force always equal the rules over the stored events, so a customer whose
    # new events cannot change them keeps its credits: no reading, no recomputation.
    unchanged = {cid for cid in ids if not rules.can_change_credits(
        new_events[cid], cached[cid].events if cid in cached else None)}
    missing = [cid for cid in ids if cid not in cached and cid not in unchanged]
    stored = await store.load_customer_events(conn, missing)  # this batch's events included
    in_force = await _credits_in_force(conn, missing)
    removed: dict[Credit, int] = {}
    added: list[Credit] = []
    deltas: dict[PersonKey, Tally] = {}
    for cid in ids:
        entry = cached.get(cid)
        if cid in unchanged:
            if entry is not None:  # still current after this batch, with the new events
                # a new list (a rollback keeps the old entry), the same credits (nothing adds to them)
                change.staged[cid] = CachedCustomer(versions[cid], [*entry.events, *new_events[cid]],
                                                    entry.credits)
            continue
        history = [*entry.events, *new_events[cid]] if entry else stored[cid]
        try:
            customer = diff_credits(entry.credits if entry else in_force.get(cid, {}),
                                    rules.credit_customer(history, plan))
            add_tallies(deltas, customer.deltas)
        except (ArithmeticError, ValueError) as error:
            raise RulesError(cid, error) from error
        removed.update(customer.removed)
        added.extend(customer.added)  # new rows' ids in that order
        change.staged[cid] = CachedCustomer(versions[cid], history, customer.kept)  # new credits join below
    if removed:
        await conn.execute("DELETE FROM credits WHERE id = ANY($1::bigint[])", list(removed.values()))
    for credit, row_id in zip(added, await _insert_credits(conn, added), strict=True):
        change.staged[credit.customer_id].credits[credit] = row_id
    # A credit replaced by an equal-weight one (another touch, the same amount) moves no total.
    deltas = {key: delta for key, delta in deltas.items() if delta != NOTHING}
    await _apply_deltas(conn, deltas)
    change.inserted, change.retracted = len(added), len(removed)
    change.persons = set(deltas)
    await refresh_running(conn, sorted(change.persons), plan)
    return change


async def _take_customers(conn: asyncpg.Connection, ids: Sequence[str]) -> dict[str, int]:
    """Lock the customers' rows until this transaction ends and bump their versions.

    Whoever takes a customer second reads the first one's committed events, so the
    last recomputation of a customer always sees all of them. Sorted: one lock order.
    """
    rows = await conn.fetch(
        """
        INSERT INTO customers AS c (customer_id, version) SELECT id, 1 FROM unnest($1::text[]) AS id ORDER BY id
        ON CONFLICT (customer_id) DO UPDATE SET version = c.version + 1
        RETURNING customer_id, version
        """,
        list(ids),
    )
    return {row["customer_id"]: row["version"] for row in rows}


async def _credits_in_force(conn: asyncpg.Connection, ids: Sequence[str]) -> dict[str, dict[Credit, int]]:
    if not ids:
        return {}
    rows = await conn.fetch(
        f"SELECT id, {', '.join(CREDIT_FIELDS)} FROM credits WHERE customer_id = ANY($1::text[])",
        list(ids),
    )
    grouped: dict[str, dict[Credit, int]] = {}
    for row in rows:
        grouped.setdefault(row["customer_id"], {})[Credit(*(row[name] for name in CREDIT_FIELDS))] = row["id"]
    return grouped


async def _insert_credits(conn: asyncpg.Connection, credits: Sequence[Credit]) -> list[int]:
    """COPY the new credits with ids drawn from their sequence first, so the cache knows them."""
    if not credits:
        return []
    ids = [row[0] for row in await conn.fetch(
        "SELECT nextval('credits_id_seq') FROM generate_series(1, $1)", len(credits))]
    await conn.copy_records_to_table(
        "credits",
        records=[(row_id, *credit) for row_id, credit in zip(ids, credits, strict=True)],
        columns=("id", *CREDIT_FIELDS),
    )
    return ids


#: `credit_totals` columns, one per `Tally` field, in its order.
TALLY_COLUMNS = tuple(field.name for field in dataclasses.fields(Tally))


async def _apply_deltas(conn: asyncpg.Connection, deltas: Mapping[PersonKey, Tally]) -> None:
    """Add each person's change to their exact month in `credit_totals`."""
    if not deltas:
        return
    keys = sorted(deltas)  # one lock order for every worker: no deadlocks between batches
    await conn.execute(
        f"""
        INSERT INTO credit_totals AS t (period, person_id, {", ".join(TALLY_COLUMNS)})
        SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::numeric[], $5::int[], $6::int[],
                             $7::int[], $8::int[])
        ON CONFLICT (period, person_id) DO UPDATE SET
            {", ".join(f"{name} = t.{name} + excluded.{name}" for name in TALLY_COLUMNS)}
        """,
        [k[0] for k in keys], [k[1] for k in keys],
        *([getattr(deltas[k], name) for k in keys] for name in TALLY_COLUMNS),
    )


async def load_totals(conn: asyncpg.Connection, persons: Sequence[PersonKey]) -> dict[PersonKey, Tally]:
    """The exact month of each of these persons that has one, as `credit_totals` holds it."""
    rows = await conn.fetch(
        f"""
        SELECT t.period, t.person_id, {", ".join(f"t.{name}" for name in TALLY_COLUMNS)} FROM credit_totals t
        JOIN unnest($1::text[], $2::text[]) AS k(period, person_id) USING (period, person_id)
        """,
        [p[0] for p in persons], [p[1] for p in persons],
    )
    return {(row["period"], row["person_id"]): Tally(*(row[name] for name in TALLY_COLUMNS)) for row in rows}


_UPSERT_RUNNING = """
INSERT INTO bonus_running AS b (period, person_id, role, cross_sell_count, cross_sell_amount,
    appointments_held, appointments_converted, cross_sell_bonus, appointment_bonus,
    prior_adjustments, total_bonus, updated_at)
SELECT *, now() FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::numeric[], $6::int[],
                            $7::int[], $8::numeric[], $9::numeric[], $10::numeric[], $11::numeric[])
ON CONFLICT (period, person_id) DO UPDATE SET
    role = excluded.role,
    cross_sell_count = excluded.cross_sell_count,
    cross_sell_amount = excluded.cross_sell_amount,
    appointments_held = excluded.appointments_held,
    appointments_converted = excluded.appointments_converted,
    cross_sell_bonus = excluded.cross_sell_bonus,
    appointment_bonus = excluded.appointment_bonus,
    total_bonus = excluded.cross_sell_bonus + excluded.appointment_bonus + b.prior_adjustments,
    updated_at = now()
"""


async def refresh_running(conn: asyncpg.Connection, persons: Sequence[PersonKey], plan: Plan) -> None:
    """Rewrite the `bonus_running` rows of these persons from their exact totals.

    `prior_adjustments` of an existing row is kept as it is (SPEC section 7 owns it).
    """
    if not persons:
        return
    totals = await load_totals(conn, persons)
    try:
        rows = [running_row(key, totals[key], plan) for key in sorted(totals)]
    except (ArithmeticError, ValueError) as error:
        raise RulesError(None, error) from error
    await conn.execute(_UPSERT_RUNNING, *([getattr(row, name) for row in rows] for name in RUNNING_COLUMNS))


async def rebuild_if_pending(conn: asyncpg.Connection, plan: Plan) -> list[PersonKey]:
    """Refill `credit_totals` from `credits` when a migration asked for it, and bring
    `bonus_running` and the adjustments of closed months in line; returns the
    (period, person) rows whose figures changed.

    Migration 0005 asks for it: `credit_totals` used to count a line once per role, so a
    person holding both parts of a line counted it twice (issue 12). The totals are taken
    with the rules' own `tally`, period by period; a closed month's change reaches payroll
    as an adjustment in the earliest open month (SPEC §7), never in `bonus_settled`. Runs
    in the caller's transaction, under the exclusive settlement lock, so no batch and no
    settlement runs meanwhile and two workers starting at once rebuild once.
    """
    if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM ledger_rebuilds)"):
        return []  # the usual start: no lock taken, running workers' batches are not held up
    await settlement.take_settlement_lock(conn)
    reasons = [row["reason"] for row in await conn.fetch("SELECT reason FROM ledger_rebuilds")]
    if not reasons:
        return []
    logger.warning("rebuilding credit_totals and bonus_running from credits (%s)", "; ".join(reasons))
    changed: list[PersonKey] = []
    await conn.execute("DELETE FROM credit_totals")
    for period in [row["period"] for row in await conn.fetch("SELECT DISTINCT period FROM credits ORDER BY 1")]:
        rows = await conn.fetch(f"SELECT {', '.join(CREDIT_FIELDS)} FROM credits WHERE period = $1", period)
        totals = tally(Credit(*row) for row in rows)
        await _apply_deltas(conn, totals)
        before = {(row["period"], row["person_id"]): tuple(row) for row in await conn.fetch(
            f"SELECT {', '.join(RUNNING_COLUMNS[:-2])} FROM bonus_running WHERE period = $1", period)}
        persons = sorted(totals)
        await refresh_running(conn, persons, plan)
        after = {(row["period"], row["person_id"]): tuple(row) for row in await conn.fetch(
            f"SELECT {', '.join(RUNNING_COLUMNS[:-2])} FROM bonus_running WHERE period = $1", period)}
        changed += [key for key in persons if before.get(key) != after.get(key)]
    await settlement.carry_adjustments(conn, changed)
    await conn.execute("DELETE FROM ledger_rebuilds")
    logger.warning("rebuilt: %d bonus_running rows changed", len(changed))
    return changed
