"""Settings: loaded once from flags and environment variables into a frozen object.

Precedence is flag > environment variable > default (SPEC section 8). A broker or
database left unset means "embedded": crmbonus starts its own (stream/embedded.py),
and what runs afterwards gets `Resolved` settings, whose broker and database are
always there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from stream.errors import ConfigError

#: Environment variables, each documented in the README's configuration table.
ENV_BROKER = "CRMBONUS_BROKER"
ENV_DATABASE_URL = "CRMBONUS_DATABASE_URL"
ENV_PLAN = "CRMBONUS_PLAN"
ENV_TOPIC_PREFIX = "CRMBONUS_TOPIC_PREFIX"
ENV_DATA_DIR = "CRMBONUS_DATA_DIR"

DEFAULT_TOPIC_PREFIX = "crm."
DEFAULT_DATA_DIR = ".crmbonus"


@dataclass(frozen=True)
class Topics:
    """Topic names of SPEC section 2; one prefix setting renames all four."""

    sales: str
    callbacks: str
    lead_handoffs: str
    dead_letters: str

    @classmethod
    def with_prefix(cls, prefix: str) -> Topics:
        return cls(
            sales=f"{prefix}sales",
            callbacks=f"{prefix}callbacks",
            lead_handoffs=f"{prefix}lead-handoffs",
            dead_letters=f"{prefix}dead-letters",
        )

    @property
    def inputs(self) -> tuple[str, str, str]:
        return (self.sales, self.callbacks, self.lead_handoffs)

    def for_event_type(self, event_type: str | None) -> str:
        """SPEC section 8 `publish`: the topic of an event type; anything else goes to sales."""
        if event_type == "callback":
            return self.callbacks
        if event_type == "lead_handoff":
            return self.lead_handoffs
        return self.sales


@dataclass(frozen=True)
class _Common:
    """What a crmbonus process needs besides its broker and database, fixed at start-up."""

    plan_path: str | None = None
    topic_prefix: str = DEFAULT_TOPIC_PREFIX
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    group_id: str = "crmbonus"
    partitions: int = 6
    web_port: int = 6066
    web_enabled: bool = True
    #: Larger batches recompute a customer once for more of its events (2,000 -> 5,000: +30%).
    batch_max: int = 5_000
    batch_within: float = 0.2
    topics: Topics = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "topics", Topics.with_prefix(self.topic_prefix))


@dataclass(frozen=True)
class Settings(_Common):
    """As configured: a broker or database left unset (None) is an embedded one, not started yet."""

    broker: str | None = None
    database_url: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.broker is not None:
            validate_broker(self.broker)
        if self.database_url is not None:
            validate_database_url(self.database_url)

    def resolved(self, broker: str, database_url: str) -> Resolved:
        """These settings pointing at concrete services (stream/embedded.py starts the unset ones)."""
        common = {f.name: getattr(self, f.name) for f in fields(_Common) if f.init}
        return Resolved(**common, broker=broker, database_url=database_url, broker_embedded=self.broker is None)


@dataclass(frozen=True, kw_only=True)
class Resolved(_Common):
    """Settings with concrete services, as a worker or a replay runs on them once they are up."""

    broker: str
    database_url: str
    #: The broker is the embedded one (tunes consumer-group timing, stream/runtime.py).
    broker_embedded: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        validate_broker(self.broker)
        validate_database_url(self.database_url)


def validate_broker(broker: str) -> None:
    """Refuse a broker setting that is not `kafka://host:port` (several joined by `;`)."""
    for part in broker.split(";"):
        hostport = part.removeprefix("kafka://")
        if not part.startswith("kafka://") or ":" not in hostport or not hostport.rsplit(":", 1)[1].isdigit():
            raise ConfigError(
                f"broker {broker!r} must be kafka://host:port, several joined by ';' "
                f"(set --broker or {ENV_BROKER})"
            )


def validate_database_url(url: str) -> None:
    """Refuse a database URL that asyncpg would not take for Postgres."""
    if not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"database URL {url!r} must start with postgresql:// "
                          f"(set --database-url or {ENV_DATABASE_URL})")


def bootstrap_servers(broker: str) -> list[str]:
    """`kafka://a:9092;kafka://b:9092` -> ['a:9092', 'b:9092'] for aiokafka."""
    return [part.removeprefix("kafka://") for part in broker.split(";")]


def load_settings(
    broker: str | None = None,
    database_url: str | None = None,
    plan: str | None = None,
    **overrides: object,
) -> Settings:
    """Settings from the command line's values and the CRMBONUS_* variables that have no flag.

    `--broker`, `--database-url` and `--plan` read their variables themselves (click's
    `envvar`, stream/cli.py), so what arrives here is already flag-else-environment.
    """
    env = os.environ
    return Settings(
        broker=broker or None,
        database_url=database_url or None,
        plan_path=plan or None,
        topic_prefix=env.get(ENV_TOPIC_PREFIX, DEFAULT_TOPIC_PREFIX),
        data_dir=Path(env.get(ENV_DATA_DIR, DEFAULT_DATA_DIR)),
        **overrides,  # type: ignore[arg-type]
    )
