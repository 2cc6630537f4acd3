"""The command line's side of SPEC section 11: the security flags and variables, what reaches
every Kafka client (Faust's producer included), and what a `--workers` child is given."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from stream import cli
from stream.app import broker_credentials
from stream.kafka import client_options
from stream.settings import KafkaSecurity, Settings, load_kafka_security
from tests.apache_kafka import make_certificates

SECRET = "s3cret-Passw0rd"
SASL_ENV = {"CRMBONUS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "CRMBONUS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "CRMBONUS_KAFKA_SASL_USERNAME": "crmbonus", "CRMBONUS_KAFKA_SASL_PASSWORD": SECRET}


@pytest.fixture(autouse=True)
def no_crmbonus_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [*SASL_ENV, "CRMBONUS_BROKER", "CRMBONUS_DATABASE_URL", "CRMBONUS_PLAN", "CRMBONUS_KAFKA_SSL_CAFILE",
                 "CRMBONUS_KAFKA_SSL_CERTFILE", "CRMBONUS_KAFKA_SSL_KEYFILE", "CRMBONUS_KAFKA_SASL_PASSWORD_FILE"]:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A test CA (ca.pem) and a certificate it signed (broker.pem, broker.key), as PEM files."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl to make a test CA")
    directory = tmp_path_factory.mktemp("tls")
    make_certificates(directory, "store-password")
    return directory


def command_line(*args: str) -> Settings:
    """The settings `crmbonus leaderboard ARGS` runs on (click reads the variables)."""
    params = dict(cli.leaderboard.make_context("leaderboard", list(args)).params)
    kafka = cli.kafka_security(params)
    return cli.settings_from(params["broker"], params["database_url"], params["plan"], kafka)


def test_security_flags_win_over_their_variables(monkeypatch: pytest.MonkeyPatch, tls: Path) -> None:
    for name, value in SASL_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CRMBONUS_BROKER", "kafka://env:9093")
    from_env = command_line().kafka
    assert (from_env.protocol, from_env.mechanism, from_env.sasl_username, from_env.sasl_password) == (
        "SASL_SSL", "SCRAM-SHA-512", "crmbonus", SECRET)
    monkeypatch.delenv("CRMBONUS_KAFKA_SASL_PASSWORD")  # no flag can unset it
    from_flags = command_line("--kafka-security-protocol", "SSL", "--kafka-ssl-cafile", str(tls / "ca.pem"),
                              "--kafka-sasl-mechanism", "", "--kafka-sasl-username", "")
    assert from_flags.kafka == KafkaSecurity(protocol="SSL", ssl_cafile=tls / "ca.pem")


def test_there_is_no_password_flag() -> None:
    for command in cli.main.commands.values():
        flags = {flag for param in command.params for flag in getattr(param, "opts", [])}
        assert "--kafka-security-protocol" in flags and "--kafka-ssl-keyfile" in flags, command.name
        assert not any("password" in flag for flag in flags), command.name


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--broker", "kafka://a:9093", "--kafka-security-protocol", "SASL_SSL"], {},
     "SASL_SSL needs a SASL username: set --kafka-sasl-username / CRMBONUS_KAFKA_SASL_USERNAME"),
    ([], SASL_ENV, "apply only to a configured broker: set --broker or CRMBONUS_BROKER"),
    (["--broker", "kafka://a:9093", "--kafka-security-protocol", "TLS"], {},
     "'TLS' is none of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
    (["--broker", "kafka://a:9093", "--kafka-ssl-cafile", "/nonexistent.pem"], {**SASL_ENV},
     "/nonexistent.pem is not a file (set by --kafka-ssl-cafile / CRMBONUS_KAFKA_SSL_CAFILE)"),
])
def test_bad_security_settings_exit_2_naming_them(args: list[str], env: dict[str, str], message: str) -> None:
    for command in (["publish", "x.jsonl"], ["worker"], ["replay", "x.jsonl"], ["settle", "--period", "2026-11"]):
        done = CliRunner().invoke(cli.main, [*command, *args], env=env)
        assert done.exit_code == 2, (command, done.output)
        assert message in " ".join(done.stderr.split()), (command, done.stderr)
        assert SECRET not in done.output + done.stderr
        assert "Traceback" not in done.stderr


def test_children_get_every_setting_in_their_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text(SECRET)
    monkeypatch.setenv("CRMBONUS_KAFKA_SASL_PASSWORD_FILE", str(password_file))
    monkeypatch.setenv("CRMBONUS_BROKER", "kafka://from-env:1")
    settings = command_line("--broker", "kafka://flag:9093", "--database-url", f"postgresql://u:{SECRET}@db/x",
                            "--kafka-security-protocol", "SASL_PLAINTEXT", "--kafka-sasl-username", "crmbonus")
    env = cli.child_environment(settings)
    assert env["CRMBONUS_BROKER"] == "kafka://flag:9093"  # the flag won in the parent: it wins in the child
    assert env["CRMBONUS_DATABASE_URL"] == f"postgresql://u:{SECRET}@db/x"
    assert env["CRMBONUS_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    assert env["CRMBONUS_KAFKA_SASL_USERNAME"] == "crmbonus"
    assert env["CRMBONUS_KAFKA_SASL_PASSWORD_FILE"] == str(password_file)  # inherited as it was: a file
    assert "CRMBONUS_KAFKA_SASL_PASSWORD" not in env and "CRMBONUS_KAFKA_SSL_CAFILE" not in env
    assert "CRMBONUS_PLAN" not in env
    monkeypatch.delenv("CRMBONUS_KAFKA_SASL_PASSWORD_FILE")
    monkeypatch.delenv("CRMBONUS_BROKER")
    embedded = cli.child_environment(command_line())
    assert "CRMBONUS_BROKER" not in embedded and "CRMBONUS_DATABASE_URL" not in embedded  # they find ours


def securities(tls: Path) -> list[KafkaSecurity]:
    env = {"CRMBONUS_KAFKA_SASL_PASSWORD": SECRET}
    return [
        KafkaSecurity(),
        load_kafka_security("SSL", ssl_cafile=str(tls / "ca.pem"), env={}),
        load_kafka_security("SSL", ssl_cafile=str(tls / "ca.pem"), ssl_certfile=str(tls / "broker.pem"),
                            ssl_keyfile=str(tls / "broker.key"), env={}),
        load_kafka_security("SASL_PLAINTEXT", "SCRAM-SHA-256", "crmbonus", env=env),
        load_kafka_security("SASL_SSL", "SCRAM-SHA-512", "crmbonus", ssl_cafile=str(tls / "ca.pem"), env=env),
        load_kafka_security("SASL_SSL", None, "crmbonus", env=env),  # PLAIN, the system's CAs
    ]


def test_client_options_are_aiokafkas_keyword_arguments(tls: Path) -> None:
    plain, ssl_only, mutual, scram_256, scram_512, plain_system_ca = (client_options(s) for s in securities(tls))
    assert plain == {"security_protocol": "PLAINTEXT"}
    assert set(ssl_only) == {"security_protocol", "ssl_context"} and ssl_only["ssl_context"].check_hostname
    assert mutual["ssl_context"] is not ssl_only["ssl_context"]
    assert scram_256 == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-256",
                         "sasl_plain_username": "crmbonus", "sasl_plain_password": SECRET}
    assert scram_512["sasl_mechanism"] == "SCRAM-SHA-512" and scram_512["ssl_context"] is not None
    assert plain_system_ca["sasl_mechanism"] == "PLAIN"


def test_fausts_producer_gets_the_same_options(tls: Path) -> None:
    """Faust turns its credentials back into aiokafka arguments: they must be ours (ssl_context=None
    for SASL_PLAINTEXT is aiokafka's default)."""
    for security in securities(tls):
        options: dict[str, Any] = client_options(security)
        fausts = credentials_to_aiokafka_auth(broker_credentials(options))
        assert {name: value for name, value in fausts.items() if value is not None} == options, security.protocol
        assert SECRET not in repr(broker_credentials(options))


def test_a_ca_file_that_is_no_certificate_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(cli.CrmbonusError, match=rf"{bad} is not a CA certificate file \(PEM\)"):
        client_options(load_kafka_security("SSL", ssl_cafile=str(bad), env={}))
