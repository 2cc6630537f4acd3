"""The command line as a user meets it: flags, configuration errors, `publish --check`, `--broker`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import psutil
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from stream.embedded import embedded_broker, free_port
from stream.kafka import Outgoing, ensure_topics, publish
from stream.publishing import read_lines, to_outgoing
from stream.settings import Topics, bootstrap_servers
from tests.examples import EXAMPLES, ROOT
from tests.integration.conftest import crmbonus, get, read_csv, running, wait_for

pytestmark = pytest.mark.integration


def test_publish_check_refuses_a_file_with_invalid_lines_and_publishes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    good = (EXAMPLES / "month.jsonl").read_text().splitlines()[0]
    path.write_text("\n".join([good, "{not json", json.dumps({"event_id": "x", "event_type": "teleport"})]) + "\n")
    done = crmbonus("publish", "--check", str(path), data_dir=tmp_path, check=False)
    assert done.returncode == 2
    assert f"{path}:2: invalid_json: " in done.stderr
    assert f"{path}:3: unknown_event_type: unknown event_type 'teleport'" in done.stderr
    assert "2 of 3 lines are invalid; nothing was published" in done.stderr


def test_publish_without_a_broker_says_what_to_start(tmp_path: Path) -> None:
    done = crmbonus("publish", str(EXAMPLES / "month.jsonl"), data_dir=tmp_path, check=False)
    assert done.returncode == 2
    assert "no embedded broker is running" in done.stderr and "crmbonus worker" in done.stderr


def test_a_bad_plan_is_refused_at_start_up_naming_the_key(tmp_path: Path) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text((Path(__file__).resolve().parents[2] / "deploy" / "plans" / "default.toml").read_text()
                    .replace('attribution_model = "last_touch"', 'attribution_model = "most_touch"'))
    done = crmbonus("replay", str(EXAMPLES / "month.jsonl"), "--plan", str(plan), data_dir=tmp_path, check=False)
    assert done.returncode == 2
    assert "attribution_model" in done.stderr and "most_touch" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("args", "message"), [
    (("settle", "--period", "2026-13"), "period '2026-13' must be YYYY-MM"),
    (("replay", "x.jsonl", "--broker", "localhost:9092"), "broker 'localhost:9092' must be kafka://host:port"),
    (("replay", "x.jsonl", "--database-url", "mysql://db"), "must start with postgresql://"),
])
def test_bad_flags_are_named(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    done = crmbonus(*args, data_dir=tmp_path, check=False)
    assert done.returncode == 2
    assert message in done.stderr


async def test_replay_against_a_configured_broker(pg_url: str, tmp_path: Path) -> None:
    """--broker: topics are created there (asked for), a consumer group of the replay's own reads them."""
    with embedded_broker(tmp_path / "external", fresh=True, announce=False) as broker:
        crmbonus("replay", str(EXAMPLES / "month.jsonl"), "--broker", broker, "--database-url", pg_url,
                 "--create-topics", data_dir=tmp_path)
        # a second replay into the same broker and database: the topics now hold the month twice
        again = crmbonus("replay", str(EXAMPLES / "month.jsonl"), "--broker", broker, "--database-url", pg_url,
                         data_dir=tmp_path)
    assert "0 events stored" in again.stderr
    assert await running(pg_url) == read_csv(EXAMPLES / "expected_running_after_month.csv")


async def test_leaderboard_command_prints_the_ranking(pg_url: str, tmp_path: Path) -> None:
    crmbonus("replay", str(EXAMPLES / "month.jsonl"), "--database-url", pg_url, data_dir=tmp_path)
    done = crmbonus("leaderboard", "--period", "2026-11", "--role", "field_rep", "--database-url", pg_url,
                    data_dir=tmp_path)
    rows = [line for line in done.stdout.splitlines() if "fr-" in line]
    # --role: the role is the title's, not a column; no field rep holds appointments: no count columns
    assert "Leaderboard 2026-11 — field_rep" in done.stdout
    assert [line.split("│")[1:-1] for line in rows] == [
        [" 1 ", " fr-1   ", "           4 ", " 355.00 ", " 10.65 "],
        [" 2 ", " fr-2   ", "           2 ", " 105.00 ", "  0.00 "],
    ]


async def test_worker_processes_share_the_group_and_stop_together(pg_url: str, tmp_path: Path) -> None:
    """`worker --workers 2`: both serve /health, the month lands once, SIGTERM stops both with exit 0."""
    port = free_port(2)
    parent = start_worker("--workers", "2", "--web-port", str(port), "--database-url", pg_url, data_dir=tmp_path)
    tree = psutil.Process(parent.pid)
    try:
        for worker_port in (port, port + 1):
            wait_for(lambda p=worker_port: get(f"http://127.0.0.1:{p}/health")[0] == 200,
                     f"worker /health on port {worker_port} to answer 200")
        crmbonus("publish", str(EXAMPLES / "month.jsonl"), data_dir=tmp_path)  # to the workers' embedded broker
        expected = read_csv(EXAMPLES / "expected_running_after_month.csv")
        await wait_for_async(lambda: running(pg_url), expected, 60)
        children = [child for child in psutil.Process(parent.pid).children() if "stream" in child.cmdline()]
        assert len(children) == 2  # the other child is the embedded broker
        assert terminate(parent) == 0, (tmp_path / "worker.log").read_text()[-3000:]
        assert not any(child.is_running() and child.status() != psutil.STATUS_ZOMBIE for child in children)
    finally:
        if parent.poll() is None:
            kill_all([parent.pid, *(p.pid for p in tree.children(recursive=True))])


def test_worker_processes_stop_when_their_supervisor_is_killed(pg_url: str, tmp_path: Path) -> None:
    parent = start_worker("--workers", "2", "--web-port", str(free_port(2)), "--database-url", pg_url,
                          data_dir=tmp_path)
    descendants: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 60
        while len(workers := [c for c in psutil.Process(parent.pid).children() if "stream" in c.cmdline()]) < 2:
            assert time.monotonic() < deadline and parent.poll() is None
            time.sleep(0.2)
        descendants = psutil.Process(parent.pid).children(recursive=True)
        parent.kill()
        parent.wait()
        _gone, alive = psutil.wait_procs(workers, timeout=30)
        assert not alive, f"orphaned workers still running: {alive}"
    finally:
        kill_all([parent.pid, *(process.pid for process in descendants)])


def kill_all(pids: list[int]) -> None:
    """Test clean-up: whatever of these processes is still running (the embedded broker outlives
    a killed `crmbonus worker`, by design: a restarted worker finds it again)."""
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).kill()


def start_worker(*args: str, data_dir: Path) -> subprocess.Popen[bytes]:
    """`crmbonus worker` in its own process, its output in `data_dir`/worker.log."""
    env = {**os.environ, "CRMBONUS_DATA_DIR": str(data_dir)}
    with open(data_dir / "worker.log", "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "stream", "worker", *args], env=env, cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT)


def terminate(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(60)


async def wait_for_async(read: Callable[[], Awaitable[object]], expected: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (found := await read()) != expected:
        assert time.monotonic() < deadline, f"after {timeout} s: {found}"
        await asyncio.sleep(0.3)


async def test_publish_puts_a_customer_where_kafkas_own_partitioner_would(tmp_path: Path) -> None:
    """Record batches per partition must not move anyone: keyed lines go where `send` puts them
    (murmur2 of the key, as Kafka's Java client too), keyless ones by a hash of their bytes."""
    topics = Topics.with_prefix("p.")
    lines = [line.raw for line in read_lines([EXAMPLES / "month.jsonl"])]
    outgoing = [to_outgoing(raw, topics) for raw in lines] + [Outgoing(topics.sales, None, b"not json")]
    with embedded_broker(tmp_path, fresh=True, announce=False) as broker:
        await ensure_topics(broker, topics, partitions=6)
        await publish(broker, outgoing * 3)  # repeated keys take the cached partition
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers(broker), auto_offset_reset="earliest")
        await consumer.start()
        try:
            assigned = [TopicPartition(topic, p) for topic in topics.inputs for p in range(6)]
            consumer.assign(assigned)
            found: list[tuple[str, int, bytes | None]] = []
            while len(found) < len(outgoing) * 3:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    found += [(r.topic, r.partition, r.key) for r in records]
        finally:
            await consumer.stop()
    murmur = DefaultPartitioner()
    for _topic, partition, key in found:
        if key is not None:
            assert partition == murmur(key, list(range(6)), list(range(6)))
    assert (topics.sales, zlib.crc32(b"not json") % 6, None) in found


async def test_zero_rows_are_not_settled_exported_or_ranked(pg_url: str, tmp_path: Path) -> None:
    """SPEC section 14: a bonus_running row of zeros may be there or not; no output depends on it.
    `settle` does not copy it, `export` leaves out one an older settle copied, the API omits it."""
    conn = await asyncpg.connect(pg_url)
    try:
        columns = ("period, person_id, role, cross_sell_count, cross_sell_amount, appointments_held, "
                   "appointments_converted, cross_sell_bonus, appointment_bonus, prior_adjustments, total_bonus")
        await conn.executemany(f"INSERT INTO bonus_running ({columns}) VALUES ($1, $2, 'field_rep', $3, $4, 0, 0,"
                               " $5::numeric, 0, $6::numeric, $5::numeric + $6::numeric)",
                               [("2026-10", "fr-1", 1, 100, 3, 0), ("2026-10", "fr-zero", 0, 0, 0, 0),
                                ("2026-10", "fr-adjusted", 0, 0, 0, -2)])  # only an adjustment: not zero
        # a month an older crmbonus settled, zero row included
        settlement = await conn.fetchval("INSERT INTO periods_closed VALUES ('2026-09', gen_random_uuid(), now())"
                                         " RETURNING settlement_id")
        await conn.execute("INSERT INTO bonus_settled SELECT $1, now(), '2026-09', person, 'field_rep', 0, 0, 0, 0,"
                           " 0, 0, 0, 0, now() FROM unnest(ARRAY['fr-zero', 'fr-other']) AS person", settlement)
    finally:
        await conn.close()
    settled = crmbonus("settle", "--period", "2026-10", "--database-url", pg_url, data_dir=tmp_path)
    assert "settled 2026-10: 2 rows, total_bonus 1.00" in settled.stderr
    exported = crmbonus("export", "--period", "2026-10", "--database-url", pg_url, data_dir=tmp_path)
    assert [line.split(",")[1] for line in exported.stdout.splitlines()[1:]] == ["fr-1", "fr-adjusted"]
    older = crmbonus("export", "--period", "2026-09", "--format", "json", "--database-url", pg_url, data_dir=tmp_path)
    assert json.loads(older.stdout)["rows"] == []
    board = crmbonus("leaderboard", "--period", "2026-10", "--database-url", pg_url, data_dir=tmp_path,
                     env={"COLUMNS": "200"})
    assert "fr-1" in board.stdout and "fr-adjusted" in board.stdout and "fr-zero" not in board.stdout


def test_demo_against_a_configured_broker_without_topics_names_its_own_create_topics(
        pg_url: str, tmp_path: Path) -> None:
    with embedded_broker(tmp_path / "external", fresh=True, announce=False) as broker:
        done = crmbonus("demo", "--customers", "5", "--month", "2026-10", "--broker", broker, "--database-url",
                        pg_url, data_dir=tmp_path, check=False)
    said = " ".join(done.stderr.split())
    assert done.returncode == 2 and "crmbonus demo --create-topics" in said, said
    assert "Traceback" not in done.stderr
