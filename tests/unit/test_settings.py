"""Settings and small helpers: flags over environment over defaults, periods, topic names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from schemas.events import EVENT_TYPES
from stream import cli
from stream.errors import ConfigError, CrmbonusError
from stream.periods import adjustment_target, check_period, next_period
from stream.settings import (
    KafkaSecurity,
    Settings,
    Topics,
    bootstrap_servers,
    is_loopback,
    load_kafka_security,
    load_settings,
    load_web_token,
    validate_broker,
    validate_database_url,
    validate_web_token,
)


def command_line_settings(*args: str) -> Settings:
    """The settings a command gets from these flags and the environment (click reads the variables)."""
    params = cli.leaderboard.make_context("leaderboard", list(args)).params
    return cli.settings_from(params["broker"], params["database_url"], params["plan"])


def test_flags_win_over_environment_over_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRMBONUS_BROKER", "kafka://env:9092")
    monkeypatch.setenv("CRMBONUS_DATABASE_URL", "postgresql://env/db")
    monkeypatch.setenv("CRMBONUS_TOPIC_PREFIX", "acme.")
    from_env = command_line_settings()
    assert (from_env.broker, from_env.database_url, from_env.topics.sales) == (
        "kafka://env:9092", "postgresql://env/db", "acme.sales")
    from_flags = command_line_settings("--broker", "kafka://flag:1", "--database-url", "postgresql://flag/db",
                                       "--plan", "p.toml")
    assert (from_flags.broker, from_flags.database_url, from_flags.plan_path) == (
        "kafka://flag:1", "postgresql://flag/db", "p.toml")


def test_nothing_configured_means_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CRMBONUS_BROKER", "CRMBONUS_DATABASE_URL", "CRMBONUS_PLAN", "CRMBONUS_TOPIC_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.broker is None and settings.database_url is None
    assert settings.topics == Topics("crm.sales", "crm.callbacks", "crm.lead-handoffs", "crm.dead-letters",
                                     "crm.quality")
    assert settings.web_port == 6066


@pytest.mark.parametrize("event_type,topic", [
    ("sale", "crm.sales"), ("refund", "crm.sales"), ("cancellation", "crm.sales"), ("callback", "crm.callbacks"),
    ("lead_handoff", "crm.lead-handoffs"), ("feedback", "crm.quality"), ("quality_review", "crm.quality"),
    ("teleport", "crm.sales"), ("Feedback", "crm.sales"), (None, "crm.sales"),
])
def test_topic_of_an_event_type(event_type: str | None, topic: str) -> None:
    assert Topics.with_prefix("crm.").for_event_type(event_type) == topic


def test_every_event_type_has_its_topic() -> None:
    """SPEC sections 2 and 13: the sales topic takes only sales, cancellations, refunds and the rest."""
    topics = Topics.with_prefix("crm.")
    assert {name: topics.for_event_type(name) for name in EVENT_TYPES} == {
        "sale": "crm.sales", "cancellation": "crm.sales", "refund": "crm.sales", "callback": "crm.callbacks",
        "lead_handoff": "crm.lead-handoffs", "feedback": "crm.quality", "quality_review": "crm.quality"}


def test_the_prefix_renames_the_quality_topic_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRMBONUS_TOPIC_PREFIX", "acme.")
    topics = load_settings().topics
    assert (topics.quality, topics.for_event_type("feedback")) == ("acme.quality", "acme.quality")


def test_inputs_and_the_topics_a_configured_broker_must_have() -> None:
    """SPEC section 11: the quality topic is read when it exists, required only when asked."""
    topics = Topics.with_prefix("crm.")
    assert topics.inputs == ("crm.sales", "crm.callbacks", "crm.lead-handoffs", "crm.quality")
    assert topics.required(quality=False) == ("crm.sales", "crm.callbacks", "crm.lead-handoffs")
    assert topics.required(quality=True) == topics.inputs


def test_the_pattern_of_a_worker_waiting_for_the_quality_topic_matches_its_inputs_exactly() -> None:
    from stream.consumer import inputs_pattern

    topics = Topics.with_prefix("acme.crm.")
    matches = re.compile(inputs_pattern(topics.inputs)).match  # as aiokafka matches a pattern
    assert [name for name in ["acme.crm.sales", "acme.crm.callbacks", "acme.crm.lead-handoffs", "acme.crm.quality",
                              "acme.crm.dead-letters", "acme.crm.salesX", "acmeXcrm.sales", "x.acme.crm.quality",
                              "acme.crm.quality\n"] if matches(name)] == list(topics.inputs)


def test_several_brokers() -> None:
    validate_broker("kafka://a:9092;kafka://b:9093")
    assert bootstrap_servers("kafka://a:9092;kafka://b:9093") == ["a:9092", "b:9093"]


@pytest.mark.parametrize("broker", ["localhost:9092", "kafka://a", "kafka://a:x", "kafka://a:1;b:2", ""])
def test_bad_broker_is_refused(broker: str) -> None:
    with pytest.raises(ConfigError, match="must be kafka://host:port"):
        validate_broker(broker)


@pytest.mark.parametrize("period,following", [("2026-11", "2026-12"), ("2026-12", "2027-01"), ("2027-01", "2027-02")])
def test_next_period(period: str, following: str) -> None:
    assert next_period(period) == following


def test_adjustment_target_skips_closed_months() -> None:
    assert adjustment_target("2026-11", {"2026-11"}) == "2026-12"
    assert adjustment_target("2026-11", {"2026-11", "2026-12", "2027-01"}) == "2027-02"


@pytest.mark.parametrize("period", ["2026-13", "2026-00", "2026-1", "26-11", "2026/11", "", "2026-10\n", " 2026-10"])
def test_bad_period_is_refused(period: str) -> None:
    with pytest.raises(CrmbonusError, match="must be YYYY-MM"):
        check_period(period)


# -- Kafka security (SPEC section 11) ---------------------------------------------------------

SECRET = "s3cret-Passw0rd"
SASL = {"protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "crmbonus"}


def security(env: dict[str, str] | None = None, **flags: str) -> KafkaSecurity:
    return load_kafka_security(**flags, env={} if env is None else env)


def test_plaintext_by_default() -> None:
    assert security() == KafkaSecurity() and not security().configured
    assert load_settings(broker="kafka://a:1").kafka == KafkaSecurity()


def test_the_password_comes_from_its_variable_or_its_file(tmp_path: Path) -> None:
    assert security({"CRMBONUS_KAFKA_SASL_PASSWORD": SECRET}, **SASL).sasl_password == SECRET
    path = tmp_path / "password"
    path.write_text(SECRET + "\n")  # `echo` adds a newline; a Kubernetes secret file has none
    from_file = security({"CRMBONUS_KAFKA_SASL_PASSWORD_FILE": str(path)}, **SASL)
    assert from_file.sasl_password == SECRET
    assert from_file.password_variable == "CRMBONUS_KAFKA_SASL_PASSWORD_FILE"


@pytest.mark.parametrize(("env", "flags", "message"), [
    ({}, {"protocol": "SASL_TLS"}, "'SASL_TLS' is none of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL "
                                   "(set --kafka-security-protocol / CRMBONUS_KAFKA_SECURITY_PROTOCOL)"),
    ({"CRMBONUS_KAFKA_SASL_PASSWORD": SECRET}, {**SASL, "sasl_mechanism": "GSSAPI"},
     "'GSSAPI' is none of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (set --kafka-sasl-mechanism"),
    ({"CRMBONUS_KAFKA_SASL_PASSWORD": SECRET}, {"protocol": "SASL_SSL"},
     "SASL_SSL needs a SASL username: set --kafka-sasl-username / CRMBONUS_KAFKA_SASL_USERNAME"),
    ({}, SASL, "SASL_SSL needs a SASL password: set CRMBONUS_KAFKA_SASL_PASSWORD or "
               "CRMBONUS_KAFKA_SASL_PASSWORD_FILE"),
    ({"CRMBONUS_KAFKA_SASL_PASSWORD": SECRET, "CRMBONUS_KAFKA_SASL_PASSWORD_FILE": "/p"}, SASL,
     "both CRMBONUS_KAFKA_SASL_PASSWORD and CRMBONUS_KAFKA_SASL_PASSWORD_FILE are set"),
    ({"CRMBONUS_KAFKA_SASL_PASSWORD_FILE": "/nonexistent/password"}, SASL,
     "cannot read the SASL password from /nonexistent/password (CRMBONUS_KAFKA_SASL_PASSWORD_FILE)"),
    ({}, {"sasl_username": "crmbonus"}, "CRMBONUS_KAFKA_SASL_USERNAME set, but the Kafka security protocol is "
                                        "PLAINTEXT: set --kafka-security-protocol"),
    ({"CRMBONUS_KAFKA_SASL_PASSWORD": SECRET}, {"protocol": "SSL"}, "CRMBONUS_KAFKA_SASL_PASSWORD set, but"),
    ({}, {"protocol": "SSL", "ssl_cafile": "/nonexistent/ca.pem"},
     "/nonexistent/ca.pem is not a file (set by --kafka-ssl-cafile / CRMBONUS_KAFKA_SSL_CAFILE)"),
    ({"CRMBONUS_KAFKA_SASL_PASSWORD": SECRET}, {**SASL, "protocol": "SASL_PLAINTEXT", "ssl_cafile": __file__},
     "CRMBONUS_KAFKA_SSL_CAFILE set, but the Kafka security protocol is SASL_PLAINTEXT (no TLS)"),
    ({}, {"protocol": "SSL", "ssl_keyfile": __file__},
     "--kafka-ssl-keyfile / CRMBONUS_KAFKA_SSL_KEYFILE is the key of a client certificate: set "
     "--kafka-ssl-certfile / CRMBONUS_KAFKA_SSL_CERTFILE too"),
])
def test_bad_security_settings_are_named(env: dict[str, str], flags: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        security(env, **flags)
    assert message in str(refused.value)
    assert SECRET not in str(refused.value)


def test_an_empty_password_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "password").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        security({"CRMBONUS_KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "password")}, **SASL)


def test_names_are_not_case_sensitive() -> None:
    found = security({"CRMBONUS_KAFKA_SASL_PASSWORD": SECRET}, protocol="sasl_ssl", sasl_mechanism="scram-sha-256",
                     sasl_username="u")
    assert (found.protocol, found.mechanism) == ("SASL_SSL", "SCRAM-SHA-256")
    assert security({"CRMBONUS_KAFKA_SASL_PASSWORD": SECRET}, protocol="SASL_PLAINTEXT",
                    sasl_username="u").mechanism == "PLAIN"  # aiokafka's default


def test_the_password_is_never_in_a_repr() -> None:
    kafka = security({"CRMBONUS_KAFKA_SASL_PASSWORD": SECRET}, **SASL)
    settings = load_settings(broker="kafka://a:9093", database_url="postgresql://u@db/x", kafka=kafka)
    resolved = settings.resolved("kafka://a:9093", "postgresql://u@db/x")
    for shown in (repr(kafka), str(kafka), repr(settings), repr(resolved), kafka.describe()):
        assert SECRET not in shown
    assert "crmbonus" in repr(kafka)
    assert resolved.kafka == kafka  # the resolved settings keep them


def test_security_settings_need_a_configured_broker() -> None:
    kafka = security({"CRMBONUS_KAFKA_SASL_PASSWORD": SECRET}, **SASL)
    with pytest.raises(ConfigError, match=r"apply only to a configured broker: set --broker or CRMBONUS_BROKER"):
        load_settings(kafka=kafka)


def test_topics_are_created_on_the_embedded_broker_and_only_when_asked_on_a_configured_one() -> None:
    configured = load_settings(broker="kafka://a:1").resolved("kafka://a:1", "postgresql://db/x")
    assert not configured.creates_topics and configured.topic_replicas == -1
    asked = load_settings(broker="kafka://a:1", create_topics=True, replication_factor=3)
    assert asked.resolved("kafka://a:1", "postgresql://db/x").creates_topics
    assert asked.resolved("kafka://a:1", "postgresql://db/x").topic_replicas == 3
    embedded = load_settings().resolved("kafka://127.0.0.1:9", "postgresql://db/x")
    assert embedded.creates_topics and embedded.topic_replicas == 1
    with pytest.raises(ConfigError, match="--replication-factor 0"):
        load_settings(broker="kafka://a:1", replication_factor=0)


@pytest.mark.parametrize("url", [
    "postgresql://localhost/db", "postgres://u:p@h:5432/db", "postgresql://u:p%40ss@h1:5432,h2:5433/db",
    "postgresql://[::1]:5432/db", "postgresql://[::1]/db", "postgresql:///db?host=/run/postgresql",
    "postgresql://", "postgresql://u:pa:ss@h/db?sslmode=require",
])
def test_database_urls_asyncpg_takes_are_accepted(url: str) -> None:
    validate_database_url(url)


@pytest.mark.parametrize(("url", "message"), [
    ("postgresql://h:abc/db", "port 'abc' (of 'h:abc') is not a number 1..65535"),
    ("postgresql://h:0/db", "port '0'"),
    ("postgresql://h:65536/db", "port '65536'"),
    ("postgresql://h:\uff15\uff14\uff13\uff12/db", "port '\uff15"),  # fullwidth digits: int() takes them
    ("postgresql://a:1,b:/db", "port '' (of 'b:')"),
    ("postgresql://u:secret@:5432/db", "empty host"),
    ("postgresql://[::1/db", "is not [IPv6 address]"),
    ("postgresql://[::1]x/db", "is not [IPv6 address]"),
    ("postgresql://[::1]:x/db", "port 'x'"),
    ("postgresql://[1.2.3.4]/db", "is not an IPv6 address"),
    ("mysql://u:secret@h/db", "must start with postgresql://"),
    ("postgresql:/h/db", "must start with postgresql://"),
])
def test_bad_database_urls_are_refused_without_their_password(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match="--database-url or CRMBONUS_DATABASE_URL") as refused:
        validate_database_url(url)
    assert message in str(refused.value) and "secret" not in str(refused.value)


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("localhost", True), ("LOCALHOST.", True),
    ("0.0.0.0", False), ("::", False), ("10.0.0.1", False), ("worker", False), ("localhost.example", False),
])
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    Settings(web_host=host, web_insecure=True)  # a valid host either way


def test_the_web_server_binds_loopback_unless_told_and_told_with_a_token() -> None:
    assert (Settings().web_host, Settings().web_token, Settings().web_insecure) == ("127.0.0.1", None, False)
    with pytest.raises(ConfigError, match=r"--web-host 0\.0\.0\.0 is not a loopback address"):
        Settings(web_host="0.0.0.0")
    Settings(web_host="0.0.0.0", web_enabled=False)  # `replay` serves nothing
    Settings(web_host="0.0.0.0", web_insecure=True)
    token = "k" * 32
    tokened = Settings(web_host="0.0.0.0", web_token=token)
    assert token not in repr(tokened) and token not in str(tokened.environment())
    assert tokened.environment()["CRMBONUS_WEB_HOST"] == "0.0.0.0"  # to `--workers` children; the token
    assert tokened.resolved("kafka://h:1", "postgresql://h/db").web_token == token  # is inherited as read


@pytest.mark.parametrize("token", ["", "short", "x" * 15, *("x" * 20 + bad for bad in (" ", "é", "\n", '"', "%"))])
def test_weak_or_unsendable_tokens_are_refused_without_showing_them(token: str) -> None:
    with pytest.raises(ConfigError, match="CRMBONUS_WEB_TOKEN must be at least 16 characters") as refused:
        validate_web_token(token)
    assert token[:5] not in str(refused.value) or not token


def test_an_empty_token_variable_is_no_token() -> None:
    assert load_web_token({"CRMBONUS_WEB_TOKEN": ""}) is None
    assert load_web_token({"CRMBONUS_WEB_TOKEN": "t" * 16}) == "t" * 16


def test_max_poll_interval_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRMBONUS_KAFKA_MAX_POLL_INTERVAL_MS", "4000")
    settings = load_settings()
    assert settings.max_poll_interval_ms == 4000
    assert settings.environment()["CRMBONUS_KAFKA_MAX_POLL_INTERVAL_MS"] == "4000"  # the children get it too


@pytest.mark.parametrize("value,message", [("soon", "a whole number of milliseconds"), ("10", "at least 1000")])
def test_bad_max_poll_interval_is_refused(monkeypatch: pytest.MonkeyPatch, value: str, message: str) -> None:
    monkeypatch.setenv("CRMBONUS_KAFKA_MAX_POLL_INTERVAL_MS", value)
    with pytest.raises(ConfigError, match=f"CRMBONUS_KAFKA_MAX_POLL_INTERVAL_MS.*{message}"):
        load_settings()
