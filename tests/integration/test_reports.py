"""stream/reports.py on the migrated schema: the leaderboard's programme columns and the year's lead
points (SPEC sections 13-14), and zero rows left out by every reader, whichever column holds the
only figure (section 14)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from stream import reports
from stream.reports import NUMERIC_COLUMNS, Standing
from tests.integration.conftest import crmbonus
from tests.integration.test_demo_output import boards

pytestmark = pytest.mark.integration

D = Decimal
COLUMNS = ("period, person_id, role, cross_sell_count, cross_sell_amount, appointments_held, appointments_converted,"
           " cross_sell_bonus, appointment_bonus, prior_adjustments, total_bonus, upsell_count, upsell_amount,"
           " upsell_bonus, kpi_bonus, prize_bonus, plan_version")


def row(period: str, person: str, role: str = "telemarketer", *, count: int = 0, amount: str = "0.00",
        held: int = 0, converted: int = 0, cross: str = "0.00", appointment: str = "0.00", prior: str = "0.00",
        upsells: int = 0, upsell_amount: str = "0.00", upsell: str = "0.00", kpi: str = "0.00",
        prize: str = "0.00") -> tuple[object, ...]:
    total = sum((D(v) for v in (cross, appointment, prior, upsell, kpi, prize)), D("0.00"))
    return (period, person, role, count, D(amount), held, converted, D(cross), D(appointment), D(prior), total,
            upsells, D(upsell_amount), D(upsell), D(kpi), D(prize), "demo-1")


ROWS = [
    row("2026-11", "tm-gold", count=3, amount="400.00", held=20, converted=16, appointment="660.00", upsells=2,
        upsell_amount="120.00", upsell="12.00", kpi="150.00", prize="500.00"),
    row("2026-11", "fr-1", "field_rep", count=5, amount="7000.00", cross="250.00", kpi="200.00"),
    row("2026-11", "tm-bronze", held=6, converted=5, appointment="200.00"),
    row("2026-11", "fr-upsell-only", "field_rep", upsells=1, upsell_amount="80.00"),  # rate 0: a count, no pay
    row("2026-11", "tm-kpi-only", kpi="0.01"),
    row("2026-11", "tm-zero"),
    row("2026-10", "tm-zero"),  # a month with zero rows only: no period
    row("2026-09", "fr-upsell-only", "field_rep", upsells=1),
]
LEADS = [
    (2026, "tm-gold", 16, D("24000.00"), "silver", True),
    (2026, "tm-bronze", 5, D("900.00"), "bronze", False),
    (2025, "tm-bronze", 40, D("99999.00"), "silver", True),  # last year's: not 2026-11's
]


async def seed(conn: asyncpg.Connection) -> None:
    await conn.executemany(f"INSERT INTO bonus_running ({COLUMNS}) VALUES ({', '.join(f'${i}' for i in range(1, 18))})",
                           ROWS)
    await conn.executemany("INSERT INTO lead_points VALUES ($1, $2, $3, $4, $5, $6)", LEADS)


@pytest.fixture
async def conn(pg_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(pg_url)
    await seed(connection)
    yield connection
    await connection.close()


async def test_numeric_columns_are_every_figure_of_the_bonus_tables(conn: asyncpg.Connection) -> None:
    """NONZERO_ROW names every count and money column of bonus_running and bonus_settled: a column a
    migration adds without RunningRow knowing it would make its only-figure rows vanish."""
    for table in ("bonus_running", "bonus_settled"):
        figures = {r["column_name"] for r in await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = $1"
            " AND data_type IN ('integer', 'bigint', 'smallint', 'numeric')", table)}
        assert figures == set(NUMERIC_COLUMNS), table
    assert "plan_version" not in reports.NONZERO_ROW


async def test_the_leaderboard_carries_the_programmes_and_the_years_lead_points(conn: asyncpg.Connection) -> None:
    board = await reports.leaderboard(conn, "2026-11")
    assert board == [
        Standing(rank=1, person_id="tm-gold", role="telemarketer", cross_sell_count=3,
                 cross_sell_amount=D("400.00"), appointments_held=20, appointments_converted=16,
                 total_bonus=D("1322.00"), cross_sell_bonus=D("0.00"), appointment_bonus=D("660.00"),
                 prior_adjustments=D("0.00"), upsell_count=2, upsell_amount=D("120.00"), upsell_bonus=D("12.00"),
                 kpi_bonus=D("150.00"), prize_bonus=D("500.00"), lead_points=16, badge="silver", gold=True),
        Standing(rank=2, person_id="fr-1", role="field_rep", cross_sell_count=5, cross_sell_amount=D("7000.00"),
                 appointments_held=0, appointments_converted=0, total_bonus=D("450.00"),
                 cross_sell_bonus=D("250.00"), kpi_bonus=D("200.00")),
        Standing(rank=3, person_id="tm-bronze", role="telemarketer", cross_sell_count=0,
                 cross_sell_amount=D("0.00"), appointments_held=6, appointments_converted=5,
                 total_bonus=D("200.00"), appointment_bonus=D("200.00"), lead_points=5, badge="bronze"),
        Standing(rank=4, person_id="tm-kpi-only", role="telemarketer", cross_sell_count=0,
                 cross_sell_amount=D("0.00"), appointments_held=0, appointments_converted=0,
                 total_bonus=D("0.01"), kpi_bonus=D("0.01")),
        Standing(rank=5, person_id="fr-upsell-only", role="field_rep", cross_sell_count=0,
                 cross_sell_amount=D("0.00"), appointments_held=0, appointments_converted=0,
                 total_bonus=D("0.00"), upsell_count=1, upsell_amount=D("80.00")),
    ]
    assert [s.person_id for s in await reports.leaderboard(conn, "2026-11", "field_rep")] == ["fr-1", "fr-upsell-only"]
    assert [s.person_id for s in await reports.leaderboard(conn, "2026-11", limit=2)] == ["tm-gold", "fr-1"]


async def test_zero_rows_are_nobodys_rank_and_no_period(conn: asyncpg.Connection) -> None:
    assert await reports.periods(conn) == ["2026-11", "2026-09"]  # 2026-09: an upsell count is a figure
    assert await reports.leaderboard(conn, "2026-10") == []
    assert "tm-zero" not in [s.person_id for s in await reports.leaderboard(conn, "2026-11")]


async def test_the_payroll_file_leaves_out_zero_rows_whatever_column_holds_the_figure(
        conn: asyncpg.Connection) -> None:
    settlement = await conn.fetchval("INSERT INTO periods_closed VALUES ('2026-11', gen_random_uuid(), now())"
                                     " RETURNING settlement_id")
    # as an older settle would have copied them: zero rows included
    await conn.execute(f"INSERT INTO bonus_settled (settlement_id, settled_at, updated_at, {COLUMNS})"
                       f" SELECT $1, now(), now(), {COLUMNS}"
                       " FROM bonus_running WHERE period = '2026-11'", settlement)
    payroll = await reports.payroll_file(conn, "2026-11")
    assert [r["person_id"] for r in payroll.rows] == ["fr-1", "fr-upsell-only", "tm-bronze", "tm-gold", "tm-kpi-only"]
    assert payroll.totals()["total_bonus"] == D("1972.01")


async def test_the_terminal_leaderboard_and_the_export_leave_out_zero_rows(
        conn: asyncpg.Connection, pg_url: str, tmp_path: Path) -> None:
    """The commands as a user runs them: a row whose only figure is an upsell count or a KPI cent is
    ranked, settled and exported; the row of zeros is none of them."""
    board = crmbonus("leaderboard", "--period", "2026-11", "--database-url", pg_url, data_dir=tmp_path,
                     env={"COLUMNS": "200"})
    people = [row["person"] for row in boards(board.stdout)[0]]
    assert people == ["tm-gold", "fr-1", "tm-bronze", "tm-kpi-only", "fr-upsell-only"]
    assert "silver + gold" in board.stdout and "1,322.00" in board.stdout
    settled = crmbonus("settle", "--period", "2026-11", "--database-url", pg_url, data_dir=tmp_path)
    assert "settled 2026-11: 5 rows, total_bonus 1972.01" in settled.stderr
    exported = crmbonus("export", "--period", "2026-11", "--format", "json", "--database-url", pg_url,
                        data_dir=tmp_path)
    assert [r["person_id"] for r in json.loads(exported.stdout)["rows"]] == [
        "fr-1", "fr-upsell-only", "tm-bronze", "tm-gold", "tm-kpi-only"]
