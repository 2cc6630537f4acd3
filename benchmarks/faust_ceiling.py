"""The ceiling Faust itself sets: a bare agent that takes batches and acks, doing no work at all.

    python -m benchmarks.faust_ceiling BROKER EXPECTED TOPIC...

Runs in its own process (Faust owns its event loop), reads the topics from the start
in a fresh consumer group with the worker's own settings (`noack_take`, the embedded
timing), and prints `rate=<events/s> seconds=<s> events=<n>` once EXPECTED records
have passed through. Start-up (joining the group) is excluded, as in the end-to-end row.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from typing import Any, cast

import faust

from benchmarks.raw import RawMeasure
from stream.runtime import EMBEDDED_TIMING
from stream.settings import Settings


def main(broker: str, expected: int, topics: list[str]) -> None:
    settings = Settings()
    app = faust.App(f"faust-ceiling-{os.getpid()}", broker=broker, key_serializer="raw", value_serializer="raw",
                    web_enabled=False, store="memory://", autodiscover=False, consumer_auto_offset_reset="earliest",
                    broker_session_timeout=EMBEDDED_TIMING.session_timeout,
                    broker_heartbeat_interval=EMBEDDED_TIMING.heartbeat_interval,
                    broker_rebalance_timeout=EMBEDDED_TIMING.rebalance_timeout,
                    datadir=f"/tmp/faust-ceiling-{os.getpid()}")
    seen, started = 0, 0.0

    @app.agent(app.topic(*topics, key_type=bytes, value_type=bytes), concurrency=1)
    async def bare(stream: faust.StreamT[Any]) -> None:
        nonlocal seen, started
        stream = cast(faust.Stream[Any], stream)
        async for events in stream.noack_take(settings.batch_max, within=settings.batch_within):
            started = started or time.monotonic()
            for event in events:
                await stream.ack(event)
            seen += len(events)
            if seen >= expected:
                seconds = time.monotonic() - started
                print(f"rate={seen / seconds:.0f} seconds={seconds:.3f} events={seen}", flush=True)
                os._exit(0)

    worker = faust.Worker(app, loglevel="warn", quiet=True, redirect_stdouts=False, override_logging=False)
    worker.execute_from_commandline()


def measure(broker: str, topics: list[str], expected: int) -> RawMeasure:
    """Run the bare agent in a child process and read its figure."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.faust_ceiling", broker, str(expected), *topics],
                          capture_output=True, text=True, timeout=300)
    found = re.search(r"rate=(\S+) seconds=(\S+) events=(\S+)", done.stdout)  # after Faust's cursor codes
    if found is None:
        raise RuntimeError(f"the bare Faust agent gave no figure:\n{done.stderr[-2000:]}")
    fields = dict(zip(("rate", "seconds", "events"), found.groups(), strict=True))
    return RawMeasure(int(fields["events"]), float(fields["seconds"]), float(fields["rate"]),
                      "a Faust agent with noack_take that only acks: Faust's own per-message cost")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3:])
