"""The command line as a user meets it: flags, configuration errors, `publish --check`, `--broker`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stream.embedded import embedded_broker
from tests.examples import EXAMPLES
from tests.integration.conftest import crmbonus, read_csv, running

pytestmark = pytest.mark.integration


def test_publish_check_refuses_a_file_with_invalid_lines_and_publishes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    good = (EXAMPLES / "month.jsonl").read_text().splitlines()[0]
    path.write_text("\n".join([good, "{not json", json.dumps({"event_id": "x", "event_type": "teleport"})]) + "\n")
    done = crmbonus("publish", "--check", str(path), data_dir=tmp_path, check=False)
    assert done.returncode == 2
    assert f"{path}:2: invalid_json: " in done.stderr
    assert f"{path}:3: unknown_event_type: unknown event_type 'teleport'" in done.stderr
    assert "2 of 3 lines are invalid; nothing was published" in done.stderr


def test_publish_without_a_broker_says_what_to_start(tmp_path: Path) -> None:
    done = crmbonus("publish", str(EXAMPLES / "month.jsonl"), data_dir=tmp_path, check=False)
    assert done.returncode == 2
    assert "no embedded broker is running" in done.stderr and "crmbonus worker" in done.stderr


def test_a_bad_plan_is_refused_at_start_up_naming_the_key(tmp_path: Path) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text((Path(__file__).resolve().parents[2] / "deploy" / "plans" / "default.toml").read_text()
                    .replace('attribution_model = "last_touch"', 'attribution_model = "most_touch"'))
    done = crmbonus("replay", str(EXAMPLES / "month.jsonl"), "--plan", str(plan), data_dir=tmp_path, check=False)
    assert done.returncode == 2
    assert "attribution_model" in done.stderr and "most_touch" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("args", "message"), [
    (("settle", "--period", "2026-13"), "period '2026-13' must be YYYY-MM"),
    (("replay", "x.jsonl", "--broker", "localhost:9092"), "broker 'localhost:9092' must be kafka://host:port"),
    (("replay", "x.jsonl", "--database-url", "mysql://db"), "must start with postgresql://"),
])
def test_bad_flags_are_named(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    done = crmbonus(*args, data_dir=tmp_path, check=False)
    assert done.returncode == 2
    assert message in done.stderr


async def test_replay_against_a_configured_broker(pg_url: str, tmp_path: Path) -> None:
    """--broker: topics are created there, a consumer group of the replay's own reads them."""
    with embedded_broker(tmp_path / "external", fresh=True, announce=False) as broker:
        crmbonus("replay", str(EXAMPLES / "month.jsonl"), "--broker", broker, "--database-url", pg_url,
                 data_dir=tmp_path)
        # a second replay into the same broker and database: the topics now hold the month twice
        again = crmbonus("replay", str(EXAMPLES / "month.jsonl"), "--broker", broker, "--database-url", pg_url,
                         data_dir=tmp_path)
    assert "0 events stored" in again.stderr
    assert await running(pg_url) == read_csv(EXAMPLES / "expected_running_after_month.csv")


async def test_leaderboard_command_prints_the_ranking(pg_url: str, tmp_path: Path) -> None:
    crmbonus("replay", str(EXAMPLES / "month.jsonl"), "--database-url", pg_url, data_dir=tmp_path)
    done = crmbonus("leaderboard", "--period", "2026-11", "--role", "field_rep", "--database-url", pg_url,
                    data_dir=tmp_path)
    rows = [line for line in done.stdout.splitlines() if "fr-" in line]
    assert [line.split("│")[1:9] for line in rows] == [
        [" 1 ", " fr-1   ", " field_rep ", "           4 ", " 355.00 ", "    0 ", "     0 ", " 10.65 "],
        [" 2 ", " fr-2   ", " field_rep ", "           2 ", " 105.00 ", "    0 ", "     0 ", "  0.00 "],
    ]
