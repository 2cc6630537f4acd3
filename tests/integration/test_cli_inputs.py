"""The command line against a real database, as its own process: hostile ids in the terminal,
the leaderboard's default period and its zero rows, and the bad inputs that only show once a
database answers. tests/unit/test_cli_inputs.py has the cases that fail before any service starts.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from tests.integration.conftest import crmbonus

pytestmark = pytest.mark.integration

HOSTILE = ("[link=https://x.example]a[/link]", "[/bold]", "[red]", ":smile:", "tm-\x1b]8;;https://x.example\x07x")
COLUMNS = ("period, person_id, role, cross_sell_count, cross_sell_amount, appointments_held, appointments_converted,"
           " cross_sell_bonus, appointment_bonus, prior_adjustments, total_bonus")


async def add_rows(url: str, rows: list[tuple[object, ...]]) -> None:
    """bonus_running rows as a worker would have left them (ids as a CRM sent them)."""
    conn = await asyncpg.connect(url)
    try:
        await conn.executemany(f"INSERT INTO bonus_running ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,"
                               " $10, $11)", rows)
    finally:
        await conn.close()


def row(period: str, person: str, total: str = "5.00", count: int = 1) -> tuple[object, ...]:
    money = Decimal(total)
    return (period, person, "field_rep", count, Decimal("100.00") if count else Decimal(0), 0, 0, money,
            Decimal(0), Decimal(0), money)


async def test_the_leaderboard_shows_hostile_ids_literally(pg_url: str, tmp_path: Path) -> None:
    await add_rows(pg_url, [row("2026-10", person, f"{len(HOSTILE) - i}.00") for i, person in enumerate(HOSTILE)])
    done = crmbonus("leaderboard", "--period", "2026-10", "--database-url", pg_url, data_dir=tmp_path,
                    env={"COLUMNS": "200"})
    assert "Traceback" not in done.stderr
    for person in HOSTILE[:4]:
        assert person in done.stdout
    assert "tm-\\x1b]8;;https://x.example\\x07x" in done.stdout and "\x1b" not in done.stdout


async def test_the_leaderboard_defaults_to_the_latest_month_so_far_and_omits_zero_rows(
        pg_url: str, tmp_path: Path) -> None:
    """SPEC sections 14 and 16: a month after this one (a clock-skewed CRM) is no default; a row of
    zeros (a person whose credits all went away) is nobody's rank."""
    await add_rows(pg_url, [row("2026-10", "fr-1"), row("2026-10", "fr-zero", "0.00", count=0),
                            row("2999-01", "fr-future")])
    done = crmbonus("leaderboard", "--database-url", pg_url, data_dir=tmp_path, env={"COLUMNS": "200"})
    assert "Leaderboard 2026-10" in done.stdout and "fr-1" in done.stdout
    assert "fr-zero" not in done.stdout and "fr-future" not in done.stdout
    future = crmbonus("leaderboard", "--period", "2999-01", "--database-url", pg_url, data_dir=tmp_path)
    assert "fr-future" in future.stdout  # asked for: shown
    empty = crmbonus("leaderboard", "--period", "2026-09", "--database-url", pg_url, data_dir=tmp_path)
    assert empty.stdout == "" and "no bonus rows in 2026-09" in empty.stderr


@pytest.mark.parametrize(("args", "message"), [
    (("export", "--period", "2026-10", "-o", "/proc/version"), "--output /proc/version: cannot write it"),
    (("export", "--period", "2026-09"), "period 2026-09 is not settled yet"),
    (("settle", "--period", "2026-10\n"), "period '2026-10\\n' must be YYYY-MM"),
    (("leaderboard", "--period", "2026-13"), "period '2026-13' must be YYYY-MM"),
    (("leaderboard", "--limit", "-1"), "-1 is not in the range x>=1"),
    (("worker", "--web-host", "0.0.0.0"), "--web-host 0.0.0.0 is not a loopback address"),
])
async def test_bad_input_against_a_database_is_one_line_with_exit_2(
        pg_url: str, tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    crmbonus("settle", "--period", "2026-10", "--database-url", pg_url, data_dir=tmp_path)  # a settled month
    done = crmbonus(*args, "--database-url", pg_url, data_dir=tmp_path, check=False)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
