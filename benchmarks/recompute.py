"""Recomputing after a plan change (issue 16 item 5): a month's stored events under another plan.

The database the tansu burst filled (its worker ran the default plan, so its versions are stored)
is recomputed, as a worker starting with other plans does (stream/plan_changes.py), under a
candidate: the default plan with a telemarketer share of 0.40, which changes every credit with a
telemarketer part. The transaction is rolled back afterwards, so the figures stay measurable
and the database as the burst left it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import asdict, dataclass
from decimal import Decimal

import asyncpg

from stream.plan import Plan
from stream.plan_changes import apply_plan_changes
from stream.plan_versions import Plans


@dataclass
class RecomputeMeasure:
    events: int  # stored events of the recomputed periods' customers
    customers: int
    periods: list[str]
    rows: int  # bonus_running rows rewritten
    seconds: float
    rate: float  # events / seconds

    @property
    def rates(self) -> list[float]:
        return [self.rate]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def candidate(plan: Plan) -> Plans:
    """The plan with another telemarketer share, as one version for every period."""
    return Plans.of(dataclasses.replace(plan, telemarketer_share=Decimal("0.40"), version=f"{plan.version}-share-040"))


def measure(database_url: str, plans: Plans) -> RecomputeMeasure:
    return asyncio.run(_measure(database_url, plans))


async def _measure(database_url: str, plans: Plans) -> RecomputeMeasure:
    conn = await asyncpg.connect(database_url)
    try:
        events = await conn.fetchval("SELECT count(*) FROM events")
        transaction = conn.transaction()
        await transaction.start()
        try:
            started = time.perf_counter()
            change = await apply_plan_changes(conn, plans)
            seconds = time.perf_counter() - started
        finally:
            await transaction.rollback()
    finally:
        await conn.close()
    return RecomputeMeasure(events, change.customers, change.periods, len(change.rows), seconds, events / seconds)
