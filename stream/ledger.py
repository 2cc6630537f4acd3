"""Keeps `credits`, `customer_facts`, the totals and `bonus_running`, `lead_points` and
`kpi_scores` equal to a from-scratch computation (stream/bonus.py `compute_results`).

When events of a customer arrive, the customer's credits and facts are computed again from
all of its stored events (the rules are per customer, SPEC sections 5 and 13), compared
with the rows in force, and only the difference is written: removed rows are deleted (a
retraction), new ones inserted, and the per-person totals moved by the same deltas. That is
what makes the tables independent of arrival order. Events that no rule reads (callbacks
without an offer) change no part of any customer, so a customer who has only those new is
left alone: not locked, not recomputed (`rules.only_inert_events`).

How the sums stay exact with several workers at once (issue 15, 4a). Every total is a sum
over customers, and each customer's part is changed only under the lock of its `customers`
row (`_take_customers`), so no two batches recompute one customer at once. A person's month
(`credit_totals`) and a telemarketer's year (`lead_totals`) are moved by adding deltas
(`x = x + delta` in one upsert), which Postgres serialises per row: the second batch waits
for the first to commit and adds to the committed value. What is derived from a total is
derived after the upsert, in the same transaction, while its row lock is held: the
`bonus_running` and `kpi_scores` rows from `credit_totals`, the badges from `lead_totals`.
The gold prize is the one figure derived from MANY rows (the year's greatest turnover), so a
batch that moves a year's leads first takes that year's advisory lock (`_take_years`), before
any total is touched: one batch at a time reads the year whole, and its prize changes go into
the December months as deltas with the rest. Locks are taken in one order by every batch:
customers, years, then total rows sorted by key; no cycle, so no deadlock between batches.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import TypeVar

import asyncpg

from schemas.events import Event
from stream import kpi, leads, rules, settlement, store
from stream.bonus import (
    EARNED_COLUMNS,
    FIGURE_COLUMNS,
    NOTHING,
    RUNNING_COLUMNS,
    PersonKey,
    RunningRow,
    Tally,
    add_tallies,
    has_figures,
    person_kpi_scores,
    running_row,
    tally,
    type_name,
)
from stream.customer_cache import CachedCustomer, CustomerCache
from stream.diff import RulesError, diff_batch, sort_customers
from stream.leads import NO_LEADS, LeadTally, YearKey
from stream.money import ZERO
from stream.plan import Plan
from stream.plan_versions import Plans, as_plans
from stream.rules import Credit, Fact

logger = logging.getLogger(__name__)


#: Credit fields in table order; the named tuple and the table share these names.
CREDIT_FIELDS = Credit._fields
#: `customer_facts` columns, as `Fact` names them.
FACT_FIELDS = Fact._fields
#: The advisory lock of a year's leads (with the year as second key): see the module doc.
LEAD_YEAR_LOCK = 0x6C656164

Row = TypeVar("Row", Credit, Fact)


@dataclass
class LedgerChange:
    """What one recomputation wrote, for metrics, the adjustment step and the cache."""

    inserted: int = 0
    retracted: int = 0
    persons: set[PersonKey] = field(default_factory=set)
    staged: dict[str, CachedCustomer] = field(default_factory=dict)


async def recompute_customers(
    conn: asyncpg.Connection,
    new_events: Mapping[str, Sequence[Event]],
    plans: Plan | Plans,
    cache: CustomerCache,
    *,
    force: bool = False,
) -> LedgerChange:
    """Bring the credits and facts of the customers with new events, and the rows they feed,
    up to date.

    `new_events` are the events this batch stored, per customer. The rest of each
    customer's history comes from the cache when current, else from Postgres. `force`
    recomputes every customer named, new events or not (a rebuild, a changed plan).
    """
    # Customers whose new events no rule reads keep everything: no lock, no version, no cache
    # change (`rules.only_inert_events`; about half of a CRM's events are calls without an offer).
    ids = sorted(new_events) if force else sorted(
        cid for cid, events in new_events.items() if not rules.only_inert_events(events))
    change = LedgerChange()
    if not ids:
        return change
    plan_set = as_plans(plans)
    versions = await _take_customers(conn, ids)
    cached, unchanged, kpi_only, missing = sort_customers(ids, new_events, versions, cache, force)
    stored = await store.load_customer_events(conn, missing)  # this batch's events included
    in_force = await _rows_in_force(conn, "credits", CREDIT_FIELDS, Credit, missing)
    facts_in_force = await _rows_in_force(conn, "customer_facts", FACT_FIELDS, Fact, missing)
    found = diff_batch(ids, new_events, versions, cached, (unchanged, kpi_only), (stored, in_force, facts_in_force),
                       plan_set)
    change.staged = found.staged
    removed, facts_removed, added, facts_added = found.removed, found.facts_removed, found.added, found.facts_added
    deltas, lead_deltas = found.deltas, found.lead_deltas
    if removed:
        await conn.execute("DELETE FROM credits WHERE id = ANY($1::bigint[])", removed)
    if facts_removed:
        await conn.execute("DELETE FROM customer_facts WHERE id = ANY($1::bigint[])", facts_removed)
    for credit, row_id in zip(added, await _insert_rows(conn, "credits", CREDIT_FIELDS, added), strict=True):
        change.staged[credit.customer_id].credits[credit] = row_id
    for fact, row_id in zip(facts_added, await _insert_rows(conn, "customer_facts", FACT_FIELDS, facts_added),
                            strict=True):
        if (staged := change.staged.get(fact.customer_id)) is not None:  # not staged: not cached
            staged.facts[fact] = row_id
    lead_deltas = {key: delta for key, delta in lead_deltas.items() if delta != NO_LEADS}
    add_tallies(deltas, await _move_leads(conn, lead_deltas, plan_set))
    # A credit replaced by an equal-weight one (another touch, the same amount) moves no total.
    deltas = {key: delta for key, delta in deltas.items() if delta != NOTHING}
    await _apply_deltas(conn, deltas)
    change.inserted, change.retracted = len(added), len(removed)
    change.persons = set(deltas)
    await refresh_running(conn, sorted(change.persons), plan_set)
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


async def _rows_in_force(
    conn: asyncpg.Connection, table: str, names: Sequence[str], row_type: type[Row], ids: Sequence[str]
) -> dict[str, dict[Row, int]]:
    """The rows of `credits` or `customer_facts` now in force for these customers, with their ids."""
    if not ids:
        return {}
    rows = await conn.fetch(f"SELECT id, {', '.join(names)} FROM {table} WHERE customer_id = ANY($1::text[])",
                            list(ids))
    grouped: dict[str, dict[Row, int]] = {}
    for row in rows:
        grouped.setdefault(row["customer_id"], {})[row_type(*(row[name] for name in names))] = row["id"]
    return grouped


async def _insert_rows(conn: asyncpg.Connection, table: str, names: Sequence[str],
                       rows: Sequence[tuple[object, ...]]) -> list[int]:
    """COPY new rows with ids drawn from their sequence first, so the cache knows them."""
    if not rows:
        return []
    ids = [row[0] for row in await conn.fetch(
        f"SELECT nextval('{table}_id_seq') FROM generate_series(1, $1)", len(rows))]
    await conn.copy_records_to_table(
        table, records=[(row_id, *row) for row_id, row in zip(ids, rows, strict=True)], columns=("id", *names))
    return ids


async def _move_leads(conn: asyncpg.Connection, deltas: Mapping[YearKey, LeadTally], plans: Plans,
                      also: Iterable[int] = ()) -> dict[PersonKey, Tally]:
    """Add the lead deltas to their years, and bring each year's badges, gold and prize in line
    (SPEC §13, under the plan version of its December); returns the prize changes as deltas of
    the December months. `also` are years to bring in line without a delta (their December's
    plan version changed)."""
    years = sorted({year for year, _ in deltas} | set(also))
    if not years:
        return {}
    for year in years:  # before any total is touched: see the module doc
        await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", LEAD_YEAR_LOCK, year)
    keys = sorted(deltas)
    if keys:
        await _add_to_lead_totals(conn, keys, deltas)
    prize_deltas: dict[PersonKey, Tally] = {}
    for year in years:
        plan = plans.for_period(leads.december(year))
        rows = await conn.fetch("SELECT person_id, points, turnover, prize FROM lead_totals WHERE year = $1", year)
        tallies = {row["person_id"]: LeadTally(row["points"], row["turnover"]) for row in rows}
        prizes = leads.year_prizes(tallies, plan)
        changed: list[str] = []
        for row in rows:
            person, was = row["person_id"], row["prize"]
            now = prizes.get(person, ZERO)
            if now != was:
                prize_deltas[(leads.december(year), person)] = Tally(prize=now - was)
                changed.append(person)
        if changed:
            await conn.execute(
                "UPDATE lead_totals t SET prize = p.prize FROM unnest($2::text[], $3::numeric[]) AS p(person_id, prize)"
                " WHERE t.year = $1 AND t.person_id = p.person_id",
                year, changed, [prizes.get(person, ZERO) for person in changed],
            )
        gold = set(leads.gold_holders(tallies))
        gold_before = {row["person_id"] for row in await conn.fetch(
            "SELECT person_id FROM lead_points WHERE year = $1 AND gold", year)}
        concerned = {person for (y, person) in deltas if y == year} | gold_before | gold
        if year in also:  # the thresholds may have changed: every badge of the year
            concerned |= set(tallies)
        await _write_lead_points(conn, year, {p: tallies[p] for p in concerned if p in tallies}, gold, plan)
    return prize_deltas


async def _add_to_lead_totals(conn: asyncpg.Connection, keys: Sequence[YearKey],
                              deltas: Mapping[YearKey, LeadTally]) -> None:
    await conn.execute(
        """
        INSERT INTO lead_totals AS t (year, person_id, points, turnover)
        SELECT * FROM unnest($1::int[], $2::text[], $3::int[], $4::numeric[])
        ON CONFLICT (year, person_id) DO UPDATE SET points = t.points + excluded.points,
                                                    turnover = t.turnover + excluded.turnover
        """,
        [k[0] for k in keys], [k[1] for k in keys], [deltas[k].points for k in keys],
        [deltas[k].turnover for k in keys],
    )


async def _write_lead_points(conn: asyncpg.Connection, year: int, concerned: Mapping[str, LeadTally],
                             gold: AbstractSet[str], plan: Plan) -> None:
    """Rewrite the `lead_points` rows of the concerned telemarketers of one year (`gold`: the year's holders)."""
    rows = leads.lead_points_rows(year, concerned, plan, gold)
    gone = sorted(person for person, found in concerned.items() if found.points <= 0)
    if gone:
        await conn.execute("DELETE FROM lead_points WHERE year = $1 AND person_id = ANY($2::text[])", year, gone)
    if rows:
        await conn.execute(
            """
            INSERT INTO lead_points AS l (year, person_id, points, turnover, badge, gold)
            SELECT * FROM unnest($1::int[], $2::text[], $3::int[], $4::numeric[], $5::text[], $6::bool[])
            ON CONFLICT (year, person_id) DO UPDATE SET points = excluded.points, turnover = excluded.turnover,
                badge = excluded.badge, gold = excluded.gold
            """,
            [r.year for r in rows], [r.person_id for r in rows], [r.points for r in rows],
            [r.turnover for r in rows], [r.badge for r in rows], [r.gold for r in rows],
        )


#: `credit_totals` columns, one per `Tally` field, in its order, with their SQL array types.
TALLY_COLUMNS = tuple(field.name for field in dataclasses.fields(Tally))
_TALLY_TYPES = tuple("int" if type_name(field) == "int" else "numeric" for field in dataclasses.fields(Tally))


async def _apply_deltas(conn: asyncpg.Connection, deltas: Mapping[PersonKey, Tally]) -> None:
    """Add each person's change to their exact month in `credit_totals`."""
    if not deltas:
        return
    keys = sorted(deltas)  # one lock order for every worker: no deadlocks between batches
    arrays = ", ".join(f"${n}::{kind}[]" for n, kind in enumerate(_TALLY_TYPES, start=3))
    await conn.execute(
        f"""
        INSERT INTO credit_totals AS t (period, person_id, {", ".join(TALLY_COLUMNS)})
        SELECT * FROM unnest($1::text[], $2::text[], {arrays})
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


async def _kpi_roles(conn: asyncpg.Connection, persons: Sequence[PersonKey]) -> dict[PersonKey, str]:
    """SPEC §13: the role of each person's latest KPI event in the month (`stream.bonus.kpi_roles`)."""
    if not persons:
        return {}
    rows = await conn.fetch(
        """
        SELECT DISTINCT ON (f.scope, f.person_id) f.scope, f.person_id, f.role FROM customer_facts f
        JOIN unnest($1::text[], $2::text[]) AS k(scope, person_id) USING (scope, person_id)
        WHERE f.role IS NOT NULL
        ORDER BY f.scope, f.person_id, f.occurred_at DESC, f.key DESC
        """,
        [p[0] for p in persons], [p[1] for p in persons],
    )
    return {(row["scope"], row["person_id"]): row["role"] for row in rows}


#: `bonus_running` columns a recomputation writes: all but `prior_adjustments` (SPEC §7 owns it).
_WRITTEN = tuple(name for name in RUNNING_COLUMNS if name != "prior_adjustments")
_SQL_TYPES = {"int": "int", "Decimal": "numeric", "str": "text"}
_RUNNING_TYPES = {field.name: _SQL_TYPES[type_name(field)] for field in dataclasses.fields(RunningRow)}
_EARNED_SUM = " + ".join(f"excluded.{name}" for name in EARNED_COLUMNS)
_UPSERT_RUNNING = f"""
INSERT INTO bonus_running AS b ({", ".join(RUNNING_COLUMNS)}, updated_at)
SELECT *, now() FROM unnest({", ".join(f"${n}::{_RUNNING_TYPES[name]}[]" for n, name in enumerate(RUNNING_COLUMNS, 1))})
ON CONFLICT (period, person_id) DO UPDATE SET
    {", ".join(f"{name} = excluded.{name}" for name in _WRITTEN if name not in ("period", "person_id", "total_bonus"))},
    total_bonus = {_EARNED_SUM} + b.prior_adjustments,
    updated_at = now()
"""
#: A row that has nothing left is zeroed where it exists and never created (SPEC §14). It keeps its
#: role: with no credit left the rules have none to give it, and an adjustment of a settled month
#: is paid under the role the month was settled with (a gold holder who lost December's prize
#: stays a telemarketer).
_ZERO_RUNNING = f"""
UPDATE bonus_running b SET {", ".join(f"{name} = 0" for name in FIGURE_COLUMNS
                                     if name not in ("prior_adjustments", "total_bonus"))},
    total_bonus = b.prior_adjustments, plan_version = k.plan_version, updated_at = now()
FROM unnest($1::text[], $2::text[], $3::text[]) AS k(period, person_id, plan_version)
WHERE b.period = k.period AND b.person_id = k.person_id
"""


async def refresh_running(conn: asyncpg.Connection, persons: Sequence[PersonKey], plans: Plan | Plans,
                          *, clear_kpi: bool = False) -> None:
    """Rewrite the `bonus_running` and `kpi_scores` rows of these persons from their exact totals,
    each period under its plan version (SPEC §12).

    `prior_adjustments` of an existing row is kept as it is (SPEC section 7 owns it). `clear_kpi`
    rewrites `kpi_scores` even when no version has a `[kpi]` (one that had it is gone). Any number
    of persons: a rebuild or a recomputation passes whole months, in chunks of `REFRESH_CHUNK`.
    """
    plan_set = as_plans(plans)
    for start in range(0, len(persons), REFRESH_CHUNK):
        await _refresh_chunk(conn, persons[start:start + REFRESH_CHUNK], plan_set, clear_kpi)


#: (period, person) rows rewritten per statement by `refresh_running`.
REFRESH_CHUNK = 5_000


async def _refresh_chunk(conn: asyncpg.Connection, persons: Sequence[PersonKey], plan_set: Plans,
                         clear_kpi: bool) -> None:
    totals = await load_totals(conn, persons)
    roles = await _kpi_roles(conn, [key for key, found in totals.items() if not found.items
                                    and (found.rating_count or found.reviews)])
    scores: list[kpi.KpiScore] = []
    try:
        rows = [running_row(key, totals[key], plan_set.for_period(key[0]), kpi_role=roles.get(key))
                for key in sorted(totals)]
        kpi_plans = clear_kpi or any(version.kpi is not None for version in plan_set.versions)
        if kpi_plans:
            scores = [score for key in sorted(totals)
                      for score in person_kpi_scores(key, totals[key], plan_set.for_period(key[0]), roles.get(key))]
    except (ArithmeticError, ValueError) as error:
        raise RulesError(None, error) from error
    live = [row for row in rows if has_figures(row)]
    if live:
        await conn.execute(_UPSERT_RUNNING, *([getattr(row, name) for row in live] for name in RUNNING_COLUMNS))
    if len(live) < len(rows):
        empty = [row for row in rows if not has_figures(row)]
        await conn.execute(_ZERO_RUNNING, [r.period for r in empty], [r.person_id for r in empty],
                           [r.plan_version for r in empty])
    if kpi_plans:
        await conn.execute(
            "DELETE FROM kpi_scores s USING unnest($1::text[], $2::text[]) AS k(period, person_id)"
            " WHERE s.period = k.period AND s.person_id = k.person_id",
            [p[0] for p in persons], [p[1] for p in persons],
        )
        if scores:
            await conn.copy_records_to_table("kpi_scores", records=scores, columns=kpi.KpiScore._fields)


#: Migration 0008's request: the facts were never derived, so every customer is recomputed.
_DERIVE_FACTS = "migration 0008"


async def rebuild_if_pending(conn: asyncpg.Connection, plan: Plan | Plans) -> list[PersonKey]:
    """Refill the totals when a migration asked for it, and bring `bonus_running` and the
    adjustments of closed months in line; returns the (period, person) rows whose figures changed.

    Migration 0005 asks for it: `credit_totals` used to count a line once per role, so a
    person holding both parts of a line counted it twice (issue 12); the totals are taken again
    with the rules' own `tally`, period by period. Migration 0008 asks for every customer to be
    recomputed from its stored events, which derives the facts of SPEC §13 (conversions, lead
    points) that older versions never kept. A closed month's change reaches payroll as an
    adjustment in the earliest open month (SPEC §7), never in `bonus_settled`. Runs in the
    caller's transaction, under the exclusive settlement lock, so no batch and no settlement
    runs meanwhile and two workers starting at once rebuild once.
    """
    if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM ledger_rebuilds)"):
        return []  # the usual start: no lock taken, running workers' batches are not held up
    await settlement.take_settlement_lock(conn)
    reasons = [row["reason"] for row in await conn.fetch("SELECT reason FROM ledger_rebuilds")]
    if not reasons:
        return []
    logger.warning("rebuilding the totals and bonus_running (%s)", "; ".join(reasons))
    before = await running_rows(conn)
    await conn.execute("DELETE FROM credit_totals")
    periods = [row["period"] for row in await conn.fetch(
        "SELECT period FROM credits UNION SELECT scope FROM customer_facts WHERE kind <> 'lead' ORDER BY 1")]
    for period in periods:
        credits = [Credit(*row) for row in await conn.fetch(
            f"SELECT {', '.join(CREDIT_FIELDS)} FROM credits WHERE period = $1", period)]
        facts = [Fact(*row) for row in await conn.fetch(
            f"SELECT {', '.join(FACT_FIELDS)} FROM customer_facts WHERE scope = $1 AND kind <> 'lead'", period)]
        await _apply_deltas(conn, tally(credits, facts))
    if any(reason.startswith(_DERIVE_FACTS) for reason in reasons):
        await recompute_all(conn, [row["customer_id"] for row in await conn.fetch(
            "SELECT customer_id FROM customers ORDER BY 1")], plan)
    await refresh_running(conn, [(row["period"], row["person_id"]) for row in await conn.fetch(
        "SELECT period, person_id FROM credit_totals ORDER BY 1, 2")], plan)
    changed = changed_rows(before, await running_rows(conn))
    await settlement.carry_adjustments(conn, changed, plan)
    await conn.execute("DELETE FROM ledger_rebuilds")
    logger.warning("rebuilt: %d bonus_running rows changed", len(changed))
    return changed


#: Customers recomputed per call in a bulk recomputation: bounded memory, a progress step each.
RECOMPUTE_CHUNK = 1_000


async def recompute_all(conn: asyncpg.Connection, customers: Sequence[str], plans: Plan | Plans,
                        progress: Callable[[int, int], None] | None = None) -> None:
    """These customers computed again from their stored events, in chunks (a migration's rebuild,
    a plan change); only the change is written. `progress(done, total)` after each chunk."""
    cache = CustomerCache(max_events=0)
    for start in range(0, len(customers), RECOMPUTE_CHUNK):
        chunk = customers[start:start + RECOMPUTE_CHUNK]
        await recompute_customers(conn, {cid: () for cid in chunk}, plans, cache, force=True)
        if progress is not None:
            progress(start + len(chunk), len(customers))


async def running_rows(conn: asyncpg.Connection, periods: Sequence[str] | None = None
                       ) -> dict[PersonKey, tuple[object, ...]]:
    """The `bonus_running` rows (all, or of these periods) as tuples of every column but `updated_at`,
    to find what a rebuild or a recomputation changed (`changed_rows`)."""
    columns = ", ".join(RUNNING_COLUMNS)
    rows = (await conn.fetch(f"SELECT {columns} FROM bonus_running") if periods is None else
            await conn.fetch(f"SELECT {columns} FROM bonus_running WHERE period = ANY($1::text[])", list(periods)))
    return {(row["period"], row["person_id"]): tuple(row) for row in rows}


def changed_rows(before: Mapping[PersonKey, tuple[object, ...]],
                 after: Mapping[PersonKey, tuple[object, ...]]) -> list[PersonKey]:
    return sorted(key for key in {*before, *after} if before.get(key) != after.get(key))


async def move_lead_years(conn: asyncpg.Connection, plans: Plan | Plans, years: Sequence[int]) -> None:
    """Bring these years' badges, gold and prize in line with the plan version of their December
    (it changed), with no lead delta; the prize changes go into `credit_totals`, whose December
    rows the caller then refreshes."""
    deltas = await _move_leads(conn, {}, as_plans(plans), years)
    await _apply_deltas(conn, {key: delta for key, delta in deltas.items() if delta != NOTHING})
