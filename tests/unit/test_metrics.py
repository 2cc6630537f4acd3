"""`metrics.BatchHistogram` must serve exactly what a `Histogram` fed one `observe` per amount does."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from stream.metrics import _LATENCY_BUCKETS, BatchHistogram, Metrics

NAME, HELP = "latency_seconds", "From one place to another"

amounts = st.one_of(st.sampled_from(_LATENCY_BUCKETS),  # on a bound: that bucket, not the next
                    st.floats(min_value=0, max_value=100, allow_nan=False))


def _exposition(registry: CollectorRegistry) -> tuple[list[str], float]:
    """The text format's lines but the sum, and the sum."""
    lines = generate_latest(registry).decode().splitlines()
    (sum_line,) = [line for line in lines if line.startswith(f"{NAME}_sum ")]
    return [line for line in lines if line != sum_line], float(sum_line.split()[1])


@given(st.lists(st.lists(amounts, max_size=50), max_size=8))
def test_batches_serve_what_observe_one_by_one_serves(batches: list[list[float]]) -> None:
    one_by_one, in_batches = CollectorRegistry(), CollectorRegistry()
    histogram = Histogram(NAME, HELP, buckets=_LATENCY_BUCKETS, registry=one_by_one)
    bulk = BatchHistogram(NAME, HELP, buckets=_LATENCY_BUCKETS, registry=in_batches)
    for batch in batches:
        for amount in batch:
            histogram.observe(amount)
        bulk.observe_all(batch)
    (expected, expected_sum), (found, found_sum) = _exposition(one_by_one), _exposition(in_batches)
    # the sum is added in another order, so its last float bits may differ; the counts may not
    assert found_sum == pytest.approx(expected_sum, rel=1e-12, abs=1e-12)
    assert found == expected


def test_observe_one_is_a_batch_of_one() -> None:
    one_by_one, in_batches = CollectorRegistry(), CollectorRegistry()
    Histogram(NAME, HELP, buckets=_LATENCY_BUCKETS, registry=one_by_one).observe(0.3)
    BatchHistogram(NAME, HELP, buckets=_LATENCY_BUCKETS, registry=in_batches).observe(0.3)
    assert generate_latest(in_batches) == generate_latest(one_by_one)


def test_registry_refuses_a_second_metric_of_its_name() -> None:
    registry = CollectorRegistry()
    BatchHistogram(NAME, HELP, buckets=_LATENCY_BUCKETS, registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Histogram(NAME, HELP, buckets=_LATENCY_BUCKETS, registry=registry)


def test_worker_latency_is_served_as_a_histogram() -> None:
    text = generate_latest(Metrics().registry).decode()
    assert "# TYPE crmbonus_processing_latency_seconds histogram" in text
    assert 'crmbonus_processing_latency_seconds_bucket{le="0.005"} 0.0' in text
    assert 'crmbonus_processing_latency_seconds_bucket{le="+Inf"} 0.0' in text
    assert "crmbonus_processing_latency_seconds_count 0.0" in text
    assert "crmbonus_processing_latency_seconds_sum 0.0" in text
