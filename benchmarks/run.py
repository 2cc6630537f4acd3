"""`python -m benchmarks.run`: the table of issue 6, measured in one run on the embedded stack,
raw consume, end to end, the burst and burst-vs-COPY on a real Apache Kafka broker beside it.

    python -m benchmarks.run                  # default sizes, about 7 minutes on 2 cores
    python -m benchmarks.run --smoke          # every measurement tiny, for CI (about 1.7 minutes)
    python -m benchmarks.run --json out.json  # also write every figure as JSON
    python -m benchmarks.run --brokers tansu  # the compared rows on tansu only (no Apache Kafka started)
    python -m benchmarks.run --only burst-copy  # issue 18's row alone: 5 bursts of 100,000 beside 5 COPYs

Every measurement runs on a database and topic prefix of its own, on one embedded
tansu broker and one embedded Postgres started under a temporary directory. Raw
consume, end to end, the burst and burst-vs-COPY (issue 18, benchmarks/burst_copy.py)
run on every broker of --brokers: tansu, and an Apache Kafka broker
(tests/apache_kafka.py) started once for the run, on the same Postgres; without Java
those rows say why they were skipped. Figures are printed,
never asserted: a slow machine still exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from benchmarks import burst_copy, data, faust_ceiling, live, raw, recompute, replayed
from benchmarks.report import Results, render
from benchmarks.stack import Broker, Stack, apache_kafka, embedded_stack, kafka_label, tansu
from stream.plan import DEMO_PLAN_PATH, load_plan
from stream.settings import Resolved

MEASUREMENTS = ("e2e", "single", "consume", "faust", "copy", "naive", "replay", "history", "burst", "latency",
                "programmes", "recompute", "burst-copy")
HISTORY_LENGTHS = (10, 100, 1000)
#: The measurements made on every broker of --brokers; every other one runs on tansu only.
COMPARED = ("consume", "e2e", "burst", "burst-copy")
BROKERS = ("tansu", "kafka")


@dataclasses.dataclass(frozen=True)
class Sizes:
    events: int
    naive_events: int
    history_events: int
    burst_events: int
    burst_copy_events: int
    latency_rate: float
    latency_seconds: float
    workers: int
    repeats: int


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, Sizes]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, help="events of the end-to-end run (default 30000; smoke 300)")
    parser.add_argument("--naive-events", type=int, help="events of the naive baseline (default 2000; smoke 100)")
    parser.add_argument("--history-events", type=int,
                        help="events per history run, customers of 10/100/1000 events (default: --events)")
    parser.add_argument("--burst-events", type=int,
                        help="events published at once into a running worker, for RSS (default 10 x --events)")
    parser.add_argument("--burst-copy-events", type=int,
                        help="events of each burst of burst-copy, drained beside a raw COPY of them "
                             "(default 100000; smoke 2000); --repeats pairs")
    parser.add_argument("--latency-rate", type=float, default=2000.0, help="steady publish rate, events/s")
    parser.add_argument("--latency-seconds", type=float, help="how long to publish at that rate (default 20; smoke 3)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="worker processes for end to end, burst, latency and history, as "
                             "`crmbonus worker --workers N` (default: one per core)")
    parser.add_argument("--repeats", type=int,
                        help="runs of end to end and raw COPY, and pairs of burst-copy, taken in turn, the "
                             "medians kept (default 5; "
                             "smoke 1): a one-second run varies by 10-20%% on a shared machine, and each "
                             "e2e / COPY ratio then compares two runs made under the same conditions")
    parser.add_argument("--smoke", action="store_true", help="every measurement tiny; for CI, asserts nothing")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(MEASUREMENTS)}")
    parser.add_argument("--brokers", default=",".join(BROKERS),
                        help=f"comma-separated brokers of {', '.join(COMPARED)} (default {','.join(BROKERS)}; "
                             "kafka: an Apache Kafka broker started for the run, skipped without Java); "
                             "the other measurements run on tansu")
    parser.add_argument("--py-spy", type=Path, metavar="PATH",
                        help="sample the burst's worker with py-spy into PATH (raw stacks) and summarise it")
    parser.add_argument("--data-dir", type=Path, help="keep the stack's data and logs here (default: a temp dir)")
    args = parser.parse_args(argv)
    events = args.events or (300 if args.smoke else 30_000)
    sizes = Sizes(
        events=events,
        naive_events=args.naive_events or (100 if args.smoke else 2_000),
        history_events=args.history_events or events,
        burst_events=args.burst_events or 10 * events,
        burst_copy_events=args.burst_copy_events or (2_000 if args.smoke else 100_000),
        latency_rate=args.latency_rate,
        latency_seconds=args.latency_seconds or (3.0 if args.smoke else 20.0),
        workers=args.workers,
        repeats=args.repeats or (1 if args.smoke else 5),
    )
    return args, sizes


def main(argv: list[str] | None = None) -> int:
    args, sizes = parse(argv)
    only = set(args.only.split(",")) if args.only else set(MEASUREMENTS)
    if unknown := only - set(MEASUREMENTS):
        print(f"unknown measurement(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    asked = set(args.brokers.split(","))
    if asked - set(BROKERS) or not asked:
        print(f"--brokers {args.brokers}: a comma-separated subset of {','.join(BROKERS)}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    results = Results(meta=machine(sizes, smoke=args.smoke))
    plan = load_plan(None)
    started = time.monotonic()

    def note(text: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {text}", file=sys.stderr, flush=True)

    def keep(name: str, figures: dict[str, Any], broker: Broker | None) -> None:
        """Record a figure with the broker it was measured on (None: none, a raw COPY)."""
        results.figures[name] = {"broker": broker.label if broker else None, **figures}

    def step(name: str, work: Callable[[Stack], Any], broker: Broker | None) -> None:
        """Measure `name` (if --only has it) on `broker`'s stack; a broker that could not start: skipped."""
        if measurement(name) not in only:
            return
        if broker is not None and broker.stack is None:
            keep(name, {"skipped": broker.skipped}, broker)
            return
        note(f"{name} ...")
        keep(name, work(broker.stack if broker is not None and broker.stack else stack).as_dict(), broker)

    events = data.demo_events(sizes.events)
    with embedded_stack(args.data_dir) as stack, contextlib.ExitStack() as opened:
        home = tansu(stack)  # the rows measured on tansu only, whatever --brokers says
        compared: list[Broker] = []  # the brokers of raw consume, end to end and the burst
        for key in BROKERS:
            if key not in asked or not only & set(COMPARED):
                continue
            if key == "tansu":
                compared.append(home)
                continue
            note(f"starting {kafka_label()} (once, excluded from the figures) ...")
            kafka = opened.enter_context(apache_kafka(stack))
            if kafka.stack is None:
                note(f"{kafka.label}: skipped: {kafka.skipped}")
            else:
                note(f"{kafka.label}: answered in {kafka.startup_s:.1f} s; warming it up (excluded) ...")
                kafka.warm_up_s = warm_up(kafka.stack, events, len(events) if args.smoke else WARM_UP_RECORDS,
                                           0 if args.smoke else WARM_UP_BURSTS, sizes.workers)
            compared.append(kafka)
        results.meta["brokers"] = {broker.key: broker.as_dict() for broker in compared}
        copy_settings = stack.fresh("copy")
        rows = raw.copy_records(events, copy_settings.topics)  # the topic column: names alike on every broker
        published: dict[str, Resolved] = {}  # per broker, the first e2e run's settings: raw consume reads them

        def copy_run(_run: int) -> raw.RawMeasure:
            return raw.run_copy(copy_settings.database_url, rows, copy_settings.batch_max, True)

        paired = False  # a raw COPY run beside end to end on some broker
        for broker in compared:
            suffix = broker.suffix
            if broker.stack is None:
                step("e2e" + suffix, _unused, broker)
                if {"e2e", "copy"} <= only:
                    keep("e2e-copy" + suffix, {"skipped": broker.skipped}, broker)
                continue
            if "e2e" not in only:
                continue
            e2e_run = functools.partial(_e2e_run, broker.stack, events, sizes.workers, published, broker.key)
            if "copy" in only:
                note(f"e2e{suffix} and copy, in turn ...")
                e2e, copy, ratios = paired_runs(sizes.repeats, e2e_run, copy_run)
                keep("e2e" + suffix, e2e.as_dict(), broker)
                keep("copy" + suffix, {**copy.as_dict(), "paired_with": "e2e" + suffix}, None)
                keep("e2e-copy" + suffix, {"ratio": statistics.median(ratios), "ratios": ratios}, broker)
                paired = True
            else:
                step("e2e" + suffix, functools.partial(_median_run, sizes.repeats, e2e_run), broker)
        if not paired:  # COPY alone, once
            step("copy", functools.partial(_median_run, sizes.repeats, copy_run), None)
        step("single", lambda on: live.burst(on.fresh("single"), events, 1), home)
        if "programmes" in only:
            note("programmes: end to end under the demo plan (every SPEC 13 programme) and the default, in turn ...")
            with_all, without, ratios = paired_runs(
                sizes.repeats, functools.partial(_plan_run, stack, events, sizes.workers, "prog-on", DEMO_PLAN_PATH),
                functools.partial(_plan_run, stack, events, sizes.workers, "prog-off", None))
            keep("programmes", {**with_all.as_dict(), "ratio": statistics.median(ratios), "ratios": ratios,
                                "rate_without": without.rate}, home)
        for broker in compared:
            step("consume" + broker.suffix, functools.partial(_consume, events, published, broker.key), broker)
        step("faust", lambda on: faust_ceiling.measure(
            on.broker, list(_published(on, events, published, "tansu").topics.inputs), len(events)), home)
        step("copy-bare", lambda _stack: raw.run_copy(copy_settings.database_url, rows, copy_settings.batch_max,
                                                      False), None)
        step("naive", lambda on: live.burst(on.fresh("naive", batch_max=1), events[:sizes.naive_events]), home)
        for length in HISTORY_LENGTHS if "history" in only else ():
            history = data.history_events(max(sizes.history_events, length), length)
            step(f"history-{length}", functools.partial(_burst, f"history{length}", history, sizes.workers), home)
        burst_events = data.demo_events(sizes.burst_events) if "burst" in only else []
        burst_databases: dict[str, str] = {}  # broker key -> the burst's database, for the recomputation
        for broker in compared:
            py_spy = args.py_spy if broker is home else None  # --py-spy samples tansu's burst
            step("burst" + broker.suffix, functools.partial(_burst, "burst", burst_events, sizes.workers,
                                                            py_spy=py_spy, keep=burst_databases,
                                                            key=broker.key), broker)
        burst_copy_events = data.demo_events(sizes.burst_copy_events) if "burst-copy" in only else []
        for broker in compared:
            step("burst-copy" + broker.suffix, lambda on: burst_copy.measure(
                on, burst_copy_events, sizes.workers, sizes.repeats, note), broker)
        if "recompute" in only and "tansu" in burst_databases:
            note("recompute: the tansu burst's database under another plan (telemarketer share 0.40) ...")
            keep("recompute", recompute.measure(burst_databases["tansu"], recompute.candidate(plan)).as_dict(), home)
        if any(broker.stack is not None for broker in compared if broker is not home):
            note("stopping Apache Kafka (its rows are done) ...")
        opened.close()  # the rows below are tansu's: no idle JVM beside them
        steady_events = data.demo_events(int(sizes.latency_rate * sizes.latency_seconds), month="2026-10")
        step("latency", lambda on: live.steady(on.fresh("latency"), steady_events, sizes.latency_rate,
                                               sizes.workers), home)
        # last: it runs the worker inside this process, which then keeps the worker's
        # collector settings (stream/memory.py); the steps above publish from a plain process
        step("replay", lambda on: replayed.measure(events, on.fresh("replay"), plan), home)
    results.meta["seconds"] = round(time.monotonic() - started, 1)
    render(results)
    if args.json:
        args.json.write_text(json.dumps(dataclasses.asdict(results), indent=2, default=str) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def measurement(name: str) -> str:
    """The measurement of --only that a figure's name belongs to: its longest prefix in MEASUREMENTS
    ("burst-copy-kafka" is burst-copy's, "burst-kafka" burst's, "history-10" history's)."""
    return max((found for found in MEASUREMENTS if name == found or name.startswith(found + "-")), key=len)


#: Records a just-launched Apache Kafka is sent before anything is measured (`warm_up`), and the
#: bursts through running workers that follow them.
WARM_UP_RECORDS = 100_000
WARM_UP_BURSTS = 3


def warm_up(on: Stack, events: list[bytes], records: int = WARM_UP_RECORDS, bursts: int = WARM_UP_BURSTS,
            workers: int = 2) -> float:
    """Publish the end-to-end events and read them back until `records` went through, then drain
    `bursts` bursts of them through `workers` running workers, all untimed: a production broker is
    a long-running JVM, this one was just launched. Its JIT compiles each request path under load:
    after the publishing and reading alone, the compiler threads still took 2-8 ms per 1,000
    events of every burst (`/proc/<pid>/task`: as much as the request handlers), since a
    consumer group's fetches and offset commits had not run yet; after three bursts, 1-2 ms
    (measured). And a partition's first produce requests wait for it to load. The seconds it took."""
    began = time.monotonic()
    for round_ in range(max(1, -(-records // max(1, len(events))))):
        settings = on.fresh(f"warm-up-{round_}")
        raw.run_publish(settings, events)
        raw.run_consume(on.broker, list(settings.topics.inputs), len(events), settings.partitions)
    for round_ in range(bursts):
        live.burst(on.fresh(f"warm-up-burst-{round_}"), events, workers)
    return time.monotonic() - began


def _unused(_stack: Stack) -> Any:
    raise AssertionError("a skipped step is never measured")


def _median_run(repeats: int, measure: Callable[[int], R], _on: Stack) -> R:
    return median_run(repeats, measure)


def _burst(name: str, lines: list[bytes], workers: int, on: Stack, py_spy: Path | None = None,
           keep: dict[str, str] | None = None, key: str = "") -> live.BurstMeasure:
    settings = on.fresh(name)
    if keep is not None:
        keep[key] = settings.database_url
    return live.burst(settings, lines, workers, py_spy=py_spy)


def _plan_run(on: Stack, events: list[bytes], workers: int, name: str, plan: Path | None,
              run: int) -> live.BurstMeasure:
    """End to end on fresh workers, topics and database, the workers under `plan` (None: the default)."""
    return live.burst(on.fresh(f"{name}-{run}", plan_path=None if plan is None else str(plan)), events, workers)


def _e2e_run(on: Stack, events: list[bytes], workers: int, published: dict[str, Resolved], key: str,
             run: int) -> live.BurstMeasure:
    """One end-to-end run on fresh workers, topics and database; the first one's are kept for raw consume."""
    settings = on.fresh("e2e" if run == 0 else f"e2e-{run}")
    if run == 0:
        published[key] = settings
    return live.burst(settings, events, workers)


def _published(on: Stack, events: list[bytes], published: dict[str, Resolved], key: str) -> Resolved:
    """The settings of topics holding `events` on this broker: the first e2e run's, or published now
    as `crmbonus publish` does (when --only leaves end to end out)."""
    if key not in published:
        published[key] = on.fresh("e2e")
        raw.run_publish(published[key], events)
    return published[key]


def _consume(events: list[bytes], published: dict[str, Resolved], key: str, on: Stack) -> raw.RawMeasure:
    settings = _published(on, events, published, key)
    return raw.run_consume(on.broker, list(settings.topics.inputs), len(events), settings.partitions)


class Rated(Protocol):
    rate: float
    rates: list[float]


R = TypeVar("R", bound=Rated)
S = TypeVar("S", bound=Rated)


def median_run(repeats: int, measure: Callable[[int], R]) -> R:
    """Measure `repeats` times; keep the run with the median rate, noting every run's rate."""
    return _median([measure(run) for run in range(repeats)])


def paired_runs(repeats: int, first: Callable[[int], R], second: Callable[[int], S]) -> tuple[R, S, list[float]]:
    """Run `first` and `second` in turn, `repeats` times, alternating which goes first: the
    median run of each, and every pair's ratio of rates, sorted.

    This machine's speed drifts by 10-20% within a minute (a slow run is slow in every
    process: the workers, Postgres and the publisher all spend more CPU on the same work).
    Two runs made one right after the other see the same machine, so the median of the
    pairs' ratios is steadier than the ratio of two medians measured minutes apart.
    """
    pairs = [_in_turn(run, first, second) for run in range(repeats)]
    ratios = sorted(a.rate / b.rate for a, b in pairs)
    return _median([a for a, _ in pairs]), _median([b for _, b in pairs]), ratios


def _in_turn(run: int, first: Callable[[int], R], second: Callable[[int], S]) -> tuple[R, S]:
    """One pair, in alternating order: whichever runs second inherits the other's aftermath
    (Postgres flushing its pages, the workers exiting), so neither always does."""
    if run % 2 == 0:
        a = first(run)
        return a, second(run)
    b = second(run)
    return first(run), b


def _median(runs: list[R]) -> R:
    """The run with the median rate (of an even number, the lower of the middle two)."""
    ordered = sorted(runs, key=lambda found: found.rate)
    chosen = ordered[(len(ordered) - 1) // 2]
    chosen.rates = [found.rate for found in ordered]
    return chosen


def machine(sizes: Sizes, smoke: bool) -> dict[str, Any]:
    import aiokafka
    import asyncpg
    import faust

    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "faust": faust.__version__,
        "aiokafka": aiokafka.__version__,
        "asyncpg": asyncpg.__version__,
        "smoke": smoke,
        "sizes": dataclasses.asdict(sizes),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


if __name__ == "__main__":
    sys.exit(main())
