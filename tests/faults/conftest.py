"""Real processes for fault tests: embedded tansu brokers, `crmbonus worker` subprocesses, Postgres.

Nothing here is mocked. A test starts its own broker (announced in its data directory, so
workers started there find it and use the embedded consumer-group timing), runs real
`python -m stream worker` processes against a fresh migrated database (`pg_url` from the
integration conftest), injects the fault, and compares the tables with the from-scratch
oracle `stream.bonus.compute_tables` and with a clean `crmbonus replay` of the same events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from schemas.decode import CONFLICTING_DUPLICATE, DUPLICATE_SALE_ID, InvalidEvent, decode_event, same_content
from schemas.events import Sale
from stream import embedded
from stream.bonus import compute_tables
from stream.kafka import ensure_topics, publish
from stream.plan import load_plan
from stream.publishing import to_outgoing
from stream.settings import Settings, Topics
from tests.integration.conftest import (  # noqa: F401  (fixtures, re-exported for this directory)
    ROOT,
    RUNNING_COLUMNS,
    create_database,
    crmbonus,
    drop_database,
    pg_server_url,
    pg_url,
    running,
    snapshot,
    with_database,
)

TOPICS = Topics.with_prefix("crm.")
PARTITIONS = Settings().partitions
GROUP = Settings().group_id
PLAN = load_plan(None)


# -- figures for the README table ---------------------------------------------------------

@dataclass
class Figures:
    """One row of the README's fault table, filled in by a test with measured numbers."""

    scenario: str
    faults: str = ""
    inputs: int = 0
    processed: int = 0
    lost: int = -1
    doubled: int = -1
    notes: str = ""
    seconds: float = 0.0

    def record(self, inputs: int, verdict: Verdict, expected: Expected) -> None:
        """The measured columns: what went in, what was processed, lost and doubled."""
        self.inputs = inputs
        self.processed = verdict.stored + verdict.dead_letters + expected.duplicates
        self.lost, self.doubled = verdict.lost, verdict.doubled


RESULTS: list[Figures] = []


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    row = Figures(scenario=request.node.name.removeprefix("test_"))
    started = time.monotonic()
    yield row
    row.seconds = round(time.monotonic() - started, 1)
    RESULTS.append(row)


@pytest.fixture(scope="session", autouse=True)
def fault_table(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    yield
    if not RESULTS:
        return
    path = tmp_path_factory.getbasetemp() / "fault_table.json"
    path.write_text(json.dumps([row.__dict__ for row in RESULTS], indent=2))
    header = "| scenario | faults injected | inputs tried | events processed | lost | doubled | s |"
    lines = [header, "|---|---|---|---|---|---|---|"]
    for row in RESULTS:
        lines.append(f"| {row.scenario} | {row.faults} | {row.inputs} | {row.processed} | {row.lost} "
                     f"| {row.doubled} | {row.seconds} |")
    print("\n\nfault suite figures (" + str(path) + ")\n" + "\n".join(lines), flush=True)
    for row in RESULTS:
        if row.notes:
            print(f"  {row.scenario}: {row.notes}", flush=True)


# -- Postgres ------------------------------------------------------------------------------

@pytest.fixture
async def new_database(pg_server_url: str) -> AsyncIterator[Callable[[], Awaitable[str]]]:  # noqa: F811
    """Make more fresh, migrated databases (for the clean reference replay); dropped after."""
    made: list[str] = []

    async def make() -> str:
        made.append(await create_database(pg_server_url))
        return made[-1]

    yield make
    for url in made:
        await drop_database(pg_server_url, url)


async def query(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def count(url: str, table: str) -> int:
    return int((await query(url, f"SELECT count(*) AS n FROM {table}"))[0]["n"])


# -- the broker ----------------------------------------------------------------------------

class Broker:
    """A fresh embedded tansu broker, announced in `data_dir` so that workers run there find it."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._stack = contextlib.ExitStack()
        self.url = self._stack.enter_context(embedded.embedded_broker(data_dir, fresh=True, announce=True))
        self.pid = int(json.loads((data_dir / embedded.BROKER_STATE_FILE).read_text())["pid"])
        self.port = int(self.url.rsplit(":", 1)[1])

    async def ready(self) -> Broker:
        await ensure_topics(self.url, TOPICS, PARTITIONS)
        return self

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.resume()
        self._stack.close()

    async def publish(self, lines: Sequence[bytes]) -> dict[tuple[str, int], int]:
        """Publish as `crmbonus publish` does; the next offset per (topic, partition)."""
        return await publish(self.url, [to_outgoing(raw, TOPICS) for raw in lines])


@pytest.fixture
async def broker_factory(tmp_path: Path) -> AsyncIterator[Callable[[], Awaitable[Broker]]]:
    started: list[Broker] = []

    async def start() -> Broker:
        broker = Broker(tmp_path)
        started.append(broker)
        return await broker.ready()

    yield start
    for broker in started:
        broker.stop()


@pytest.fixture
async def broker(broker_factory: Callable[[], Awaitable[Broker]]) -> Broker:
    return await broker_factory()


# -- workers -------------------------------------------------------------------------------

class Worker:
    """A real `crmbonus worker` process (python -m stream worker), its log in the data dir."""

    def __init__(self, data_dir: Path, database_url: str, name: str) -> None:
        self.name = name
        self.port = embedded.free_port()
        self.log_path = data_dir / f"worker-{name}.log"
        env = {**os.environ, "CRMBONUS_DATA_DIR": str(data_dir)}
        for var in ("CRMBONUS_BROKER", "CRMBONUS_DATABASE_URL", "CRMBONUS_PLAN", "CRMBONUS_TOPIC_PREFIX"):
            env.pop(var, None)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "stream", "worker", "--database-url", database_url,
                 "--web-port", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT, env=env,
            )
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self, tail: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]

    def _get(self, path: str) -> tuple[int, bytes] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=3) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
        except OSError:
            return None

    async def get(self, path: str) -> tuple[int, bytes] | None:
        return await asyncio.to_thread(self._get, path)

    async def health(self) -> tuple[int, dict[str, Any]] | None:
        answer = await self.get("/health")
        if answer is None:
            return None
        return answer[0], json.loads(answer[1])

    async def metrics(self) -> dict[str, float]:
        """`/metrics` as {series: value} (labels kept in the series name)."""
        answer = await self.get("/metrics")
        assert answer is not None and answer[0] == 200, f"worker {self.name} /metrics: {answer}"
        values: dict[str, float] = {}
        for line in answer[1].decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    async def wait_healthy(self, timeout: float = 60) -> float:
        """Seconds until /health answers 200; fails with the log if the process dies or stalls."""
        await wait_for(lambda: self._healthy(), timeout, f"worker {self.name} healthy", self)
        return time.monotonic() - self.started

    async def _healthy(self) -> bool:
        answer = await self.health()
        return answer is not None and answer[0] == 200

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def stop(self) -> None:
        if not self.alive():
            return
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.kill()


#: The `workers` fixture: start `crmbonus worker` on (database URL, name).
StartWorker = Callable[[str, str], Worker]


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[StartWorker]:
    """`start(database_url, name)` a worker in the test's data dir; every one is stopped after."""
    started: list[Worker] = []

    def start(database_url: str, name: str) -> Worker:
        worker = Worker(tmp_path, database_url, name)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


async def wait_for(condition: Callable[[], Awaitable[bool]], timeout: float, what: str,
                   *watch: Worker, interval: float = 0.2) -> None:
    """Poll `condition` until it holds; fail naming `what` (and the log of a worker that died)."""
    deadline = time.monotonic() + timeout
    while True:
        if await condition():
            return
        for worker in watch:
            if not worker.alive():
                raise AssertionError(f"worker {worker.name} exited {worker.process.returncode} "
                                     f"while waiting for {what}:\n{worker.log()}")
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {w.name}\n{w.log()}" for w in watch)
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}")
        await asyncio.sleep(interval)


async def committed_offsets(url: str, group: str = GROUP, since: float = 0.0) -> dict[tuple[str, int], int]:
    """The next offset per partition Postgres has committed (only rows written after `since`)."""
    rows = await query(url, 'SELECT topic, "partition", next_offset FROM consumer_progress'
                       " WHERE group_id = $1 AND updated_at >= to_timestamp($2)", group, since)
    return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}


async def wait_caught_up(url: str, ends: dict[tuple[str, int], int], timeout: float, *watch: Worker) -> None:
    """Until Postgres has committed every published offset (consumer_progress >= broker ends)."""
    async def done() -> bool:
        got = await committed_offsets(url)
        return all(got.get(key, 0) >= end for key, end in ends.items())

    await wait_for(done, timeout, f"every published offset committed ({sum(ends.values())} messages)", *watch)


async def wait_stored(url: str, at_least: int, timeout: float, *watch: Worker) -> int:
    """Until at least `at_least` events are stored; returns how many."""
    seen = 0

    async def enough() -> bool:
        nonlocal seen
        seen = await count(url, "events")
        return seen >= at_least

    await wait_for(enough, timeout, f"{at_least} events stored", *watch, interval=0.05)
    return seen


def merge_ends(*ends: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
    merged: dict[tuple[str, int], int] = {}
    for part in ends:
        for key, end in part.items():
            merged[key] = max(merged.get(key, 0), end)
    return merged


# -- the oracle ----------------------------------------------------------------------------

@dataclass
class Expected:
    """What the pipeline must end with for `lines`, computed from scratch."""

    lines: Sequence[bytes]
    admitted: dict[str, bytes] = field(default_factory=dict)  # event_id -> raw of the first
    invalid: list[bytes] = field(default_factory=list)  # lines the decoder refuses
    rejected: list[bytes] = field(default_factory=list)  # conflicting duplicates / duplicate sale ids
    duplicates: int = 0  # exact redeliveries
    rows: list[dict[str, str]] = field(default_factory=list)
    letters: list[tuple[bytes, str]] = field(default_factory=list)  # (payload, reason) expected

    def __post_init__(self) -> None:
        events = []
        sales: set[str] = set()
        for raw in self.lines:
            try:
                event = decode_event(raw)
            except InvalidEvent as error:
                self.invalid.append(raw)
                self.letters.append((raw, error.reason))
                continue
            if event.event_id in self.admitted:
                if same_content(self.admitted[event.event_id], raw):
                    self.duplicates += 1
                else:
                    self.rejected.append(raw)
                    self.letters.append((raw, CONFLICTING_DUPLICATE))
                continue
            sale_id = getattr(event, "sale_id", None)
            if isinstance(event, Sale):
                if sale_id in sales:
                    self.rejected.append(raw)
                    self.letters.append((raw, DUPLICATE_SALE_ID))
                    continue
                sales.add(sale_id)
            self.admitted[event.event_id] = raw
            events.append(event)
        self.rows = [{name: str(getattr(row, name)) for name in RUNNING_COLUMNS}
                     for row in compute_tables(events, PLAN)]

    @property
    def dead_letters(self) -> int:
        return len(self.invalid) + len(self.rejected)


def nonzero(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """`bonus_running` rows without the all-zero ones a person keeps when credits go (SPEC §6)."""
    numbers = [c for c in RUNNING_COLUMNS if c not in ("period", "person_id", "role")]
    return [row for row in rows if any(float(row[c]) != 0 for c in numbers)]


def nonzero_snapshot(snap: dict[str, list[tuple[object, ...]]]) -> dict[str, list[tuple[object, ...]]]:
    first_number = RUNNING_COLUMNS.index("cross_sell_count")
    out = dict(snap)
    out["bonus_running"] = [row for row in snap["bonus_running"] if any(v != 0 for v in row[first_number:])]
    return out


@dataclass
class Verdict:
    stored: int
    lost: int
    doubled: int
    dead_letters: int


async def check_against_oracle(url: str, expected: Expected) -> Verdict:
    """Tables == oracle; every admitted event stored once with its first bytes; no dead letter twice."""
    stored = await query(url, "SELECT event_id, raw FROM events")
    letters = await query(url, 'SELECT topic, "partition", "offset", payload FROM dead_letters')
    stored_ids = [row["event_id"] for row in stored]
    lost = len(set(expected.admitted) - set(stored_ids))
    doubled = len(stored_ids) - len(set(stored_ids))
    places = [(r["topic"], r["partition"], r["offset"]) for r in letters]
    doubled += len(places) - len(set(places))
    assert lost == 0, f"{lost} valid events lost, e.g. {sorted(set(expected.admitted) - set(stored_ids))[:5]}"
    assert doubled == 0, "an event or a dead letter was stored twice"
    assert set(stored_ids) == set(expected.admitted), "events stored that the oracle did not admit"
    assert {row["event_id"]: bytes(row["raw"]) for row in stored} == expected.admitted
    assert nonzero(await running(url)) == expected.rows
    return Verdict(stored=len(stored_ids), lost=lost, doubled=doubled, dead_letters=len(letters))


async def check_against_clean_replay(url: str, lines: Sequence[bytes], clean_url: str, data_dir: Path) -> None:
    """A clean single `crmbonus replay` of the same lines into a fresh database gives the same tables."""
    path = data_dir / f"replay-{uuid.uuid4().hex[:6]}.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    await asyncio.to_thread(crmbonus, "replay", str(path), "--database-url", clean_url,
                            data_dir=data_dir / "clean-replay")
    ours, clean = nonzero_snapshot(await snapshot(url)), nonzero_snapshot(await snapshot(clean_url))
    for table in ("events", "credits", "bonus_running"):
        assert ours[table] == clean[table], f"{table} differs from a clean replay"


async def feed(broker: Broker, lines: Sequence[bytes], rate: float, chunk: int = 100) -> dict[tuple[str, int], int]:
    """Publish `lines` as a steady stream of about `rate` lines a second; the broker's ends."""
    ends: dict[tuple[str, int], int] = {}
    started = time.monotonic()
    for index in range(0, len(lines), chunk):
        ends = merge_ends(ends, await broker.publish(lines[index:index + chunk]))
        due = started + (index + chunk) / rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
    return ends
