"""A running worker in a process of its own: burst throughput, memory, and latency at a steady rate.

The worker (`python -m benchmarks.worker`) is started and waited for (`/health` 200)
before anything is published, so these figures never include start-up. "Committed"
is read where it is true: the `consumer_progress` row that the batch's own
transaction writes. A record at offset o of a partition is committed at the first
poll that sees that partition's next offset above o.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import math
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import asyncpg
import psutil
from aiokafka import AIOKafkaProducer

from benchmarks import pyspy
from benchmarks.stack import BROKER_PIDS
from stream import embedded
from stream.kafka import ensure_topics, publish
from stream.publishing import to_outgoing
from stream.settings import Resolved, bootstrap_servers

READY_TIMEOUT_S = 90.0
POLL_S = 0.02  # commit-time resolution; latencies are over-stated by up to this much
MB = 1 << 20


# -- the worker process ------------------------------------------------------------------

class RssSampler(threading.Thread):
    """Samples a process's resident set size every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.sample()
            self.stopped.wait(self.interval)

    def sample(self) -> int:
        try:
            rss = int(self.process.memory_info().rss)
        except psutil.Error:
            return 0
        self.samples.append((time.monotonic(), rss))
        return rss

    @property
    def peak(self) -> int:
        return max((rss for _, rss in self.samples), default=0)


@dataclass
class WorkerProcess:
    settings: Resolved
    process: subprocess.Popen[bytes]
    log_path: Path
    sampler: RssSampler

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.web_port}"

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=2) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as error:
            return int(error.code), ""
        except OSError:
            return 0, ""

    def wait_ready(self) -> float:
        started = time.monotonic()
        while self.get("/health")[0] != 200:
            if self.process.poll() is not None or time.monotonic() - started > READY_TIMEOUT_S:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"the benchmark worker did not become healthy; {self.log_path} ends:\n{tail}")
            time.sleep(0.1)
        return time.monotonic() - started


@dataclass
class Workers:
    """The worker processes of one measurement, all in one consumer group (`crmbonus worker --workers N`)."""

    members: list[WorkerProcess]

    @property
    def first(self) -> WorkerProcess:
        return self.members[0]

    @property
    def pids(self) -> list[int]:
        return [member.process.pid for member in self.members]

    def wait_ready(self) -> float:
        """Wait until every member answers `/health` 200 in one pass: all in the group, each with
        partitions assigned and none rebalancing (a member healthy alone before the next joined
        would be rebalancing again when that one's join reaches it)."""
        started = time.monotonic()
        while True:
            for member in self.members:
                member.wait_ready()
            if all(member.get("/health")[0] == 200 for member in self.members):
                return time.monotonic() - started
            if time.monotonic() - started > READY_TIMEOUT_S:
                raise RuntimeError(f"the benchmark workers were never all healthy at once in {READY_TIMEOUT_S:.0f} s; "
                                   f"see {self.first.settings.data_dir}/worker-*.log")

    def failed(self) -> WorkerProcess | None:
        return next((member for member in self.members if member.process.poll() is not None), None)

    def sample_rss(self) -> int:
        """The largest worker's RSS now (the target is per worker)."""
        return max(member.sampler.sample() for member in self.members)

    @property
    def peak_rss(self) -> int:
        return max(member.sampler.peak for member in self.members)

    def metrics(self) -> list[str]:
        return [member.get("/metrics")[1] for member in self.members]


@contextlib.contextmanager
def worker_processes(settings: Resolved, count: int) -> Iterator[Workers]:
    """`count` workers in the group of `settings`, each serving HTTP on a free port."""
    with contextlib.ExitStack() as stack:
        yield Workers([stack.enter_context(worker_process(replace(settings, web_port=embedded.free_port()), index))
                       for index in range(count)])


@contextlib.contextmanager
def worker_process(settings: Resolved, index: int = 0) -> Iterator[WorkerProcess]:
    """Start `python -m benchmarks.worker` on these settings; stop it (SIGTERM) after."""
    asyncio.run(ensure_topics(settings.broker, settings.topics, settings.partitions))
    log_path = settings.data_dir / f"worker-{settings.group_id}-{index}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.worker", "--broker", settings.broker,
             "--database-url", settings.database_url, "--topic-prefix", settings.topic_prefix,
             "--group-id", settings.group_id, "--web-port", str(settings.web_port),
             "--data-dir", str(settings.data_dir), "--batch-max", str(settings.batch_max),
             *([] if settings.broker_embedded else ["--configured-broker"])],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    sampler = RssSampler(process.pid)
    sampler.start()
    worker = WorkerProcess(settings, process, log_path, sampler)
    try:
        yield worker
    finally:
        sampler.stopped.set()
        embedded.stop_process(process, 20)


# -- CPU of each part of the stack ---------------------------------------------------------

def stack_processes(worker_pids: list[int], data_dir: Path, broker: str) -> dict[str, list[psutil.Process]]:
    """The processes of each component: workers, Postgres (postmaster and backends), the broker
    (tansu, or Apache Kafka's JVM), benchmark."""
    parts: dict[str, list[psutil.Process]] = {"worker": [psutil.Process(pid) for pid in worker_pids],
                                              "benchmark": [psutil.Process()]}
    with contextlib.suppress(OSError, ValueError, psutil.Error):
        postmaster = psutil.Process(int((data_dir / "pg" / "postmaster.pid").read_text().split()[0]))
        parts["postgres"] = [postmaster, *postmaster.children(recursive=True)]
    if broker in BROKER_PIDS:
        name, pid = BROKER_PIDS[broker]
        with contextlib.suppress(psutil.Error):
            parts[name] = [psutil.Process(pid)]
        return parts
    port = broker.rsplit(":", 1)[1]
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or ())
        if "--listener-url" in cmdline and f":{port}" in cmdline:
            parts["tansu"] = [process]
    return parts


def postgres_cpu_all(data_dir: Path) -> float:
    """Every Postgres process's CPU seconds so far: the postmaster, its live children, and the
    children it has reaped (backends and autovacuum workers that came and went). `cpu_seconds`
    counts only the processes alive when its parts were listed; the difference of two readings
    of this one misses none (it includes the benchmark's own polling connection)."""
    with contextlib.suppress(OSError, ValueError, psutil.Error):
        postmaster = psutil.Process(int((data_dir / "pg" / "postmaster.pid").read_text().split()[0]))
        own = postmaster.cpu_times()
        total = own.user + own.system + own.children_user + own.children_system
        for child in postmaster.children():
            with contextlib.suppress(psutil.Error):
                times = child.cpu_times()
                total += times.user + times.system
        return total
    return math.nan


def cpu_seconds(parts: dict[str, list[psutil.Process]]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for name, processes in parts.items():
        total = 0.0
        for process in processes:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
        totals[name] = total
    return totals


# -- committed offsets, read from Postgres ---------------------------------------------------

class Progress:
    """Polls `consumer_progress` of one group: when each partition's next offset moved, and where to."""

    def __init__(self, database_url: str, group_id: str) -> None:
        self.database_url = database_url
        self.group_id = group_id
        self.history: dict[tuple[str, int], tuple[list[float], list[int]]] = {}
        self.current: dict[tuple[str, int], int] = {}
        #: (poll time, offsets committed in all) at every poll that saw a partition move
        self.timeline: list[tuple[float, int]] = []

    async def poll(self, conn: asyncpg.Connection) -> None:
        rows = await conn.fetch('SELECT topic, "partition", next_offset FROM consumer_progress WHERE group_id = $1',
                                self.group_id)
        now = time.monotonic()
        moved = False
        for row in rows:
            key = (row["topic"], row["partition"])
            if self.current.get(key) != row["next_offset"]:
                self.current[key] = row["next_offset"]
                times, offsets = self.history.setdefault(key, ([], []))
                times.append(now)
                offsets.append(row["next_offset"])
                moved = True
        if moved:
            self.timeline.append((now, self.committed))

    @property
    def committed(self) -> int:
        return sum(self.current.values())  # fresh topics: offsets start at 0

    def first_commit(self) -> tuple[float, int] | None:
        """The first poll that saw anything committed, and how many offsets it saw committed
        (a batch or more: everything the workers committed before that poll)."""
        return next(((at, total) for at, total in self.timeline if total > 0), None)

    def reached(self, targets: dict[tuple[str, int], int]) -> bool:
        return all(self.current.get(key, 0) >= end for key, end in targets.items())

    def committed_at(self, key: tuple[str, int], offset: int) -> float | None:
        times, offsets = self.history.get(key, ([], []))
        index = bisect.bisect_right(offsets, offset)  # first next_offset > offset
        return times[index] if index < len(times) else None


# -- burst: all at once into a running worker ------------------------------------------------

@dataclass
class BurstMeasure:
    events: int
    publish_s: float
    e2e_s: float
    rate: float
    rss_ready_mb: float
    rss_at_mb: dict[str, float]  # "25%", "50%", "75%", "100%" of the events committed
    rss_peak_mb: float
    cpu_s: dict[str, float]  # CPU seconds of each process during the burst
    ready_s: float
    workers: int = 1
    rates: list[float] = field(default_factory=list)  # every run's, when repeated (benchmarks.run)
    py_spy: dict[str, float] = field(default_factory=dict)  # share of the worker's samples per place
    #: The drain, first commit seen -> last commit: when the first poll saw a commit (seconds after
    #: the publish started) and how many offsets it saw committed; `drain_rate` counts the events
    #: committed after it, (events - first_commit_events) / drain_s (NaN when one poll saw them all).
    first_commit_s: float = math.nan
    first_commit_events: int = 0
    drain_s: float = math.nan
    drain_rate: float = math.nan

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


async def _burst(workers: Workers, lines: Sequence[bytes], timeout: float) -> BurstMeasure:
    settings = workers.first.settings
    progress = Progress(settings.database_url, settings.group_id)
    marks = {"25%": 0.25, "50%": 0.5, "75%": 0.75, "100%": 1.0}
    rss_at: dict[str, float] = {}
    parts = stack_processes(workers.pids, settings.data_dir, settings.broker)
    conn = await asyncpg.connect(settings.database_url)
    try:
        rss_ready = workers.sample_rss()
        cpu_before = {**cpu_seconds(parts), "postgres_all": postgres_cpu_all(settings.data_dir)}
        outgoing = [to_outgoing(raw, settings.topics) for raw in lines]
        started = time.monotonic()
        publishing = asyncio.create_task(publish(settings.broker, outgoing))
        targets: dict[tuple[str, int], int] | None = None
        while True:
            await progress.poll(conn)
            for mark, share in marks.items():
                if mark not in rss_at and progress.committed >= share * len(lines):
                    rss_at[mark] = workers.sample_rss() / MB
            if targets is None and publishing.done():
                targets = publishing.result()
                publish_s = time.monotonic() - started
            if targets is not None and progress.reached(targets):
                break
            if time.monotonic() - started > timeout or workers.failed() is not None:
                raise RuntimeError(f"burst: {progress.committed} of {len(lines)} committed after "
                                   f"{time.monotonic() - started:.0f} s; see {settings.data_dir}/worker-*.log")
            await asyncio.sleep(POLL_S * 2)
        done = max(times[-1] for times, _ in progress.history.values())
        cpu_after = {**cpu_seconds(parts), "postgres_all": postgres_cpu_all(settings.data_dir)}
    finally:
        await conn.close()
    for mark in marks:  # marks passed between two polls of the last batch
        rss_at.setdefault(mark, workers.sample_rss() / MB)
    first_at, first_events = progress.first_commit() or (done, len(lines))
    drain_s = done - first_at
    return BurstMeasure(
        events=len(lines), publish_s=publish_s, e2e_s=done - started, rate=len(lines) / (done - started),
        rss_ready_mb=rss_ready / MB, rss_at_mb=rss_at, rss_peak_mb=workers.peak_rss / MB,
        cpu_s={name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after}, ready_s=0.0,
        first_commit_s=first_at - started, first_commit_events=first_events, drain_s=drain_s,
        drain_rate=(len(lines) - first_events) / drain_s if drain_s > 0 else math.nan,
    )


def burst(settings: Resolved, lines: Sequence[bytes], workers: int = 1, timeout: float = 600.0,
          py_spy: Path | None = None) -> BurstMeasure:
    """Publish `lines` as fast as `crmbonus publish` does into running workers; time to the last commit.

    With `py_spy`, the first worker is sampled during the burst and the summary lands in the figures.
    """
    with worker_processes(settings, workers) as running:
        ready_s = running.wait_ready()
        spy = pyspy.start(running.first.process.pid, py_spy) if py_spy else None
        try:
            measure = asyncio.run(_burst(running, lines, timeout))
        finally:
            if spy is not None:
                pyspy.stop(spy)
        measure.ready_s = ready_s
        measure.workers = workers
        measure.rss_peak_mb = running.peak_rss / MB
    if py_spy is not None and py_spy.exists():
        measure.py_spy = pyspy.summarize(py_spy)
    return measure


# -- latency at a steady rate ----------------------------------------------------------------

@dataclass
class LatencyMeasure:
    target_rate: float
    achieved_rate: float
    seconds: float
    events: int
    measured: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    histogram_p50_ms: float  # the worker's own crmbonus_processing_latency_seconds, interpolated
    histogram_p99_ms: float
    rss_peak_mb: float
    rss_start_mb: float
    rss_end_mb: float
    cpu_s: dict[str, float] = field(default_factory=dict)
    #: p50 / p99 (ms) of the events sent in each successive window of the run: does latency build up?
    by_window_ms: list[tuple[float, float, float]] = field(default_factory=list)
    #: from the worker's /metrics: batches, mean batch size, mean batch duration (ms)
    batches: float = 0.0
    mean_batch: float = 0.0
    mean_batch_ms: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


async def _steady(workers: Workers, lines: Sequence[bytes], rate: float, timeout: float) -> LatencyMeasure:
    settings = workers.first.settings
    progress = Progress(settings.database_url, settings.group_id)
    parts = stack_processes(workers.pids, settings.data_dir, settings.broker)
    outgoing = [to_outgoing(raw, settings.topics) for raw in lines]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(settings.broker), acks="all", linger_ms=5)
    await producer.start()
    conn = await asyncpg.connect(settings.database_url)
    sent: list[tuple[str, float, asyncio.Future[object]]] = []
    stop_polling = asyncio.Event()

    async def poller() -> None:
        while not stop_polling.is_set():
            await progress.poll(conn)
            await asyncio.sleep(POLL_S)

    polling = asyncio.create_task(poller())
    try:
        rss_start = workers.sample_rss()
        cpu_before = cpu_seconds(parts)
        started = time.monotonic()
        index = 0
        while index < len(outgoing):
            due = min(len(outgoing), int((time.monotonic() - started) * rate) + 1)
            while index < due:
                message = outgoing[index]
                future = await producer.send(message.topic, message.value, key=message.key)
                sent.append((message.topic, time.monotonic(), future))
                index += 1
            await asyncio.sleep(0.005)
        publish_s = time.monotonic() - started
        metadata = await asyncio.gather(*(future for _, _, future in sent))
        targets: dict[tuple[str, int], int] = {}
        for meta in metadata:
            key = (meta.topic, meta.partition)  # type: ignore[attr-defined]
            targets[key] = max(targets.get(key, 0), meta.offset + 1)  # type: ignore[attr-defined]
        while not progress.reached(targets):
            if time.monotonic() - started > timeout or workers.failed() is not None:
                raise RuntimeError(f"latency: {progress.committed} of {len(lines)} committed; "
                                   f"see {settings.data_dir}/worker-*.log")
            await asyncio.sleep(POLL_S)
        cpu_after = cpu_seconds(parts)
    finally:
        stop_polling.set()
        await polling
        await conn.close()
        await producer.stop()
    timeline: list[tuple[float, float]] = []
    for (_topic, sent_at, _), meta in zip(sent, metadata, strict=True):
        committed = progress.committed_at((meta.topic, meta.partition), meta.offset)  # type: ignore[attr-defined]
        if committed is not None:
            timeline.append((sent_at - started, committed - sent_at))
    latencies = sorted(latency for _, latency in timeline)
    window = max(1.0, publish_s / 10)
    by_window = []
    for start in range(int(publish_s / window) + 1):
        part = sorted(latency for at, latency in timeline if start * window <= at < (start + 1) * window)
        if part:
            by_window.append((round(start * window, 1), quantile(part, 0.5) * 1000, quantile(part, 0.99) * 1000))
    texts = workers.metrics()
    batches = histogram_sum_count(texts, "crmbonus_batch_size_events")
    durations = histogram_sum_count(texts, "crmbonus_batch_duration_seconds")
    return LatencyMeasure(
        target_rate=rate, achieved_rate=len(lines) / publish_s, seconds=publish_s, events=len(lines),
        measured=len(latencies), p50_ms=quantile(latencies, 0.5) * 1000, p90_ms=quantile(latencies, 0.9) * 1000,
        p99_ms=quantile(latencies, 0.99) * 1000, max_ms=latencies[-1] * 1000 if latencies else float("nan"),
        histogram_p50_ms=histogram_quantile(texts, "crmbonus_processing_latency_seconds", 0.5) * 1000,
        histogram_p99_ms=histogram_quantile(texts, "crmbonus_processing_latency_seconds", 0.99) * 1000,
        rss_peak_mb=workers.peak_rss / MB, rss_start_mb=rss_start / MB,
        rss_end_mb=workers.sample_rss() / MB,
        cpu_s={name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after},
        by_window_ms=by_window, batches=batches[1], mean_batch=batches[0] / max(batches[1], 1),
        mean_batch_ms=durations[0] / max(durations[1], 1) * 1000,
    )


def steady(settings: Resolved, lines: Sequence[bytes], rate: float, workers: int = 1,
           timeout: float = 300.0) -> LatencyMeasure:
    """Publish `lines` at a paced `rate` per second into running workers; publish -> commit latency."""
    with worker_processes(settings, workers) as running:
        running.wait_ready()
        return asyncio.run(_steady(running, lines, rate, timeout))


def quantile(ordered: Sequence[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


_BUCKET = re.compile(r'^(\w+)_bucket\{le="([^"]+)"\} ([0-9.e+-]+)$')


def histogram_quantile(texts: Sequence[str], name: str, q: float) -> float:
    """Prometheus' histogram_quantile over the workers' histograms summed: linear interpolation
    inside the bucket holding the rank."""
    counts: dict[float, float] = {}
    for text in texts:
        for line in text.splitlines():
            match = _BUCKET.match(line)
            if match and match.group(1) == name:
                bound = float(match.group(2))
                counts[bound] = counts.get(bound, 0.0) + float(match.group(3))
    buckets = sorted(counts.items())
    if not buckets or buckets[-1][1] == 0:
        return float("nan")
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / max(count - lower_count, 1e-9)
        lower_bound, lower_count = bound, count
    return float("nan")


def histogram_sum_count(texts: Sequence[str], name: str) -> tuple[float, float]:
    values = {"sum": 0.0, "count": 0.0}
    for text in texts:
        for line in text.splitlines():
            for suffix in values:
                if line.startswith(f"{name}_{suffix} "):
                    values[suffix] += float(line.split()[1])
    return values["sum"], values["count"]
