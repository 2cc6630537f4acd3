"""Month close, prior-period adjustments and the payroll export (SPEC section 7)."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import pytest

from tests.examples import EXAMPLES
from tests.integration.conftest import (
    RUNNING_COLUMNS,
    Feeder,
    crmbonus,
    fetch_csv,
    read_csv,
    running,
)

pytestmark = pytest.mark.integration


async def settled(url: str) -> list[dict[str, str]]:
    return await fetch_csv(url, f"SELECT {', '.join(RUNNING_COLUMNS)} FROM bonus_settled ORDER BY period, person_id")


async def test_worked_example_end_to_end_through_the_cli(pg_url: str, tmp_path: Path) -> None:
    crmbonus("replay", str(EXAMPLES / "month.jsonl"), "--database-url", pg_url, data_dir=tmp_path)
    assert await running(pg_url) == read_csv(EXAMPLES / "expected_running_after_month.csv")

    done = crmbonus("settle", "--period", "2026-11", "--database-url", pg_url, data_dir=tmp_path)
    assert "settled 2026-11: 4 rows, total_bonus 45.65" in done.stderr
    assert await settled(pg_url) == read_csv(EXAMPLES / "expected_settled_2026-11.csv")
    again = crmbonus("settle", "--period", "2026-11", "--database-url", pg_url, data_dir=tmp_path)
    assert "period 2026-11 is already closed" in again.stderr and "nothing changed" in again.stderr
    assert await settled(pg_url) == read_csv(EXAMPLES / "expected_settled_2026-11.csv")

    crmbonus("replay", str(EXAMPLES / "late.jsonl"), "--database-url", pg_url, data_dir=tmp_path)
    assert await running(pg_url) == read_csv(EXAMPLES / "expected_running_after_late.csv")
    assert await settled(pg_url) == read_csv(EXAMPLES / "expected_settled_2026-11.csv")
    conn = await asyncpg.connect(pg_url)
    try:
        audit = await conn.fetch("SELECT source_period, target_period, person_id, amount, earned, paid"
                                 " FROM bonus_adjustments")
    finally:
        await conn.close()
    assert [tuple(map(str, row)) for row in audit] == [("2026-11", "2026-12", "fr-1", "-2.40", "8.25", "10.65")]

    export = crmbonus("export", "--period", "2026-11", "--database-url", pg_url, data_dir=tmp_path)
    exported = [{k: v for k, v in row.items() if k in RUNNING_COLUMNS}
                for row in read_csv_text(export.stdout)]
    assert exported == read_csv(EXAMPLES / "expected_settled_2026-11.csv")
    assert "2026-11: 4 people, total_bonus 45.65" in export.stderr
    as_json = json.loads(crmbonus("export", "--period", "2026-11", "--format", "json", "--database-url",
                                  pg_url, data_dir=tmp_path).stdout)
    assert as_json["totals"]["total_bonus"] == "45.65"
    assert [row["total_bonus"] for row in as_json["rows"]] == ["10.65", "0.00", "0.00", "35.00"]

    open_period = crmbonus("export", "--period", "2026-12", "--database-url", pg_url, data_dir=tmp_path,
                           check=False)
    assert open_period.returncode == 2
    assert "period 2026-12 is not settled yet" in open_period.stderr


def read_csv_text(text: str) -> list[dict[str, str]]:
    import csv
    import io

    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize("statement", [
    "UPDATE bonus_settled SET total_bonus = 1000",
    "DELETE FROM bonus_settled",
    "TRUNCATE bonus_settled",
])
async def test_settled_rows_are_immutable_even_to_sql(pg_url: str, statement: str) -> None:
    feeder = Feeder(pg_url)
    await feeder.feed((EXAMPLES / "month.jsonl").read_bytes().splitlines())
    await feeder.settle("2026-11")
    conn = await asyncpg.connect(pg_url)
    try:
        with pytest.raises(asyncpg.RaiseError, match="bonus_settled rows are immutable"):
            await conn.execute(statement)
        assert str(await conn.fetchval("SELECT sum(total_bonus) FROM bonus_settled")) == "45.65"
    finally:
        await conn.close()


def sale(event_id: str, at: str, lines: list[tuple[str, str, str]]) -> bytes:
    return json.dumps({
        "event_id": event_id, "event_type": "sale", "occurred_at": at, "customer_id": "cx", "sale_id": "SX",
        "seller_id": "fr-9", "seller_role": "field_rep", "currency": "EUR",
        "lines": [{"line_id": lid, "sku": lid, "category": cat, "quantity": 1, "unit_price": price}
                  for lid, cat, price in lines],
    }).encode()


def refund(event_id: str, at: str, line_id: str) -> bytes:
    return json.dumps({"event_id": event_id, "event_type": "refund", "occurred_at": at, "customer_id": "cx",
                       "sale_id": "SX", "lines": [{"line_id": line_id, "quantity": 1}]}).encode()


async def test_two_closed_periods_in_a_row_carry_adjustments(pg_url: str) -> None:
    feeder = Feeder(pg_url)
    await feeder.feed([sale("s", "2026-11-10T10:00:00Z", [
        ("a", "laptops", "1000.00"), ("b", "accessories", "100.00"), ("c", "software", "100.00"),
        ("d", "warranty", "100.00"), ("e", "insurance", "100.00")])])
    await feeder.settle("2026-11")  # fr-9 paid 4 x 100 at 3% = 12.00

    await feeder.feed([refund("r1", "2026-12-01T10:00:00Z", "b")])  # now 300 -> 9.00: -3.00 into December
    await feeder.settle("2026-12")
    await feeder.feed([refund("r2", "2026-12-20T10:00:00Z", "c")])  # 2 cross-sells, under the gate: 0.00

    conn = await asyncpg.connect(pg_url)
    try:
        audit = await conn.fetch("SELECT source_period, target_period, amount, earned, paid FROM bonus_adjustments"
                                 " ORDER BY target_period")
        settled_dec = await conn.fetchval("SELECT prior_adjustments FROM bonus_settled"
                                          " WHERE period = '2026-12' AND person_id = 'fr-9'")
    finally:
        await conn.close()
    assert [tuple(map(str, row)) for row in audit] == [
        ("2026-11", "2026-12", "-3.00", "9.00", "12.00"),
        ("2026-11", "2027-01", "-9.00", "0.00", "9.00"),  # paid = 12.00 settled + -3.00 settled in December
    ]
    assert str(settled_dec) == "-3.00"
    rows = {(r["period"], r["person_id"]): r for r in await running(pg_url)}
    assert rows[("2026-11", "fr-9")]["total_bonus"] == "0.00"  # computed now, prior as settled
    assert rows[("2026-12", "fr-9")]["prior_adjustments"] == "-3.00"  # frozen with December's settlement
    assert rows[("2027-01", "fr-9")]["prior_adjustments"] == "-9.00"
    assert rows[("2027-01", "fr-9")]["total_bonus"] == "-9.00"


async def test_adjustment_moves_back_when_the_change_is_undone_before_the_next_close(pg_url: str) -> None:
    """A pending adjustment is recomputed, not accumulated: earned - paid, whatever happened between."""
    feeder = Feeder(pg_url)
    await feeder.feed([sale("s", "2026-11-10T10:00:00Z", [
        ("a", "laptops", "1000.00"), ("b", "accessories", "100.00"), ("c", "software", "100.00"),
        ("d", "warranty", "100.00")])])
    await feeder.settle("2026-11")  # 3 x 100 -> 9.00
    await feeder.feed([refund("r1", "2026-12-01T10:00:00Z", "b")])  # under the gate: -9.00 pending
    await feeder.feed([refund("r1", "2026-12-01T10:00:00Z", "b")])  # redelivered: nothing more
    rows = {(r["period"], r["person_id"]): r for r in await running(pg_url)}
    assert rows[("2026-12", "fr-9")]["prior_adjustments"] == "-9.00"
    assert rows[("2026-12", "fr-9")]["total_bonus"] == "-9.00"
