"""crmbonus itself through `stream.replay.process_resolved`: publish, then run the worker until all is committed.

It publishes everything first and then starts the worker, so its wall time is
publish + worker start-up + processing. Start-up (the Faust worker joining the group,
until the first batch is in hand) is not throughput and is reported on its own; the
rate counts the rest, from the first publish to the last commit.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field

from schemas.messages import Message
from stream.pipeline import BatchResult, Pipeline
from stream.plan import Plan
from stream.replay import ReplayProgress, process_resolved
from stream.settings import Resolved


@dataclass
class Batch:
    started: float
    ended: float
    size: int


@dataclass
class ReplayMeasure:
    events: int
    batch_max: int
    publish_s: float
    startup_s: float  # publish done -> first batch in the pipeline's hands
    startup_to_first_commit_s: float  # publish done -> first batch committed
    process_s: float  # first batch in hand -> last batch committed
    e2e_s: float  # first publish -> last commit, start-up excluded
    rate: float  # events / e2e_s
    process_rate: float  # events / process_s: the worker alone
    batches: int
    mean_batch: float
    committed: int
    stored: int
    duplicates: int
    dead_letters: int
    batch_ms_p50: float = 0.0
    batch_ms_max: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@contextlib.contextmanager
def timed_batches() -> Iterator[list[Batch]]:
    """Record when each `Pipeline.handle` call starts and ends (the pipeline itself is not changed)."""
    batches: list[Batch] = []
    original = Pipeline.handle

    async def handle(self: Pipeline, batch: Sequence[Message]) -> BatchResult:
        started = time.monotonic()
        result = await original(self, batch)
        batches.append(Batch(started, time.monotonic(), len(batch)))
        return result

    Pipeline.handle = handle  # type: ignore[method-assign]
    try:
        yield batches
    finally:
        Pipeline.handle = original  # type: ignore[method-assign]


def measure(lines: Sequence[bytes], settings: Resolved, plan: Plan) -> ReplayMeasure:
    """Replay `lines` with `settings` (a fresh database and topic prefix) and time its phases."""
    published = 0
    publish_done = first_commit = 0.0

    def on_published(n: int) -> None:
        nonlocal published, publish_done
        published += n
        if published >= len(lines):
            publish_done = time.monotonic()

    def on_committed(_n: int) -> None:
        nonlocal first_commit
        if not first_commit:
            first_commit = time.monotonic()

    progress = ReplayProgress(published=on_published, committed=on_committed)
    with timed_batches() as batches:
        started = time.monotonic()
        report = process_resolved(lines, settings, plan, progress)
    if not batches:
        raise RuntimeError("the worker processed no batch")
    first_in_hand, last_commit = batches[0].started, batches[-1].ended
    publish_s = publish_done - started
    startup_s = first_in_hand - publish_done
    e2e_s = (last_commit - started) - startup_s
    process_s = last_commit - first_in_hand
    durations = sorted(b.ended - b.started for b in batches)
    return ReplayMeasure(
        events=len(lines),
        batch_max=settings.batch_max,
        publish_s=publish_s,
        startup_s=startup_s,
        startup_to_first_commit_s=first_commit - publish_done,
        process_s=process_s,
        e2e_s=e2e_s,
        rate=len(lines) / e2e_s,
        process_rate=len(lines) / process_s if process_s > 0 else float("nan"),
        batches=len(batches),
        mean_batch=sum(b.size for b in batches) / len(batches),
        committed=report.committed,
        stored=report.stored,
        duplicates=report.duplicates,
        dead_letters=report.dead_letters,
        batch_ms_p50=durations[len(durations) // 2] * 1000,
        batch_ms_max=durations[-1] * 1000,
    )
