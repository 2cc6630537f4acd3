"""`python -m benchmarks.run`: the table of issue 6, measured in one run on the embedded stack.

    python -m benchmarks.run                  # default sizes, about 2.5 minutes on 2 cores
    python -m benchmarks.run --smoke          # every measurement tiny, for CI (< 2 minutes)
    python -m benchmarks.run --json out.json  # also write every figure as JSON

Every measurement runs on a database and topic prefix of its own, on one embedded
tansu broker and one embedded Postgres started under a temporary directory. Figures
are printed, never asserted: a slow machine still exits 0.
"""

from __future__ import annotations

import argparse
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

from benchmarks import data, faust_ceiling, live, raw, replayed
from benchmarks.report import Results, render
from benchmarks.stack import embedded_stack
from stream.plan import load_plan

MEASUREMENTS = ("e2e", "single", "consume", "faust", "copy", "naive", "replay", "history", "burst", "latency")
HISTORY_LENGTHS = (10, 100, 1000)


@dataclasses.dataclass(frozen=True)
class Sizes:
    events: int
    naive_events: int
    history_events: int
    burst_events: int
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
    parser.add_argument("--latency-rate", type=float, default=2000.0, help="steady publish rate, events/s")
    parser.add_argument("--latency-seconds", type=float, help="how long to publish at that rate (default 20; smoke 3)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="worker processes for end to end, burst, latency and history, as "
                             "`crmbonus worker --workers N` (default: one per core)")
    parser.add_argument("--repeats", type=int,
                        help="runs of end to end and raw COPY, taken in turn, the medians kept (default 5; "
                             "smoke 1): a one-second run varies by 10-20%% on a shared machine, and each "
                             "e2e / COPY ratio then compares two runs made under the same conditions")
    parser.add_argument("--smoke", action="store_true", help="every measurement tiny; for CI, asserts nothing")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(MEASUREMENTS)}")
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
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    results = Results(meta=machine(sizes, smoke=args.smoke))
    plan = load_plan(None)
    started = time.monotonic()

    def step(name: str, work: Callable[[], Any]) -> None:
        if name.split("-")[0] not in only:
            return
        print(f"[{time.monotonic() - started:6.1f}s] {name} ...", file=sys.stderr, flush=True)
        results.figures[name] = work().as_dict()

    events = data.demo_events(sizes.events)
    with embedded_stack(args.data_dir) as stack:
        e2e_settings = stack.fresh("e2e")
        copy_settings = stack.fresh("copy")
        rows = raw.copy_records(events, e2e_settings.topics)

        def e2e_run(run: int) -> live.BurstMeasure:
            return live.burst(e2e_settings if run == 0 else stack.fresh(f"e2e-{run}"), events, sizes.workers)

        def copy_run(_run: int) -> raw.RawMeasure:
            return raw.run_copy(copy_settings.database_url, rows, e2e_settings.batch_max, True)

        if {"e2e", "copy"} <= only:
            print(f"[{time.monotonic() - started:6.1f}s] e2e and copy, in turn ...", file=sys.stderr, flush=True)
            e2e, copy, ratios = paired_runs(sizes.repeats, e2e_run, copy_run)
            results.figures["e2e"], results.figures["copy"] = e2e.as_dict(), copy.as_dict()
            results.figures["e2e-copy"] = {"ratio": statistics.median(ratios), "ratios": ratios}
        else:
            step("e2e", lambda: median_run(sizes.repeats, e2e_run))
            step("copy", lambda: median_run(sizes.repeats, copy_run))
        step("single", lambda: live.burst(stack.fresh("single"), events, 1))
        if "e2e" not in only and only & {"consume", "faust"}:  # the raw readers read what e2e published
            raw.run_publish(e2e_settings, events)
        step("consume", lambda: raw.run_consume(stack.broker, e2e_settings.topics.inputs, len(events)))
        step("faust", lambda: faust_ceiling.measure(stack.broker, list(e2e_settings.topics.inputs), len(events)))
        step("copy-bare", lambda: raw.run_copy(copy_settings.database_url, rows, e2e_settings.batch_max, False))
        naive = stack.fresh("naive", batch_max=1)
        step("naive", lambda: live.burst(naive, events[:sizes.naive_events]))
        for length in HISTORY_LENGTHS:
            step(f"history-{length}", functools.partial(
                live.burst, stack.fresh(f"history{length}"),
                data.history_events(max(sizes.history_events, length), length), sizes.workers))
        burst_events = data.demo_events(sizes.burst_events)
        step("burst", lambda: live.burst(stack.fresh("burst"), burst_events, sizes.workers, py_spy=args.py_spy))
        steady_events = data.demo_events(int(sizes.latency_rate * sizes.latency_seconds), month="2026-10")
        step("latency", lambda: live.steady(stack.fresh("latency"), steady_events, sizes.latency_rate,
                                            sizes.workers))
        # last: it runs the worker inside this process, which then keeps the worker's
        # collector settings (stream/memory.py); the steps above publish from a plain process
        step("replay", lambda: replayed.measure(events, stack.fresh("replay"), plan))
    results.meta["seconds"] = round(time.monotonic() - started, 1)
    render(results)
    if args.json:
        args.json.write_text(json.dumps(dataclasses.asdict(results), indent=2, default=str) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


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
