"""Prometheus metrics (SPEC section 9): one `crmbonus_` prefix, base units, bounded labels.

Labels are only ever topics, event types and reason codes, all finite sets.
Per-person figures live in Postgres (`bonus_running`), never in a label.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter as Tally
from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

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
        self.latency = Histogram("crmbonus_processing_latency_seconds", "From the broker's timestamp of a "
                                 "message to the commit of its batch", buckets=_LATENCY_BUCKETS, registry=r)
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
        observe_all(self.latency, [max(0.0, now - stamp) for stamp in timestamps if stamp > 0])
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


def observe_all(histogram: Histogram, amounts: Sequence[float]) -> None:
    """`histogram.observe` of every amount, one lock per bucket instead of one per amount.

    A batch's latencies were one `observe` per message, ~1.7 µs each (5% of a worker's time
    per event). prometheus_client has no bulk call, so this adds to the same private
    `_sum` and `_buckets` that `observe` does (a test checks the two agree): the first
    bucket whose upper bound is >= the amount.
    """
    if not amounts:
        return
    histogram._raise_if_not_observable()
    bounds = histogram._upper_bounds
    for index, count in Tally(bisect.bisect_left(bounds, amount) for amount in amounts).items():
        histogram._buckets[index].inc(count)
    histogram._sum.inc(sum(amounts))
