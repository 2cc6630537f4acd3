"""The worker's HTTP endpoints (SPEC section 9), served by Faust's own web server.

/metrics      Prometheus text format
/health       200 while consuming and Postgres answers, else 503 with the reason
/api/leaderboard?period=&role=   JSON
/leaderboard  an HTML page for a wall screen that refreshes itself from the JSON
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream import reports
from stream.errors import CrmbonusError
from stream.periods import PERIOD

if TYPE_CHECKING:
    from stream.runtime import Runtime

PAGE = (Path(__file__).parent / "leaderboard.html").read_text()
HEALTH_QUERY_TIMEOUT_S = 2.0
PROMETHEUS_CONTENT_TYPE = CONTENT_TYPE_LATEST.split(";")[0]


async def health_problem(runtime: Runtime) -> str | None:
    """Why the worker is not healthy, or None: consuming, and Postgres answers now."""
    if runtime.pool is None or runtime.pipeline is None:
        return "not connected to Postgres yet"
    if not runtime.consuming:
        return "not consuming yet (joining the consumer group)"
    if runtime.rebalancing:
        return "consumer group is rebalancing"
    if not runtime.pipeline.healthy:
        return str(runtime.pipeline.last_error)
    try:
        async with runtime.pool.acquire(timeout=HEALTH_QUERY_TIMEOUT_S) as conn:
            await conn.fetchval("SELECT 1", timeout=HEALTH_QUERY_TIMEOUT_S)
    except Exception as error:  # whatever the failure, the answer is: unhealthy, and why
        return f"Postgres does not answer: {type(error).__name__}: {error}"
    return None


def register(app: faust.App, runtime: Runtime) -> None:
    """Add the pages to the app's web server."""

    @app.page("/metrics")
    async def metrics(self: View, request: Request) -> Response:
        problem = await health_problem(runtime)
        runtime.metrics.healthy.set(0 if problem else 1)
        # aiohttp wants the charset out of content_type; Prometheus' text format is UTF-8 anyway
        return self.bytes(generate_latest(runtime.metrics.registry), content_type=PROMETHEUS_CONTENT_TYPE)

    @app.page("/health")
    async def health(self: View, request: Request) -> Response:
        problem = await health_problem(runtime)
        runtime.metrics.healthy.set(0 if problem else 1)
        if problem:
            return self.json({"status": "unhealthy", "reason": problem}, status=503)
        return self.json({"status": "ok"})

    @app.page("/api/leaderboard")
    async def api_leaderboard(self: View, request: Request) -> Response:
        try:
            return self.json(await leaderboard_json(runtime, request.query))
        except CrmbonusError as error:
            return self.json({"error": str(error)}, status=400)

    @app.page("/leaderboard")
    async def leaderboard_page(self: View, request: Request) -> Response:
        return self.html(PAGE)


async def leaderboard_json(runtime: Runtime, query: Any) -> dict[str, Any]:
    """The leaderboard of a period (default: the latest with rows) and role (default: everyone)."""
    period = query.get("period") or None
    role = query.get("role") or None
    if period is not None and not PERIOD.match(period):
        raise CrmbonusError(f"period {period!r} must be YYYY-MM")
    if runtime.pool is None:
        raise CrmbonusError("not connected to Postgres yet")
    async with runtime.pool.acquire() as conn:
        periods = await reports.periods(conn)
        period = period or next(iter(periods), None)
        rows = [] if period is None else await reports.leaderboard(conn, period, role)
    return {
        "period": period,
        "role": role,
        "periods": periods,
        "rows": [
            {"rank": r.rank, "person_id": r.person_id, "role": r.role, "cross_sell_count": r.cross_sell_count,
             "cross_sell_amount": str(r.cross_sell_amount), "appointments_held": r.appointments_held,
             "appointments_converted": r.appointments_converted, "total_bonus": str(r.total_bonus)}
            for r in rows
        ],
    }
