"""Month close and prior-period adjustments (SPEC section 7).

Settling copies a period's `bonus_running` rows into `bonus_settled` in one
transaction. After that, whenever a batch changes what a person earned in a
closed period P, the difference between earned(P) and paid(P) is carried into the
earliest open period after P, as `prior_adjustments`, with an audit row in
`bonus_adjustments` per source period.

A settlement and the worker's batches exclude each other through one advisory
lock (batches share it, `settle` takes it alone): a batch never writes a period
half-way through being closed, so no change slips between the copy and the
adjustments.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import asyncpg

from schemas.events import FIELD_REP
from stream.bonus import EARNED_COLUMNS, RUNNING_COLUMNS, PersonKey, earned, paid
from stream.periods import adjustment_target, check_period
from stream.plan import Plan
from stream.plan_versions import Plans, as_plans
from stream.reports import NONZERO_ROW

logger = logging.getLogger(__name__)

SETTLEMENT_LOCK_KEY = 0x736574746C65
#: What settling copies of a `bonus_running` row: every column of SPEC sections 6 and 14.
_COPIED = ", ".join((*RUNNING_COLUMNS, "updated_at"))
#: SQL: earned(P) of a `bonus_running` row (SPEC section 7), the bonus without adjustments.
_EARNED_SQL = " + ".join(EARNED_COLUMNS)


@dataclass(frozen=True)
class Settlement:
    period: str
    settlement_id: uuid.UUID
    settled_at: datetime
    rows: int
    total_bonus: Decimal
    already_closed: bool


async def share_settlement_lock(conn: asyncpg.Connection) -> None:
    """Taken by every batch: many batches at once, but never during a settlement."""
    await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", SETTLEMENT_LOCK_KEY)


async def take_settlement_lock(conn: asyncpg.Connection) -> None:
    """Taken alone, until the transaction ends: no batch and no other settlement meanwhile."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", SETTLEMENT_LOCK_KEY)


async def settle(conn: asyncpg.Connection, period: str) -> Settlement:
    """Close `period`: copy its running rows into bonus_settled. Settling again changes nothing."""
    check_period(period)
    async with conn.transaction():
        await take_settlement_lock(conn)
        closed = await conn.fetchrow("SELECT * FROM periods_closed WHERE period = $1", period)
        if closed is not None:
            return await _summary(conn, period, closed, already_closed=True)
        closed = await conn.fetchrow(
            "INSERT INTO periods_closed (period, settlement_id, settled_at) VALUES ($1, $2, now()) RETURNING *",
            period, uuid.uuid4(),
        )
        await conn.execute(  # zero rows are not copied (SPEC section 14: stream/reports.py)
            f"""
            INSERT INTO bonus_settled (settlement_id, settled_at, {_COPIED})
            SELECT $2, $3, {_COPIED}
            FROM bonus_running WHERE period = $1 AND {NONZERO_ROW}
            """,
            period, closed["settlement_id"], closed["settled_at"],
        )
        return await _summary(conn, period, closed, already_closed=False)


async def _summary(conn: asyncpg.Connection, period: str, closed: asyncpg.Record, already_closed: bool) -> Settlement:
    row = await conn.fetchrow(
        "SELECT count(*) AS n, coalesce(sum(total_bonus), 0) AS total FROM bonus_settled WHERE period = $1",
        period,
    )
    return Settlement(period, closed["settlement_id"], closed["settled_at"], row["n"], row["total"],
                      already_closed)


async def carry_adjustments(conn: asyncpg.Connection, persons: Sequence[PersonKey], plans: Plan | Plans
                            ) -> set[PersonKey]:
    """Recompute the adjustments of the changed (period, person) pairs whose period is closed.

    Returns the (target period, person) rows whose `prior_adjustments` changed. A target row
    created for an adjustment carries the version of the plan in force for it (SPEC §12, §14).
    """
    if not persons:
        return set()
    closed = {r["period"] for r in await conn.fetch("SELECT period FROM periods_closed")}
    touched: set[PersonKey] = set()
    for period, person in sorted(p for p in persons if p[0] in closed):
        target = adjustment_target(period, closed)
        await _carry(conn, period, person, target)
        touched.add((target, person))
    for target, person in sorted(touched):
        await _apply_prior_adjustments(conn, target, person, as_plans(plans).for_period(target).version)
    return touched


#: What SPEC section 7's arithmetic needs of one (closed period, person), in one round trip: the
#: running row's earnings (and role), the settled row's, and the adjustments already settled.
_CARRY_INPUTS = f"""
SELECT r.role, r.period IS NOT NULL AS has_now, s.period IS NOT NULL AS has_settled,
       {", ".join(f"r.{name} AS now_{name}, s.{name} AS settled_{name}" for name in EARNED_COLUMNS)},
       (SELECT coalesce(sum(a.amount), 0) FROM bonus_adjustments a JOIN periods_closed c ON c.period = a.target_period
        WHERE a.source_period = $1 AND a.person_id = $2) AS adjusted_before
FROM (SELECT $1::text AS period, $2::text AS person_id) AS k
LEFT JOIN bonus_running r ON r.period = k.period AND r.person_id = k.person_id
LEFT JOIN bonus_settled s ON s.period = k.period AND s.person_id = k.person_id
"""


async def _carry(conn: asyncpg.Connection, source: str, person: str, target: str) -> None:
    """earned(source) - paid(source), as the open adjustment of `source` into `target`."""
    row = await conn.fetchrow(_CARRY_INPUTS, source, person)
    now = {name: row[f"now_{name}"] for name in EARNED_COLUMNS} if row["has_now"] else None
    settled = {name: row[f"settled_{name}"] for name in EARNED_COLUMNS} if row["has_settled"] else None
    adjusted_before = row["adjusted_before"]
    earned_now, paid_before = earned(now), paid(settled, adjusted_before)
    amount = earned_now - paid_before
    if amount == 0:
        await conn.execute(
            "DELETE FROM bonus_adjustments WHERE source_period = $1 AND target_period = $2 AND person_id = $3",
            source, target, person,
        )
        return
    await conn.execute(
        """
        INSERT INTO bonus_adjustments (source_period, target_period, person_id, role, amount, earned, paid)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (source_period, target_period, person_id) DO UPDATE SET
            role = excluded.role, amount = excluded.amount, earned = excluded.earned,
            paid = excluded.paid, updated_at = now()
        """,
        source, target, person, row["role"] or FIELD_REP, amount, earned_now, paid_before,
    )


async def _apply_prior_adjustments(conn: asyncpg.Connection, target: str, person: str, plan_version: str) -> None:
    """Set the target row's prior_adjustments to the sum of its adjustments; create the row if needed."""
    adj = await conn.fetchrow(
        "SELECT coalesce(sum(amount), 0) AS total, (array_agg(role ORDER BY source_period DESC))[1] AS role"
        " FROM bonus_adjustments WHERE target_period = $1 AND person_id = $2",
        target, person,
    )
    status = await conn.execute(
        f"""
        UPDATE bonus_running SET prior_adjustments = $3,
            total_bonus = {_EARNED_SQL} + $3, updated_at = now()
        WHERE period = $1 AND person_id = $2
        """,
        target, person, adj["total"],
    )
    if status == "UPDATE 0" and adj["total"] != 0:
        await conn.execute(
            """
            INSERT INTO bonus_running (period, person_id, role, cross_sell_count, cross_sell_amount,
                appointments_held, appointments_converted, cross_sell_bonus, appointment_bonus,
                prior_adjustments, total_bonus, plan_version, updated_at)
            VALUES ($1, $2, $3, 0, 0, 0, 0, 0, 0, $4, $4, $5, now())
            """,
            target, person, adj["role"], adj["total"], plan_version,
        )
