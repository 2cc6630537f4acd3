"""A short soak: a steady stream into a running worker; lag returns to 0, memory does not creep."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from stream.demo_data import DemoConfig, generate
from tests.faults.conftest import (
    Broker,
    Expected,
    Figures,
    Worker,
    check_against_oracle,
    feed,
    wait_caught_up,
    wait_for,
)

pytestmark = pytest.mark.faults

RATE = 500  # events a second
SECONDS = 75
SAMPLE_EVERY = 3.0


@pytest.mark.brokers("tansu", reason="the worker's memory and lag over 75 s: the broker plays no part, "
                                     "and a second 80 s run would only lengthen CI")
async def test_soak_steady_stream(
    pg_url: str, broker: Broker, workers: Callable[[str, str], Worker], tmp_path: Path, figures: Figures,
) -> None:
    lines = generate(DemoConfig(customers=int(RATE * SECONDS / 6.1), seed=1001))[: RATE * SECONDS]
    expected = Expected(lines)
    worker = workers(pg_url, "soak")
    await worker.wait_healthy()
    process = psutil.Process(worker.pid)
    stream = asyncio.create_task(feed(broker, lines, rate=RATE, chunk=RATE // 4))
    samples: list[tuple[float, float, float, float]] = []  # (s, lag, rss MB, stored)
    started = time.monotonic()
    while not stream.done():
        await asyncio.sleep(SAMPLE_EVERY)
        metrics = await worker.metrics()
        lag = sum(v for k, v in metrics.items() if k.startswith("crmbonus_consumer_lag_messages"))
        samples.append((round(time.monotonic() - started, 1), lag, process.memory_info().rss / 2**20,
                        metrics.get("crmbonus_events_stored_total", 0.0)))
    ends = await stream
    await wait_caught_up(pg_url, ends, 60, worker)

    async def lag_zero() -> bool:  # the gauge is refreshed every 5 s
        metrics = await worker.metrics()
        return sum(v for k, v in metrics.items() if k.startswith("crmbonus_consumer_lag_messages")) == 0

    await wait_for(lag_zero, 15, "crmbonus_consumer_lag_messages back to 0", worker)
    print("\n   s     lag   RSS MB   stored")
    for second, lag, rss, stored in samples:
        print(f"{second:5.1f} {lag:7.0f} {rss:8.1f} {stored:8.0f}")
    rss = [sample[2] for sample in samples]
    third = max(1, len(rss) // 3)
    early, late = statistics.median(rss[third:2 * third] or rss), statistics.median(rss[-third:])
    lags = [sample[1] for sample in samples]
    print(f"lag max {max(lags):.0f}; RSS median middle third {early:.1f} MB, last third {late:.1f} MB")
    assert max(lags) < RATE * 10, "the worker fell more than 10 s behind a 500/s stream"
    assert late < early * 1.25 + 20, f"RSS grew from {early:.1f} MB to {late:.1f} MB"
    verdict = await check_against_oracle(pg_url, expected)
    figures.faults = f"soak {SECONDS} s at {RATE} events/s"
    figures.record(len(lines), verdict, expected)
    figures.notes = (f"lag max {max(lags):.0f} -> 0; RSS {min(rss):.0f}..{max(rss):.0f} MB "
                     f"(middle third {early:.1f}, last third {late:.1f})")
