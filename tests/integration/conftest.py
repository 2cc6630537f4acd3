"""Real services for integration tests: an embedded Postgres per session, a fresh database per test.

Set CRMBONUS_TEST_DATABASE_URL to run against a server of your own instead; each
test still gets a database of its own, created from that server's `postgres` one.
The broker is never shared: `crmbonus replay` starts a fresh embedded one per run.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from schemas.messages import Message
from stream import db
from stream.pipeline import BatchResult, Pipeline
from stream.plan import load_plan
from stream.settlement import Settlement, settle
from tests.examples import ROOT

RUNNING_COLUMNS = ("period", "person_id", "role", "cross_sell_count", "cross_sell_amount",
                   "appointments_held", "appointments_converted", "cross_sell_bonus",
                   "appointment_bonus", "prior_adjustments", "total_bonus")


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """The URL of the `postgres` database of a server the tests may create databases on."""
    external = os.environ.get("CRMBONUS_TEST_DATABASE_URL")
    if external:
        yield external
        return
    import pgserver

    # not under pytest's tmp_path: pytest prunes old base dirs, even under a running server
    pgdata = Path(tempfile.mkdtemp(prefix="crmbonus-test-pg-"))
    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(pgdata, ignore_errors=True)


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def create_database(server_url: str) -> str:
    """A new database with every migration applied, on the server of `server_url`."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = with_database(server_url, name)
    pool = await db.create_pool(url)
    try:
        await db.migrate(pool)
    finally:
        await pool.close()
    return url


async def drop_database(server_url: str, url: str) -> None:
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{urlsplit(url).path[1:]}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def pg_url(pg_server_url: str) -> AsyncIterator[str]:
    """A fresh database with every migration applied; dropped after the test."""
    url = await create_database(pg_server_url)
    yield url
    await drop_database(pg_server_url, url)


def crmbonus(*args: str, data_dir: Path, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the real `crmbonus` command line, as a user would, in its own process."""
    env = {**os.environ, "CRMBONUS_DATA_DIR": str(data_dir)}
    for name in ("CRMBONUS_BROKER", "CRMBONUS_DATABASE_URL", "CRMBONUS_PLAN", "CRMBONUS_TOPIC_PREFIX"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "-m", "stream", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)
    if check and done.returncode != 0:
        raise AssertionError(f"crmbonus {' '.join(args)} exited {done.returncode}\n{done.stderr[-4000:]}")
    return done


async def fetch_csv(url: str, query: str, columns: Sequence[str] = RUNNING_COLUMNS) -> list[dict[str, str]]:
    """Rows as the strings a CSV export would hold (numerics keep their scale: 355.00)."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(query)
    finally:
        await conn.close()
    return [{name: str(row[name]) for name in columns} for row in rows]


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


async def running(url: str) -> list[dict[str, str]]:
    return await fetch_csv(url, f"SELECT {', '.join(RUNNING_COLUMNS)} FROM bonus_running ORDER BY period, person_id")


async def snapshot(url: str) -> dict[str, list[tuple[object, ...]]]:
    """Every table's content without row ids and clock columns, for 'nothing changed' checks."""
    queries = {
        "events": "SELECT event_id, event_type, customer_id, occurred_at, sale_id, raw FROM events ORDER BY 1",
        "dead_letters": 'SELECT topic, "partition", "offset", key, payload, reason, detail FROM dead_letters '
                        'ORDER BY 1, 2, 3',
        "credits": "SELECT period, person_id, role, kind, customer_id, sale_id, line_id, lead_id, amount, share,"
                   " touch_event_id, source_event_id FROM credits ORDER BY 1, 2, 3, 4, 5, 6, 7, 8",
        "bonus_running": f"SELECT {', '.join(RUNNING_COLUMNS)} FROM bonus_running ORDER BY 1, 2",
    }
    conn = await asyncpg.connect(url)
    try:
        return {name: [tuple(row) for row in await conn.fetch(sql)] for name, sql in queries.items()}
    finally:
        await conn.close()



class Feeder:
    """Drives the real pipeline on a real Postgres without a broker: for rules-heavy tests.

    Offsets grow per instance like a partition's would; the Kafka path itself is
    covered by the replay tests.
    """

    def __init__(self, url: str, plan_path: str | None = None) -> None:
        self.url = url
        self.plan = load_plan(plan_path)
        self.offset = 0

    async def feed(self, lines: Sequence[bytes], batch_size: int = 500) -> list[BatchResult]:
        pool = await db.create_pool(self.url)
        try:
            pipeline = Pipeline(pool, self.plan, "test")
            results = []
            for start in range(0, len(lines), batch_size):
                batch = []
                for raw in lines[start:start + batch_size]:
                    batch.append(Message("crm.sales", 0, self.offset, None, raw))
                    self.offset += 1
                results.append(await pipeline.handle(batch))
            return results
        finally:
            await pool.close()

    async def settle(self, period: str) -> Settlement:
        conn = await asyncpg.connect(self.url)
        try:
            return await settle(conn, period)
        finally:
            await conn.close()


def get(url: str) -> tuple[int, bytes]:
    """GET `url`: (status, body), an HTTP error status included."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_for(predicate: object, what: str, timeout: float = 60.0) -> None:
    """Poll `predicate` until it is true (a refused connection counts as not yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
