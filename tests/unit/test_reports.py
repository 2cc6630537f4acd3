"""The payroll file as payroll opens it: no formula in a text cell, numbers left numbers."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

import pytest

from stream.reports import PayrollFile, csv_cell


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
    row: dict[str, object] = {
        "period": "2026-11", "person_id": person, "role": "field_rep", "cross_sell_count": 4,
        "cross_sell_amount": Decimal("355.00"), "appointments_held": 0, "appointments_converted": 0,
        "cross_sell_bonus": Decimal("10.65"), "appointment_bonus": Decimal("0.00"),
        "prior_adjustments": Decimal("-12.50"), "total_bonus": Decimal("-1.85"),
    }
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
