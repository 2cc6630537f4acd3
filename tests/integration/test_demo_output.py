"""`crmbonus demo` as a new user sees it (issue 17 item 5): an 80-column terminal gets every bonus
whole, equal to the payroll file's; the demo says which plan it ran, the demo plan by default; it ends with
a what-if of a telemarketer share of 0.40 (issue 16 item 4) whose figures `crmbonus whatif` gives again."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from stream.plan import DEFAULT_PLAN_PATH, DEMO_PLAN_PATH
from stream.plan_versions import load_plans
from tests.integration.conftest import command_env, crmbonus

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
    # the what-if, last: the month under a telemarketer share of 0.40, as crmbonus whatif computes it
    lines = [line.rstrip() for line in done.stdout.splitlines()]
    start = lines.index("What-if 2026-10: telemarketer_share 0.40 instead of 0.30")
    candidate = tmp_path / "whatif-candidate.toml"  # the data directory is tmp_path, where the demo runs
    assert lines[start + 3:] == ["  ask again: crmbonus whatif --candidate whatif-candidate.toml --period 2026-10",
                                 "  (with the same --database-url)"]
    version = load_plans(candidate).first
    assert (version.telemarketer_share, version.version) == (
        Decimal("0.40"), ("demo-1" if plan is None else "default-1") + "-share-0.40")
    again = json.loads(crmbonus("whatif", "--candidate", str(candidate), "--period", "2026-10", "--database-url",
                                pg_url, "--format", "json", data_dir=tmp_path).stdout)
    money = lambda value: f"{Decimal(value):,.2f}"  # noqa: E731
    gain = [Decimal(p["difference"]) for p in again["people"] if Decimal(p["difference"]) > 0]
    lose = [Decimal(p["difference"]) for p in again["people"] if Decimal(p["difference"]) < 0]
    assert lines[start + 1:start + 3] == [
        f"  earned now {money(again['current_total'])}, under the candidate {money(again['candidate_total'])}",
        f"  cost {Decimal(again['difference']):+,.2f}: {len(gain)} people gain {money(sum(gain))}, "
        f"{len(lose)} lose {money(-sum(lose))}"]
    assert gain and lose  # a larger share moves money from field reps to telemarketers
    # earned now is the month's payroll less its prior adjustments (none: the demo's first month)
    assert Decimal(again["current_total"]) == sum(Decimal(row["total_bonus"]) for row in payroll.values())
