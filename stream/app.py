"""The Faust app: its settings, the Postgres service it depends on, and the runtime state.

The app is built by a function rather than at import time, because its broker,
group and web port come from the command line (stream/settings.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import asyncpg
import faust
from aiokafka import AIOKafkaConsumer
from mode import Service

from schemas.messages import Message
from stream import db, web
from stream.metrics import Metrics
from stream.pipeline import BatchResult, Pipeline
from stream.plan import Plan
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
    plan: Plan
    pool: asyncpg.Pool | None = None
    pipeline: Pipeline | None = None
    metrics: Metrics = field(default_factory=Metrics)
    committed: dict[tuple[str, int], int] = field(default_factory=dict)
    listeners: list[Callable[[BatchResult], None]] = field(default_factory=list)
    consuming: bool = False  # partitions assigned at least once
    rebalancing: bool = False
    finishing: asyncio.Task[None] | None = None  # what `run_worker(then=...)` runs once caught up

    def __post_init__(self) -> None:
        for topic in self.settings.topics.inputs:  # a series per topic from the start; measured every 5 s
            self.metrics.lag.labels(topic)

    async def open_database(self) -> None:
        """Connect and migrate; the CLI calls it before Faust starts so that errors come first."""
        if self.pool is not None:
            return
        self.pool = await db.create_pool(self.settings.database_url, max_size=4)
        await db.migrate(self.pool)
        self.pipeline = Pipeline(self.pool, self.plan, self.settings.group_id)
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

    def update_lag(self, consumer: AIOKafkaConsumer | None) -> None:
        """Consumer lag per topic: the broker's high-water mark minus what Postgres has committed."""
        if consumer is None:
            return
        lag: dict[str, int] = {topic: 0 for topic in self.settings.topics.inputs}
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is not None and tp.topic in lag:
                lag[tp.topic] += max(0, highwater - self.committed.get((tp.topic, tp.partition), 0))
        for topic, value in lag.items():
            self.metrics.lag.labels(topic).set(value)


class PostgresService(Service):
    """Opens the pool and applies migrations before the consumer reads; closes it last."""

    def __init__(self, runtime: Runtime, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.runtime = runtime

    async def on_start(self) -> None:
        await self.runtime.open_database()

    async def on_stop(self) -> None:
        await self.runtime.close_database()


def build_app(settings: Resolved, plan: Plan) -> tuple[faust.App, Runtime]:
    """The Faust app with the CRM consumer and the web pages registered, and the runtime they share."""
    from agents import crm  # agents import the app's types, not the other way round

    timing = EMBEDDED_TIMING if settings.broker_embedded else PRODUCTION_TIMING
    app = faust.App(
        settings.group_id,
        broker=settings.broker,
        key_serializer="raw",
        value_serializer="raw",
        autodiscover=False,
        store="memory://",
        datadir=str(settings.data_dir / "faust"),
        web_enabled=settings.web_enabled,
        web_port=settings.web_port,
        web_host="0.0.0.0",
        producer_acks=-1,
    )
    # Faust runs the web server, the timers and the producer; the CRM topics are read by
    # agents/crm.py's batch consumer, so Faust's own consumer, agents and tables must not
    # start (its consumer would join our group with another protocol). A class attribute
    # in Faust, not a setting.
    app.producer_only = True
    runtime = Runtime(settings=settings, plan=plan)
    app.add_dependency(PostgresService(runtime, loop=app.loop, beacon=app.beacon))
    dead_letters = app.topic(settings.topics.dead_letters, key_type=bytes, value_type=bytes)
    consumer = crm.CrmConsumer(runtime, timing, dead_letters, loop=app.loop, beacon=app.beacon)
    app.add_dependency(consumer)  # after Postgres: stopped (its batch committed) before the pool closes
    web.register(app, runtime)

    @app.timer(5.0)
    async def lag() -> None:
        runtime.update_lag(consumer.consumer)

    return app, runtime
