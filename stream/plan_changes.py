"""A change of the plans is another input (SPEC §12): found at start-up, recomputed in bulk.

The versions the tables were computed under are kept in Postgres (`plan_versions`, with a
digest of each version's content). A worker that starts with other plans (a version added,
edited or deleted, a single file changed) finds the periods whose version changed, by digest,
and recomputes them from the stored events before it consumes anything: the customers with an
event in those periods are computed again (stream/ledger.py, which writes only the change),
every row of those periods is rewritten under its version now in force, the years whose
December's version changed get their badges and prize again, and a change to a closed month
reaches payroll through SPEC §7: earned(P) - paid(P) into the earliest open month, with its
audit row. `bonus_settled` is never touched.

It runs in one transaction under the exclusive settlement lock, so no batch and no settlement
runs meanwhile, and two workers starting at once recompute once: the second finds the plans
stored and equal. Each recomputation bumps a generation in `plan_state`; every batch reads it
under the shared lock (`check_generation`), so a worker still running with the plans it
started with stops, with a message, instead of undoing the recomputation: the one started last
wins.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import asyncpg

from stream import ledger, settlement
from stream.bonus import PersonKey
from stream.errors import CrmbonusError
from stream.leads import december
from stream.plan_versions import Plans, PlanVersion

logger = logging.getLogger(__name__)


class PlansChanged(CrmbonusError):
    """Another worker started with other plans and recomputed under them: this one must stop."""


@dataclass(frozen=True)
class Stored:
    """A version as `plan_versions` keeps it."""

    effective_from: str | None
    version: str
    digest: str
    timezone: str


@dataclass
class PlanChange:
    """What a start-up found and did."""

    generation: int
    periods: list[str] = field(default_factory=list)  # recomputed
    years: list[int] = field(default_factory=list)  # badges and prize recomputed (December changed)
    customers: int = 0
    rows: list[PersonKey] = field(default_factory=list)  # bonus_running rows rewritten


def fingerprint(plans: Plans) -> str:
    """The versions' identity, as stored: effective_from, version and content digest of each."""
    return json.dumps([[r.effective_from, r.version, r.digest] for r in plans.records])


def _stored_for(stored: Sequence[Stored], period: str) -> Stored | None:
    """The stored version that was in force for `period` (the rule of SPEC §12 on stored rows)."""
    ordered = sorted(stored, key=lambda s: s.effective_from or "")
    chosen = ordered[0] if ordered else None
    for version in ordered:
        if (version.effective_from or "") <= period:
            chosen = version
    return chosen


def changed_periods(stored: Sequence[Stored], plans: Plans, periods: Sequence[str]) -> list[str]:
    """The periods, of those with data, whose version's content differs from the stored one's.

    With nothing stored (a database older than migration 0009, or filled without it) every
    period counts as changed: nobody knows which plan computed it.
    """
    result = []
    for period in sorted(set(periods)):
        then = _stored_for(stored, period)
        now: PlanVersion = plans.version_for(period)
        if then is None or then.digest != now.digest or then.timezone != now.plan.timezone:
            result.append(period)
    return result


async def current_generation(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT generation FROM plan_state") or 0


async def check_generation(conn: asyncpg.Connection, generation: int) -> None:
    """Raise `PlansChanged` when the plans were recomputed since this worker started (a batch's check)."""
    now = await current_generation(conn)
    if now != generation:
        raise PlansChanged(
            "the plans changed: a worker started later recomputed the tables under other plan versions "
            f"(generation {now}, this worker started at {generation}); this worker stops so as not to undo "
            "them. Start it again with the same --plan / CRMBONUS_PLAN as the others.")


async def apply_plan_changes(conn: asyncpg.Connection, plans: Plans,
                             progress: Callable[[int, int], None] | None = None) -> PlanChange:
    """Bring the tables in line with `plans` (module doc); inside the caller's transaction.

    `progress(done, total)` is told of the customers recomputed, for a bar on a terminal.
    """
    state = await conn.fetchrow("SELECT fingerprint, generation FROM plan_state")
    if state is not None and state["fingerprint"] == fingerprint(plans):
        return PlanChange(state["generation"])  # the usual start: no lock taken
    await settlement.take_settlement_lock(conn)
    state = await conn.fetchrow("SELECT fingerprint, generation FROM plan_state")
    if state is not None and state["fingerprint"] == fingerprint(plans):
        return PlanChange(state["generation"])  # another worker starting at once did it
    stored = [Stored(r["effective_from"], r["version"], r["digest"], r["timezone"])
              for r in await conn.fetch("SELECT effective_from, version, digest, timezone FROM plan_versions")]
    change = PlanChange((state["generation"] if state else 0) + 1)
    periods = [r["p"] for r in await conn.fetch(
        "SELECT DISTINCT to_char(occurred_at AT TIME ZONE $1, 'YYYY-MM') AS p FROM events", plans.timezone)]
    # and the months with rows but no event (a December made for a prize, a month made for an adjustment)
    periods = sorted({*periods, *(r["period"] for r in await conn.fetch(
        "SELECT period FROM credit_totals UNION SELECT period FROM bonus_running"))})
    change.periods = changed_periods(stored, plans, periods)
    decembers = changed_periods(stored, plans, [december(year) for year in {int(p[:4]) for p in periods}])
    change.years = [int(period[:4]) for period in decembers]
    if change.periods or change.years:
        logger.warning("the plans changed (%s): recomputing %d period(s) from the stored events",
                       "; ".join(r.describe() for r in plans.records), len(change.periods))
        change.customers, change.rows = await _recompute(conn, plans, change, progress)
    await _store(conn, plans, change.generation)
    return change


async def _recompute(conn: asyncpg.Connection, plans: Plans, change: PlanChange,
                     progress: Callable[[int, int], None] | None) -> tuple[int, list[PersonKey]]:
    """Recompute the changed periods' customers, rows, years; carry closed months' changes."""
    months = sorted({*change.periods, *(december(year) for year in change.years)})  # the rows to rewrite
    before = await ledger.running_rows(conn, months)
    customers = [r["customer_id"] for r in await conn.fetch(
        "SELECT DISTINCT customer_id FROM events WHERE to_char(occurred_at AT TIME ZONE $1, 'YYYY-MM') = ANY($2)"
        " ORDER BY 1", plans.timezone, change.periods)]
    await ledger.recompute_all(conn, customers, plans, progress)
    await ledger.move_lead_years(conn, plans, change.years)  # the prize moves into the December totals
    persons = [(r["period"], r["person_id"]) for r in await conn.fetch(
        "SELECT period, person_id FROM credit_totals WHERE period = ANY($1::text[]) ORDER BY 1, 2", months)]
    await ledger.refresh_running(conn, persons, plans, clear_kpi=True)
    for month in months:  # rows without totals too (made for an adjustment): SPEC 12's plan_version
        await conn.execute("UPDATE bonus_running SET plan_version = $2 WHERE period = $1 AND plan_version"
                           " IS DISTINCT FROM $2", month, plans.for_period(month).version)
    changed = ledger.changed_rows(before, await ledger.running_rows(conn, months))
    await settlement.carry_adjustments(conn, changed, plans)
    return len(customers), persons


async def _store(conn: asyncpg.Connection, plans: Plans, generation: int) -> None:
    await conn.execute("DELETE FROM plan_versions")
    await conn.executemany(
        "INSERT INTO plan_versions (effective_from, version, digest, timezone, source) VALUES ($1, $2, $3, $4, $5)",
        [(r.effective_from, r.version, r.digest, r.plan.timezone, r.source) for r in plans.records])
    await conn.execute(
        """
        INSERT INTO plan_state (only_row, fingerprint, generation) VALUES (true, $1, $2)
        ON CONFLICT (only_row) DO UPDATE SET fingerprint = excluded.fingerprint, generation = excluded.generation,
            changed_at = now()
        """,
        fingerprint(plans), generation)
