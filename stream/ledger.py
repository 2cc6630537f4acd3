"""Keeps `credits`, `credit_totals` and `bonus_running` equal to a from-scratch computation.

When events of a customer arrive, the customer's credits are computed again from
all of its stored events (the rules are per customer, SPEC section 5), compared
with the credits in force, and only the difference is written: removed credits
are deleted (a retraction), new ones inserted, and the per-person totals moved by
the same deltas. That is what makes the tables independent of arrival order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import asyncpg

from stream import rules, store
from stream.plan import Plan
from stream.rules import Credit, Totals

#: Credit fields in table order; the dataclass and the table share these names.
CREDIT_FIELDS = ("period", "person_id", "role", "kind", "customer_id", "sale_id", "line_id",
                 "lead_id", "amount", "share", "touch_event_id", "source_event_id")
PersonKey = tuple[str, str]  # (period, person_id)
TotalsKey = tuple[str, str, str]  # (period, person_id, role)


@dataclass
class LedgerChange:
    """What one recomputation wrote, for metrics and for the adjustment step."""

    inserted: int = 0
    retracted: int = 0
    persons: set[PersonKey] = field(default_factory=set)


async def recompute_customers(
    conn: asyncpg.Connection, customer_ids: Iterable[str], plan: Plan
) -> LedgerChange:
    """Bring the credits of these customers, and the bonus rows they feed, up to date."""
    ids = sorted(set(customer_ids))
    change = LedgerChange()
    if not ids:
        return change
    await _lock_customers(conn, ids)
    events = await store.load_customer_events(conn, ids)
    wanted = {credit for cid in ids for credit in rules.credit_customer(events[cid], plan)}
    in_force = await _credits_in_force(conn, ids)
    removed = {credit: row_id for credit, row_id in in_force.items() if credit not in wanted}
    added = sorted(credit for credit in wanted if credit not in in_force)
    if removed:
        await conn.execute("DELETE FROM credits WHERE id = ANY($1::bigint[])", list(removed.values()))
    await _insert_credits(conn, added)
    deltas = _deltas(added, removed)
    await _apply_deltas(conn, deltas)
    change.inserted, change.retracted = len(added), len(removed)
    change.persons = {(period, person) for period, person, _role in deltas}
    await refresh_running(conn, sorted(change.persons), plan)
    return change


async def _lock_customers(conn: asyncpg.Connection, ids: Sequence[str]) -> None:
    """Serialise work on a customer across workers and agents until this transaction ends.

    Whoever takes the lock second reads the first one's committed events, so the
    last recomputation of a customer always sees all of them.
    """
    await conn.execute(
        "SELECT pg_advisory_xact_lock(k) FROM (SELECT DISTINCT hashtextextended(c, 7) AS k"
        " FROM unnest($1::text[]) AS c ORDER BY k) AS keys",
        list(ids),
    )


async def _credits_in_force(conn: asyncpg.Connection, ids: Sequence[str]) -> dict[Credit, int]:
    rows = await conn.fetch(
        f"SELECT id, {', '.join(CREDIT_FIELDS)} FROM credits WHERE customer_id = ANY($1::text[])",
        list(ids),
    )
    return {Credit(*(row[name] for name in CREDIT_FIELDS)): row["id"] for row in rows}


async def _insert_credits(conn: asyncpg.Connection, credits: Sequence[Credit]) -> None:
    if not credits:
        return
    await conn.copy_records_to_table(
        "credits",
        records=[tuple(getattr(c, name) for name in CREDIT_FIELDS) for c in credits],
        columns=CREDIT_FIELDS,
    )


def _deltas(added: Iterable[Credit], removed: Iterable[Credit]) -> dict[TotalsKey, list[Decimal]]:
    """Per (period, person, role): [count, amount, held, converted] moved by this change."""
    deltas: dict[TotalsKey, list[Decimal]] = {}
    for credits, sign in ((added, 1), (removed, -1)):
        for credit in credits:
            delta = deltas.setdefault((credit.period, credit.person_id, credit.role), [Decimal(0)] * 4)
            if credit.kind == "cross_sell":
                delta[0] += sign
                delta[1] += sign * credit.amount
            elif credit.kind == "appointment_held":
                delta[2] += sign
            else:
                delta[3] += sign
    return deltas


async def _apply_deltas(conn: asyncpg.Connection, deltas: dict[TotalsKey, list[Decimal]]) -> None:
    if not deltas:
        return
    keys = sorted(deltas)  # one lock order for every worker: no deadlocks between batches
    await conn.execute(
        """
        INSERT INTO credit_totals AS t (period, person_id, role, cross_sell_count, cross_sell_amount,
                                        appointments_held, appointments_converted)
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::numeric[], $6::int[], $7::int[])
        ON CONFLICT (period, person_id, role) DO UPDATE SET
            cross_sell_count = t.cross_sell_count + excluded.cross_sell_count,
            cross_sell_amount = t.cross_sell_amount + excluded.cross_sell_amount,
            appointments_held = t.appointments_held + excluded.appointments_held,
            appointments_converted = t.appointments_converted + excluded.appointments_converted
        """,
        [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys],
        [int(deltas[k][0]) for k in keys], [deltas[k][1] for k in keys],
        [int(deltas[k][2]) for k in keys], [int(deltas[k][3]) for k in keys],
    )


async def load_totals(conn: asyncpg.Connection, persons: Sequence[PersonKey]) -> dict[PersonKey, Totals]:
    """Exact totals per (period, person), the roles of a person merged (SPEC section 6)."""
    rows = await conn.fetch(
        """
        SELECT t.* FROM credit_totals t
        JOIN unnest($1::text[], $2::text[]) AS k(period, person_id) USING (period, person_id)
        ORDER BY t.period, t.person_id, t.role
        """,
        [p[0] for p in persons], [p[1] for p in persons],
    )
    by_person: dict[PersonKey, list[asyncpg.Record]] = {}
    for row in rows:
        by_person.setdefault((row["period"], row["person_id"]), []).append(row)
    return {key: merge_roles(group) for key, group in by_person.items()}


def merge_roles(rows: Sequence[asyncpg.Record]) -> Totals:
    """One person's totals over roles; the role is the one with more credits, ties to field_rep."""
    def credit_count(row: asyncpg.Record) -> int:
        return int(row["cross_sell_count"] + row["appointments_held"] + row["appointments_converted"])

    best = max(rows, key=lambda row: (credit_count(row), row["role"] == "field_rep"))
    return Totals(
        period=rows[0]["period"],
        person_id=rows[0]["person_id"],
        role=best["role"],
        cross_sell_count=sum(int(r["cross_sell_count"]) for r in rows),
        cross_sell_amount=sum((r["cross_sell_amount"] for r in rows), Decimal(0)),
        appointments_held=sum(int(r["appointments_held"]) for r in rows),
        appointments_converted=sum(int(r["appointments_converted"]) for r in rows),
    )


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
    rows = [rules.running_row(totals[key], plan) for key in sorted(totals)]
    columns = ("period", "person_id", "role", "cross_sell_count", "cross_sell_amount",
               "appointments_held", "appointments_converted", "cross_sell_bonus",
               "appointment_bonus", "prior_adjustments", "total_bonus")
    await conn.execute(_UPSERT_RUNNING, *([getattr(row, name) for row in rows] for name in columns))
