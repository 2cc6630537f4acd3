"""What-if (SPEC §12): periods P..Q recomputed under a candidate plan from the stored events, nothing written.

`what_if` reads, in one READ ONLY, REPEATABLE READ transaction (one snapshot: the events and
`bonus_running` as one batch left them, and Postgres refuses any write), the stored events of every
customer whose credits in P..Q could change, decodes them as the ledger does (`store.load_customer_events`,
the lenient `StoredDecoder`), computes them with `stream.bonus.compute_results` under the candidate
(`candidate_earned`) and compares each person's earned (SPEC §7, `EARNED_COLUMNS`) summed over P..Q with
`bonus_running`'s now.

Which customers: a credit or fact is dated by one of its customer's own events (the sale, the held
appointment, the KPI event), so a customer without an event in P..Q adds nothing to P..Q; one with such an
event is computed from its whole history (holdings, touches, reversals before and after). A December in P..Q
also needs its year's leads for the gold prize (SPEC §13: the telemarketers with the greatest turnover of the
year), so then every customer with an event from January of that year on is computed too. Months and years
are the candidate's, in its time zone.

A candidate in another time zone than the one `bonus_running` was computed in is computed, not refused: it
is a plan a worker could be started with (it would recompute every month, which then moves with the zone,
stream/plan_changes.py), and what P..Q would pay then is the question. Its months are then not the same
instants as the stored rows' months; the CLI says so (`WhatIf.zone_differs`).

Memory: the events of those customers are held at once (compute_results sees them all, as the prize needs).
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import asyncpg

from schemas.events import Event
from stream import db, store
from stream.bonus import EARNED_COLUMNS, RunningRow, compute_results
from stream.errors import CrmbonusError
from stream.leads import december
from stream.money import ZERO, round_money
from stream.periods import next_period
from stream.plan_versions import Plans
from stream.reports import csv_cell

#: Customers read per query (bounded arrays; all their events are kept).
CHUNK = 2_000
#: The columns of the CSV and the keys of each person in the JSON (SPEC §12).
COLUMNS = ("person_id", "current_total", "candidate_total", "difference")


@dataclass(frozen=True)
class PersonWhatIf:
    """One person's earned over P..Q: now in `bonus_running`, and under the candidate."""

    person_id: str
    current_total: Decimal
    candidate_total: Decimal

    @property
    def difference(self) -> Decimal:
        return self.candidate_total - self.current_total


@dataclass(frozen=True)
class WhatIf:
    """What `what_if` found: SPEC §12's people and totals, and what it read to get them."""

    first: str
    last: str
    #: people with either total non-zero, by person_id (code point order, as Python sorts)
    people: tuple[PersonWhatIf, ...]
    #: customers computed under the candidate, and their stored events
    customers: int
    events: int
    #: the candidate's time zone, and the zones `plan_versions` says `bonus_running` was computed in
    candidate_zone: str
    current_zones: tuple[str, ...]

    @property
    def current_total(self) -> Decimal:
        return sum((p.current_total for p in self.people), round_money(ZERO))

    @property
    def candidate_total(self) -> Decimal:
        return sum((p.candidate_total for p in self.people), round_money(ZERO))

    @property
    def difference(self) -> Decimal:
        """The candidate's cost over P..Q: positive when it pays more."""
        return self.candidate_total - self.current_total

    @property
    def zone_differs(self) -> bool:
        """The candidate's months are in another zone than the stored rows' (unknown zones: no)."""
        return bool(self.current_zones) and self.current_zones != (self.candidate_zone,)

    def to_json(self) -> dict[str, object]:
        """SPEC §12's document, money as exact strings with two decimals."""
        return {"from": self.first, "to": self.last,
                "people": [{"person_id": p.person_id, "current_total": _money(p.current_total),
                            "candidate_total": _money(p.candidate_total), "difference": _money(p.difference)}
                           for p in self.people],
                "current_total": _money(self.current_total), "candidate_total": _money(self.candidate_total),
                "difference": _money(self.difference)}

    def to_csv(self) -> str:
        """One row per person (`COLUMNS`), ids neutralised for spreadsheets; the totals are the JSON's."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(COLUMNS)
        for p in self.people:
            writer.writerow([csv_cell(p.person_id), _money(p.current_total), _money(p.candidate_total),
                             _money(p.difference)])
        return buffer.getvalue()


def _money(value: Decimal) -> str:
    return str(round_money(value))


def periods_between(first: str, last: str) -> list[str]:
    """`first`..`last` inclusive, month by month (both checked ``YYYY-MM``, `first` <= `last`)."""
    found = [first]
    while found[-1] < last:
        found.append(next_period(found[-1]))
    return found


def row_earned(row: RunningRow) -> Decimal:
    """SPEC §7 earned of a computed row: its bonus without prior adjustments (`stream.bonus.earned`'s sum)."""
    return round_money(sum((getattr(row, name) for name in EARNED_COLUMNS), ZERO))


def candidate_earned(events: Iterable[Event], candidate: Plans, first: str, last: str) -> dict[str, Decimal]:
    """Per person, earned summed over `first`..`last` in `compute_results(events, candidate)`: pure."""
    totals: dict[str, Decimal] = {}
    for row in compute_results(events, candidate).running:
        if first <= row.period <= last:
            totals[row.person_id] = totals.get(row.person_id, round_money(ZERO)) + row_earned(row)
    return totals


def customer_window(zone: ZoneInfo, first: str, last: str) -> tuple[datetime, datetime]:
    """[start, end) instants of the events that make a customer count (module doc): `first`..`last` in
    `zone`, from January of `first`'s year on when its December is in the range (later Decembers' years
    start inside the range)."""
    start = f"{first[:4]}-01" if december(int(first[:4])) <= last else first
    return _month_start(start, zone), _month_start(next_period(last), zone)


def _month_start(period: str, zone: ZoneInfo) -> datetime:
    return datetime(int(period[:4]), int(period[5:]), 1, tzinfo=zone)


async def what_if(conn: asyncpg.Connection, candidate: Plans, first: str, last: str) -> WhatIf:
    """SPEC §12 what-if of `first`..`last` (checked periods, `first` <= `last`) under `candidate`;
    writes nothing (module doc)."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        await _require_current_tables(conn)
        start, end = customer_window(candidate.zone, first, last)
        customers = [row["customer_id"] for row in await conn.fetch(
            "SELECT DISTINCT customer_id FROM events WHERE occurred_at >= $1 AND occurred_at < $2 ORDER BY 1",
            start, end)]
        events: list[Event] = []
        for index in range(0, len(customers), CHUNK):
            for found in (await store.load_customer_events(conn, customers[index:index + CHUNK])).values():
                events += found
        current = await current_earned(conn, first, last)
        zones = tuple(sorted(row["timezone"] for row in await conn.fetch(
            "SELECT DISTINCT timezone FROM plan_versions")))
    # pure and CPU-bound: off the event loop (the demo runs this inside a worker, whose heartbeats go on)
    computed = await asyncio.to_thread(candidate_earned, events, candidate, first, last)
    zero = round_money(ZERO)
    people = tuple(PersonWhatIf(person, current.get(person, zero), computed.get(person, zero))
                   for person in sorted({*current, *computed})
                   if current.get(person, zero) or computed.get(person, zero))
    return WhatIf(first, last, people, len(customers), len(events), candidate.timezone, zones)


async def current_earned(conn: asyncpg.Connection, first: str, last: str) -> dict[str, Decimal]:
    """Per person, earned (SPEC §7) summed over `first`..`last` in `bonus_running` now."""
    earned = " + ".join(EARNED_COLUMNS)
    rows = await conn.fetch(f"SELECT person_id, sum({earned}) AS earned FROM bonus_running "
                            "WHERE period >= $1 AND period <= $2 GROUP BY person_id", first, last)
    return {row["person_id"]: round_money(row["earned"]) for row in rows}


async def _require_current_tables(conn: asyncpg.Connection) -> None:
    """`bonus_running` is only "now" when every migration ran and no rebuild they asked for waits: a
    what-if never migrates or rebuilds (it writes nothing), so it refuses, saying what to run."""
    try:
        applied = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
    except asyncpg.UndefinedTableError as error:
        raise CrmbonusError("the database has no crmbonus tables yet: process some events first "
                            "(crmbonus worker or crmbonus replay FILE)") from error
    missing = [path.stem for path in db.migration_files() if path.stem not in applied]
    if missing:
        raise CrmbonusError(f"the database is not migrated to this crmbonus (missing {', '.join(missing)}); "
                            "start crmbonus worker once, which migrates it, then ask again")
    if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM ledger_rebuilds)"):
        raise CrmbonusError("bonus_running awaits a rebuild a migration asked for, so it is not current: "
                            "start crmbonus worker once (or run crmbonus settle), then ask again")

