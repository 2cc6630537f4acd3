"""Outages under a running worker: Postgres stopped and started (on tansu), the broker frozen (both) (issue 7)."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from stream import db
from stream.demo_data import DemoConfig, generate
from stream.settings import bootstrap_servers
from tests.conftest import KAFKA
from tests.faults.conftest import (
    Broker,
    Expected,
    Figures,
    StartWorker,
    Worker,
    check_against_clean_replay,
    check_against_oracle,
    feed,
    wait_caught_up,
    wait_for,
    wait_stored,
)

pytestmark = pytest.mark.faults


class OwnPostgres:
    """A pgserver of this test's own (not the session's), so that it can be stopped and started."""

    def __init__(self) -> None:
        import pgserver

        self.pgdata = Path(tempfile.mkdtemp(prefix="crmbonus-fault-pg-"))
        self.server: Any = pgserver.get_server(self.pgdata, cleanup_mode="stop")
        self.url: str = self.server.get_uri()

    def stop(self) -> None:
        from pgserver._commands import pg_ctl

        pg_ctl(["-w", "stop"], pgdata=self.server.pgdata, user=self.server.system_user)

    def start(self) -> None:
        self.server.ensure_postgres_running()
        assert self.server.get_uri() == self.url

    def close(self) -> None:
        self.server.cleanup()
        shutil.rmtree(self.pgdata, ignore_errors=True)


@pytest.fixture
async def own_postgres() -> AsyncIterator[OwnPostgres]:
    server = await asyncio.to_thread(OwnPostgres)
    pool = await db.create_pool(server.url)
    try:
        await db.migrate(pool)
    finally:
        await pool.close()
    yield server
    await asyncio.to_thread(server.close)


@pytest.mark.brokers("tansu", reason="a Postgres outage: the broker plays no part")
async def test_postgres_stopped_and_started_under_a_running_worker(
    own_postgres: OwnPostgres, broker: Broker, workers: StartWorker,
    new_database: Callable[[], Awaitable[str]], tmp_path: Path, figures: Figures,
) -> None:
    url = own_postgres.url
    lines = generate(DemoConfig(customers=900, seed=505))
    half = len(lines) // 2
    expected = Expected(lines)
    worker = workers(url, "pg-outage")
    await worker.wait_healthy()
    ends = await broker.publish(lines[:half])
    await wait_caught_up(url, ends, 60, worker)

    await asyncio.to_thread(own_postgres.stop)
    down_at = time.monotonic()
    reasons: list[str] = []

    async def unhealthy() -> bool:
        answer = await worker.health()
        if answer is not None and answer[0] == 503:
            reasons.append(answer[1]["reason"])
            return True
        return False

    await wait_for(unhealthy, 15, "/health 503 with Postgres down", worker)
    ends = await broker.publish(lines[half:])  # arrives while Postgres is away: retried with backoff
    await wait_for(lambda: _retrying(worker, reasons), 20, "a batch retried while Postgres is down", worker)
    while time.monotonic() - down_at < 8:  # an outage of some seconds; the worker must stay up
        assert worker.alive(), worker.log()
        await asyncio.sleep(0.5)
    print(f"\n/health while Postgres was down: {sorted(set(reasons))}")
    assert worker.alive()
    assert reasons[0].startswith("Postgres does not answer: ")

    await asyncio.to_thread(own_postgres.start)
    outage = time.monotonic() - down_at
    await wait_caught_up(url, ends, 60, worker)
    await worker.wait_healthy(30)
    verdict = await check_against_oracle(url, expected)
    assert verdict.dead_letters == expected.dead_letters
    retries = (await worker.metrics()).get("crmbonus_batch_retries_total", 0.0)
    await check_against_clean_replay(url, lines, await new_database(), tmp_path)
    figures.faults = f"Postgres stopped {outage:.0f}s under a running worker ({retries:.0f} batch retries)"
    figures.record(len(lines), verdict, expected)
    figures.notes = f"/health reasons while down: {sorted(set(reasons))}"


#: The longest a batch may take before Kafka moves the worker's partitions, set low for the test.
MAX_POLL_INTERVAL_MS = 3000


async def test_postgres_away_longer_than_max_poll_interval_the_worker_rejoins(
    own_postgres: OwnPostgres, broker: Broker, workers: StartWorker,
    new_database: Callable[[], Awaitable[str]], tmp_path: Path, figures: Figures,
) -> None:
    """Postgres away for several times CRMBONUS_KAFKA_MAX_POLL_INTERVAL_MS: the worker's batch in
    hand retries while the group drops it; once Postgres is back the batch commits, the worker
    rejoins and reads on; nothing lost, nothing doubled."""
    url = own_postgres.url
    lines = generate(DemoConfig(customers=700, seed=606))
    half = len(lines) // 2
    expected = Expected(lines)
    worker = workers(url, "poll-outage", env={"CRMBONUS_KAFKA_MAX_POLL_INTERVAL_MS": str(MAX_POLL_INTERVAL_MS)})
    await worker.wait_healthy()
    ends = await broker.publish(lines[:half])
    await wait_caught_up(url, ends, 60, worker)

    await asyncio.to_thread(own_postgres.stop)
    down_at = time.monotonic()
    ends = await broker.publish(lines[half:])  # read while Postgres is away: that batch cannot commit
    await wait_for(lambda: _retrying(worker), 20, "a batch retried while Postgres is down", worker)
    while time.monotonic() - down_at < 3 * MAX_POLL_INTERVAL_MS / 1000:  # the group gives up on the worker
        assert worker.alive(), worker.log()
        await asyncio.sleep(0.5)
    if broker.kind == KAFKA:  # tansu keeps counting a member that left (its DescribeGroups answer)
        assert await group_members(broker.url, "crmbonus") == 0, "the group still counts the stalled worker"
    await asyncio.to_thread(own_postgres.start)
    outage = time.monotonic() - down_at

    await wait_caught_up(url, ends, 90, worker)
    await worker.wait_healthy(60)  # back in the group, partitions assigned, consuming
    assert worker.alive(), worker.log()
    verdict = await check_against_oracle(url, expected)
    assert verdict.dead_letters == expected.dead_letters
    await check_against_clean_replay(url, lines, await new_database(), tmp_path)
    figures.faults = (f"Postgres stopped {outage:.0f}s, {outage * 1000 / MAX_POLL_INTERVAL_MS:.1f} x "
                      f"max_poll_interval ({MAX_POLL_INTERVAL_MS} ms): the group drops the worker, it rejoins")
    figures.record(len(lines), verdict, expected)


async def group_members(url: str, group: str) -> int:
    """How many members the broker counts in `group` (DescribeGroups)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(url), request_timeout_ms=10_000)
    try:
        await asyncio.wait_for(admin.start(), 15)
        [response] = await asyncio.wait_for(admin.describe_consumer_groups([group]), 15)
        # each group: (error_code, group_id, state, protocol_type, protocol, members, ...)
        return sum(len(found[5]) for found in response.groups)
    finally:
        await admin.close()


async def _retrying(worker: Worker, reasons: list[str] | None = None) -> bool:
    """True once /health says a batch is being retried."""
    answer = await worker.health()
    if answer is None or answer[0] != 503:
        return False
    if reasons is not None:
        reasons.append(answer[1]["reason"])
    return answer[1]["reason"].startswith("could not commit the batch to Postgres")


async def test_broker_frozen_for_ten_seconds(
    pg_url: str, own_broker: Broker, workers: StartWorker, new_database: Callable[[], Awaitable[str]],
    tmp_path: Path, figures: Figures,
) -> None:
    broker = own_broker  # a process of this test's own: SIGSTOP freezes the whole broker
    lines = generate(DemoConfig(customers=900, seed=606))
    half = len(lines) // 2
    expected = Expected(lines)
    worker = workers(pg_url, "broker-outage")
    await worker.wait_healthy()
    stream = asyncio.create_task(feed(broker, lines[:half], rate=800))
    await wait_stored(pg_url, len(expected.admitted) // 4, 60, worker)
    broker.pause()  # SIGSTOP: connections hang, as with a network partition
    paused = time.monotonic()
    try:
        while time.monotonic() - paused < 10:
            assert worker.alive(), worker.log()
            await asyncio.sleep(0.5)
    finally:
        broker.resume()
    first = await stream
    ends = await broker.publish(lines[half:])
    await wait_caught_up(pg_url, {**first, **{k: max(v, first.get(k, 0)) for k, v in ends.items()}}, 90, worker)
    verdict = await check_against_oracle(pg_url, expected)
    assert verdict.dead_letters == expected.dead_letters
    await check_against_clean_replay(pg_url, lines, await new_database(), tmp_path)
    figures.faults = "broker SIGSTOPped 10 s mid-stream, then SIGCONT"
    figures.record(len(lines), verdict, expected)


class SlowShutdown(AssertionError):
    """The worker did not exit within 10 s of SIGTERM."""


@pytest.mark.brokers("tansu", reason="a Postgres outage: the broker plays no part")
async def test_sigterm_while_postgres_is_down_loses_nothing(
    own_postgres: OwnPostgres, broker: Broker, workers: StartWorker, figures: Figures,
) -> None:
    """SIGTERM while a batch cannot commit: the worker exits soon, and the batch is read again."""
    url = own_postgres.url
    lines = generate(DemoConfig(customers=300, seed=707))
    expected = Expected(lines)
    worker = workers(url, "stopped-in-outage")
    await worker.wait_healthy()
    await asyncio.to_thread(own_postgres.stop)
    ends = await broker.publish(lines)
    reasons: list[str] = []
    await wait_for(lambda: _retrying(worker, reasons), 20, "a batch retried while Postgres is down", worker)
    await asyncio.sleep(2)  # Faust's commit interval is 1 s: give it the chance to commit offsets
    asked = time.monotonic()
    worker.signal(signal.SIGTERM)
    try:
        code: int | None = await asyncio.to_thread(worker.wait, 10)
    except subprocess.TimeoutExpired:
        code = None
        worker.kill()  # what an operator (or Kubernetes) ends up doing
    took = time.monotonic() - asked
    print(f"\nSIGTERM during the outage -> {'exit ' + str(code) if code is not None else 'no exit, SIGKILL'}"
          f" after {took:.1f}s")
    await asyncio.to_thread(own_postgres.start)
    successor = workers(url, "after-outage")
    await wait_caught_up(url, ends, 60, successor)
    verdict = await check_against_oracle(url, expected)  # nothing lost either way
    assert verdict.dead_letters == expected.dead_letters
    figures.faults = ("Postgres stopped, SIGTERM while a batch retried: "
                      + (f"exit {code} in {took:.1f}s" if code is not None else "no exit in 10 s, SIGKILL"))
    figures.record(len(lines), verdict, expected)
    if code != 0:
        raise SlowShutdown(f"worker did not exit 0 within 10 s of SIGTERM (exit {code})")


@pytest.mark.brokers("tansu", reason="a Postgres outage: the broker plays no part")
async def test_health_reason_names_postgres_while_a_batch_retries(
    own_postgres: OwnPostgres, broker: Broker, workers: StartWorker,
) -> None:
    worker = workers(own_postgres.url, "reason")
    await worker.wait_healthy()
    await asyncio.to_thread(own_postgres.stop)
    await broker.publish(generate(DemoConfig(customers=5, seed=808, invalid_lines=0)))
    reasons: list[str] = []
    await wait_for(lambda: _retrying(worker, reasons), 20, "a batch retried while Postgres is down", worker)
    assert "postgres" in reasons[-1].lower(), reasons[-1]
