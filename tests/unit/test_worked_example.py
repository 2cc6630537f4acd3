"""The worked example of the contract (tests/fixtures/examples), column for column (SPEC §5, §6)."""

from __future__ import annotations

import csv
import dataclasses

import msgspec
import pytest

from schemas.events import Event
from stream.bonus import RunningRow, compute_tables
from stream.plan import load_plan
from tests.examples import EXAMPLES

#: The columns this engine owns; prior_adjustments and total_bonus after a late event
#: depend on settlement (SPEC §7), which is not the rules' business.
CREDIT_COLUMNS = (
    "period", "person_id", "role", "cross_sell_count", "cross_sell_amount",
    "appointments_held", "appointments_converted", "cross_sell_bonus", "appointment_bonus",
)  # fmt: skip

pytestmark = pytest.mark.skipif(not EXAMPLES.is_dir(), reason="worked example not present")


def decode(name: str) -> list[Event]:
    lines = (EXAMPLES / name).read_bytes().splitlines()
    return [msgspec.json.decode(line, type=Event) for line in lines if line.strip()]


def expected(name: str) -> list[dict[str, str]]:
    with (EXAMPLES / name).open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


#: SPEC §14's columns, which the version-1 example does not show: its plan has none of the programmes.
V2_ZEROS = {"upsell_count": "0", "upsell_amount": "0.00", "upsell_bonus": "0.00", "kpi_bonus": "0.00",
            "prize_bonus": "0.00", "plan_version": "default-1"}


def as_text(row: RunningRow) -> dict[str, str]:
    """The row as the example's CSV shows it: the version-1 columns (the others must be zero)."""
    text = {key: str(value) for key, value in dataclasses.asdict(row).items()}
    assert {key: text.pop(key) for key in V2_ZEROS} == V2_ZEROS
    return text


def test_month_gives_the_running_table_exactly() -> None:
    rows = [as_text(row) for row in compute_tables(decode("month.jsonl"), load_plan())]
    assert rows == expected("expected_running_after_month.csv")


def test_month_in_any_order_gives_the_same_table() -> None:
    events = decode("month.jsonl")
    plan = load_plan()
    assert compute_tables(events[::-1] + events[:3], plan) == compute_tables(events, plan)


def test_late_refund_changes_november_credits() -> None:
    rows = compute_tables(decode("month.jsonl") + decode("late.jsonl"), load_plan())
    mine = {(row.period, row.person_id): as_text(row) for row in rows}
    for want in expected("expected_running_after_late.csv"):
        key = (want["period"], want["person_id"])
        # fr-1's December row exists only to carry the adjustment: no credits, so no row here
        got = mine.pop(key, zero_row(want))
        assert {c: got[c] for c in CREDIT_COLUMNS} == {c: want[c] for c in CREDIT_COLUMNS}
    assert mine == {}


def zero_row(want: dict[str, str]) -> dict[str, str]:
    zeros = {"cross_sell_amount": "0.00", "cross_sell_bonus": "0.00", "appointment_bonus": "0.00"}
    counts = {"cross_sell_count": "0", "appointments_held": "0", "appointments_converted": "0"}
    return {**want, **zeros, **counts}
