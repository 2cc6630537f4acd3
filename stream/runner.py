"""Running the Faust worker in this process, for `worker`, `replay` and `demo`.

Faust's Worker owns its event loop and exits through SIGTERM handling; a command
that must stop once its work is committed (replay) sends itself SIGTERM, which is
the same clean path an operator's `kill` takes: finish the batch, commit, stop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable

import faust

from stream.app import Runtime, build_app
from stream.pipeline import BatchResult
from stream.plan import Plan
from stream.settings import Settings

logger = logging.getLogger(__name__)


def run_worker(
    settings: Settings,
    plan: Plan,
    *,
    loglevel: str = "warn",
    quiet: bool = False,
    on_batch: Callable[[Runtime, BatchResult], None] | None = None,
    stop_when: Callable[[Runtime], bool] | None = None,
) -> Runtime:
    """Run the worker until SIGTERM/SIGINT, or until `stop_when(runtime)` holds after a batch."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app, runtime = build_app(settings, plan)
    loop.run_until_complete(runtime.open_database())  # a bad URL fails here, before Faust's banner

    stopping = False

    def after_batch(result: BatchResult) -> None:
        nonlocal stopping
        if on_batch is not None:
            on_batch(runtime, result)
        if stop_when is not None and not stopping and stop_when(runtime):
            stopping = True
            os.kill(os.getpid(), signal.SIGTERM)

    runtime.listeners.append(after_batch)
    worker = faust.Worker(app, loop=loop, loglevel=loglevel, quiet=quiet, redirect_stdouts=False,
                          override_logging=False)
    try:
        worker.execute_from_commandline()
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            raise
    return runtime
