"""`metrics.observe_all` must leave a histogram exactly as one `observe` per amount would."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from stream.metrics import _LATENCY_BUCKETS, observe_all


def _samples(histogram: Histogram) -> dict[tuple[str, str], float]:
    return {(sample.name, sample.labels.get("le", "")): sample.value
            for metric in histogram.collect() for sample in metric.samples}


def _histogram() -> Histogram:
    return Histogram("latency_seconds", "test", buckets=_LATENCY_BUCKETS, registry=CollectorRegistry())


@given(st.lists(st.one_of(st.sampled_from(_LATENCY_BUCKETS),  # on a bound: that bucket, not the next
                          st.floats(min_value=0, max_value=100, allow_nan=False)), max_size=200))
def test_observe_all_equals_observe_one_by_one(amounts: list[float]) -> None:
    one_by_one, all_at_once = _histogram(), _histogram()
    for amount in amounts:
        one_by_one.observe(amount)
    observe_all(all_at_once, amounts)
    expected, found = _samples(one_by_one), _samples(all_at_once)
    sum_key = ("latency_seconds_sum", "")
    # the sum is added in another order, so its last float bits may differ; the counts may not
    assert found.pop(sum_key) == pytest.approx(expected.pop(sum_key), rel=1e-12, abs=1e-12)
    assert found == expected
