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
from collections.abc import Awaitable, Callable

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
    return runtime
