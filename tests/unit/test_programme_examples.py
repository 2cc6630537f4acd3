"""The worked examples of SPEC section 13's programmes (tests/fixtures/programmes), by the rules alone.

Each directory holds `events.jsonl`, a complete `plan.toml` and the expected tables, checked
by hand (its README says why every figure is what it is). Here the `bonus_running` rows of
`stream.bonus.compute_tables` are compared with `expected_running.csv`, column for column,
as exact strings; tests/integration/test_programme_examples.py runs the same directories
through `crmbonus replay` and Postgres and checks every table.

Rows whose every numeric column is zero are left out on both sides (SPEC 14: such a row may be
present or absent). `compute_tables` knows nothing of settlement, and nothing here settles:
`prior_adjustments` is 0.00 throughout.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Iterable, Sequence
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from schemas.events import Event
from stream.bonus import compute_tables
from stream.plan import load_plan
from tests.examples import ROOT

PROGRAMMES = ROOT / "tests" / "fixtures" / "programmes"
CASES = sorted(path.name for path in PROGRAMMES.iterdir() if (path / "events.jsonl").is_file())

#: SPEC sections 6 and 14: the `bonus_running` columns, version-2 ones after `total_bonus`.
RUNNING_COLUMNS = (
    "period", "person_id", "role", "cross_sell_count", "cross_sell_amount", "appointments_held",
    "appointments_converted", "cross_sell_bonus", "appointment_bonus", "prior_adjustments", "total_bonus",
    "upsell_count", "upsell_amount", "upsell_bonus", "kpi_bonus", "prize_bonus", "plan_version",
)  # fmt: skip
#: The columns that are not figures: a row is a zero row when every other column is zero.
LABELS = ("period", "person_id", "role", "plan_version")


def decode(path: Path) -> list[Event]:
    return [msgspec.json.decode(line, type=Event) for line in path.read_bytes().splitlines() if line.strip()]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def nonzero(rows: Iterable[dict[str, str]], columns: Sequence[str]) -> list[dict[str, str]]:
    """`rows` cut to `columns`, without those whose every numeric column is zero (SPEC 14)."""
    cut = [{name: row[name] for name in columns} for row in rows]
    return [row for row in cut if any(Decimal(row[name]) != 0 for name in columns if name not in LABELS)]


def computed_rows(directory: Path, events: str = "events.jsonl", plan: str = "plan.toml",
                  columns: Sequence[str] = RUNNING_COLUMNS) -> list[dict[str, str]]:
    """`compute_tables` of the directory's events under its plan, as the strings a CSV holds."""
    rows = compute_tables(decode(directory / events), load_plan(directory / plan))
    return nonzero(({key: str(value) for key, value in dataclasses.asdict(row).items()} for row in rows), columns)


def test_every_case_has_its_files() -> None:
    assert CASES == ["amount_gate", "kpi", "lead_sharing", "upsells"]
    for case in CASES:
        for name in ("plan.toml", "README.md", "expected_running.csv", "expected_lead_points.csv",
                     "expected_kpi_scores.csv"):
            assert (PROGRAMMES / case / name).is_file(), f"{case}/{name}"
        with (PROGRAMMES / case / "expected_running.csv").open(encoding="utf-8") as file:
            assert tuple(next(csv.reader(file))) == RUNNING_COLUMNS, case


@pytest.mark.parametrize("case", CASES)
def test_running_rows_match_the_hand_computed_table(case: str) -> None:
    directory = PROGRAMMES / case
    expected = nonzero(read_csv(directory / "expected_running.csv"), RUNNING_COLUMNS)
    assert expected == read_csv(directory / "expected_running.csv"), "the expected file lists no zero row"
    assert computed_rows(directory) == expected


@pytest.mark.parametrize("case", CASES)
def test_running_rows_do_not_depend_on_the_order_of_events(case: str) -> None:
    directory = PROGRAMMES / case
    events = decode(directory / "events.jsonl")
    plan = load_plan(directory / "plan.toml")
    assert compute_tables(events[::-1], plan) == compute_tables(events, plan)
