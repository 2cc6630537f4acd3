"""Settings: loaded once from flags and environment variables into a frozen object.

Precedence is flag > environment variable > default (SPEC section 8). A broker or
database left unset means "embedded": crmbonus starts its own (stream/embedded.py),
and what runs afterwards gets `Resolved` settings, whose broker and database are
always there.
"""

from __future__ import annotations

import ipaddress
import os
import re
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
#: How long one batch may take (Postgres away and retried included) before Kafka gives the
#: worker's partitions to another member; the worker rejoins once the batch is committed.
ENV_MAX_POLL_INTERVAL_MS = "CRMBONUS_KAFKA_MAX_POLL_INTERVAL_MS"
DEFAULT_MAX_POLL_INTERVAL_MS = 300_000  # Kafka's own default
#: HTTP exposure (SPEC section 16): the interface the worker's web server binds, and the token its
#: pages and API need (a secret: a variable, never a flag).
ENV_WEB_HOST = "CRMBONUS_WEB_HOST"
ENV_WEB_TOKEN = "CRMBONUS_WEB_TOKEN"
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
DEFAULT_WEB_HOST = "127.0.0.1"
DEFAULT_WEB_PORT = 6066
#: A shorter token is guessable; `python -c "import secrets; print(secrets.token_urlsafe(32))"` makes one.
MIN_WEB_TOKEN = 16
#: A token goes into a header and a URL: visible ASCII, nothing that needs quoting or escaping there.
WEB_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]+\Z")
#: A DNS name: labels of letters, digits and inner hyphens, joined by dots.
HOST_NAME = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?\Z")

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
#: With SASL and no mechanism set: aiokafka's default, and the one every SASL broker offers.
DEFAULT_SASL_MECHANISM = "PLAIN"


def _named(env: str) -> str:
    """How a message names a setting: its flag and its variable (`--kafka-sasl-username / CRMBONUS_...`)."""
    return f"--{env.removeprefix('CRMBONUS_').lower().replace('_', '-')} / {env}"


@dataclass(frozen=True)
class Topics:
    """Topic names of SPEC sections 2 and 13; one prefix setting renames all five."""

    sales: str
    callbacks: str
    lead_handoffs: str
    dead_letters: str
    #: `feedback` and `quality_review` (SPEC section 13). On a configured broker it must exist only
    #: when a plan version has a `[kpi]` section; otherwise it is read when it exists (SPEC section 11).
    quality: str

    @classmethod
    def with_prefix(cls, prefix: str) -> Topics:
        return cls(
            sales=f"{prefix}sales",
            callbacks=f"{prefix}callbacks",
            lead_handoffs=f"{prefix}lead-handoffs",
            dead_letters=f"{prefix}dead-letters",
            quality=f"{prefix}quality",
        )

    @property
    def inputs(self) -> tuple[str, str, str, str]:
        """Every topic a worker reads (`quality` once it exists, see `required`)."""
        return (self.sales, self.callbacks, self.lead_handoffs, self.quality)

    def required(self, *, quality: bool) -> tuple[str, ...]:
        """The input topics that must exist on a configured broker (SPEC section 11): the three of
        section 2, and `quality` only when asked (a plan version with `[kpi]`, or lines bound for it)."""
        return (self.sales, self.callbacks, self.lead_handoffs, *((self.quality,) if quality else ()))

    def for_event_type(self, event_type: str | None) -> str:
        """SPEC section 8 `publish`: the topic of an event type; anything else goes to sales."""
        if event_type == "callback":
            return self.callbacks
        if event_type == "lead_handoff":
            return self.lead_handoffs
        if event_type in ("feedback", "quality_review"):
            return self.quality
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
    web_port: int = DEFAULT_WEB_PORT
    web_enabled: bool = True
    #: The interface the web server binds (`--web-host`): loopback unless asked (SPEC section 16).
    web_host: str = DEFAULT_WEB_HOST
    #: CRMBONUS_WEB_TOKEN: with it, every path but /health and /metrics needs it (stream/web.py).
    web_token: str | None = field(default=None, repr=False)
    #: `--web-insecure`: bind a non-loopback address without a token, knowingly.
    web_insecure: bool = False
    #: Larger batches recompute a customer once for more of its events (2,000 -> 5,000: +30%).
    batch_max: int = 5_000
    batch_within: float = 0.2
    #: CRMBONUS_KAFKA_MAX_POLL_INTERVAL_MS: the longest a batch may take before the group moves on.
    max_poll_interval_ms: int = DEFAULT_MAX_POLL_INTERVAL_MS
    topics: Topics = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "topics", Topics.with_prefix(self.topic_prefix))
        if self.partitions < 1:
            raise ConfigError(f"--partitions {self.partitions}: a topic has 1 partition or more")
        if self.replication_factor is not None and self.replication_factor != -1 and self.replication_factor < 1:
            raise ConfigError(f"--replication-factor {self.replication_factor}: 1 or more, or -1 for the "
                              "broker's default.replication.factor")
        if not 1 <= self.web_port <= 65535:
            raise ConfigError(f"--web-port {self.web_port}: a TCP port is 1..65535")
        if self.max_poll_interval_ms < 1000:
            raise ConfigError(f"{ENV_MAX_POLL_INTERVAL_MS}={self.max_poll_interval_ms}: at least 1000 (ms)")
        validate_web_host(self.web_host)
        if self.web_token is not None:
            validate_web_token(self.web_token)
        if self.web_enabled and not self.web_insecure and self.web_token is None and not is_loopback(self.web_host):
            raise ConfigError(
                f"--web-host {self.web_host} is not a loopback address, and {ENV_WEB_TOKEN} is not set: anyone "
                f"who can reach it would read everyone's pay. Set {ENV_WEB_TOKEN} (then every page but /health "
                "and /metrics needs it), or give --web-insecure to serve it to everyone anyway"
            )

    @property
    def web_url(self) -> str:
        """The address of the web server, for messages (a wildcard bind is shown as localhost)."""
        host = "localhost" if self.web_host in ("0.0.0.0", "::") else self.web_host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.web_port}"


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
        `KafkaSecurity.environment`), and so is CRMBONUS_WEB_TOKEN, which only a variable gives.
        """
        return {
            ENV_BROKER: self.broker,
            ENV_DATABASE_URL: self.database_url,
            ENV_PLAN: self.plan_path,
            ENV_TOPIC_PREFIX: self.topic_prefix,
            ENV_DATA_DIR: str(self.data_dir),
            ENV_WEB_HOST: self.web_host,
            ENV_MAX_POLL_INTERVAL_MS: str(self.max_poll_interval_ms),
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
        host, _, port = hostport.rpartition(":")
        if not part.startswith("kafka://") or not host or not _is_port(port):
            raise ConfigError(
                f"broker {broker!r} must be kafka://host:port with a port 1..65535, several joined by ';' "
                f"(set --broker or {ENV_BROKER})"
            )


def _is_port(text: str) -> bool:
    return text.isascii() and text.isdigit() and 1 <= int(text) <= 65535


def validate_database_url(url: str) -> None:
    """Refuse a database URL that asyncpg would not take for Postgres, or would fail to parse.

    The hosts part (`user:password@host:port,host2:port2`) is checked here, since asyncpg raises
    a bare ValueError on a port that is not a number; messages never repeat the user or password.
    """
    where = f"(set --database-url or {ENV_DATABASE_URL})"
    scheme, separator, rest = url.partition("://")
    if not separator or scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"the database URL must start with postgresql:// {where}")
    netloc = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    hosts = netloc.rpartition("@")[2]
    if not hosts:
        return  # no host: asyncpg's defaults (PGHOST, the local socket)
    for spec in hosts.split(","):
        if spec.startswith("["):
            address, bracket, tail = spec[1:].partition("]")
            if not bracket or (tail and not tail.startswith(":")):
                raise ConfigError(f"the database URL's host {spec!r} is not [IPv6 address] or [IPv6 address]:port "
                                  f"{where}")
            try:
                ipaddress.IPv6Address(address)
            except ValueError:
                raise ConfigError(f"the database URL's host {spec!r} is not an IPv6 address {where}") from None
            port = tail[1:] if tail else None
        else:
            host, colon, port_text = spec.rpartition(":")
            if not colon:
                host, port_text = spec, ""
            if not host:
                raise ConfigError(f"the database URL has an empty host in {hosts!r} {where}")
            port = port_text if colon else None
        if port is not None and not _is_port(port):
            raise ConfigError(f"the database URL's port {port!r} (of {spec!r}) is not a number 1..65535 {where}")


def is_loopback(host: str) -> bool:
    """`host` names this machine only: localhost, 127.0.0.0/8 or ::1."""
    if host.rstrip(".").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_web_host(host: str) -> None:
    """An IP address (no brackets) or a host name, for the web server to bind."""
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    if not HOST_NAME.match(host):
        raise ConfigError(f"--web-host {host!r} is neither an IP address (IPv6 without brackets) nor a host name "
                          f"(set --web-host or {ENV_WEB_HOST})")


def validate_web_token(token: str) -> None:
    """A token long enough not to be guessed, in characters a header and a URL carry as they are.

    The token itself never appears in a message."""
    if len(token) < MIN_WEB_TOKEN or not WEB_TOKEN.match(token):
        raise ConfigError(
            f"{ENV_WEB_TOKEN} must be at least {MIN_WEB_TOKEN} characters of letters, digits and . _ ~ + / = - "
            f"(it is {len(token)} characters long); make one with: "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )


def load_web_token(env: Mapping[str, str] | None = None) -> str | None:
    """CRMBONUS_WEB_TOKEN, or None when unset or empty (checked by the settings it goes into)."""
    env = os.environ if env is None else env
    return env.get(ENV_WEB_TOKEN) or None


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
    overrides.setdefault("max_poll_interval_ms",
                         _milliseconds(env, ENV_MAX_POLL_INTERVAL_MS, DEFAULT_MAX_POLL_INTERVAL_MS))
    return Settings(
        broker=broker or None,
        database_url=database_url or None,
        plan_path=plan or None,
        topic_prefix=env.get(ENV_TOPIC_PREFIX, DEFAULT_TOPIC_PREFIX),
        data_dir=Path(env.get(ENV_DATA_DIR, DEFAULT_DATA_DIR)),
        **overrides,  # type: ignore[arg-type]
    )


def _milliseconds(env: Mapping[str, str], name: str, default: int) -> int:
    """A whole number of milliseconds from the environment, or a message naming the variable."""
    text = env.get(name)
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r}: a whole number of milliseconds, e.g. {default}") from None
