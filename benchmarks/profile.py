"""`python -m benchmarks.profile`: where the time of a batch goes, phase by phase.

Drives `Pipeline.handle` directly (no Faust, no broker) against a fresh embedded
Postgres with batches of generated events, through a pool of ONE connection so the
Postgres backend doing the work is known. Every phase of the batch is timed three
ways: wall clock, this process's CPU, and that backend's CPU (from /proc, via
psutil). Wall minus both CPUs is waiting: round trips, fsync at commit.

    python -m benchmarks.profile                       # 30,000 demo events, batches of 2,000
    python -m benchmarks.profile --kind history-1000   # customers of 1,000 events each
    python -m benchmarks.profile --cprofile 25         # and the top 25 functions (cProfile)

The phases are found by wrapping module functions at run time; nothing in stream/ changes.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import io
import json
import pstats
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table

from benchmarks import data
from benchmarks.stack import embedded_stack
from schemas.messages import Message
from stream import db, ledger, pipeline, settlement, store
from stream.memory import settle_garbage_collector
from stream.pipeline import Pipeline
from stream.plan import Plan, load_plan
from stream.publishing import to_outgoing
from stream.settings import Topics


@dataclass
class Phase:
    calls: int = 0
    wall: float = 0.0
    cpu: float = 0.0  # this process
    pg_cpu: float = 0.0  # the Postgres backend


class Phases:
    """Wraps functions so that each call adds its wall, client CPU and server CPU to a named phase."""

    def __init__(self) -> None:
        self.phases: dict[str, Phase] = {}
        self.backend: psutil.Process | None = None
        self.undo: list[Callable[[], None]] = []

    def _pg(self) -> float:
        if self.backend is None:
            return 0.0
        times = self.backend.cpu_times()
        return float(times.user + times.system)

    def wrap_async(self, owner: Any, attribute: str, name: str) -> None:
        original = getattr(owner, attribute)
        phase = self.phases.setdefault(name, Phase())

        @functools.wraps(original)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            wall, cpu, pg = time.perf_counter(), time.process_time(), self._pg()
            try:
                return await original(*args, **kwargs)
            finally:
                phase.calls += 1
                phase.wall += time.perf_counter() - wall
                phase.cpu += time.process_time() - cpu
                phase.pg_cpu += self._pg() - pg

        setattr(owner, attribute, timed)
        self.undo.append(lambda: setattr(owner, attribute, original))

    def wrap_sync(self, owner: Any, attribute: str, name: str) -> None:
        """Hot functions (per customer, per event): wall clock only, which is CPU here."""
        original = getattr(owner, attribute)
        phase = self.phases.setdefault(name, Phase())

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            wall = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - wall
                phase.calls += 1
                phase.wall += elapsed
                phase.cpu += elapsed

        setattr(owner, attribute, timed)
        self.undo.append(lambda: setattr(owner, attribute, original))

    def restore(self) -> None:
        for undo in reversed(self.undo):
            undo()


class _TimedDecoder:
    """Stands in for `store._decoder` to time the re-decoding of stored events."""

    def __init__(self, decoder: Any, phase: Phase) -> None:
        self.decoder, self.phase = decoder, phase

    def decode(self, raw: bytes) -> Any:
        started = time.perf_counter()
        try:
            return self.decoder.decode(raw)
        finally:
            elapsed = time.perf_counter() - started
            self.phase.calls += 1
            self.phase.wall += elapsed
            self.phase.cpu += elapsed


def instrument(phases: Phases) -> None:
    """The batch's phases, in the order `Pipeline._commit` runs them (see stream/pipeline.py)."""
    phases.wrap_async(Pipeline, "handle", "handle (whole batch)")
    phases.wrap_sync(pipeline, "split", "decode + validate incoming (schemas.decode)")
    phases.wrap_async(settlement, "share_settlement_lock", "settlement lock (shared)")
    phases.wrap_async(store, "insert_events", "insert events (COPY; staged if some are stored)")
    phases.wrap_async(store, "insert_dead_letters", "insert dead letters")
    phases.wrap_async(ledger, "recompute_customers", "recompute customers (whole)")
    phases.wrap_async(ledger, "_take_customers", "  lock customers, bump versions")
    phases.wrap_async(store, "load_customer_events", "  load history of customers not cached")
    decode = phases.phases.setdefault("    of which: re-decode stored events (msgspec)", Phase())
    original_decoder = store._decoder
    store._decoder = _TimedDecoder(original_decoder, decode)  # type: ignore[assignment]
    phases.undo.append(lambda: setattr(store, "_decoder", original_decoder))
    # The pure core where the ledger calls it (stream/diff.py), which both builds see: a wrapper of
    # rules.customer_outcome would time nothing in the compiled one (setup.py), whose diff and
    # rules call each other directly.
    phases.wrap_sync(ledger, "sort_customers", "  sort customers (stream.diff, pure)")
    phases.wrap_sync(ledger, "diff_batch", "  rules and diff (stream.diff.diff_batch, pure)")
    phases.wrap_async(ledger, "_rows_in_force", "  credits and facts in force (SELECT)")
    phases.wrap_async(ledger, "_insert_rows", "  insert credits and facts (COPY)")
    phases.wrap_async(ledger, "_move_leads", "  lead years, gold, prize (SPEC 13)")
    phases.wrap_async(ledger, "_apply_deltas", "  credit_totals deltas (upsert)")
    phases.wrap_async(ledger, "refresh_running", "  bonus_running refresh")
    phases.wrap_async(settlement, "carry_adjustments", "carry adjustments (SPEC 7)")
    phases.wrap_async(store, "save_progress", "save progress")


def messages(lines: Sequence[bytes], topics: Topics, partitions: int = 6) -> list[Message]:
    """The lines as the worker would see them: topic by event type, partition by key, offsets in order."""
    next_offset: dict[tuple[str, int], int] = {}
    out = []
    for raw in lines:
        outgoing = to_outgoing(raw, topics)
        partition = zlib.crc32(outgoing.key or raw) % partitions
        offset = next_offset.get((outgoing.topic, partition), 0)
        next_offset[(outgoing.topic, partition)] = offset + 1
        out.append(Message(outgoing.topic, partition, offset, outgoing.key, raw, time.time()))
    return out


async def drive(database_url: str, batches: list[list[Message]], phases: Phases,
                profiler: cProfile.Profile | None, plan: Plan) -> tuple[float, float]:
    pool = await db.create_pool(database_url, min_size=1, max_size=1)
    try:
        await db.migrate(pool)
        phases.backend = psutil.Process(await pool.fetchval("SELECT pg_backend_pid()"))
        handler = Pipeline(pool, plan, "profile")
        settle_garbage_collector()  # as the worker does once started
        cpu, started = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        for batch in batches:
            await handler.handle(batch)
        if profiler:
            profiler.disable()
        return time.perf_counter() - started, time.process_time() - cpu
    finally:
        await pool.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--kind", default="demo", choices=["demo", "history-10", "history-100", "history-1000"])
    parser.add_argument("--cprofile", type=int, metavar="N", default=0, help="also print cProfile's top N functions")
    parser.add_argument("--plan", default=None, help="the plan file (default: the shipped default plan; "
                        "stream/plans/demo.toml enables every programme)")
    parser.add_argument("--json", metavar="PATH", default=None, help="also write every phase's figures as JSON "
                        "(seconds and µs per event: wall, Python CPU, Postgres CPU), for before/after comparisons")
    parser.add_argument("--v1-data", action="store_true", help="the version-1 event mix (no upgrades, feedback, "
                        "reviews or the year's earlier hand-offs)")
    args = parser.parse_args(argv)
    lines = (data.demo_events(args.events, programmes=not args.v1_data) if args.kind == "demo"
             else data.history_events(args.events, int(args.kind.split("-")[1])))
    topics = Topics.with_prefix("crm.")
    msgs = messages(lines, topics)
    batches = [msgs[i:i + args.batch] for i in range(0, len(msgs), args.batch)]
    phases = Phases()
    instrument(phases)
    profiler = cProfile.Profile() if args.cprofile else None
    try:
        with embedded_stack() as stack:
            settings = stack.fresh("profile")
            wall, cpu = asyncio.run(drive(settings.database_url, batches, phases, profiler, load_plan(args.plan)))
    finally:
        phases.restore()
    show(phases, len(lines), len(batches), wall, cpu, args)
    if args.json:
        dump(args.json, phases, len(lines), wall, cpu)
    if profiler:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(args.cprofile)
        print(text.getvalue())
    return 0


def dump(path: str, phases: Phases, events: int, wall: float, cpu: float) -> None:
    """The phases as JSON: per phase its calls, seconds and µs per event (wall, Python CPU, Postgres CPU)."""
    figures = {name: {"calls": phase.calls, "wall_s": phase.wall, "cpu_s": phase.cpu, "pg_cpu_s": phase.pg_cpu,
                      "cpu_us_per_event": phase.cpu / events * 1e6, "pg_us_per_event": phase.pg_cpu / events * 1e6}
               for name, phase in phases.phases.items()}
    with open(path, "w") as out:
        json.dump({"events": events, "wall_s": wall, "python_cpu_s": cpu, "phases": figures}, out, indent=1)


def show(phases: Phases, events: int, batches: int, wall: float, cpu: float, args: argparse.Namespace) -> None:
    whole = phases.phases["handle (whole batch)"]
    top = ("decode + validate incoming (schemas.decode)", "settlement lock (shared)",
           "insert events (COPY; staged if some are stored)", "insert dead letters", "recompute customers (whole)",
           "carry adjustments (SPEC 7)", "save progress")
    rest = Phase(wall=whole.wall - sum(phases.phases[name].wall for name in top),
                 cpu=whole.cpu - sum(phases.phases[name].cpu for name in top),
                 pg_cpu=whole.pg_cpu - sum(phases.phases[name].pg_cpu for name in top))
    inner = [name for name in phases.phases if name.startswith("  ") and not name.startswith("    ")]
    recompute = phases.phases["recompute customers (whole)"]
    ledger_rest = Phase(wall=recompute.wall - sum(phases.phases[name].wall for name in inner),
                        cpu=recompute.cpu - sum(phases.phases[name].cpu for name in inner),
                        pg_cpu=recompute.pg_cpu - sum(phases.phases[name].pg_cpu for name in inner))
    rows = [*phases.phases.items()]
    glue = ("  ledger glue (diffing sets, deltas)", ledger_rest)
    rows.insert(list(phases.phases).index("carry adjustments (SPEC 7)"), glue)
    rows.append(("pool acquire + BEGIN/COMMIT + glue", rest))
    table = Table(title=f"Pipeline.handle, {events:,} {args.kind} events in {batches} batches of {args.batch:,}: "
                        f"{events / whole.wall:,.0f} events/s in the handler ({wall:.2f} s wall, "
                        f"{cpu:.2f} s CPU in Python)", title_justify="left")
    for column in ("phase", "calls", "wall s", "µs/event", "% of batch", "Python CPU s", "Postgres CPU s",
                   "waiting s"):
        table.add_column(column, justify="left" if column == "phase" else "right")
    for name, phase in rows:
        if name == "handle (whole batch)":
            continue
        share = phase.wall / whole.wall * 100
        table.add_row(name, str(phase.calls or ""), f"{phase.wall:.2f}", f"{phase.wall / events * 1e6:.1f}",
                      f"{share:.1f}", f"{phase.cpu:.2f}", f"{phase.pg_cpu:.2f}",
                      f"{max(0.0, phase.wall - phase.cpu - phase.pg_cpu):.2f}")
    table.add_row("[bold]whole batch[/]", str(whole.calls), f"{whole.wall:.2f}", f"{whole.wall / events * 1e6:.1f}",
                  "100", f"{whole.cpu:.2f}", f"{whole.pg_cpu:.2f}",
                  f"{max(0.0, whole.wall - whole.cpu - whole.pg_cpu):.2f}")
    Console(width=170).print(table)


if __name__ == "__main__":
    raise SystemExit(main())
