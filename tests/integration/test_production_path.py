"""SPEC section 11 end to end: crmbonus against a real, secured Apache Kafka (tests/apache_kafka.py).

The SASL_SSL listener (TLS with the test CA, then SCRAM-SHA-512), the security settings in the
environment as an operator would set them, every command started from an empty directory (no
`.crmbonus/`), topics that exist only when asked for. Skipped, with the reason on stderr, where
Java 17+ (and, with no cached jars, Maven) is missing: `make java-deps` installs Debian's.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import asyncpg
import psutil
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from stream.embedded import free_port
from stream.settings import Topics
from tests import apache_kafka
from tests.apache_kafka import ApacheKafka, KafkaUnavailable
from tests.examples import EXAMPLES
from tests.integration.conftest import get, read_csv, running, wait_for

_reason = apache_kafka.unavailable()
if _reason is not None:
    print(f"\n{_reason}", file=sys.stderr)  # seen with -s; pytest lists the warning in its summary
    warnings.warn(_reason, UserWarning, stacklevel=1)
    pytest.skip(_reason, allow_module_level=True)

pytestmark = pytest.mark.integration

WAIT = 90.0  # the bound of every wait below (a JVM broker and two workers on a busy 2-core machine)
MONTH = EXAMPLES / "month.jsonl"
EXPECTED = EXAMPLES / "expected_running_after_month.csv"

#: Invalid lines and the dead-letter reason each gets (the worked example itself has none).
INVALID = [
    (b'{"event_id": "broken", ', "invalid_json"),
    (b'{"event_id":"u1","event_type":"teleport","customer_id":"c1"}', "unknown_event_type"),
    (b'{"event_id":"n1","event_type":"callback","occurred_at":"2026-11-02T10:00:00",'
     b'"customer_id":"c1","telemarketer_id":"tm-1","outcome":"declined"}', "schema_violation"),
]


@pytest.fixture(scope="module")
def kafka() -> Iterator[ApacheKafka]:
    try:
        with ApacheKafka() as broker:
            yield broker
    except KafkaUnavailable as unavailable:
        print(f"\n{unavailable}", file=sys.stderr)
        pytest.skip(str(unavailable))


@pytest.fixture
def prefix() -> str:
    """Topics of the test's own on the module's broker."""
    return f"t{uuid.uuid4().hex[:8]}."


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty working directory: nothing there for crmbonus to find."""
    directory = tmp_path / "empty"
    directory.mkdir()
    return directory


def broker_url(kafka: ApacheKafka) -> str:
    return f"kafka://{kafka.sasl_ssl_bootstrap}"


def secured(kafka: ApacheKafka, prefix: str, *, password: str | None = None, database_url: str | None = None,
            broker: bool = True) -> dict[str, str]:
    """An environment with no CRMBONUS_* setting but these: SASL_SSL, SCRAM-SHA-512, the test CA."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("CRMBONUS_")}
    env.update({
        "CRMBONUS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "CRMBONUS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "CRMBONUS_KAFKA_SASL_USERNAME": kafka.username,
        "CRMBONUS_KAFKA_SASL_PASSWORD": kafka.password if password is None else password,
        "CRMBONUS_KAFKA_SSL_CAFILE": str(kafka.ca_file),
        "CRMBONUS_TOPIC_PREFIX": prefix,
    })
    if broker:
        env["CRMBONUS_BROKER"] = broker_url(kafka)
    if database_url is not None:
        env["CRMBONUS_DATABASE_URL"] = database_url
    return env


def crmbonus(*args: str, cwd: Path, env: Mapping[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stream", *args], cwd=cwd, env=dict(env), capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def start_worker(*args: str, cwd: Path, env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "stream", "worker", *args], cwd=cwd, env=dict(env),
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def stop(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM, then at most WAIT seconds; SIGKILL the whole tree if it is still there."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(WAIT)
    except subprocess.TimeoutExpired:
        for child in psutil.Process(process.pid).children(recursive=True):
            child.kill()
        process.kill()
        process.wait(10)
        raise


def ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stderr[-4000:]}"
    return done


def lag(port: int) -> dict[str, float]:
    """crmbonus_consumer_lag_messages per topic, from /metrics."""
    status, body = get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    found = {}
    for line in body.decode().splitlines():
        if line.startswith("crmbonus_consumer_lag_messages{"):
            labels, value = line.rsplit(" ", 1)
            found[labels.split('topic="', 1)[1].split('"', 1)[0]] = float(value)
    return found


async def eventually(read: Callable[[], Awaitable[Any]], holds: Callable[[Any], bool], what: str) -> Any:
    deadline = time.monotonic() + WAIT
    while not holds(found := await read()):
        assert time.monotonic() < deadline, f"after {WAIT:.0f} s, {what}: {found}"
        await asyncio.sleep(0.3)
    return found


async def admin_of(kafka: ApacheKafka) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(request_timeout_ms=10_000, **kafka.aiokafka_options("sasl_ssl"))
    await asyncio.wait_for(admin.start(), WAIT)
    return admin


async def partitions_of(kafka: ApacheKafka, names: list[str]) -> dict[str, int]:
    """Partitions per topic, of those of `names` that exist."""
    admin = await admin_of(kafka)
    try:
        existing = set(await admin.list_topics())
        described = await admin.describe_topics([name for name in names if name in existing]) if existing else []
    finally:
        await admin.close()
    return {topic["topic"]: len(topic["partitions"]) for topic in described if topic["topic"] in names}


async def dead_letters(kafka: ApacheKafka, topic: str, count: int) -> list[tuple[str, bytes]]:
    """(reason, value) of the first `count` records of the dead-letter topic, read over SASL_SSL."""
    consumer = AIOKafkaConsumer(topic, auto_offset_reset="earliest", enable_auto_commit=False,
                                **kafka.aiokafka_options("sasl_ssl"))
    found: list[tuple[str, bytes]] = []
    await asyncio.wait_for(consumer.start(), WAIT)
    try:
        deadline = time.monotonic() + WAIT
        while len(found) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                found += [(dict(r.headers)["reason"].decode(), r.value or b"") for r in records]
    finally:
        await consumer.stop()
    return found


def no_secret(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text, "a secret was printed"


# -- the whole path ------------------------------------------------------------------------------

async def test_publish_and_worker_on_sasl_ssl_from_an_empty_directory(
        kafka: ApacheKafka, prefix: str, workdir: Path, tmp_path: Path, pg_url: str) -> None:
    """publish --create-topics, then a worker (no .crmbonus/ anywhere near it): the worked example's
    bonus_running, the invalid lines on the dead-letter topic, the lag measured (and back to 0)."""
    topics = Topics.with_prefix(prefix)
    invalid = tmp_path / "invalid.jsonl"
    invalid.write_bytes(b"\n".join(raw for raw, _ in INVALID) + b"\n")
    env = secured(kafka, prefix, database_url=pg_url)

    published = ok(crmbonus("publish", "--create-topics", str(MONTH), str(invalid), cwd=workdir, env=env))
    assert f"published {9 + len(INVALID)} lines to {broker_url(kafka)}" in published.stderr
    assert await partitions_of(kafka, [*topics.inputs, topics.dead_letters]) == {
        name: 6 for name in [*topics.inputs, topics.dead_letters]}
    assert os.listdir(workdir) == []  # publish keeps nothing here

    port = free_port()
    log = tmp_path / "worker.log"
    worker = start_worker("--web-port", str(port), cwd=workdir, env=env, log=log)
    try:
        found = await eventually(lambda: running(pg_url), lambda rows: rows == read_csv(EXPECTED) or
                                 worker.poll() is not None, "bonus_running to be the worked example's")
        assert worker.poll() is None, log.read_text()[-4000:]
        assert found == read_csv(EXPECTED)
        letters = await dead_letters(kafka, topics.dead_letters, len(INVALID))
        assert sorted(letters) == sorted((reason, raw) for raw, reason in INVALID)

        # The lag reader on SASL: hold the batch's Postgres commit back, publish the month again
        # (duplicates), and the gauge shows the backlog the consumer has fetched; then it drains.
        wait_for(lambda: set(lag(port)) == set(topics.inputs) and sum(lag(port).values()) == 0,
                 "the lag gauge of each input topic at 0", WAIT)
        holder = await asyncpg.connect(pg_url)
        try:
            transaction = holder.transaction()
            await transaction.start()
            await holder.execute("LOCK TABLE consumer_progress IN ACCESS EXCLUSIVE MODE")
            ok(crmbonus("publish", str(MONTH), cwd=workdir, env=env))  # the topics exist now: no flag needed
            wait_for(lambda: sum(lag(port).values()) == 9, "the lag gauge to count the 9 messages held back", WAIT)
            await transaction.rollback()
        finally:
            await holder.close()
        wait_for(lambda: sum(lag(port).values()) == 0, "the lag gauge back at 0", WAIT)
        assert await running(pg_url) == read_csv(EXPECTED)  # duplicates change nothing
        assert stop(worker) == 0, log.read_text()[-4000:]
    finally:
        if worker.poll() is None:
            stop(worker)
    assert (workdir / ".crmbonus" / "faust").is_dir()  # Faust's data directory, made with its parents
    no_secret(log.read_text(), kafka.password)


async def test_an_aborted_transaction_is_never_processed(
        kafka: ApacheKafka, prefix: str, workdir: Path, tmp_path: Path, pg_url: str) -> None:
    """read_committed: a transactional CRM publisher's rollback never reaches Postgres."""
    from confluent_kafka import Producer

    topics = Topics.with_prefix(prefix)
    env = secured(kafka, prefix, database_url=pg_url)
    ok(crmbonus("publish", "--create-topics", "--partitions", "1", str(MONTH), cwd=workdir, env=env))
    producer = Producer({
        "bootstrap.servers": kafka.sasl_ssl_bootstrap, "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": kafka.username, "sasl.password": kafka.password,
        "ssl.ca.location": str(kafka.ca_file), "transactional.id": f"crm-{prefix}",
    })
    producer.init_transactions(WAIT)
    aborted = json.loads(MONTH.read_text().splitlines()[0]) | {"event_id": "aborted-1", "customer_id": "c7"}
    producer.begin_transaction()
    producer.produce(topics.callbacks, json.dumps(aborted).encode(), key=b"c7")
    producer.flush(WAIT)
    producer.abort_transaction(WAIT)
    committed = aborted | {"event_id": "committed-1"}
    producer.begin_transaction()
    producer.produce(topics.callbacks, json.dumps(committed).encode(), key=b"c7")
    producer.commit_transaction(WAIT)

    log = tmp_path / "worker.log"
    worker = start_worker("--web-port", str(free_port()), cwd=workdir, env=env, log=log)
    try:
        async def stored() -> list[str]:
            conn = await asyncpg.connect(pg_url)
            try:
                return [row["event_id"] for row in await conn.fetch("SELECT event_id FROM events ORDER BY 1")]
            finally:
                await conn.close()

        found = await eventually(stored, lambda ids: "committed-1" in ids or worker.poll() is not None,
                                 "the committed transaction's event to be stored")
        assert worker.poll() is None, log.read_text()[-4000:]
        assert "aborted-1" not in found and len(found) == 10  # the month's 9 and the committed one
        assert await running(pg_url) == read_csv(EXPECTED)
        assert stop(worker) == 0, log.read_text()[-4000:]
    finally:
        if worker.poll() is None:
            stop(worker)


# -- what goes wrong -------------------------------------------------------------------------------

def test_a_wrong_password_is_one_clear_line(kafka: ApacheKafka, prefix: str, workdir: Path, pg_url: str) -> None:
    wrong = "not-" + kafka.password
    env = secured(kafka, prefix, password=wrong, database_url=pg_url)
    message = (f"Kafka at {kafka.sasl_ssl_bootstrap} refused the SASL login of user '{kafka.username}' "
               "(SCRAM-SHA-512): check CRMBONUS_KAFKA_SASL_USERNAME and CRMBONUS_KAFKA_SASL_PASSWORD")
    for command in (["worker", "--web-port", str(free_port())], ["publish", str(MONTH)],
                    ["replay", str(MONTH), "--broker", broker_url(kafka)]):
        began = time.monotonic()
        done = crmbonus(*command, cwd=workdir, env=env)
        assert done.returncode == 2, (command, done.stderr[-4000:])
        assert message in " ".join(done.stderr.split()), (command, done.stderr)
        assert "Traceback" not in done.stderr, (command, done.stderr)
        no_secret(done.stdout + done.stderr, wrong, kafka.password)
        assert time.monotonic() - began < 60, command


def test_tls_and_reachability_mistakes_name_what_to_check(kafka: ApacheKafka, prefix: str, workdir: Path) -> None:
    no_ca = {**secured(kafka, prefix)}
    del no_ca["CRMBONUS_KAFKA_SSL_CAFILE"]  # the system's CAs do not know the test CA
    done = crmbonus("publish", str(MONTH), cwd=workdir, env=no_ca)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert (f"Kafka at {kafka.sasl_ssl_bootstrap} sent a TLS certificate that does not verify against the "
            "system's CAs") in done.stderr and "check CRMBONUS_KAFKA_SSL_CAFILE" in done.stderr

    done = crmbonus("publish", str(MONTH), "--broker", kafka.plaintext, cwd=workdir, env=secured(kafka, prefix))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"Kafka at {kafka.plaintext_bootstrap} dropped the TLS handshake" in done.stderr
    assert "check CRMBONUS_KAFKA_SECURITY_PROTOCOL (SASL_SSL)" in done.stderr

    closed = free_port()  # nothing listens there
    done = crmbonus("publish", str(MONTH), "--broker", f"kafka://127.0.0.1:{closed}", cwd=workdir,
                    env=secured(kafka, prefix))
    assert done.returncode == 2 and f"cannot reach Kafka at 127.0.0.1:{closed}: connection refused" in done.stderr
    no_secret(done.stdout + done.stderr, kafka.password)


def test_security_settings_without_a_broker_are_refused(kafka: ApacheKafka, prefix: str, workdir: Path) -> None:
    done = crmbonus("publish", str(MONTH), cwd=workdir, env=secured(kafka, prefix, broker=False))
    assert done.returncode == 2
    assert "apply only to a configured broker: set --broker or CRMBONUS_BROKER" in " ".join(done.stderr.split())
    assert list(workdir.iterdir()) == []  # no embedded broker was started


async def test_missing_topics_are_named_unless_created(kafka: ApacheKafka, prefix: str, workdir: Path,
                                                       pg_url: str) -> None:
    topics = Topics.with_prefix(prefix)
    everything = [*topics.inputs, topics.dead_letters]
    required = [*topics.required(quality=False), topics.dead_letters]  # no [kpi], no KPI event: no quality topic
    env = secured(kafka, prefix, database_url=pg_url)
    at = f"missing at {broker_url(kafka)}"
    for command, missing, hint in (
        (["worker", "--web-port", str(free_port())], required, "crmbonus worker --create-topics"),
        (["replay", str(MONTH)], required, "crmbonus replay --create-topics"),
        (["publish", str(MONTH)], list(topics.required(quality=False)), "crmbonus publish --create-topics"),
    ):
        done = crmbonus(*command, cwd=workdir, env=env)
        assert done.returncode == 2, (command, done.stderr[-4000:])
        said = " ".join(done.stderr.split())
        assert f"topics {', '.join(missing)} {at}" in said, (command, said)
        assert f"{hint} --partitions 6 --replication-factor -1" in said, (command, said)
        assert "Traceback" not in done.stderr
    assert await partitions_of(kafka, everything) == {}  # nothing was created by the refusals

    done = crmbonus("publish", str(MONTH), "--create-topics", "--replication-factor", "2", cwd=workdir, env=env)
    assert done.returncode == 2 and "did not create the topics" in done.stderr  # one broker: one replica at most
    assert "Traceback" not in done.stderr

    ok(crmbonus("publish", str(MONTH), "--create-topics", "--partitions", "3", cwd=workdir, env=env))
    assert await partitions_of(kafka, everything) == {name: 3 for name in everything}
    admin = await admin_of(kafka)
    try:  # -1 (the default): the broker's default.replication.factor, 1 on this one node
        described = await admin.describe_topics(everything)
    finally:
        await admin.close()
    assert all(len(partition["replicas"]) == 1 for topic in described for partition in topic["partitions"])


def test_worker_children_get_no_secret_on_their_command_lines(kafka: ApacheKafka, prefix: str, workdir: Path,
                                                              tmp_path: Path, pg_url: str) -> None:
    """`--workers 2` with --broker and --database-url given as flags: the children get them (and the
    Kafka password) through their environment; `ps` shows none of it."""
    env = secured(kafka, prefix, broker=False)
    port = free_port(2)
    log = tmp_path / "workers.log"
    parent = start_worker("--workers", "2", "--web-port", str(port), "--broker", broker_url(kafka),
                          "--database-url", pg_url, "--create-topics", cwd=workdir, env=env, log=log)
    try:
        for each in (port, port + 1):
            wait_for(lambda p=each: parent.poll() is None and get(f"http://127.0.0.1:{p}/health")[0] == 200,
                     f"worker /health on port {each}", WAIT)
        children = [child for child in psutil.Process(parent.pid).children() if "stream" in child.cmdline()]
        assert len(children) == 2
        for child in children:
            line = " ".join(child.cmdline())
            no_secret(line, kafka.password, pg_url, broker_url(kafka))
            assert "--broker" not in line and "--database-url" not in line and "--kafka" not in line, line
            assert child.environ().get("CRMBONUS_DATABASE_URL") == pg_url  # how they got it instead
        assert stop(parent) == 0, log.read_text()[-4000:]
    finally:
        if parent.poll() is None:
            stop(parent)
    no_secret(log.read_text(), kafka.password)
