"""Bad command-line input, as a new user and an attacker type it: a message naming it, exit 2, no
traceback, refused before any broker or database is started; and data shown literally.

Every case here fails before a service starts, so it runs in-process (click's CliRunner).
tests/integration/test_cli_inputs.py runs the cases that need a database, as real processes.
"""

from __future__ import annotations

import io
import json
import os
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from stream import cli
from stream.plan import DEFAULT_PLAN_PATH
from stream.reports import Standing
from tests.examples import ROOT

HOSTILE = ("[link=https://x.example]a[/link]", "[/bold]", "[red]", ":smile:", "[bold red]x[/]")
TOKEN_VARIABLES = ("CRMBONUS_WEB_TOKEN", "CRMBONUS_WEB_HOST")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [name for name in os.environ if name.startswith("CRMBONUS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CRMBONUS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    """Paths the cases refer to by name: a directory, a file in place of a directory, a plan, events."""
    plan = tmp_path / "plan.toml"
    plan.write_text((Path(cli.__file__).parent / "plans" / "default.toml").read_text())
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps({"event_id": "x", "event_type": HOSTILE[1]}) + "\n")
    return {"{dir}": str(tmp_path), "{plan}": str(plan), "{events}": str(events),
            "{under_a_file}": str(events / "plan.toml")}


#: (arguments, environment, what the message must say). {name}: a path of the `files` fixture.
#: A plan directory (SPEC 12) whose plan.toml has no effective_from.
IN_A_DIRECTORY = "effective_from: missing required key (every version in a plan directory has one)"

CASES = [
    # the web server (SPEC section 16)
    (["worker", "--web-port", "70000"], {}, "'--web-port': 70000 is not in the range 1<=x<=65535"),
    (["worker", "--web-port", "0"], {}, "'--web-port': 0 is not in the range"),
    (["worker", "--web-port", "65535", "--workers", "2"], {}, "beyond port 65535"),
    (["worker", "--workers", "0"], {}, "'--workers': 0 is not in the range 1<=x<=64"),
    (["worker", "--web-host", "0.0.0.0"], {}, "--web-host 0.0.0.0 is not a loopback address"),
    (["worker", "--web-host", "::"], {}, "--web-insecure"),
    (["worker"], {"CRMBONUS_WEB_HOST": "10.1.2.3"}, "--web-host 10.1.2.3 is not a loopback address"),
    (["demo", "--serve", "--web-host", "0.0.0.0"], {}, "CRMBONUS_WEB_TOKEN is not set"),
    (["worker", "--web-host", ""], {}, "--web-host '' is neither an IP address"),
    (["worker", "--web-host", "[::1]"], {}, "IPv6 without brackets"),
    (["worker", "--web-host", HOSTILE[0]], {}, f"--web-host '{HOSTILE[0]}' is neither"),
    (["worker"], {"CRMBONUS_WEB_TOKEN": "short"}, "CRMBONUS_WEB_TOKEN must be at least 16 characters"),
    (["worker"], {"CRMBONUS_WEB_TOKEN": "x" * 20 + " y"}, "it is 22 characters long"),
    # periods
    (["leaderboard", "--period", "2026-13"], {}, "period '2026-13' must be YYYY-MM"),
    (["leaderboard", "--period", "2026-1"], {}, "period '2026-1' must be YYYY-MM"),
    (["leaderboard", "--period", ""], {}, "period '' must be YYYY-MM"),
    (["leaderboard", "--period", HOSTILE[0]], {}, f"period '{HOSTILE[0]}' must be YYYY-MM"),
    (["settle", "--period", "2026-10\n"], {}, "period '2026-10\\n' must be YYYY-MM"),
    (["settle", "--period", HOSTILE[1]], {}, f"period '{HOSTILE[1]}' must be YYYY-MM"),
    (["settle", "--period", "\x1b]8;;https://x.example\x07a"], {}, "period '\\x1b]8;;https://x.example\\x07a'"),
    (["export", "--period", "2026/10"], {}, "period '2026/10' must be YYYY-MM"),
    (["demo", "--month", "2026-00"], {}, "period '2026-00' must be YYYY-MM"),
    (["settle"], {}, "Missing option '--period'"),
    # other values
    (["leaderboard", "--limit", "-1"], {}, "'--limit': -1 is not in the range x>=1"),
    (["leaderboard", "--limit", "0"], {}, "'--limit': 0 is not in the range x>=1"),
    (["leaderboard", "--limit", "many"], {}, "'many' is not a valid integer"),
    (["leaderboard", "--role", "ceo"], {}, "'ceo' is not one of 'telemarketer', 'field_rep'"),
    (["export", "--period", "2026-10", "--format", "xml"], {}, "'xml' is not one of 'csv', 'json'"),
    (["export", "--period", "2026-10", "-o", "/nonexistent/dir/f.csv"], {},
     "--output /nonexistent/dir/f.csv: no directory /nonexistent/dir"),
    (["export", "--period", "2026-10", "-o", "{dir}"], {}, "is a directory"),
    (["demo", "--customers", "-5"], {}, "'--customers': -5 is not in the range x>=0"),
    (["replay", "{dir}"], {}, "is a directory"),
    (["replay", "/nonexistent.jsonl"], {}, "cannot read /nonexistent.jsonl"),
    (["publish", "--check", "{events}"], {}, f"unknown event_type '{HOSTILE[1]}'"),
    (["worker", "--partitions", "0", "--create-topics"], {}, "'--partitions': 0 is not in the range"),
    (["worker", "--replication-factor", "0", "--create-topics"], {}, "--replication-factor 0: 1 or more"),
    # where the services are
    (["leaderboard", "--database-url", "postgresql://h:abc/db"], {},
     "the database URL's port 'abc' (of 'h:abc') is not a number 1..65535"),
    (["leaderboard", "--database-url", "postgresql://u:pw@h:99999/db"], {}, "port '99999'"),
    (["leaderboard", "--database-url", "postgresql://a:1,b:x/db"], {}, "port 'x' (of 'b:x')"),
    (["leaderboard", "--database-url", "postgresql://[::1/db"], {}, "is not [IPv6 address]"),
    (["leaderboard", "--database-url", "postgresql://[zz]:5432/db"], {}, "is not an IPv6 address"),
    (["leaderboard", "--database-url", "postgresql://:5432/db"], {}, "empty host"),
    (["leaderboard", "--database-url", "mysql://u:pw@h/db"], {}, "must start with postgresql://"),
    (["leaderboard"], {"CRMBONUS_DATABASE_URL": "postgresql://h:abc/db"}, "CRMBONUS_DATABASE_URL"),
    (["replay", "{events}", "--broker", "kafka://h:99999"], {}, "must be kafka://host:port with a port 1..65535"),
    (["replay", "{events}", "--broker", "kafka://:9092"], {}, "must be kafka://host:port"),
    # the plan: every command honours it (and refuses a bad one) or refuses it; a directory is a set
    # of versions (SPEC 12), here with a plan.toml lacking effective_from
    (["leaderboard", "--plan", "/nonexistent.toml"], {}, "plan /nonexistent.toml: cannot read the plan file"),
    (["leaderboard", "--plan", "{dir}"], {}, IN_A_DIRECTORY),
    (["settle", "--period", "2026-10", "--plan", "{dir}"], {}, IN_A_DIRECTORY),
    (["replay", "{events}", "--plan", "{under_a_file}"], {}, "cannot read the plan file: Not a directory"),
    (["worker", "--plan", "/nonexistent.toml"], {}, "cannot read the plan file: No such file or directory"),
    (["demo", "--plan", "{dir}"], {}, IN_A_DIRECTORY),
    (["export", "--period", "2026-10", "--plan", "/nonexistent.toml"], {}, "cannot read the plan file"),
    (["publish", "{events}", "--plan", "{dir}"], {}, IN_A_DIRECTORY),
]


def case_id(case: tuple[list[str], dict[str, str], str]) -> str:
    args, env, _ = case
    return " ".join([*(f"{k}={v}" for k, v in env.items()), *args]).encode("unicode_escape").decode()


@pytest.mark.parametrize(("args", "env", "message"), CASES, ids=[case_id(case) for case in CASES])
def test_bad_input_is_named_with_exit_2_and_no_traceback(
        files: dict[str, str], monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str],
        message: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli.main, [files.get(arg, arg) for arg in args])
    output = result.output
    assert result.exit_code == 2, (result.exception, output)
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in output
    assert message in " ".join(output.split()) or message in output, output


def test_an_unreadable_plan_is_named(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads any file; 'Not a directory' above is the unreadable case that runs as root")
    plan = tmp_path / "secret.toml"
    plan.write_text("version = 1\n")
    plan.chmod(0)
    result = CliRunner().invoke(cli.main, ["leaderboard", "--plan", str(plan)])
    assert result.exit_code == 2 and "cannot read the plan file: Permission denied" in result.output


def test_the_plan_variable_is_no_error_for_a_command_that_uses_no_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    """CRMBONUS_PLAN configures a deployment's every command: export and publish ignore it."""
    monkeypatch.setenv("CRMBONUS_PLAN", "/nonexistent.toml")
    result = CliRunner().invoke(cli.main, ["publish", "--check", "/nonexistent.jsonl"])
    assert result.exit_code == 2 and "cannot read /nonexistent.jsonl" in result.output  # not the plan


def test_help_says_which_commands_use_no_plan() -> None:
    for command in ("export", "publish"):
        text = " ".join(CliRunner().invoke(cli.main, [command, "--help"]).output.split())
        assert "then not used by this command" in text and "CRMBONUS_PLAN is ignored" in text
    for command in ("worker", "replay", "settle", "leaderboard", "demo"):
        assert "not used by this command" not in CliRunner().invoke(cli.main, [command, "--help"]).output


def test_publish_accepts_a_valid_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SPEC section 8: every command accepts --plan; where no plan is used it is checked, not refused:
    publish gets past it to its own next question, the broker."""
    monkeypatch.delenv("CRMBONUS_BROKER", raising=False)
    monkeypatch.setenv("CRMBONUS_DATA_DIR", str(tmp_path))
    events = tmp_path / "events.jsonl"
    events.write_bytes((ROOT / "tests" / "fixtures" / "examples" / "month.jsonl").read_bytes())
    result = CliRunner().invoke(cli.main, ["publish", str(events), "--plan", str(DEFAULT_PLAN_PATH)])
    assert result.exit_code == 2 and "no broker configured" in result.output, result.output


def test_a_loopback_or_tokened_or_insecure_web_host_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    def settings(*args: str) -> object:
        params = dict(cli.worker.make_context("worker", list(args)).params)
        kafka = cli.kafka_security(params)
        return cli.settings_from(params["broker"], params["database_url"], params["plan"], kafka,
                                 **cli.web_settings(params["web_port"], params["web_host"], params["web_insecure"]))

    assert settings().web_host == "127.0.0.1"  # type: ignore[attr-defined]
    for host in ("localhost", "127.0.0.2", "::1"):
        assert settings("--web-host", host).web_host == host  # type: ignore[attr-defined]
    assert settings("--web-host", "0.0.0.0", "--web-insecure").web_token is None  # type: ignore[attr-defined]
    monkeypatch.setenv("CRMBONUS_WEB_TOKEN", "t" * 32)
    tokened = settings("--web-host", "0.0.0.0")
    assert tokened.web_token == "t" * 32 and "t" * 32 not in repr(tokened)  # type: ignore[attr-defined]
    monkeypatch.setenv("CRMBONUS_WEB_HOST", "0.0.0.0")
    assert settings().web_host == "0.0.0.0"  # type: ignore[attr-defined]


def rendered(renderable: object) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=200, force_terminal=True, color_system="truecolor").print(renderable)
    return buffer.getvalue()


def test_the_leaderboard_table_shows_hostile_ids_literally() -> None:
    people = [*HOSTILE, "tm-\x1b[31mred\x1b]8;;https://x.example\x07", "fr-\u202eevil"]
    rows = [Standing(rank=i + 1, person_id=person, role="field_rep", cross_sell_count=1,
                     cross_sell_amount=Decimal("10.00"), appointments_held=0, appointments_converted=0,
                     total_bonus=Decimal("1.00")) for i, person in enumerate(people)]
    text = rendered(cli.leaderboard_table("2026-11", None, rows))
    for person in HOSTILE:
        assert person in text
    assert "\x1b]8;" not in text  # no hyperlink: neither from [link=...] nor from an OSC 8 in an id
    assert "tm-\\x1b[31mred\\x1b]8;;https://x.example\\x07" in text and "fr-\\u202eevil" in text
    assert "\u202e" not in text and "\x07" not in text


def test_messages_show_their_data_literally(capsys: pytest.CaptureFixture[str]) -> None:
    for hostile in HOSTILE:
        cli.note(f"published 1 lines to {hostile}")
    cli.note("two\nlines \x1b[2J")
    errors = capsys.readouterr().err
    for hostile in HOSTILE:
        assert f"published 1 lines to {hostile}" in errors
    assert "two\nlines \\x1b[2J" in errors
