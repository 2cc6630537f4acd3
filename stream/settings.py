"""Settings: loaded once from flags and environment variables into a frozen object.

Precedence is flag > environment variable > default (SPEC section 8). A broker or
database left unset means "embedded": crmbonus starts its own (stream/embedded.py),
and what runs afterwards gets `Resolved` settings, whose broker and database are
always there.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from stream.errors import ConfigError

#: Environment variables, each documented in the README's configuration table.
ENV_BROKER = "CRMBONUS_BROKER"
ENV_DATABASE_URL = "CRMBONUS_DATABASE_URL"
ENV_PLAN = "CRMBONUS_PLAN"
ENV_TOPIC_PREFIX = "CRMBONUS_TOPIC_PREFIX"
ENV_DATA_DIR = "CRMBONUS_DATA_DIR"
#: Kafka security (SPEC section 11): each of these has a flag too, but the password has none.
ENV_KAFKA_SECURITY_PROTOCOL = "CRMBONUS_KAFKA_SECURITY_PROTOCOL"
ENV_KAFKA_SASL_MECHANISM = "CRMBONUS_KAFKA_SASL_MECHANISM"
ENV_KAFKA_SASL_USERNAME = "CRMBONUS_KAFKA_SASL_USERNAME"
ENV_KAFKA_SASL_PASSWORD = "CRMBONUS_KAFKA_SASL_PASSWORD"
ENV_KAFKA_SASL_PASSWORD_FILE = "CRMBONUS_KAFKA_SASL_PASSWORD_FILE"
ENV_KAFKA_SSL_CAFILE = "CRMBONUS_KAFKA_SSL_CAFILE"
ENV_KAFKA_SSL_CERTFILE = "CRMBONUS_KAFKA_SSL_CERTFILE"
ENV_KAFKA_SSL_KEYFILE = "CRMBONUS_KAFKA_SSL_KEYFILE"

DEFAULT_TOPIC_PREFIX = "crm."
DEFAULT_DATA_DIR = ".crmbonus"
DEFAULT_PARTITIONS = 6

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
#: With SASL and no mechanism set: aiokafka's default, and the one every SASL broker offers.
DEFAULT_SASL_MECHANISM = "PLAIN"


def _named(env: str) -> str:
    """How a message names a setting: its flag and its variable (`--kafka-sasl-username / CRMBONUS_...`)."""
    return f"--{env.removeprefix('CRMBONUS_').lower().replace('_', '-')} / {env}"


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
class KafkaSecurity:
    """How every Kafka client crmbonus makes authenticates and encrypts (SPEC section 11).

    PLAINTEXT by default. Checked when made: every message names the flag and variable to
    fix. The password is never in the repr (nor in a log line or a child's command line).
    stream/kafka.py `client_options` turns this into aiokafka's keyword arguments.
    """

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    #: Where the password came from (CRMBONUS_KAFKA_SASL_PASSWORD or ..._FILE), for messages.
    password_variable: str = ENV_KAFKA_SASL_PASSWORD
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    def __post_init__(self) -> None:
        if self.protocol not in SECURITY_PROTOCOLS:
            raise ConfigError(f"Kafka security protocol {self.protocol!r} is none of {', '.join(SECURITY_PROTOCOLS)} "
                              f"(set {_named(ENV_KAFKA_SECURITY_PROTOCOL)})")
        if self.sasl_mechanism is not None and self.sasl_mechanism not in SASL_MECHANISMS:
            raise ConfigError(f"SASL mechanism {self.sasl_mechanism!r} is none of {', '.join(SASL_MECHANISMS)} "
                              f"(set {_named(ENV_KAFKA_SASL_MECHANISM)})")
        sasl_given = [name for name, value in ((ENV_KAFKA_SASL_MECHANISM, self.sasl_mechanism),
                                               (ENV_KAFKA_SASL_USERNAME, self.sasl_username),
                                               (self.password_variable, self.sasl_password)) if value is not None]
        if self.sasl:
            if not self.sasl_username:
                raise ConfigError(f"{self.protocol} needs a SASL username: set {_named(ENV_KAFKA_SASL_USERNAME)}")
            if not self.sasl_password:
                raise ConfigError(f"{self.protocol} needs a SASL password: set {ENV_KAFKA_SASL_PASSWORD} or "
                                  f"{ENV_KAFKA_SASL_PASSWORD_FILE} (a file holding it; never a flag)")
        elif sasl_given:
            raise ConfigError(f"{', '.join(sasl_given)} set, but the Kafka security protocol is {self.protocol}: "
                              f"set {_named(ENV_KAFKA_SECURITY_PROTOCOL)} to SASL_PLAINTEXT or SASL_SSL")
        files = ((ENV_KAFKA_SSL_CAFILE, self.ssl_cafile), (ENV_KAFKA_SSL_CERTFILE, self.ssl_certfile),
                 (ENV_KAFKA_SSL_KEYFILE, self.ssl_keyfile))
        given = [name for name, path in files if path is not None]
        if given and not self.tls:
            raise ConfigError(f"{', '.join(given)} set, but the Kafka security protocol is {self.protocol} (no TLS): "
                              f"set {_named(ENV_KAFKA_SECURITY_PROTOCOL)} to SSL or SASL_SSL")
        for name, path in files:
            if path is not None and not path.is_file():
                raise ConfigError(f"{path} is not a file (set by {_named(name)})")
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ConfigError(f"{_named(ENV_KAFKA_SSL_KEYFILE)} is the key of a client certificate: "
                              f"set {_named(ENV_KAFKA_SSL_CERTFILE)} too")

    @property
    def sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def mechanism(self) -> str:
        """The SASL mechanism in use (PLAIN unless set); only meaningful with SASL."""
        return self.sasl_mechanism or DEFAULT_SASL_MECHANISM

    @property
    def configured(self) -> bool:
        """Anything other than plain PLAINTEXT is set."""
        return self != KafkaSecurity()

    def describe(self) -> str:
        """For messages: the protocol, and the user and mechanism with SASL (never the password)."""
        if self.sasl:
            return f"{self.protocol}, user {self.sasl_username!r}, {self.mechanism}"
        return self.protocol

    def environment(self) -> dict[str, str | None]:
        """The variables that give these settings to a child process (None: unset), but the password:
        it stays in the variable (or file) it was read from, which the child inherits."""
        return {
            ENV_KAFKA_SECURITY_PROTOCOL: self.protocol,
            ENV_KAFKA_SASL_MECHANISM: self.sasl_mechanism,
            ENV_KAFKA_SASL_USERNAME: self.sasl_username,
            ENV_KAFKA_SSL_CAFILE: None if self.ssl_cafile is None else str(self.ssl_cafile),
            ENV_KAFKA_SSL_CERTFILE: None if self.ssl_certfile is None else str(self.ssl_certfile),
            ENV_KAFKA_SSL_KEYFILE: None if self.ssl_keyfile is None else str(self.ssl_keyfile),
        }


PLAINTEXT = KafkaSecurity()


@dataclass(frozen=True)
class _Common:
    """What a crmbonus process needs besides its broker and database, fixed at start-up."""

    plan_path: str | None = None
    topic_prefix: str = DEFAULT_TOPIC_PREFIX
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    group_id: str = "crmbonus"
    #: Kafka's security settings, for every client (SPEC section 11).
    kafka: KafkaSecurity = PLAINTEXT
    #: Create missing topics on a configured broker (`--create-topics`); the embedded broker's always are.
    create_topics: bool = False
    #: Partitions of a topic crmbonus creates: the most workers that can share the work.
    partitions: int = DEFAULT_PARTITIONS
    #: Replicas of a topic crmbonus creates; None: the broker's default.replication.factor (-1) on a
    #: configured broker, 1 on the embedded one (stream/kafka.py).
    replication_factor: int | None = None
    web_port: int = 6066
    web_enabled: bool = True
    #: Larger batches recompute a customer once for more of its events (2,000 -> 5,000: +30%).
    batch_max: int = 5_000
    batch_within: float = 0.2
    topics: Topics = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "topics", Topics.with_prefix(self.topic_prefix))
        if self.partitions < 1:
            raise ConfigError(f"--partitions {self.partitions}: a topic has 1 partition or more")
        if self.replication_factor is not None and self.replication_factor != -1 and self.replication_factor < 1:
            raise ConfigError(f"--replication-factor {self.replication_factor}: 1 or more, or -1 for the "
                              "broker's default.replication.factor")


@dataclass(frozen=True)
class Settings(_Common):
    """As configured: a broker or database left unset (None) is an embedded one, not started yet."""

    broker: str | None = None
    database_url: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.broker is not None:
            validate_broker(self.broker)
        elif self.kafka.configured:
            raise ConfigError(
                f"Kafka security settings ({self.kafka.describe()}) apply only to a configured broker: "
                f"set --broker or {ENV_BROKER}, or unset the CRMBONUS_KAFKA_* settings "
                "(the embedded broker speaks PLAINTEXT only)"
            )
        if self.database_url is not None:
            validate_database_url(self.database_url)

    def environment(self) -> dict[str, str | None]:
        """The CRMBONUS_* variables that give a child process these settings (None: unset it).

        Children get their settings this way, never on their command line: a database URL
        may hold a password. The Kafka password is inherited as it was read (stream/settings.py
        `KafkaSecurity.environment`).
        """
        return {
            ENV_BROKER: self.broker,
            ENV_DATABASE_URL: self.database_url,
            ENV_PLAN: self.plan_path,
            ENV_TOPIC_PREFIX: self.topic_prefix,
            ENV_DATA_DIR: str(self.data_dir),
            **self.kafka.environment(),
        }

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

    @property
    def creates_topics(self) -> bool:
        """Missing topics are created (the embedded broker, or `--create-topics`), else an error."""
        return self.broker_embedded or self.create_topics

    @property
    def topic_replicas(self) -> int:
        return topic_replicas(self.replication_factor, self.broker_embedded)


def topic_replicas(replication_factor: int | None, embedded: bool) -> int:
    """The replication factor of a topic crmbonus creates: as set, else 1 on the embedded broker
    (one node) and -1 on a configured one: its default.replication.factor (Kafka 2.4+, KIP-464),
    so the cluster's own choice applies (3 on a typical production cluster, 1 on a single node)."""
    if replication_factor is not None:
        return replication_factor
    return 1 if embedded else -1


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


def load_kafka_security(
    protocol: str | None = None,
    sasl_mechanism: str | None = None,
    sasl_username: str | None = None,
    ssl_cafile: str | None = None,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    env: Mapping[str, str] | None = None,
) -> KafkaSecurity:
    """Kafka's security settings from the command line's values (flag-else-variable, read by click)
    and the password, which only a variable gives: CRMBONUS_KAFKA_SASL_PASSWORD, or
    CRMBONUS_KAFKA_SASL_PASSWORD_FILE naming a file that holds it (one trailing newline dropped)."""
    env = os.environ if env is None else env
    password = env.get(ENV_KAFKA_SASL_PASSWORD) or None
    password_file = env.get(ENV_KAFKA_SASL_PASSWORD_FILE) or None
    variable = ENV_KAFKA_SASL_PASSWORD
    if password is not None and password_file is not None:
        raise ConfigError(f"both {ENV_KAFKA_SASL_PASSWORD} and {ENV_KAFKA_SASL_PASSWORD_FILE} are set: set one")
    if password_file is not None:
        variable = ENV_KAFKA_SASL_PASSWORD_FILE
        try:
            password = Path(password_file).read_text().removesuffix("\n").removesuffix("\r")
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else error
            raise ConfigError(f"cannot read the SASL password from {password_file} "
                              f"({ENV_KAFKA_SASL_PASSWORD_FILE}): {reason}") from error
        if not password:
            raise ConfigError(f"{password_file} ({ENV_KAFKA_SASL_PASSWORD_FILE}) is empty")

    def path(value: str | None) -> Path | None:
        return Path(value) if value else None

    return KafkaSecurity(
        protocol=(protocol or "PLAINTEXT").strip().upper(),
        sasl_mechanism=sasl_mechanism.strip().upper() if sasl_mechanism else None,
        sasl_username=sasl_username or None,
        sasl_password=password,
        password_variable=variable,
        ssl_cafile=path(ssl_cafile),
        ssl_certfile=path(ssl_certfile),
        ssl_keyfile=path(ssl_keyfile),
    )


def load_settings(
    broker: str | None = None,
    database_url: str | None = None,
    plan: str | None = None,
    **overrides: object,
) -> Settings:
    """Settings from the command line's values and the CRMBONUS_* variables that have no flag.

    `--broker`, `--database-url`, `--plan` and the Kafka security flags read their variables
    themselves (click's `envvar`, stream/cli.py), so what arrives here is already
    flag-else-environment; `kafka=` (a `KafkaSecurity`, from `load_kafka_security`) is one of
    the overrides.
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
