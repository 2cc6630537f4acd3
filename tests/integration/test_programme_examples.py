"""The worked examples of SPEC section 13's programmes, through `crmbonus replay` and Postgres.

For each directory of tests/fixtures/programmes (events, a complete plan, the tables checked by
hand; its README says why each figure is what it is): replay `events.jsonl` under `plan.toml` on
a fresh embedded broker into a fresh database, then compare, exactly,
- `bonus_running` with `expected_running.csv`, rows whose every figure is zero left out
  (SPEC 14: present or absent depending on history), money as stored (numeric(18,2));
- `lead_points` with `expected_lead_points.csv`;
- `kpi_scores` with `expected_kpi_scores.csv` (`value` empty when null; `value`, `attainment`
  and `weight` by exact decimal value, so 1.2 and 1.2000000000 are the same figure, while an
  attainment not rounded to 10 places is not);
- `credits` with `expected_credits.csv` where there is one (amount and share by exact value, the
  rows in any order: `credits` has no order of its own).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import pytest

from tests.examples import ROOT
from tests.integration.conftest import Brokers, query, read_csv

pytestmark = pytest.mark.integration

PROGRAMMES = ROOT / "tests" / "fixtures" / "programmes"
CASES = sorted(path.name for path in PROGRAMMES.iterdir() if (path / "events.jsonl").is_file())

#: SPEC sections 6 and 14: the `bonus_running` columns, version-2 ones after `total_bonus`.
RUNNING_COLUMNS = (
    "period", "person_id", "role", "cross_sell_count", "cross_sell_amount", "appointments_held",
    "appointments_converted", "cross_sell_bonus", "appointment_bonus", "prior_adjustments", "total_bonus",
    "upsell_count", "upsell_amount", "upsell_bonus", "kpi_bonus", "prize_bonus", "plan_version",
)  # fmt: skip
#: The columns of a running row that are not figures.
LABELS = ("period", "person_id", "role", "plan_version")
LEAD_POINT_COLUMNS = ("year", "person_id", "points", "turnover", "badge", "gold")
KPI_COLUMNS = ("period", "person_id", "component", "metric", "value", "attainment", "weight")
CREDIT_COLUMNS = ("period", "person_id", "role", "kind", "customer_id", "sale_id", "line_id", "lead_id",
                  "amount", "share", "touch_event_id", "source_event_id")
#: Columns compared by exact decimal value rather than by spelling.
EXACT = frozenset({"value", "attainment", "weight", "amount", "share"})


def text(value: object) -> str:
    """A stored value as a CSV holds it: null empty, booleans `true`/`false`, numerics as stored."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def exact(row: dict[str, str]) -> dict[str, str]:
    """`row` with its EXACT columns spelled canonically (1.2000 -> 1.2, 0E-10 -> 0)."""
    return {name: format(Decimal(value).normalize(), "f") if name in EXACT and value else value
            for name, value in row.items()}


async def fetch(url: str, table: str, columns: Sequence[str], order: str) -> list[dict[str, str]]:
    quoted = ", ".join(f'"{name}"' for name in columns)
    rows = await query(url, f"SELECT {quoted} FROM {table} ORDER BY {order}")
    return [{name: text(row[name]) for name in columns} for row in rows]


def nonzero(rows: list[dict[str, str]], columns: Sequence[str]) -> list[dict[str, str]]:
    """`rows` cut to `columns`, without those whose every numeric column is zero (SPEC 14)."""
    cut = [{name: row[name] for name in columns} for row in rows]
    return [row for row in cut if any(Decimal(row[name]) != 0 for name in columns if name not in LABELS)]


async def running(url: str, columns: Sequence[str] = RUNNING_COLUMNS) -> list[dict[str, str]]:
    return nonzero(await fetch(url, "bonus_running", columns, "period, person_id"), columns)


async def lead_points(url: str) -> list[dict[str, str]]:
    return await fetch(url, "lead_points", LEAD_POINT_COLUMNS, "year, person_id")


async def kpi_scores(url: str) -> list[dict[str, str]]:
    return [exact(row) for row in await fetch(url, "kpi_scores", KPI_COLUMNS, "period, person_id, component")]


async def credits(url: str) -> list[dict[str, str]]:
    rows = [exact(row) for row in await fetch(url, "credits", CREDIT_COLUMNS, "id")]
    return sorted(rows, key=lambda row: tuple(row.values()))


def expected_credits(directory: Path) -> list[dict[str, str]]:
    return sorted((exact(row) for row in read_csv(directory / "expected_credits.csv")),
                  key=lambda row: tuple(row.values()))


@pytest.mark.brokers("tansu", reason="the rules of SPEC 13 on the real pipeline: the broker plays no part "
                     "(test_replay runs the worked example through both)")
@pytest.mark.parametrize("case", CASES)
async def test_programme_example_through_replay(case: str, pg_url: str, brokers: Brokers, tmp_path: Path) -> None:
    directory = PROGRAMMES / case
    await brokers.replay(str(directory / "events.jsonl"), "--database-url", pg_url,
                         "--plan", str(directory / "plan.toml"), data_dir=tmp_path, timeout=120)
    assert await running(pg_url) == read_csv(directory / "expected_running.csv")
    assert await lead_points(pg_url) == read_csv(directory / "expected_lead_points.csv")
    assert await kpi_scores(pg_url) == [exact(row) for row in read_csv(directory / "expected_kpi_scores.csv")]
    if (directory / "expected_credits.csv").is_file():
        assert await credits(pg_url) == expected_credits(directory)
