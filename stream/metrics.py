"""Prometheus metrics (SPEC section 9): one `crmbonus_` prefix, base units, bounded labels.

Labels are only ever topics, event types and reason codes, all finite sets.
Per-person figures live in Postgres (`bonus_running`), never in a label.
"""

from __future__ import annotations

import bisect
import itertools
import math
import threading
import time
from collections import Counter as Tally
from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from schemas.decode import REASONS
from stream.pipeline import BatchResult

#: Every metric name this module serves, for the README and the dashboard tests.
NAMES = (
    "crmbonus_events_consumed_total",
    "crmbonus_events_stored_total",
    "crmbonus_duplicates_total",
    "crmbonus_dead_letters_total",
    "crmbonus_credits_written_total",
    "crmbonus_credits_retracted_total",
    "crmbonus_batch_size_events",
    "crmbonus_batch_duration_seconds",
    "crmbonus_db_write_duration_seconds",
    "crmbonus_processing_latency_seconds",
    "crmbonus_batch_retries_total",
    "crmbonus_consumer_lag_messages",
    "crmbonus_last_processed_timestamp_seconds",
    "crmbonus_healthy",
)

disable_created_metrics()  # the *_created series only double the page; nobody graphs them

_BATCH_BUCKETS = (1, 5, 10, 50, 100, 250, 500, 1000, 2000, 5000)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """The worker's metrics, in a registry of their own (tests build as many as they like)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.consumed = Counter("crmbonus_events_consumed", "Messages consumed, by topic and event type "
                                "('invalid' when it could not be decoded)", ["topic", "event_type"], registry=r)
        self.stored = Counter("crmbonus_events_stored", "Valid events stored for the first time", registry=r)
        self.duplicates = Counter("crmbonus_duplicates", "Redelivered or republished events ignored", registry=r)
        self.dead_letters = Counter("crmbonus_dead_letters", "Messages dead-lettered, by reason",
                                    ["reason"], registry=r)
        self.credits_written = Counter("crmbonus_credits_written", "Credit rows inserted", registry=r)
        self.credits_retracted = Counter("crmbonus_credits_retracted", "Credit rows retracted "
                                         "(a reversal, a later touch, a recomputation)", registry=r)
        self.batch_size = Histogram("crmbonus_batch_size_events", "Messages per batch",
                                    buckets=_BATCH_BUCKETS, registry=r)
        self.batch_duration = Histogram("crmbonus_batch_duration_seconds", "Batch handling time, "
                                        "decode to commit, retries included", buckets=_LATENCY_BUCKETS, registry=r)
        self.db_write = Histogram("crmbonus_db_write_duration_seconds", "Time of the batch's Postgres "
                                  "transaction (last attempt)", buckets=_LATENCY_BUCKETS, registry=r)
        self.latency = BatchHistogram("crmbonus_processing_latency_seconds", "From the broker's timestamp of "
                                      "a message to the commit of its batch", buckets=_LATENCY_BUCKETS, registry=r)
        self.retries = Counter("crmbonus_batch_retries", "Batch attempts that failed and were retried "
                               "(database away, deadlock)", registry=r)
        self.lag = Gauge("crmbonus_consumer_lag_messages", "Messages in the topic not yet processed",
                         ["topic"], registry=r)
        self.last_processed = Gauge("crmbonus_last_processed_timestamp_seconds", "Unix time of the "
                                    "last committed batch", registry=r)
        self.healthy = Gauge("crmbonus_healthy", "1 while consuming and Postgres answers, else 0", registry=r)
        for reason in REASONS:  # show zeros from the start, so rate() works on the first one
            self.dead_letters.labels(reason)

    def observe_batch(self, result: BatchResult, timestamps: Iterable[float]) -> None:
        """Record one committed batch; `timestamps` are the messages' broker times (unix seconds)."""
        now = time.time()
        for (topic, event_type), count in result.consumed_by.items():
            self.consumed.labels(topic, event_type).inc(count)
        self.latency.observe_all([max(0.0, now - stamp) for stamp in timestamps if stamp > 0])
        self.stored.inc(result.stored)
        self.duplicates.inc(result.duplicates)
        for letter in result.new_dead_letters:
            self.dead_letters.labels(letter.reason).inc()
        self.credits_written.inc(result.credits_inserted)
        self.credits_retracted.inc(result.credits_retracted)
        self.batch_size.observe(result.consumed)
        self.batch_duration.observe(result.seconds)
        self.db_write.observe(result.db_seconds)
        self.last_processed.set(now)


class BatchHistogram:
    """A histogram that takes a whole batch of observations in one call, for a latency per message.

    One `Histogram.observe` per message cost ~1.7 µs (5% of a worker's time per event), and
    prometheus_client has no bulk call. So this is a collector of its own, through the public
    collector API: it keeps the per-bucket counts and the sum, and `collect` serves them as a
    `HistogramMetricFamily`, the same series a `Histogram` of that name and buckets would (a
    test compares the two, exposition and all).

    One lock, taken once per batch (not per message), so a scrape sees a batch whole or not at
    all: `_count` is the `+Inf` bucket, and the sum belongs to the same observations. Today the
    batches and the /metrics page run on the worker's one event loop, where neither can
    interrupt the other anyway; the lock keeps that true for a scrape from another thread (such
    as prometheus_client's own HTTP server), at the cost of one uncontended acquire per batch.
    """

    def __init__(self, name: str, documentation: str, *, buckets: Sequence[float], registry: CollectorRegistry) -> None:
        self._name = name
        self._documentation = documentation
        bounds = [float(bound) for bound in buckets]
        if not bounds or bounds[-1] != math.inf:
            bounds.append(math.inf)
        self._bounds = tuple(bounds)
        self._le = tuple(floatToGoString(bound) for bound in bounds)
        self._counts = [0] * len(bounds)  # per bucket, not cumulative: an amount adds to one
        self._sum = 0.0
        self._lock = threading.Lock()
        registry.register(self)

    def observe(self, amount: float) -> None:
        """One observation, for a caller that has only one (as `Histogram.observe`)."""
        self.observe_all((amount,))

    def observe_all(self, amounts: Sequence[float]) -> None:
        """Every amount into the first bucket whose upper bound is >= it (as `Histogram.observe`)."""
        if not amounts:
            return
        tally = Tally(bisect.bisect_left(self._bounds, amount) for amount in amounts)
        total = sum(amounts)
        with self._lock:
            for index, count in tally.items():
                self._counts[index] += count
            self._sum += total

    def describe(self) -> Iterable[Metric]:
        """The family without samples: lets the registry refuse a second metric of this name."""
        return [HistogramMetricFamily(self._name, self._documentation)]

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative = list(zip(self._le, map(float, itertools.accumulate(counts)), strict=True))
        return [HistogramMetricFamily(self._name, self._documentation, buckets=cumulative, sum_value=total)]
