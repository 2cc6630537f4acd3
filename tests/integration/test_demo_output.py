"""`crmbonus demo` as a new user sees it (issue 17 item 5): an 80-column terminal gets every bonus
whole, equal to the payroll file's; the demo says which plan it ran, the demo plan by default."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from stream.plan import DEFAULT_PLAN_PATH, DEMO_PLAN_PATH
from tests.integration.conftest import command_env

pytestmark = pytest.mark.integration


def demo(tmp_path: Path, pg_url: str, *args: str, columns: int = 80) -> subprocess.CompletedProcess[str]:
    """The demo in a directory of its own (it writes the payroll file where it runs)."""
    env = command_env(tmp_path, {"COLUMNS": str(columns)})
    env.pop("CRMBONUS_PLAN", None)
    done = subprocess.run([sys.executable, "-m", "stream", "demo", "--customers", "300", "--month", "2026-10",
                           "--database-url", pg_url, *args], env=env, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def boards(text: str) -> list[list[dict[str, str]]]:
    """The rows of each table printed, as {header: cell}."""
    tables: list[list[dict[str, str]]] = []
    header: list[str] = []
    for line in text.splitlines():
        if line.startswith("┃"):
            header = [cell.strip() for cell in line.split("┃")[1:-1]]
            tables.append([])
        elif line.startswith("│"):
            tables[-1].append(dict(zip(header, (cell.strip() for cell in line.split("│")[1:-1]), strict=True)))
    return tables


@pytest.mark.parametrize("plan", [None, DEFAULT_PLAN_PATH], ids=["demo-plan", "default-plan"])
def test_the_demo_in_80_columns_shows_every_bonus_whole(pg_url: str, tmp_path: Path, plan: Path | None) -> None:
    done = demo(tmp_path, pg_url, *(["--plan", str(plan)] if plan else []))
    said = " ".join(done.stderr.split())
    if plan is None:
        assert f"plan {DEMO_PLAN_PATH} (version " in said and "every programme on; --plan for another)" in said
    else:
        assert f"plan {plan} (version default-1)" in said
    assert "…" not in done.stdout
    assert all(len(line) <= 80 for line in done.stdout.splitlines())
    payroll = {row["person_id"]: row for row in csv.DictReader(io.StringIO(
        (tmp_path / "payroll-2026-10.csv").read_text()))}
    tables = boards(done.stdout)
    assert len(tables) == 2  # telemarketers, field reps
    for table in tables:
        assert table
        for row in table:
            assert row["bonus"] == f"{Decimal(payroll[row['person']]['total_bonus']):,.2f}", row
            if "amount" in row:
                assert row["amount"] == f"{Decimal(payroll[row['person']]['cross_sell_amount']):,.2f}", row
