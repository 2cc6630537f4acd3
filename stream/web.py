"""The worker's HTTP endpoints (SPEC sections 9 and 16), served by Faust's own web server.

/metrics      Prometheus text format                                   open
/health       200 while consuming and Postgres answers, else 503       open
              with a reason: a fixed phrase, never an error's text (that goes to the log)
/api/leaderboard?period=&role=   JSON                                  token, when one is set
/leaderboard  an HTML page for a wall screen that refreshes itself     token, when one is set
              from the JSON (a `?token=` in its address goes along)
/api/statement?person=&period=   one person's month, JSON (SPEC 15)    token, when one is set
/statement?person=&period=       the same as a page, server-rendered  token, when one is set

Nothing else is served: stream/app.py mounts none of Faust's own views, and `Exposure`'s
middleware answers 404 to any path not registered here, before anything else runs. With
CRMBONUS_WEB_TOKEN set, every path but /health and /metrics needs `Authorization: Bearer
<token>` or `?token=<token>`, compared in constant time.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faust
from aiohttp import web as aiohttp_web
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream import reports, statements
from stream.errors import CrmbonusError
from stream.periods import PERIOD
from stream.plan_versions import as_plans
from stream.statement import Statement, statement_json

if TYPE_CHECKING:
    from stream.runtime import Runtime

logger = logging.getLogger(__name__)

PAGE = (Path(__file__).parent / "leaderboard.html").read_text()
HEALTH_QUERY_TIMEOUT_S = 2.0
PROMETHEUS_CONTENT_TYPE = CONTENT_TYPE_LATEST.split(";")[0]

#: /health's reasons: fixed phrases, whatever happened; the details go to the worker's log.
NOT_CONNECTED = "not connected to Postgres yet"
NOT_CONSUMING = "not consuming yet (joining the consumer group)"
REBALANCING = "consumer group is rebalancing"
NOT_COMMITTING = "could not commit the batch to Postgres; retrying (details in the worker's log)"
POSTGRES_SILENT = "Postgres does not answer: no connection or no reply in time (details in the worker's log)"
HEALTH_REASONS = (NOT_CONNECTED, NOT_CONSUMING, REBALANCING, NOT_COMMITTING, POSTGRES_SILENT)


def _inline_hashes(tag: str) -> str:
    """CSP sources for the page's inline <script> or <style> blocks: exactly these may run."""
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", PAGE, flags=re.DOTALL)
    return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in blocks)


#: What the leaderboard page may do: its own inline script and style, fetch from this server;
#: no other script, no frames around it, no form posts, no Referer (its URL may hold the token).
PAGE_HEADERS = {
    "Content-Security-Policy": (f"default-src 'none'; script-src {_inline_hashes('script')}; "
                                f"style-src {_inline_hashes('style')}; connect-src 'self'; img-src 'self'; "
                                "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
}
#: On every answer: no MIME sniffing, no framing, no Referer; pay figures are not cached.
COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

Handler = Callable[[aiohttp_web.Request], Awaitable[aiohttp_web.StreamResponse]]


class Exposure:
    """Which paths are served, and which of them need the token (SPEC section 16).

    `register` names every page here as it adds it; the middleware refuses the rest.
    """

    def __init__(self, token: str | None) -> None:
        self._token = None if token is None else token.encode()
        self.open: set[str] = set()  # served to anyone: /health, /metrics
        self.guarded: set[str] = set()  # need the token, when there is one

    @property
    def paths(self) -> set[str]:
        return self.open | self.guarded

    def authorized(self, request: aiohttp_web.Request) -> bool:
        """The request carries the token (`Authorization: Bearer`, or `?token=`), or none is set."""
        if self._token is None:
            return True
        given: list[str] = []
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            given.append(credentials.strip())
        given.extend(request.query.getall("token", []))
        # every candidate compared, in constant time each: no early exit on the first
        return any([hmac.compare_digest(candidate.encode(), self._token) for candidate in given])

    @aiohttp_web.middleware
    async def middleware(self, request: aiohttp_web.Request, handler: Handler) -> aiohttp_web.StreamResponse:
        if request.path not in self.paths:
            response: aiohttp_web.StreamResponse = aiohttp_web.json_response({"error": "not found"}, status=404)
        elif request.path in self.guarded and not self.authorized(request):
            response = aiohttp_web.json_response(
                {"error": "this page needs the token: send Authorization: Bearer <token>, or add ?token=<token>"},
                status=401, headers={"WWW-Authenticate": 'Bearer realm="crmbonus"'})
        else:
            response = await handler(request)
        for name, value in COMMON_HEADERS.items():
            response.headers.setdefault(name, value)
        return response


async def health_problem(runtime: Runtime) -> str | None:
    """Why the worker is not healthy (one of `HEALTH_REASONS`), or None: consuming, and Postgres
    answers now."""
    if runtime.pool is None or runtime.pipeline is None:
        return NOT_CONNECTED
    if not runtime.consuming:
        return NOT_CONSUMING
    if runtime.rebalancing:
        return REBALANCING
    if not runtime.pipeline.healthy:
        return NOT_COMMITTING  # the pipeline logs each failed attempt with its error
    try:
        async with runtime.pool.acquire(timeout=HEALTH_QUERY_TIMEOUT_S) as conn:
            await conn.fetchval("SELECT 1", timeout=HEALTH_QUERY_TIMEOUT_S)
    except Exception as error:  # whatever the failure, the answer is: unhealthy; the log says why
        logger.warning("/health: Postgres does not answer: %s: %s", type(error).__name__, error)
        return POSTGRES_SILENT
    return None


def register(app: faust.App, runtime: Runtime, exposure: Exposure) -> None:
    """Add the pages to the app's web server, each named in `exposure` (open or guarded)."""

    def page(path: str, *, guarded: bool = True) -> Callable[[Any], Any]:
        (exposure.guarded if guarded else exposure.open).add(path)
        return app.page(path)

    @page("/metrics", guarded=False)
    async def metrics(self: View, request: Request) -> Response:
        problem = await health_problem(runtime)
        runtime.metrics.healthy.set(0 if problem else 1)
        # aiohttp wants the charset out of content_type; Prometheus' text format is UTF-8 anyway
        return self.bytes(generate_latest(runtime.metrics.registry), content_type=PROMETHEUS_CONTENT_TYPE)

    @page("/health", guarded=False)
    async def health(self: View, request: Request) -> Response:
        problem = await health_problem(runtime)
        runtime.metrics.healthy.set(0 if problem else 1)
        if problem:
            return self.json({"status": "unhealthy", "reason": problem}, status=503)
        return self.json({"status": "ok"})

    @page("/api/leaderboard")
    async def api_leaderboard(self: View, request: Request) -> Response:
        try:
            return self.json(await leaderboard_json(runtime, request.query))
        except CrmbonusError as error:
            return self.json({"error": str(error)}, status=400)

    @page("/leaderboard")
    async def leaderboard_page(self: View, request: Request) -> Response:
        return self.html(PAGE, headers=dict(PAGE_HEADERS))

    @page("/api/statement")
    async def api_statement(self: View, request: Request) -> Response:
        try:
            found = await load_statement_of(runtime, request.query)
        except CrmbonusError as error:
            return self.json({"error": str(error)}, status=400)
        return self.json(statement_json(found))

    @page("/statement")
    async def statement_page(self: View, request: Request) -> Response:
        try:
            found = await load_statement_of(runtime, request.query)
        except CrmbonusError as error:
            return self.json({"error": str(error)}, status=400)
        return self.html(statements.to_html(found, request.query.get("token") or None),
                         headers=dict(statements.PAGE_HEADERS))


async def load_statement_of(runtime: Runtime, query: Any) -> Statement:
    """SPEC section 15: the statement of `?person=` for `?period=` (both required; 400 otherwise)."""
    person = query.get("person") or ""
    period = query.get("period") or ""
    if not person or not period:
        raise CrmbonusError("a statement needs ?person=<person_id>&period=YYYY-MM")
    if not PERIOD.match(period):
        raise CrmbonusError("period must be YYYY-MM, e.g. 2026-11")
    if runtime.pool is None:
        raise CrmbonusError(NOT_CONNECTED)
    async with runtime.pool.acquire() as conn:
        return await statements.load_statement(conn, as_plans(runtime.plan).for_period(period), person, period)


async def leaderboard_json(runtime: Runtime, query: Any, now: datetime | None = None) -> dict[str, Any]:
    """The leaderboard of a period (default: the latest with rows that is not after this month,
    in the plan's time zone) and role (default: everyone)."""
    period = query.get("period") or None
    role = query.get("role") or None
    if period is not None and not PERIOD.match(period):
        raise CrmbonusError("period must be YYYY-MM, e.g. 2026-11")
    if runtime.pool is None:
        raise CrmbonusError(NOT_CONNECTED)
    async with runtime.pool.acquire() as conn:
        periods = await reports.periods(conn)
        period = period or reports.default_period(periods, reports.current_period(runtime.plan, now))
        rows = [] if period is None else await reports.leaderboard(conn, period, role)
    return {
        "period": period,
        "role": role,
        "periods": periods,
        "rows": [standing_json(row) for row in rows],
    }


def standing_json(standing: reports.Standing) -> dict[str, Any]:
    """A leaderboard row for the API: counts as integers, money as exact strings ("10.65"), the
    year's lead points, badge (`none`, `bronze`, `silver`) and gold (a boolean)."""
    return {name: str(value) if isinstance(value, Decimal) else value
            for name, value in dataclasses.asdict(standing).items()}
