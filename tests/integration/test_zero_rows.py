"""SPEC section 14, zero rows: a `bonus_running` row whose every numeric column is zero may be
present or absent depending on history; `settle` does not copy it and no reader shows it (the
payroll export, `crmbonus leaderboard`, `/api/leaderboard`), so no output depends on it.

Through the real pipeline: a running `crmbonus worker` on its embedded tansu broker, fed by
`crmbonus publish` (the sale first, its cancellation after, so the row exists before it goes to
zero), or `crmbonus replay`; then `crmbonus settle`, `export` and `leaderboard` as payroll and
the floor run them, and the worker's `/api/leaderboard`. The converse is checked too: a row
whose bonus is 0.00 but which has a figure (a count, an amount) is a row like any other.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Brokers, StartWorker, count, crmbonus, query, wait_stored, wait_until
from tests.integration.test_settlement_programmes import (
    COLUMNS,
    PLAN_HEAD,
    Payroll,
    cancellation,
    feedback,
    held,
    is_zero,
    rows,
    sale,
    table,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.brokers("tansu", reason="what readers and settle do with rows in Postgres: the broker plays no "
                        "part (test_replay runs the worked example through both)"),
]

WAIT = 60.0
HEADER = ",".join(COLUMNS)

#: October: fr-z's only sale, with one cross-sell, then its cancellation: October is left with a
#: zero row alone. November: fr-z's only sale (3 cross-sells, 9.00), cancelled: a zero row; fr-c is
#: counted only through a conversion (tm-1's lead), under the default plan (no [kpi]): no figure
#: at all; fr-1's three cross-sells; tm-1's held and converted lead.
SALES_FIRST = [
    sale("z0-s", "2026-10-05T10:00:00Z", "z0", "Z0", "fr-z",
         [("1", "laptops", 1, "900.00"), ("2", "accessories", 1, "100.00")]),
    sale("z1-s", "2026-11-05T10:00:00Z", "z1", "Z1", "fr-z",
         [("1", "laptops", 1, "1000.00"), ("2", "accessories", 1, "100.00"), ("3", "software", 1, "100.00"),
          ("4", "warranty", 1, "100.00")]),
]
THEN = [
    cancellation("z0-c", "2026-10-06T10:00:00Z", "z0", "Z0"),
    cancellation("z1-c", "2026-11-07T10:00:00Z", "z1", "Z1"),
    held("k1-h", "2026-11-10T10:00:00Z", "k1", "L1", "tm-1", "fr-c"),
    sale("k1-s", "2026-11-11T10:00:00Z", "k1", "K1", "fr-c", [("1", "phones", 1, "300.00")]),
    # tv with accessories, warranty and streaming: 3 cross-sells of 100.00, 300.00 x 3% = 9.00
    sale("m1-s", "2026-11-12T10:00:00Z", "m1", "M1", "fr-1",
         [("1", "tv", 1, "1000.00"), ("2", "accessories", 1, "100.00"), ("3", "warranty", 1, "100.00"),
          ("4", "streaming", 1, "100.00")]),
]
NOVEMBER = table(f"""
    {HEADER}
    2026-11,fr-1,field_rep,3,300.00,0,0,9.00,0.00,0.00,9.00,0,0.00,0.00,0.00,0.00,default-1
    2026-11,tm-1,telemarketer,0,0.00,1,1,0.00,35.00,0.00,35.00,0,0.00,0.00,0.00,0.00,default-1
""")
#: The rows of `/api/leaderboard` for November (money as exact strings, counts as integers).
API_NOVEMBER = [
    {"rank": 1, "person_id": "tm-1", "role": "telemarketer", "cross_sell_count": 0, "cross_sell_amount": "0.00",
     "appointments_held": 1, "appointments_converted": 1, "total_bonus": "35.00", "cross_sell_bonus": "0.00",
     "appointment_bonus": "35.00", "prior_adjustments": "0.00", "upsell_count": 0, "upsell_amount": "0.00",
     "upsell_bonus": "0.00", "kpi_bonus": "0.00", "prize_bonus": "0.00", "lead_points": 1, "badge": "none",
     "gold": True},  # K1's 300.00, the year's greatest turnover (gold whatever the prize: 0 here)
    {"rank": 2, "person_id": "fr-1", "role": "field_rep", "cross_sell_count": 3, "cross_sell_amount": "300.00",
     "appointments_held": 0, "appointments_converted": 0, "total_bonus": "9.00", "cross_sell_bonus": "9.00",
     "appointment_bonus": "0.00", "prior_adjustments": "0.00", "upsell_count": 0, "upsell_amount": "0.00",
     "upsell_bonus": "0.00", "kpi_bonus": "0.00", "prize_bonus": "0.00", "lead_points": 0, "badge": "none",
     "gold": False},
]


def write(path: Path, events: Sequence[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(event) + "\n" for event in events))
    return path


def leaderboard(url: str, tmp_path: Path, *args: str) -> str:
    """`crmbonus leaderboard` as a user runs it, in a terminal wide enough for every column."""
    done = crmbonus("leaderboard", "--database-url", url, *args, data_dir=tmp_path, env={"COLUMNS": "250"})
    return f"{done.stdout}\n{done.stderr}"


async def test_zero_rows_are_not_settled_exported_or_shown(pg_url: str, brokers: Brokers, workers: StartWorker,
                                                            tmp_path: Path) -> None:
    worker = workers(pg_url, "zero")
    await worker.wait_healthy()
    crmbonus("publish", str(write(tmp_path / "sales.jsonl", SALES_FIRST)), data_dir=tmp_path)
    await wait_stored(pg_url, 2, WAIT, worker)

    async def fr_z_has_rows() -> bool:
        return len(await query(pg_url, "SELECT 1 FROM bonus_running WHERE person_id = 'fr-z' AND total_bonus = 9"
                                       " OR person_id = 'fr-z' AND cross_sell_count = 1")) == 2

    await wait_until(fr_z_has_rows, WAIT, "fr-z's October (1 cross-sell) and November (9.00) rows", worker)

    crmbonus("publish", str(write(tmp_path / "then.jsonl", THEN)), data_dir=tmp_path)
    await wait_stored(pg_url, 7, WAIT, worker)

    async def settled_down() -> bool:
        found = await rows(pg_url, "bonus_running")
        return [row for row in found if not is_zero(row)] == NOVEMBER

    await wait_until(settled_down, WAIT, "November's rows: fr-1 and tm-1", worker)
    # the history this test is about: fr-z's rows are there, every figure zero; fr-c has none
    everything = await rows(pg_url, "bonus_running")
    assert [(row["period"], row["person_id"]) for row in everything if is_zero(row)] == [
        ("2026-10", "fr-z"), ("2026-11", "fr-z")]
    assert "fr-c" not in {row["person_id"] for row in everything}

    # /api/leaderboard: no zero row, and no period whose only rows are zero rows
    answer = await worker.get("/api/leaderboard?period=2026-11")
    assert answer is not None and answer[0] == 200, answer
    api = json.loads(answer[1])
    assert api["periods"] == ["2026-11"]
    assert api["rows"] == API_NOVEMBER
    answer = await worker.get("/api/leaderboard?period=2026-10")
    assert answer is not None and json.loads(answer[1])["rows"] == []

    shown = leaderboard(pg_url, tmp_path, "--period", "2026-11")
    assert "fr-1" in shown and "tm-1" in shown
    assert "fr-z" not in shown and "fr-c" not in shown
    assert "no bonus rows in 2026-10" in leaderboard(pg_url, tmp_path, "--period", "2026-10")

    said = crmbonus("settle", "--period", "2026-11", "--database-url", pg_url, data_dir=tmp_path).stderr
    assert "settled 2026-11: 2 rows, total_bonus 44.00" in said  # 9.00 + 35.00
    said = crmbonus("settle", "--period", "2026-10", "--database-url", pg_url, data_dir=tmp_path).stderr
    assert "settled 2026-10: 0 rows" in said
    assert await rows(pg_url, "bonus_settled") == NOVEMBER
    assert await count(pg_url, "bonus_settled") == 2

    export = crmbonus("export", "--period", "2026-11", "--database-url", pg_url, data_dir=tmp_path)
    lines = export.stdout.splitlines()
    assert [line.split(",")[1] for line in lines[1:]] == ["fr-1", "tm-1"]
    assert "2026-11: 2 people, total_bonus 44.00" in export.stderr
    as_json = json.loads(crmbonus("export", "--period", "2026-11", "--format", "json", "--database-url", pg_url,
                                  data_dir=tmp_path).stdout)
    assert [row["person_id"] for row in as_json["rows"]] == ["fr-1", "tm-1"]
    october = crmbonus("export", "--period", "2026-10", "--database-url", pg_url, data_dir=tmp_path)
    assert october.stdout.splitlines() == [f"{HEADER},settlement_id,settled_at"]
    assert "2026-10: 0 people" in october.stderr

    # settled months' readers are the same with the worker still running
    answer = await worker.get("/api/leaderboard?period=2026-11")
    assert answer is not None and json.loads(answer[1])["rows"] == API_NOVEMBER


#: Upsells at a rate of 0 and a KPI bonus for telemarketers only (100.00 x conversions / 1).
KPI_PLAN = PLAN_HEAD.format(version="zero-1", min_count=3) + """
[upsell]
rate = "0"

[kpi]
target_bonus = "100.00"
roles = ["telemarketer"]

[[kpi.components]]
name = "conversions"
weight = "1"
metric = "conversions"
target = 1
"""


async def test_a_row_with_a_figure_but_no_bonus_is_kept_one_without_is_not(pg_url: str, brokers: Brokers,
                                                                             tmp_path: Path) -> None:
    """fr-u's upsell earns 0.00 at rate 0, but its count and amount are figures: the row is settled,
    exported and shown. fr-c, a field rep with a conversion and a rating under a KPI for
    telemarketers only, has no figure: no row anywhere."""
    payroll = Payroll(brokers, pg_url, tmp_path, KPI_PLAN)
    await payroll.replay([
        sale("u1", "2026-11-02T10:00:00Z", "u", "U1", "fr-u", [("1", "laptops", 1, "1000.00")]),
        # laptops held at 1000.00: an upsell of (1200.00 - 1000.00) x 1 = 200.00, at 0%: 0.00
        sale("u2", "2026-11-09T10:00:00Z", "u", "U2", "fr-u", [("1", "laptops", 1, "1200.00")]),
        held("k1-h", "2026-11-10T10:00:00Z", "k1", "L1", "tm-1", "fr-c"),
        sale("k1-s", "2026-11-11T10:00:00Z", "k1", "K1", "fr-c", [("1", "phones", 1, "300.00")]),
        feedback("k1-f", "2026-11-12T10:00:00Z", "k1", "fr-c", "field_rep", 5),
    ])
    # tm-1: held 25.00 + converted 10.00, KPI 100.00 x min(1 / 1, 1) = 100.00: 135.00
    november = table(f"""
        {HEADER}
        2026-11,fr-u,field_rep,0,0.00,0,0,0.00,0.00,0.00,0.00,1,200.00,0.00,0.00,0.00,zero-1
        2026-11,tm-1,telemarketer,0,0.00,1,1,0.00,35.00,0.00,135.00,0,0.00,0.00,100.00,0.00,zero-1
    """)
    found = await rows(pg_url, "bonus_running")
    assert [row for row in found if not is_zero(row)] == november
    assert "fr-c" not in {row["person_id"] for row in found}
    assert [row["person_id"] for row in await query(pg_url, "SELECT DISTINCT person_id FROM kpi_scores")] == ["tm-1"]

    shown = leaderboard(pg_url, tmp_path, "--period", "2026-11")
    assert "fr-u" in shown and "tm-1" in shown and "fr-c" not in shown

    assert "settled 2026-11: 2 rows, total_bonus 135.00" in payroll.settle("2026-11")
    assert await rows(pg_url, "bonus_settled") == november
    _, exported = payroll.export_csv("2026-11")
    assert [{name: row[name] for name in COLUMNS} for row in exported] == november
