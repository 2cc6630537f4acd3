"""`crmbonus replay`: publish files, run the pipeline until all of it is committed, stop.

"Committed" means committed to Postgres: the pipeline reports the next offset
of each partition only after the batch's transaction is in, and replay stops
once every partition it published to has reached the offsets it was given.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from stream import embedded
from stream.kafka import ensure_topics, publish
from stream.pipeline import BatchResult
from stream.plan import Plan
from stream.publishing import read_lines, to_outgoing
from stream.runner import run_worker
from stream.settings import Settings

Offsets = dict[tuple[str, int], int]


@dataclass
class ReplayReport:
    published: int = 0
    committed: int = 0
    stored: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    seconds: float = 0.0


@dataclass
class ReplayProgress:
    """Callbacks a front end (the CLI's progress bars) may set; all optional."""

    total: Callable[[int], None] = lambda n: None
    published: Callable[[int], None] = lambda n: None
    committed: Callable[[int], None] = lambda n: None


def replay(
    settings: Settings, plan: Plan, paths: Sequence[str | Path], progress: ReplayProgress | None = None
) -> ReplayReport:
    """Publish `paths` in order to a fresh embedded broker (or `settings.broker`) and process them."""
    progress = progress or ReplayProgress()
    lines = read_lines(paths)
    progress.total(len(lines))
    report = ReplayReport(published=len(lines))
    started = time.monotonic()
    with embedded.services(settings, fresh_broker=True) as resolved:
        if settings.broker is not None:  # a shared broker: a group of our own reads everything
            resolved = replace(resolved, group_id=f"{settings.group_id}-replay-{time.time_ns()}")
        resolved = replace(resolved, web_enabled=False)
        assert resolved.broker is not None
        broker = resolved.broker
        outgoing = [to_outgoing(line, resolved.topics) for line in lines]

        async def publish_all() -> Offsets:
            await ensure_topics(broker, resolved.topics, resolved.partitions)
            return await publish(broker, outgoing, on_sent=progress.published)

        targets = asyncio.run(publish_all())
        if targets:
            _process(resolved, plan, targets, report, progress)
    report.seconds = time.monotonic() - started
    return report


def _process(
    settings: Settings, plan: Plan, targets: Offsets, report: ReplayReport, progress: ReplayProgress
) -> None:
    def on_batch(_runtime: object, result: BatchResult) -> None:
        report.committed += result.consumed
        report.stored += result.stored
        report.duplicates += result.duplicates
        report.dead_letters += len(result.new_dead_letters)
        progress.committed(result.consumed)

    def all_committed(runtime: object) -> bool:
        committed: Offsets = runtime.committed  # type: ignore[attr-defined]
        return all(committed.get(key, 0) >= end for key, end in targets.items())

    runtime = run_worker(settings, plan, quiet=True, on_batch=on_batch, stop_when=all_committed)
    if not all_committed(runtime):
        from stream.errors import CrmbonusError

        raise CrmbonusError(
            "replay stopped before every published event was committed to Postgres "
            f"({report.committed} of {report.published}); run it again: nothing is doubled"
        )
