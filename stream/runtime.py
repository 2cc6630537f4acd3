"""A worker's state at run time, shared by the consumer, the web pages and the timers.

Free of Faust and of Kafka clients: the Faust app (stream/app.py) and the Kafka
adapter (stream/consumer.py) hand it what they see, and anything else (the tests, a
`replay`'s progress) reads it without starting either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import asyncpg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from schemas.messages import Message
from stream import db, ledger
from stream.metrics import Metrics
from stream.pipeline import BatchResult, Pipeline
from stream.plan import Plan
from stream.plan_changes import apply_plan_changes
from stream.plan_versions import Plans, as_plans
from stream.settings import Resolved

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GroupTiming:
    """Consumer-group timing (seconds). On tansu, joining a group takes half the session timeout."""

    session_timeout: float
    heartbeat_interval: float
    rebalance_timeout: float


#: Embedded broker: measured 2 s to join (Faust's defaults, 60 s, take 30 s).
EMBEDDED_TIMING = GroupTiming(session_timeout=3.0, heartbeat_interval=0.5, rebalance_timeout=6.0)
#: A real Kafka cluster: a dead worker's partitions move after 10 s, as Kafka itself defaults to.
PRODUCTION_TIMING = GroupTiming(session_timeout=10.0, heartbeat_interval=3.0, rebalance_timeout=60.0)


@dataclass
class Runtime:
    """What the consumer, the web pages and the timers share: the settings, the plan, and once
    started, the pipeline."""

    settings: Resolved
    #: the plan versions in force (SPEC §12); a single `Plan` is the one version for every period
    plan: Plan | Plans
    pool: asyncpg.Pool | None = None
    pipeline: Pipeline | None = None
    metrics: Metrics = field(default_factory=Metrics)
    committed: dict[tuple[str, int], int] = field(default_factory=dict)
    listeners: list[Callable[[BatchResult], None]] = field(default_factory=list)
    consuming: bool = False  # partitions assigned at least once
    rebalancing: bool = False
    finishing: asyncio.Task[None] | None = None  # what `run_worker(then=...)` runs once caught up
    #: why the worker stopped itself (the plans changed under it), for the command's exit message
    fatal: str | None = None

    def __post_init__(self) -> None:
        for topic in self.settings.topics.inputs:  # a series per topic from the start; measured every 5 s
            self.metrics.lag.labels(topic)

    def stop_with(self, reason: str) -> None:
        """Stop this worker process for `reason` (SIGTERM, as an operator would); `run_worker` then
        exits with it as an error."""
        logger.error("%s", reason)
        self.fatal = reason
        os.kill(os.getpid(), signal.SIGTERM)

    @property
    def timing(self) -> GroupTiming:
        return EMBEDDED_TIMING if self.settings.broker_embedded else PRODUCTION_TIMING

    async def open_database(self) -> None:
        """Connect and migrate; the CLI calls it before Faust starts so that errors come first."""
        if self.pool is not None:
            return
        self.pool = await db.create_pool(self.settings.database_url, max_size=4)
        await db.migrate(self.pool)
        plans = as_plans(self.plan)
        async with self.pool.acquire() as conn, conn.transaction():
            await ledger.rebuild_if_pending(conn, plans)  # a migration may ask for it
        async with self.pool.acquire() as conn, conn.transaction():
            with recompute_progress() as progress:
                change = await apply_plan_changes(conn, plans, progress)  # the plans may have changed
        if change.periods or change.years:
            logger.warning("recomputed %d customer(s) of %s under the plans now in force",
                           change.customers, ", ".join(change.periods) or "no period")
        self.pipeline = Pipeline(self.pool, plans, self.settings.group_id, change.generation)
        self.pipeline.on_retry = self.metrics.retries.inc
        async with self.pool.acquire() as conn:  # where this group got to before, for the lag gauge
            rows = await conn.fetch('SELECT topic, "partition", next_offset FROM consumer_progress'
                                    " WHERE group_id = $1", self.settings.group_id)
        self.committed.update({(r["topic"], r["partition"]): r["next_offset"] for r in rows})

    async def close_database(self) -> None:
        if self.pool is not None:
            pool, self.pool = self.pool, None
            await asyncio.wait_for(pool.close(), 10)

    def batch_done(self, result: BatchResult, batch: Sequence[Message]) -> None:
        """Called after each committed batch: progress for `replay`, metrics, tests."""
        self.committed.update(result.next_offsets)
        self.metrics.observe_batch(result, [message.timestamp for message in batch])
        for listener in self.listeners:
            listener(result)

    def update_lag(self, highwaters: Mapping[tuple[str, int], int]) -> None:
        """Consumer lag per topic: the broker's high-water marks of the partitions this worker
        holds, minus what Postgres has committed."""
        lag: dict[str, int] = {topic: 0 for topic in self.settings.topics.inputs}
        for (topic, partition), highwater in highwaters.items():
            if topic in lag:
                lag[topic] += max(0, highwater - self.committed.get((topic, partition), 0))
        for topic, value in lag.items():
            self.metrics.lag.labels(topic).set(value)


@contextlib.contextmanager
def recompute_progress() -> Iterator[Callable[[int, int], None]]:
    """A progress bar for a start-up recomputation when stderr is a terminal (else nothing)."""
    if not sys.stderr.isatty():
        yield lambda done, total: None
        return
    with Progress(TextColumn("recomputing under the changed plans"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("customers"), TimeRemainingColumn(), console=Console(stderr=True),
                  transient=True) as bar:
        task = bar.add_task("recompute", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield advance
