"""The payroll file as payroll opens it: no formula in a text cell, numbers left numbers; which
columns make a row a figure (SPEC section 14's zero rows)."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

import pytest

from stream.bonus import RUNNING_COLUMNS
from stream.reports import MONEY_COLUMNS, NONZERO_ROW, NUMERIC_COLUMNS, PayrollFile, csv_cell


@pytest.mark.parametrize("text,cell", [
    ('=HYPERLINK("https://x.example","x")', '\'=HYPERLINK("https://x.example","x")'),
    ("+1", "'+1"), ("-1+2", "'-1+2"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"), ("\rx", "'\rx"),
    ("fr-1", "fr-1"), ("", ""), ("x=1", "x=1"),
])
def test_text_cells_never_start_a_formula(text: str, cell: str) -> None:
    assert csv_cell(text) == cell


def test_numbers_stay_numbers() -> None:
    assert csv_cell(Decimal("-12.50")) == Decimal("-12.50") and csv_cell(-3) == -3


def payroll(person: str) -> PayrollFile:
    row: dict[str, object] = {name: 0 if name.endswith("_count") else Decimal("0.00") for name in NUMERIC_COLUMNS}
    row.update({
        "period": "2026-11", "person_id": person, "role": "field_rep", "cross_sell_count": 4,
        "cross_sell_amount": Decimal("355.00"), "appointments_held": 0, "appointments_converted": 0,
        "cross_sell_bonus": Decimal("10.65"), "appointment_bonus": Decimal("0.00"),
        "prior_adjustments": Decimal("-12.50"), "total_bonus": Decimal("-1.85"), "plan_version": "default-1",
    })
    assert set(RUNNING_COLUMNS) <= set(row)
    return PayrollFile("2026-11", "7d1e0c55-0000-4000-8000-000000000000", "2026-12-01T09:00:00+00:00", [row])


def test_payroll_csv_neutralises_a_hostile_id_and_keeps_negative_money() -> None:
    hostile = '=HYPERLINK("https://x.example","x")'
    [header, row] = list(csv.reader(io.StringIO(payroll(hostile).to_csv())))
    cells = dict(zip(header, row, strict=True))
    assert cells["person_id"] == "'" + hostile
    assert (cells["prior_adjustments"], cells["total_bonus"]) == ("-12.50", "-1.85")


def test_payroll_json_carries_the_id_exactly() -> None:
    hostile = "=cmd|' /C calc'!A0"
    document = json.loads(payroll(hostile).to_json())
    assert document["rows"][0]["person_id"] == hostile


def test_every_figure_of_a_row_is_in_nonzero_row_and_the_plan_version_is_not() -> None:
    """A row is left out only when every count and money column is zero (SPEC 14): the version-1
    columns and the programmes' (upsell_count .. prize_bonus); plan_version is text, not a figure."""
    assert NUMERIC_COLUMNS == (
        "cross_sell_count", "cross_sell_amount", "appointments_held", "appointments_converted", "cross_sell_bonus",
        "appointment_bonus", "prior_adjustments", "total_bonus", "upsell_count", "upsell_amount", "upsell_bonus",
        "kpi_bonus", "prize_bonus")
    assert NONZERO_ROW == "(" + " OR ".join(f"{name} <> 0" for name in NUMERIC_COLUMNS) + ")"
    assert "plan_version" not in NONZERO_ROW and "period" not in NONZERO_ROW and "role" not in NONZERO_ROW
    assert set(MONEY_COLUMNS) <= set(NUMERIC_COLUMNS) and "total_bonus" in MONEY_COLUMNS


def test_the_totals_sum_every_money_column_exactly() -> None:
    document = json.loads(payroll("fr-1").to_json())
    assert document["totals"]["total_bonus"] == "-1.85" and document["totals"]["cross_sell_bonus"] == "10.65"
    assert set(document["totals"]) == set(MONEY_COLUMNS)
