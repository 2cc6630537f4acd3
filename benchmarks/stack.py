"""The embedded stack the benchmark runs on: one tansu broker, one Postgres, fresh names per measurement.

Every measurement gets a database and a topic prefix of its own, so no measurement
reads or writes what another left behind, while the broker and the Postgres
server (and their start-up time) are shared by the whole run.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from stream import embedded
from stream.settings import Resolved


def with_database(url: str, name: str) -> str:
    """The same server URL with another database name."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@dataclass
class Stack:
    data_dir: Path
    broker: str
    admin_url: str
    names: list[str] = field(default_factory=list)

    def fresh(self, name: str, **overrides: object) -> Resolved:
        """Settings on a new, empty database `bench_<name>` and topic prefix `<name>.` of this stack."""
        database = f"bench_{name}".replace("-", "_")
        if database in self.names:
            raise ValueError(f"measurement name {name!r} used twice in one run")
        self.names.append(database)
        asyncio.run(_create_database(self.admin_url, database))
        settings = Resolved(
            broker=self.broker,
            database_url=with_database(self.admin_url, database),
            topic_prefix=f"{name}.",
            data_dir=self.data_dir,
            group_id=f"bench-{name}",
            web_enabled=False,
            broker_embedded=True,  # the embedded stack's consumer-group timing (stream/runtime.py)
        )
        return replace(settings, **overrides)  # type: ignore[arg-type]


async def _create_database(admin_url: str, database: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{database}"')
        await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()


@contextlib.contextmanager
def embedded_stack(data_dir: Path | None = None) -> Iterator[Stack]:
    """A fresh tansu broker and a Postgres under a temporary directory (removed afterwards)."""
    owned = data_dir is None
    root = Path(tempfile.mkdtemp(prefix="crmbonus-bench-")) if data_dir is None else data_dir
    try:
        with embedded.embedded_broker(root, fresh=True, announce=False) as broker, \
                embedded.embedded_postgres(root) as admin_url:
            yield Stack(root, broker, admin_url)
    finally:
        if owned:
            shutil.rmtree(root, ignore_errors=True)
