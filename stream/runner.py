"""Running the Faust worker in this process, for `worker`, `replay` and `demo`.

Faust's Worker owns its event loop and exits through SIGTERM handling; a command
that must stop once its work is committed (replay) sends itself SIGTERM, which is
the same clean path an operator's `kill` takes: finish the batch, commit, stop.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping

import faust

from stream.app import build_app
from stream.errors import CrmbonusError
from stream.pipeline import BatchResult
from stream.plan import Plan
from stream.plan_versions import Plans
from stream.runtime import Runtime
from stream.settings import Resolved

logger = logging.getLogger(__name__)


def run_worker(
    settings: Resolved,
    plan: Plan | Plans,
    *,
    loglevel: str = "warn",
    quiet: bool = False,
    on_batch: Callable[[Runtime, BatchResult], None] | None = None,
    until: Callable[[Runtime], bool] | None = None,
    then: Callable[[Runtime], Awaitable[None]] | None = None,
    keep_serving: bool = False,
) -> Runtime:
    """Run the worker until SIGTERM/SIGINT, or until `until(runtime)` holds after a batch.

    Once `until` holds, `then(runtime)` runs inside the worker (its pool at hand), and
    the worker stops, unless `keep_serving`, when it goes on consuming and serving HTTP.
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app, runtime = build_app(settings, plan)
    loop.run_until_complete(runtime.open_database())  # a bad URL fails here, before Faust's banner

    reached = False

    async def finish() -> None:
        try:
            if then is not None:
                await then(runtime)
        finally:
            if not keep_serving:
                os.kill(os.getpid(), signal.SIGTERM)

    def after_batch(result: BatchResult) -> None:
        nonlocal reached
        if on_batch is not None:
            on_batch(runtime, result)
        if until is not None and not reached and until(runtime):
            reached = True
            runtime.finishing = loop.create_task(finish())

    runtime.listeners.append(after_batch)
    worker = faust.Worker(app, loop=loop, loglevel=loglevel, quiet=quiet, redirect_stdouts=False,
                          override_logging=False)
    try:
        worker.execute_from_commandline()
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            raise
    if runtime.fatal is not None:
        raise CrmbonusError(runtime.fatal)
    return runtime


def supervise(commands: list[list[str]], env: Mapping[str, str] | None = None) -> int:
    """Run worker processes until all have exited; return the first failure's exit code, or 0.

    `env` is the children's environment (default: this one's): their settings go there, never
    on a command line, which every user of the machine can read (`ps`). SIGTERM and SIGINT
    are passed on, so every worker commits its batch in hand and stops. A worker that fails
    stops the others: half a group that looks healthy is worse than an exit the orchestrator
    sees and restarts.
    """
    processes = [subprocess.Popen(command, env=env, preexec_fn=_term_with_parent) for command in commands]
    stopping = False

    def stop(signum: int, _frame: object = None) -> None:
        nonlocal stopping
        stopping = True
        for process in processes:
            if process.poll() is None:
                process.send_signal(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while any(process.poll() is None for process in processes):
            failed = next((p for p in processes if p.returncode not in (None, 0)), None)
            if failed is not None and not stopping:
                logger.error("worker process %d exited with %d; stopping the others", failed.pid, failed.returncode)
                stop(signal.SIGTERM)
            time.sleep(0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return next((p.returncode for p in processes if p.returncode), 0)


def _term_with_parent() -> None:
    """In a child, before exec: get SIGTERM when the supervisor dies, even by SIGKILL (Linux),
    so that no orphaned worker keeps consuming unsupervised."""
    if sys.platform == "linux":
        PR_SET_PDEATHSIG = 1  # the name in <sys/prctl.h>
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
