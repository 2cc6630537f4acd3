"""Publish lines, run the pipeline until all of it is committed, then stop (or serve on).

Used by `crmbonus replay` and `crmbonus demo`. "Committed" means committed to
Postgres: the pipeline reports the next offset of each partition only after the
batch's transaction is in, and the run is caught up once every partition it
published to has reached the offsets the broker gave back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from stream import embedded
from stream.errors import CrmbonusError
from stream.kafka import ensure_topics_of, publish, quality_topic_required
from stream.pipeline import BatchResult
from stream.plan import Plan
from stream.plan_versions import Plans
from stream.publishing import read_lines, to_outgoing
from stream.runner import run_worker
from stream.runtime import Runtime
from stream.settings import Resolved, Settings

Offsets = dict[tuple[str, int], int]


@dataclass
class ReplayReport:
    published: int = 0
    committed: int = 0
    stored: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    seconds: float = 0.0
    broker: str = ""


@dataclass
class ReplayProgress:
    """Callbacks a front end (the CLI's progress bars) may set; all optional."""

    total: Callable[[int], None] = lambda n: None
    published: Callable[[int], None] = lambda n: None
    committed: Callable[[int], None] = lambda n: None


def replay(
    settings: Settings, plan: Plan | Plans, paths: Sequence[str | Path], progress: ReplayProgress | None = None
) -> ReplayReport:
    """`crmbonus replay`: the files, in order, through a fresh embedded broker (or `settings.broker`)."""
    return process([line.raw for line in read_lines(paths)], settings, plan, progress)


def process(
    lines: Sequence[bytes],
    settings: Settings,
    plan: Plan | Plans,
    progress: ReplayProgress | None = None,
    *,
    then: Callable[[Runtime, ReplayReport], Awaitable[None]] | None = None,
    keep_serving: bool = False,
    command: str = "replay",
) -> ReplayReport:
    """Publish `lines` and process them; `then` runs inside the worker once all is committed.

    With no broker configured a fresh embedded one is started; it is announced to
    other crmbonus processes only when the worker keeps serving afterwards. A configured
    broker must have the topics, unless `settings.create_topics` (the error names the
    `crmbonus <command> --create-topics` that makes them).
    """
    progress = progress or ReplayProgress()
    progress.total(len(lines))
    started = time.monotonic()
    with embedded.services(settings, fresh_broker=True, announce=keep_serving) as resolved:
        if settings.broker is not None:  # a shared broker: a group of our own reads everything
            resolved = replace(resolved, group_id=f"{settings.group_id}-replay-{time.time_ns()}")
        report = process_resolved(lines, resolved, plan, progress, then=then, keep_serving=keep_serving,
                                  started=started, command=command)
    report.seconds = time.monotonic() - started  # the embedded services' stop included
    return report


def process_resolved(
    lines: Sequence[bytes],
    settings: Resolved,
    plan: Plan | Plans,
    progress: ReplayProgress | None = None,
    *,
    then: Callable[[Runtime, ReplayReport], Awaitable[None]] | None = None,
    keep_serving: bool = False,
    started: float | None = None,
    command: str = "replay",
) -> ReplayReport:
    """`process` on services already running, in the consumer group of `settings` (the benchmark's)."""
    progress = progress or ReplayProgress()
    started = time.monotonic() if started is None else started
    report = ReplayReport(published=len(lines), broker=settings.broker)
    settings = replace(settings, web_enabled=keep_serving)
    targets = asyncio.run(_publish(settings, plan, lines, progress, command))
    if targets or keep_serving:
        _run(settings, plan, targets, report, progress, started, then, keep_serving)
    report.seconds = time.monotonic() - started
    return report


async def _publish(settings: Resolved, plan: Plan | Plans, lines: Sequence[bytes], progress: ReplayProgress,
                   command: str) -> Offsets:
    """The quality topic must exist on a configured broker when the plan has `[kpi]` or a line goes there."""
    outgoing = [to_outgoing(raw, settings.topics) for raw in lines]
    quality = quality_topic_required(plan) or any(message.topic == settings.topics.quality for message in outgoing)
    await ensure_topics_of(settings, command=command, quality_required=quality)
    return await publish(settings.broker, outgoing, on_sent=progress.published, security=settings.kafka)


def _run(
    settings: Resolved,
    plan: Plan | Plans,
    targets: Offsets,
    report: ReplayReport,
    progress: ReplayProgress,
    started: float,
    then: Callable[[Runtime, ReplayReport], Awaitable[None]] | None,
    keep_serving: bool,
) -> None:
    def on_batch(_runtime: Runtime, result: BatchResult) -> None:
        report.committed += result.consumed
        report.stored += result.stored
        report.duplicates += result.duplicates
        report.dead_letters += len(result.new_dead_letters)
        progress.committed(result.consumed)

    def caught_up(runtime: Runtime) -> bool:
        return all(runtime.committed.get(key, 0) >= end for key, end in targets.items())

    async def finish(runtime: Runtime) -> None:
        report.seconds = time.monotonic() - started
        if then is not None:
            await then(runtime, report)

    runtime = run_worker(settings, plan, quiet=not keep_serving, on_batch=on_batch, until=caught_up,
                         then=finish, keep_serving=keep_serving)
    if runtime.finishing is not None and runtime.finishing.done() and runtime.finishing.exception():
        raise runtime.finishing.exception()  # type: ignore[misc]
    if not keep_serving and not caught_up(runtime):
        raise CrmbonusError(
            "stopped before every published event was committed to Postgres "
            f"({report.committed} of {report.published}); run it again: nothing is doubled"
        )
