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
import sys
from collections import Counter
from pathlib import Path

#: (label, substrings of a frame) in the handler, the narrower first: the first phase with a
#: frame anywhere in the sample's stack names it. A frame reads `Class.function (stream/file.py:line)`.
#: The phases follow `Pipeline._commit` (stream/pipeline.py) and `ledger.recompute_customers`.
HANDLER_PHASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("decode incoming", ("split (stream/pipeline.py",)),
    ("rules (stream/rules.py: customer_outcome, outcome_under)", ("(stream/rules.py",)),
    ("diff (stream/diff.py: diff_batch, diff_customer)", ("(stream/diff.py",)),
    ("read stored events (load_customer_events)", ("load_customer_events (stream/store.py",)),
    ("read rows in force (_rows_in_force)", ("_rows_in_force (stream/ledger.py",)),
    ("COPY events (insert_events)", ("insert_events (stream/store.py",)),
    ("COPY credits and facts (_insert_rows)", ("_insert_rows (stream/ledger.py",)),
    ("credit writes: totals, leads (_apply_deltas, _move_leads)",
     ("_apply_deltas (stream/ledger.py", "_move_leads (stream/ledger.py")),
    ("credit writes: bonus_running (refresh_running)", ("refresh_running (stream/ledger.py",)),
    ("customer locks (_take_customers)", ("_take_customers (stream/ledger.py",)),
    ("settlement check (lock, carry_adjustments) and plan generation",
     ("(stream/settlement.py", "check_generation (stream/plan_changes.py")),
    ("dead letters", ("insert_dead_letters (stream/store.py",)),
    ("save progress", ("save_progress (stream/store.py",)),
    ("ledger glue (recompute_customers itself: cache, tallies, deletes)",
     ("(stream/ledger.py", "(stream/customer_cache.py")),
    ("other handler", ("(stream/pipeline.py",)),
)


def binary() -> str | None:
    """py-spy on PATH, or beside this interpreter (the venv's bin/, whether or not it is activated)."""
    beside = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside) if beside.is_file() else None)


def start(pid: int, output: Path, rate: int = 100) -> subprocess.Popen[bytes] | None:
    """Record `pid` into `output`; None (and a warning) without py-spy."""
    found = binary()
    if found is None:
        print("py-spy not found on PATH nor beside the interpreter: `pip install py-spy` (not sampling)",
              file=sys.stderr)
        return None
    return subprocess.Popen([found, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
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
            label = next((f"handler: {name}" for name, needles in HANDLER_PHASES
                          if any(needle in frame for frame in frames for needle in needles)), "handler: other")
            if "(asyncpg/" in leaf or "protocol" in leaf:
                label += " (asyncpg client)"
        elif "select (selectors.py" in leaf:
            label = "idle: event loop waiting (Postgres, broker)"
        elif "(stream/metrics.py" in stack or "batch_done (stream/runtime.py" in stack:
            label = "outside handler: metrics"
        elif any(lib in stack for lib in ("aiokafka/", "kafka/")):
            label = "outside handler: aiokafka (fetch, decode records)"
        elif "(agents/crm.py" in stack or "(stream/consumer.py" in stack:
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
