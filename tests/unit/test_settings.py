"""Settings and small helpers: flags over environment over defaults, periods, topic names."""

from __future__ import annotations

import pytest

from stream import cli
from stream.errors import ConfigError, CrmbonusError
from stream.periods import adjustment_target, check_period, next_period
from stream.settings import Settings, Topics, bootstrap_servers, load_settings, validate_broker


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
    assert settings.topics == Topics("crm.sales", "crm.callbacks", "crm.lead-handoffs", "crm.dead-letters")
    assert settings.web_port == 6066


@pytest.mark.parametrize("event_type,topic", [
    ("sale", "crm.sales"), ("refund", "crm.sales"), ("cancellation", "crm.sales"), ("callback", "crm.callbacks"),
    ("lead_handoff", "crm.lead-handoffs"), ("teleport", "crm.sales"), (None, "crm.sales"),
])
def test_topic_of_an_event_type(event_type: str | None, topic: str) -> None:
    assert Topics.with_prefix("crm.").for_event_type(event_type) == topic


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
