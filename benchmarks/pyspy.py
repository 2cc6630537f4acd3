"""Sampling the worker with py-spy during a run, and a summary of where its samples fall.

`python -m benchmarks.run --only burst --py-spy /tmp/worker.txt` records the burst's worker
(py-spy's raw collapsed stacks, idle samples included); the summary splits the samples into
"waiting" (event loop idle), the batch handler by phase, and everything outside it
(aiokafka, the metrics, Faust's web server and timers, asyncio itself).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path

#: (label, substring of a frame) in the handler, innermost first: the first match names the sample.
HANDLER_PHASES = (
    ("rules.credit_customer", "credit_customer (stream/rules.py"),
    ("re-decode stored events", "load_customer_events (stream/store.py"),
    ("credits in force", "_credits_in_force (stream/ledger.py"),
    ("insert credits", "_insert_credits (stream/ledger.py"),
    ("bonus_running refresh", "refresh_running (stream/ledger.py"),
    ("insert events", "insert_events (stream/store.py"),
    ("decode incoming", "split (stream/pipeline.py"),
    ("save progress", "save_progress (stream/store.py"),
    ("other ledger", "(stream/ledger.py"),
    ("other handler", "(stream/pipeline.py"),
)


def start(pid: int, output: Path, rate: int = 100) -> subprocess.Popen[bytes] | None:
    binary = shutil.which("py-spy")
    if binary is None:
        return None
    return subprocess.Popen([binary, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
                             "--idle", "--nonblocking", "--output", str(output)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def summarize(path: Path) -> dict[str, float]:
    """Share of the worker's samples (0..1) per place, idle included (it runs one thread)."""
    counts: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        leaf = frames[-1]
        if "handle (stream/pipeline.py" in stack:
            label = next((f"handler: {name}" for name, needle in HANDLER_PHASES
                          if any(needle in frame for frame in reversed(frames))), "handler: other")
            if "(asyncpg/" in leaf or "protocol" in leaf:
                label += " (asyncpg client)"
        elif "select (selectors.py" in leaf:
            label = "idle: event loop waiting (Postgres, broker)"
        elif "observe_batch (stream/metrics.py" in stack:
            label = "outside handler: metrics"
        elif any(lib in stack for lib in ("aiokafka/", "kafka/")):
            label = "outside handler: aiokafka (fetch, decode records)"
        elif "(agents/crm.py" in stack:
            label = "outside handler: the consumer (records -> messages, offsets)"
        elif any(lib in frame for frame in _own_frames(frames) for lib in ("faust/", "mode/")):
            label = "outside handler: Faust/mode (web, timers)"
        else:
            label = "outside handler: asyncio and other (socket reads and writes)"
        counts[label] += int(count)
    total = sum(counts.values()) or 1
    return {label: count / total for label, count in counts.most_common()}


def _own_frames(frames: list[str]) -> list[str]:
    """The frames below the event loop: every stack starts in mode's Worker, which says nothing."""
    loop = max((i for i, frame in enumerate(frames) if "(asyncio/events.py" in frame), default=-1)
    return frames[loop + 1:]
