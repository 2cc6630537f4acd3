"""The stacks the benchmark runs on: an embedded tansu broker and Postgres, and beside them a real
Apache Kafka broker on the same Postgres; fresh names per measurement.

Every measurement gets a database and a topic prefix of its own, so no measurement
reads or writes what another left behind, while the brokers and the Postgres
server (and their start-up time) are shared by the whole run.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from stream import embedded
from stream.settings import Resolved

#: The process id of each non-embedded broker by its URL, for the CPU figures (benchmarks/live.py).
BROKER_PIDS: dict[str, tuple[str, int]] = {}


def with_database(url: str, name: str) -> str:
    """The same server URL with another database name."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@dataclass
class Stack:
    data_dir: Path
    broker: str
    admin_url: str
    names: list[str] = field(default_factory=list)
    #: The embedded tansu broker (its consumer-group timing), or a configured one (production timing).
    broker_embedded: bool = True
    #: Added to every database and group name: "" on tansu, "-kafka" on Apache Kafka (one Postgres for both).
    suffix: str = ""

    def fresh(self, name: str, **overrides: object) -> Resolved:
        """Settings on a new, empty database `bench_<name><suffix>` and topic prefix `<name>.` of this stack."""
        database = f"bench_{name}{self.suffix}".replace("-", "_")
        if database in self.names:
            raise ValueError(f"measurement name {name!r} used twice in one run")
        self.names.append(database)
        asyncio.run(_create_database(self.admin_url, database))
        settings = Resolved(
            broker=self.broker,
            database_url=with_database(self.admin_url, database),
            topic_prefix=f"{name}.",
            data_dir=self.data_dir,
            group_id=f"bench-{name}{self.suffix}",
            web_enabled=False,
            # the embedded stack's consumer-group timing, or production's on a configured broker (stream/runtime.py)
            broker_embedded=self.broker_embedded,
        )
        return replace(settings, **overrides)  # type: ignore[arg-type]

    def on(self, broker: str, suffix: str) -> Stack:
        """This stack's Postgres (and names) with a configured broker instead of tansu."""
        return replace(self, broker=broker, broker_embedded=False, suffix=suffix)


async def _create_database(admin_url: str, database: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{database}"')
        await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()


@contextlib.contextmanager
def embedded_stack(data_dir: Path | None = None) -> Iterator[Stack]:
    """A fresh tansu broker and a Postgres under a temporary directory (removed afterwards)."""
    owned = data_dir is None
    root = Path(tempfile.mkdtemp(prefix="crmbonus-bench-")) if data_dir is None else data_dir
    try:
        with embedded.embedded_broker(root, fresh=True, announce=False) as broker, \
                embedded.embedded_postgres(root) as admin_url:
            yield Stack(root, broker, admin_url)
    finally:
        if owned:
            shutil.rmtree(root, ignore_errors=True)


@dataclass
class Broker:
    """One broker the compared rows run on: tansu, or Apache Kafka (or why it could not be had)."""

    key: str  # as `--brokers` names it
    label: str  # as the table names it
    stack: Stack | None
    skipped: str | None = None  # why there is no stack
    startup_s: float | None = None  # launch to first answer, excluded from every figure
    warm_up_s: float | None = None  # publishing, reading and draining events before the first figure, excluded

    @property
    def suffix(self) -> str:
        """Of its figures' names: "" for tansu (the names of before), "-kafka" for Apache Kafka."""
        return "" if self.key == "tansu" else f"-{self.key}"

    def as_dict(self) -> dict[str, object]:
        return {"label": self.label, "broker": self.stack.broker if self.stack else None,
                "embedded": self.stack.broker_embedded if self.stack else None,
                "skipped": self.skipped, "startup_s": self.startup_s, "warm_up_s": self.warm_up_s}


def tansu(stack: Stack) -> Broker:
    return Broker("tansu", "tansu", stack)


def kafka_label() -> str:
    try:
        from tests.apache_kafka import KAFKA_VERSION
    except Exception:  # no source tree's tests/ or deploy/kafka/pom.xml: the version is unknown
        return "Apache Kafka"
    return f"Apache Kafka {KAFKA_VERSION}"


@contextlib.contextmanager
def apache_kafka(stack: Stack) -> Iterator[Broker]:
    """A real Apache Kafka broker (tests/apache_kafka.py: KRaft, one node, PLAINTEXT) beside `stack`'s
    Postgres, started once, stopped on exit; or, when it cannot run here, a Broker saying why.

    Its working directory is `<data dir>/apache-kafka`, emptied first (so that `--data-dir` keeps
    its log afterwards, never its topics for the next run).
    """
    label = kafka_label()
    try:
        from tests import apache_kafka as ak
    except Exception as error:  # whatever stops the import, the rows say it
        yield Broker("kafka", label, None, skipped=f"tests/apache_kafka.py not importable ({error})")
        return
    reason = ak.unavailable()
    if reason is not None:
        yield Broker("kafka", label, None, skipped=reason.removeprefix("Apache Kafka tier skipped: "))
        return
    workdir = stack.data_dir / "apache-kafka"
    shutil.rmtree(workdir, ignore_errors=True)
    kafka = ak.ApacheKafka(workdir, heap=ak.STANDALONE_HEAP, heap_min=ak.STANDALONE_HEAP)  # Kafka's own heap
    started = time.monotonic()
    try:
        kafka.start()
    except (ak.KafkaUnavailable, ak.KafkaError) as error:
        kafka.close()
        print(f"Apache Kafka did not start: {error}", file=sys.stderr)
        yield Broker("kafka", label, None, skipped=f"did not start: {str(error).splitlines()[0]}")
        return
    try:
        BROKER_PIDS[kafka.plaintext] = ("kafka", kafka.pid or 0)
        yield Broker("kafka", label, stack.on(kafka.plaintext, "-kafka"), startup_s=time.monotonic() - started)
    finally:
        BROKER_PIDS.pop(kafka.plaintext, None)
        kafka.close()
