"""Issue 18's burst-vs-COPY row: a burst drained by running workers against a raw COPY of the same rows.

Measured as the issue's author measures from outside, in pairs taken in turn:

- the burst: `--workers` running workers, all answering `/health` 200 (in the group,
  partitions assigned) before anything is published; the events published at once as
  `crmbonus publish` does; the drain is timed from the **first commit seen** (the first
  20-40 ms poll of `consumer_progress` after the publish started that shows an offset
  committed) to the **last** (the poll that sees every published offset committed). That
  first poll already holds a batch or more, committed before the window opens, so its
  events are left out: rate = (events - events of the first commit) / (last - first),
  the figure that does not overstate;
- the COPY: the same lines' rows (garbage and duplicate ids left out, raw.copy_records)
  COPYed with asyncpg into a logged events-shaped table (primary key + customer index),
  `batch_max` rows a transaction, as raw.copy does, on a database of its own;
- every pair on fresh workers, topics and databases; the order alternates (burst first in
  the even pairs, COPY first in the odd ones), and before each run Postgres is let settle
  (`quiesce`: autovacuum done, then a CHECKPOINT), so neither inherits the other's aftermath.

Each pair's ratio is drain rate / COPY rate; the row reports the median of the pairs'
ratios and the lowest pair.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import asyncpg
import psutil

from benchmarks import live, raw
from benchmarks.stack import Stack

METHOD = ("drain = first commit seen -> last commit (consumer_progress polled every 40 ms); "
          "rate = (events - events of the first commit) / drain; COPY: raw.copy, batch_max rows a transaction, "
          "events-shaped table, fresh database; pairs in turn, alternating which goes first, "
          "Postgres settled before each run (autovacuum done, CHECKPOINT)")


@dataclass
class CopyRun:
    """One raw COPY run and the CPU it took (Postgres, every process of it; the benchmark process)."""

    events: int
    seconds: float
    rate: float
    detail: str
    cpu_s: dict[str, float]
    rates: list[float] = field(default_factory=list)

    @classmethod
    def measure(cls, on: Stack, name: str, lines: Sequence[bytes]) -> CopyRun:
        settings = on.fresh(name)
        rows = raw.copy_records(lines, settings.topics)  # untimed
        me = psutil.Process()
        before = me.cpu_times(), live.postgres_cpu_all(settings.data_dir)
        found = raw.run_copy(settings.database_url, rows, settings.batch_max, True)
        after = me.cpu_times(), live.postgres_cpu_all(settings.data_dir)
        cpu = {"benchmark": (after[0].user + after[0].system) - (before[0].user + before[0].system),
               "postgres_all": after[1] - before[1]}
        return cls(found.events, found.seconds, found.rate, found.detail, cpu)


@dataclass
class Pair:
    run: int
    first: str  # "burst" or "copy": which of the two ran first
    burst: dict[str, Any]
    copy: dict[str, Any]
    ratio: float  # burst drain rate / COPY rate


@dataclass
class BurstCopyMeasure:
    events: int
    workers: int
    rate: float  # the median pair's drain rate (first commit -> last commit)
    rates: list[float]  # every pair's drain rate, sorted
    copy_rate: float
    copy_rates: list[float]
    ratio: float  # median of the pairs' ratios
    ratios: list[float]  # sorted
    min_ratio: float
    publish_s: float  # the median of the bursts' publishing time
    first_commit_events: float  # the median events held by the first commit seen
    first_commit_s: float  # the median time from the publish's start to the first commit seen
    #: CPU ms per 1,000 events of each part, every burst pooled (live.cpu_seconds; postgres_all
    #: counts every Postgres process, those that came and went too), and of the COPY runs per 1,000 rows
    cpu_ms_per_1000: dict[str, float]
    copy_cpu_ms_per_1000: dict[str, float]
    pairs: list[Pair]
    method: str = METHOD

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def measure(on: Stack, lines: Sequence[bytes], workers: int, pairs: int,
            note: Callable[[str], None] = lambda _text: None) -> BurstCopyMeasure:
    """`pairs` bursts of `lines` into `workers` running workers, each beside one raw COPY run."""
    done: list[Pair] = []
    for run in range(pairs):
        first = "burst" if run % 2 == 0 else "copy"
        if first == "burst":
            quiesce(on)
            burst = live.burst(on.fresh(f"bc-burst-{run}"), lines, workers)
            quiesce(on)
            copy = CopyRun.measure(on, f"bc-copy-{run}", lines)
        else:
            quiesce(on)
            copy = CopyRun.measure(on, f"bc-copy-{run}", lines)
            quiesce(on)
            burst = live.burst(on.fresh(f"bc-burst-{run}"), lines, workers)
        pair = Pair(run, first, _burst_figures(burst), asdict(copy), burst.drain_rate / copy.rate)
        note(f"  pair {run + 1}/{pairs} ({first} first): drain {_n(burst.drain_rate)}/s "
             f"(first commit {burst.first_commit_events:,} events at {burst.first_commit_s:.2f} s), "
             f"COPY {_n(copy.rate)}/s, ratio {pair.ratio:.3f}")
        done.append(pair)
    return summarize(done, len(lines), workers)


#: How long `quiesce` waits for autovacuum to finish before measuring anyway.
QUIESCE_TIMEOUT_S = 60.0


def quiesce(on: Stack) -> float:
    """Let Postgres settle before a measurement: wait while autovacuum works on what the last
    run wrote, then CHECKPOINT. Either run left the other a debt otherwise: a COPY after a burst
    measured 86,000-116,000 rows/s, on a fresh server 145,000-190,000 (the issue's author
    measured 169,000-216,000), because the burst's tables were being vacuumed and its pages
    written out beside it. Returns the seconds waited."""
    return asyncio.run(_quiesce(on.admin_url))


async def _quiesce(admin_url: str) -> float:
    began = time.monotonic()
    conn = await asyncpg.connect(admin_url)
    try:
        while time.monotonic() - began < QUIESCE_TIMEOUT_S:
            busy = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'")
            if not busy:
                break
            await asyncio.sleep(0.2)
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
    return time.monotonic() - began


def summarize(pairs: list[Pair], events: int, workers: int) -> BurstCopyMeasure:
    """The row: medians over the pairs; a pair without a ratio (one poll saw the whole drain:
    smoke sizes only) is left out of the medians."""
    ratios = sorted(pair.ratio for pair in pairs if not math.isnan(pair.ratio))
    rates = sorted(float(pair.burst["drain_rate"]) for pair in pairs if not math.isnan(pair.burst["drain_rate"]))
    copy_rates = sorted(float(pair.copy["rate"]) for pair in pairs)
    burst_cpu = _pooled([pair.burst["cpu_s"] for pair in pairs], events * len(pairs))
    copy_cpu = _pooled([pair.copy["cpu_s"] for pair in pairs], sum(int(pair.copy["events"]) for pair in pairs))
    return BurstCopyMeasure(
        events=events, workers=workers, rate=_median(rates), rates=rates, copy_rate=_median(copy_rates),
        copy_rates=copy_rates, ratio=_median(ratios), ratios=ratios, min_ratio=min(ratios, default=math.nan),
        publish_s=_median([float(pair.burst["publish_s"]) for pair in pairs]),
        first_commit_events=_median([float(pair.burst["first_commit_events"]) for pair in pairs]),
        first_commit_s=_median([float(pair.burst["first_commit_s"]) for pair in pairs]),
        cpu_ms_per_1000=burst_cpu, copy_cpu_ms_per_1000=copy_cpu, pairs=pairs,
    )


def _burst_figures(burst: live.BurstMeasure) -> dict[str, Any]:
    keep = ("events", "publish_s", "first_commit_s", "first_commit_events", "e2e_s", "drain_s", "drain_rate",
            "rate", "cpu_s", "ready_s", "rss_peak_mb")
    found = burst.as_dict()
    return {name: found[name] for name in keep}


def _pooled(cpu: list[dict[str, float]], count: int) -> dict[str, float]:
    """CPU ms per 1,000 events (or rows) of each part, summed over the runs."""
    parts = sorted({name for run in cpu for name in run})
    return {name: sum(run.get(name, 0.0) for run in cpu) / count * 1e6 if count else math.nan for name in parts}


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def _n(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.0f}"
