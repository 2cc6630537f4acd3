"""Real services for integration tests: an embedded Postgres per session, a fresh database per test.

Set CRMBONUS_TEST_DATABASE_URL to run against a server of your own instead; each
test still gets a database of its own, created from that server's `postgres` one.

The broker: tests that take `brokers`, `broker`, `own_broker` or `workers` run on tansu and on
Apache Kafka (ids and marks `tansu`, `kafka`; see `brokers` below for which run where and why).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from schemas.messages import Message
from stream import db, embedded
from stream.kafka import publish
from stream.pipeline import BatchResult, Pipeline
from stream.plan import load_plan
from stream.publishing import to_outgoing
from stream.settings import DEFAULT_TOPIC_PREFIX, Settings, Topics, bootstrap_servers
from stream.settlement import Settlement, settle
from tests.apache_kafka import KAFKA_VERSION, ApacheKafka
from tests.conftest import KAFKA, TANSU
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


CRMBONUS_VARIABLES = ("CRMBONUS_BROKER", "CRMBONUS_DATABASE_URL", "CRMBONUS_PLAN", "CRMBONUS_TOPIC_PREFIX")


def command_env(data_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a crmbonus process: none of the caller's CRMBONUS_* settings, plus `extra`."""
    env = {**os.environ, "CRMBONUS_DATA_DIR": str(data_dir)}
    for name in CRMBONUS_VARIABLES:
        env.pop(name, None)
    return {**env, **(extra or {})}


def crmbonus(*args: str, data_dir: Path, check: bool = True, timeout: float = 300,
             env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `crmbonus` command line, as a user would, in its own process (`env`: variables to set)."""
    env = command_env(data_dir, env)
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


# -- brokers -------------------------------------------------------------------------------

PARTITIONS = Settings().partitions
GROUP = Settings().group_id
WAIT = 60.0  # the bound of a single broker operation (a busy 2-core machine)

Offsets = dict[tuple[str, int], int]


async def create_topics(url: str, topics: Topics, partitions: int = PARTITIONS) -> None:
    """The four topics of SPEC section 2, with an admin client of the test's own: against a
    configured broker crmbonus creates none unless asked to (SPEC section 11)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(url), request_timeout_ms=10_000)
    try:
        await asyncio.wait_for(admin.start(), WAIT)
        wanted = [NewTopic(name, partitions, 1) for name in (*topics.inputs, topics.dead_letters)]
        with contextlib.suppress(TopicAlreadyExistsError):
            await asyncio.wait_for(admin.create_topics(wanted), WAIT)
    finally:
        await admin.close()


async def delete_topics(url: str, topics: Topics) -> None:
    """Best effort: the session's Apache Kafka broker need not keep every test's topics."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(url), request_timeout_ms=10_000)
    try:
        await asyncio.wait_for(admin.start(), WAIT)
        await asyncio.wait_for(admin.delete_topics([*topics.inputs, topics.dead_letters]), WAIT)
    except Exception:  # tidying only: a topic left behind harms nothing
        pass
    finally:
        await admin.close()


class Broker:
    """A broker a test publishes to and runs crmbonus against: see TansuBroker and KafkaBroker."""

    kind: str
    label: str  # for tables and messages
    url: str
    prefix: str = DEFAULT_TOPIC_PREFIX

    @property
    def topics(self) -> Topics:
        return Topics.with_prefix(self.prefix)

    def flags(self) -> list[str]:
        """What a crmbonus command (replay, publish) is given to use this broker."""
        return ["--broker", self.url]

    def worker_flags(self) -> list[str]:
        """What `crmbonus worker` is given (in the data directory this broker was started in)."""
        return self.flags()

    def env(self) -> dict[str, str]:
        return {"CRMBONUS_TOPIC_PREFIX": self.prefix}

    async def ready(self) -> Broker:
        await create_topics(self.url, self.topics)
        return self

    async def publish(self, lines: Sequence[bytes]) -> Offsets:
        """Publish as `crmbonus publish` does; the next offset per (topic, partition)."""
        return await publish(self.url, [to_outgoing(raw, self.topics) for raw in lines])

    @property
    def pid(self) -> int:
        raise NotImplementedError

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def kill(self) -> None:
        raise NotImplementedError(f"a {self.label} broker cannot be killed and restarted here")

    async def restart(self) -> None:
        raise NotImplementedError(f"a {self.label} broker cannot be killed and restarted here")

    async def close(self) -> None:
        raise NotImplementedError


class TansuBroker(Broker):
    """A fresh embedded tansu broker, announced in `data_dir` so that workers run there find it."""

    kind = TANSU
    label = "tansu"

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._stack = contextlib.ExitStack()
        self.url = self._stack.enter_context(embedded.embedded_broker(data_dir, fresh=True, announce=True))
        self._pid = int(json.loads((data_dir / embedded.BROKER_STATE_FILE).read_text())["pid"])
        self.port = int(self.url.rsplit(":", 1)[1])

    @property
    def pid(self) -> int:
        return self._pid

    def worker_flags(self) -> list[str]:
        # no --broker: the worker finds the announced broker, as one beside `crmbonus demo` does,
        # and gets the embedded consumer-group timing (stream/runtime.py)
        return []

    async def close(self) -> None:
        with contextlib.suppress(OSError):
            self.resume()
        self._stack.close()


class KafkaBroker(Broker):
    """Topics on a real Apache Kafka broker: the session's (own=False) under a prefix of the test's
    own, or a broker process of the test's own (default topic names), which it may kill and freeze."""

    kind = KAFKA
    label = f"kafka {KAFKA_VERSION}"

    def __init__(self, kafka: ApacheKafka, own: bool) -> None:
        self.kafka = kafka
        self.own = own
        self.url = kafka.plaintext
        self.prefix = DEFAULT_TOPIC_PREFIX if own else f"t{uuid.uuid4().hex[:8]}.{DEFAULT_TOPIC_PREFIX}"

    @property
    def pid(self) -> int:
        if not self.own:
            raise AssertionError("the session's Apache Kafka broker is shared: ask for brokers.start(own=True)")
        pid = self.kafka.pid
        assert pid is not None, "the broker is not running"
        return pid

    def kill(self) -> None:
        self.pid  # noqa: B018  (refuses on the shared broker)
        self.kafka.kill()

    async def restart(self) -> None:
        """Start again on the same storage and ports (after kill: the log is recovered)."""
        await asyncio.wait_for(self.kafka.start_async(), 2 * WAIT)

    async def close(self) -> None:
        if self.own:  # nothing is read from it afterwards: SIGKILL, not Kafka's controlled shutdown (~8 s)
            await asyncio.to_thread(self.kafka.kill)
            await asyncio.to_thread(self.kafka.close)
        else:
            await delete_topics(self.url, self.topics)


class Brokers:
    """The brokers of one test, all of one kind; `current` is the latest, which workers use."""

    def __init__(self, kind: str, data_dir: Path, shared: ApacheKafka | None) -> None:
        self.kind = kind
        self.data_dir = data_dir
        self.shared = shared
        self.started: list[Broker] = []
        self.replayed_prefix = DEFAULT_TOPIC_PREFIX  # the topic prefix of the latest `replay`

    @property
    def current(self) -> Broker | None:
        return self.started[-1] if self.started else None

    async def start(self, own: bool = False) -> Broker:
        """A new broker with the four topics: an empty one on tansu (always) and on Kafka with `own`."""
        broker: Broker
        if self.kind == TANSU:
            broker = await asyncio.to_thread(TansuBroker, self.data_dir)
        elif own:
            kafka = ApacheKafka()
            try:
                await asyncio.wait_for(kafka.start_async(), 2 * WAIT)
            except BaseException:
                await asyncio.to_thread(kafka.close)
                raise
            broker = KafkaBroker(kafka, own=True)
        else:
            assert self.shared is not None
            broker = KafkaBroker(self.shared, own=False)
        self.started.append(broker)
        return await broker.ready()

    async def replay(self, *args: str, data_dir: Path, check: bool = True, timeout: float = 300,
                     own: bool = False) -> subprocess.CompletedProcess[str]:
        """`crmbonus replay ARGS` as on a fresh broker each time: on tansu replay starts its own (the
        default); on Kafka it gets new topics on the session's broker, or with `own` a new broker
        with the default topic names (the same topic, partition and offset for each line, as on a
        fresh tansu), stopped once the replay is done."""
        if self.kind == TANSU:
            return await asyncio.to_thread(crmbonus, "replay", *args, data_dir=data_dir, check=check,
                                           timeout=timeout)
        broker = await self.start(own=own)
        self.replayed_prefix = broker.prefix
        try:
            return await asyncio.to_thread(crmbonus, "replay", *broker.flags(), *args, data_dir=data_dir,
                                           check=check, timeout=timeout, env=broker.env())
        finally:
            if own:
                self.started.remove(broker)
                await broker.close()

    async def close(self) -> None:
        for broker in reversed(self.started):
            await broker.close()


@pytest.fixture
def shared_kafka(broker_kind: str, request: pytest.FixtureRequest) -> ApacheKafka | None:
    """The session's Apache Kafka broker for a kafka case (started by the first one), else None."""
    return request.getfixturevalue("apache_kafka_broker") if broker_kind == KAFKA else None


@pytest.fixture
async def brokers(broker_kind: str, shared_kafka: ApacheKafka | None, tmp_path: Path) -> AsyncIterator[Brokers]:
    """The test's brokers, of the kind its id names (tansu or kafka: tests/conftest.py).

    Scopes: tansu is memory-only and starts in ~0.1 s, so each broker is a fresh process. An
    Apache Kafka broker costs ~4-7 s and ~350 MB, so one serves the session and each test's
    broker is a topic prefix of its own on it (replay runs in a group of its own; workers share
    the group `crmbonus`, as no flag renames it, which is harmless as the tests run one at a time
    and stop their workers: at worst a member a test killed holds up the next test's join for its
    10 s session); `own=True` starts a broker for the test alone where it kills one, freezes one or
    needs an empty one.

    Which tests run on both, and why:
    - both: whatever goes through Kafka clients and a consumer group end to end: replay and
      worker on the worked example, dead letters on their topic, shuffled arrival, third-party
      producers (compression, idempotence, headers), and the faults of workers and brokers:
      SIGKILL x3, 2 -> 3 workers and a kill (rebalances), SIGTERM, a frozen broker, a new empty
      broker with an existing database, hostile input through replay (Kafka's 1 MB limits);
    - one: what the broker plays no part in runs on tansu only, the default, to keep .ci/run
      short: the Feeder's rules-heavy tests (no broker at all), Postgres outages, the soak (the
      worker's memory and lag over 75 s), refusals before anything is published;
    - what a broker cannot do is skipped there with the reason: tansu keeps nothing across a
      kill (so its killed-broker case is the new-empty-broker one) and hands aborted
      transactions to read_committed consumers; Apache Kafka refuses a record over its 1 MB
      message.max.bytes, so such a record never reaches a worker.
    """
    made = Brokers(broker_kind, tmp_path, shared_kafka)
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
async def broker_factory(brokers: Brokers) -> Callable[..., Awaitable[Broker]]:
    """`await broker_factory(own=False)`: one more broker (the workers started after it use it)."""
    return brokers.start


@pytest.fixture
async def broker(brokers: Brokers) -> Broker:
    return await brokers.start()


@pytest.fixture
async def own_broker(brokers: Brokers) -> Broker:
    """A broker process of the test's own, to kill or freeze (on tansu every broker is)."""
    return await brokers.start(own=True)


# -- workers -------------------------------------------------------------------------------

class Worker:
    """A real `crmbonus worker` process (python -m stream worker), its log in the data dir."""

    def __init__(self, data_dir: Path, database_url: str, name: str, broker: Broker | None = None,
                 extra: Sequence[str] = (), env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.port = embedded.free_port()
        self.log_path = data_dir / f"worker-{name}.log"
        flags = broker.worker_flags() if broker is not None else []
        env = command_env(data_dir, {**(broker.env() if broker is not None else {}), **(env or {})})
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "stream", "worker", *flags, "--database-url", database_url,
                 "--web-port", str(self.port), *extra],
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
        await wait_until(lambda: self._healthy(), timeout, f"worker {self.name} healthy", self)
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


#: The `workers` fixture: start `crmbonus worker` on (database URL, name), on the test's latest broker.
StartWorker = Callable[..., Worker]  # (database_url, name, env=None) -> Worker


@pytest.fixture
def workers(tmp_path: Path, brokers: Brokers) -> Iterator[StartWorker]:
    """`start(database_url, name)` a worker in the test's data dir, on the latest broker the test
    started (on tansu with none started, the worker starts an embedded one); every one is stopped after."""
    started: list[Worker] = []

    def start(database_url: str, name: str, env: Mapping[str, str] | None = None) -> Worker:
        if brokers.current is None and brokers.kind == KAFKA:
            raise AssertionError("start a broker (the `broker` fixture) before a worker on Apache Kafka")
        worker = Worker(tmp_path, database_url, name, brokers.current, env=env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


# -- waiting on Postgres -------------------------------------------------------------------

async def query(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def count(url: str, table: str) -> int:
    return int((await query(url, f"SELECT count(*) AS n FROM {table}"))[0]["n"])


async def wait_until(condition: Callable[[], Awaitable[bool]], timeout: float, what: str,
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
        await asyncio.sleep(interval)  # polling interval


async def committed_offsets(url: str, group: str = GROUP, since: float = 0.0) -> Offsets:
    """The next offset per partition Postgres has committed (only rows written after `since`)."""
    rows = await query(url, 'SELECT topic, "partition", next_offset FROM consumer_progress'
                       " WHERE group_id = $1 AND updated_at >= to_timestamp($2)", group, since)
    return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}


async def wait_caught_up(url: str, ends: Offsets, timeout: float, *watch: Worker) -> None:
    """Until Postgres has committed every published offset (consumer_progress >= broker ends)."""
    async def done() -> bool:
        got = await committed_offsets(url)
        return all(got.get(key, 0) >= end for key, end in ends.items())

    await wait_until(done, timeout, f"every published offset committed ({sum(ends.values())} messages)", *watch)


async def wait_stored(url: str, at_least: int, timeout: float, *watch: Worker) -> int:
    """Until at least `at_least` events are stored; returns how many."""
    seen = 0

    async def enough() -> bool:
        nonlocal seen
        seen = await count(url, "events")
        return seen >= at_least

    await wait_until(enough, timeout, f"{at_least} events stored", *watch, interval=0.05)
    return seen


def merge_ends(*ends: Offsets) -> Offsets:
    merged: Offsets = {}
    for part in ends:
        for key, end in part.items():
            merged[key] = max(merged.get(key, 0), end)
    return merged


async def read_topic(broker: Broker, topic: str, count: int, timeout: float = WAIT) -> list[ConsumerRecord[Any, Any]]:
    """The first `count` records of `topic` (every partition, from the beginning; no group).

    By count, not by end offsets: tansu's ListOffsets answers a wrong end offset (one per record
    batch, measured), so a reader cannot ask it where a partition ends.
    """
    consumer = AIOKafkaConsumer(topic,
                                bootstrap_servers=bootstrap_servers(broker.url), enable_auto_commit=False,
                                auto_offset_reset="earliest")
    found: list[ConsumerRecord[Any, Any]] = []
    try:
        await asyncio.wait_for(consumer.start(), timeout)
        deadline = time.monotonic() + timeout
        while len(found) < count:
            assert time.monotonic() < deadline, f"timed out reading {topic}: {len(found)} of {count} records"
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found += records
    finally:
        await consumer.stop()
    return found


async def read_records(broker: Broker, ends: Offsets, timeout: float = WAIT) -> list[ConsumerRecord[Any, Any]]:
    """Every record of the partitions in `ends`, from the beginning to the end given (no group)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers(broker.url), enable_auto_commit=False,
                                auto_offset_reset="earliest")
    found: list[ConsumerRecord[Any, Any]] = []
    try:
        await asyncio.wait_for(consumer.start(), timeout)
        partitions = [TopicPartition(topic, partition) for (topic, partition), end in ends.items() if end > 0]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout
        left = set(partitions)
        while left:
            assert time.monotonic() < deadline, f"timed out reading the log: {sorted(map(str, left))} not read"
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                found += [r for r in records if r.offset < ends[(tp.topic, tp.partition)]]
            left = {tp for tp in left if await consumer.position(tp) < ends[(tp.topic, tp.partition)]}
    finally:
        await consumer.stop()
    return found


async def read_log(broker: Broker, ends: Offsets, timeout: float = WAIT) -> list[bytes]:
    """The values of `read_records`."""
    return [bytes(record.value or b"") for record in await read_records(broker, ends, timeout)]
