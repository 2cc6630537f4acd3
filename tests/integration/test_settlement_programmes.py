"""Settlement of SPEC section 13's programmes (SPEC sections 7, 13, 14; issue 15 items 4 and 4b).

Through the real pipeline: every batch of events goes through `crmbonus replay` (a fresh embedded
tansu broker each time) into one Postgres database, which keeps everything between the steps, as
a database does between the days of a month; `crmbonus settle` and `crmbonus export` run as
payroll runs them. Every expected figure is worked out by hand from the SPEC in the comments
beside it; `from_scratch` then checks the same rows against `stream.bonus.compute_results`.

- `test_settlement_carries_the_programmes_and_late_changes_become_adjustments`: settle copies
  upsell_count .. plan_version into `bonus_settled`, the payroll file (CSV and JSON) carries
  them; a late feedback and a late quality review (kpi_bonus), a late conversion of a settled
  month's held lead (appointment bonus, KPI conversions of the telemarketer and of the field
  rep, a lead point) and a late refund of an upsell become adjustments in the earliest open
  month, with their audit rows (earned = cross-sell + upsell + appointment + KPI + prize bonus).
- `test_the_december_prize_moves_while_december_is_open_then_as_adjustments`: a year of lead
  points; the gold holder's prize in their December row; a refund and a new conversion move it
  while December is open; once December is settled, a further change reaches January as
  adjustments, and `bonus_settled` never changes.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest

from schemas.events import Event
from stream.bonus import compute_results
from stream.plan import load_plan
from tests.integration.conftest import Brokers, crmbonus, query

pytestmark = [
    pytest.mark.integration,
    pytest.mark.brokers("tansu", reason="settlement and the programmes' arithmetic on the real pipeline: the "
                        "broker plays no part (test_replay runs the worked example through both)"),
]

#: SPEC sections 6 and 14: the `bonus_running` / `bonus_settled` columns, version-2 ones after `total_bonus`.
COLUMNS = (
    "period", "person_id", "role", "cross_sell_count", "cross_sell_amount", "appointments_held",
    "appointments_converted", "cross_sell_bonus", "appointment_bonus", "prior_adjustments", "total_bonus",
    "upsell_count", "upsell_amount", "upsell_bonus", "kpi_bonus", "prize_bonus", "plan_version",
)  # fmt: skip
#: The columns of a bonus row that are not figures.
LABELS = ("period", "person_id", "role", "plan_version")
PROGRAMME_COLUMNS = ("upsell_count", "upsell_amount", "upsell_bonus", "kpi_bonus", "prize_bonus", "plan_version")

#: The keys of SPEC section 4 every plan file needs, with `min_count` and the extra sections filled in.
PLAN_HEAD = """\
version = "{version}"
timezone = "UTC"
attribution_window_days = 30
attribution_model = "last_touch"
telemarketer_share = "0.30"
clawback_days = 90

[cross_sell]
min_count = {min_count}
tiers = [ {{ up_to = "5000.00", rate = "0.03" }}, {{ rate = "0.05" }} ]

[cross_sell.matrix]
laptops  = ["accessories", "software", "insurance", "warranty"]
phones   = ["accessories", "insurance", "plans", "warranty"]
plans    = ["phones", "insurance"]
tv       = ["accessories", "warranty", "streaming"]
insurance = ["warranty"]

[appointments]
held_credit = "25.00"
conversion_bonus = "10.00"
conversion_window_days = 14
"""

#: Upsells at 10% of the uplift and a KPI bonus of 100.00 split 0.5 / 0.3 / 0.2; no gold prize
#: (`[lead_sharing]` absent: gold_prize 0). min_count 1, so one cross-sell earns its 3%.
PROGRAMMES_PLAN = PLAN_HEAD.format(version="prog-1", min_count=1) + """
[upsell]
rate = "0.10"

[kpi]
target_bonus = "100.00"

[[kpi.components]]
name = "conversions"
weight = "0.5"
metric = "conversions"
target = 2

[[kpi.components]]
name = "rating"
weight = "0.3"
metric = "rating"
target = 5

[[kpi.components]]
name = "compliance"
weight = "0.2"
metric = "compliance"
target = 1
"""

#: Lead sharing with a prize of 100.01 (split 50.01 / 50.00 between two holders); nothing else.
PRIZE_PLAN = PLAN_HEAD.format(version="prize-1", min_count=3) + """
[lead_sharing]
bronze_points = 2
silver_points = 3
gold_prize = "100.01"
"""


# -- events ---------------------------------------------------------------------------------

def sale(event_id: str, at: str, customer: str, sale_id: str, seller: str,
         lines: Sequence[tuple[str, str, int, str]], role: str = "field_rep") -> dict[str, Any]:
    """A sale; each line (line_id, category, quantity, unit_price)."""
    return {"event_id": event_id, "event_type": "sale", "occurred_at": at, "customer_id": customer,
            "sale_id": sale_id, "seller_id": seller, "seller_role": role, "currency": "EUR",
            "lines": [{"line_id": lid, "sku": f"SKU-{cat}-{price}", "category": cat, "quantity": qty,
                       "unit_price": price} for lid, cat, qty, price in lines]}


def refund(event_id: str, at: str, customer: str, sale_id: str, line_id: str, quantity: int = 1) -> dict[str, Any]:
    return {"event_id": event_id, "event_type": "refund", "occurred_at": at, "customer_id": customer,
            "sale_id": sale_id, "lines": [{"line_id": line_id, "quantity": quantity}]}


def cancellation(event_id: str, at: str, customer: str, sale_id: str) -> dict[str, Any]:
    return {"event_id": event_id, "event_type": "cancellation", "occurred_at": at, "customer_id": customer,
            "sale_id": sale_id}


def held(event_id: str, at: str, customer: str, lead: str, telemarketer: str, field_rep: str) -> dict[str, Any]:
    """A lead's only event, `held`: no `booked` event, so the lead is no touch (SPEC 5.5)."""
    return {"event_id": event_id, "event_type": "lead_handoff", "occurred_at": at, "customer_id": customer,
            "lead_id": lead, "telemarketer_id": telemarketer, "field_rep_id": field_rep, "status": "held"}


def feedback(event_id: str, at: str, customer: str, person: str, role: str, rating: int) -> dict[str, Any]:
    return {"event_id": event_id, "event_type": "feedback", "occurred_at": at, "customer_id": customer,
            "person_id": person, "person_role": role, "rating": rating}


def review(event_id: str, at: str, customer: str, person: str, role: str, passed: bool) -> dict[str, Any]:
    return {"event_id": event_id, "event_type": "quality_review", "occurred_at": at, "customer_id": customer,
            "person_id": person, "person_role": role, "passed": passed}


# -- running the pipeline -----------------------------------------------------------------

class Payroll:
    """One database, the plan file, and every event replayed so far (for the from-scratch check)."""

    def __init__(self, brokers: Brokers, pg_url: str, tmp_path: Path, plan_text: str) -> None:
        self.brokers, self.url, self.tmp_path = brokers, pg_url, tmp_path
        self.plan_path = tmp_path / "plan.toml"
        self.plan_path.write_text(plan_text)
        self.events: list[dict[str, Any]] = []
        self.steps = 0

    async def replay(self, events: Sequence[dict[str, Any]]) -> None:
        """`crmbonus replay` of `events` on a fresh embedded broker, into the test's database."""
        self.steps += 1
        path = self.tmp_path / f"step-{self.steps}.jsonl"
        path.write_text("".join(json.dumps(event) + "\n" for event in events))
        await self.brokers.replay(str(path), "--database-url", self.url, "--plan", str(self.plan_path),
                                  data_dir=self.tmp_path, timeout=120)
        self.events += events

    def cli(self, *args: str, check: bool = True) -> Any:
        return crmbonus(*args, "--database-url", self.url, data_dir=self.tmp_path, check=check)

    def settle(self, period: str) -> str:
        """`crmbonus settle`: what it said."""
        return str(self.cli("settle", "--period", period, "--plan", str(self.plan_path)).stderr)

    def export_csv(self, period: str) -> tuple[list[str], list[dict[str, str]]]:
        text = self.cli("export", "--period", period).stdout
        reader = csv.DictReader(io.StringIO(text))
        rows = list(reader)
        return list(reader.fieldnames or []), rows

    def export_json(self, period: str) -> dict[str, Any]:
        return dict(json.loads(self.cli("export", "--period", period, "--format", "json").stdout))

    def from_scratch(self) -> list[dict[str, str]]:
        """`compute_results` of every event so far: the rows SPEC 5-14 derive, before settlement."""
        events = [msgspec.json.decode(json.dumps(event), type=Event) for event in self.events]
        results = compute_results(events, load_plan(str(self.plan_path)))
        return [{name: text(getattr(row, name)) for name in COLUMNS} for row in results.running]


def text(value: object) -> str:
    """A stored value as a CSV holds it: null empty, booleans true/false, numerics as stored."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def table(csv_text: str) -> list[dict[str, str]]:
    """Expected rows written as CSV (header first), stripped of the indentation."""
    lines = [line.strip() for line in csv_text.strip().splitlines()]
    return list(csv.DictReader(io.StringIO("\n".join(lines))))


def is_zero(row: dict[str, str]) -> bool:
    return all(Decimal(row[name]) == 0 for name in COLUMNS if name not in LABELS)


async def rows(url: str, table_name: str, where: str = "true") -> list[dict[str, str]]:
    """`bonus_running` or `bonus_settled` as strings, by period and person, ALL rows (zero ones too)."""
    found = await query(url, f"SELECT {', '.join(COLUMNS)} FROM {table_name} WHERE {where} ORDER BY period, person_id")
    return [{name: text(row[name]) for name in COLUMNS} for row in found]


async def running(url: str) -> list[dict[str, str]]:
    """`bonus_running` without the zero rows (SPEC 14: present or absent, depending on history)."""
    return [row for row in await rows(url, "bonus_running") if not is_zero(row)]


async def settled(url: str) -> list[dict[str, str]]:
    return await rows(url, "bonus_settled")


async def adjustments(url: str) -> list[tuple[str, ...]]:
    found = await query(url, "SELECT source_period, target_period, person_id, role, amount, earned, paid"
                             " FROM bonus_adjustments ORDER BY source_period, target_period, person_id")
    return [tuple(text(value) for value in row) for row in found]


async def lead_points(url: str) -> list[tuple[str, ...]]:
    found = await query(url, "SELECT year, person_id, points, turnover, badge, gold FROM lead_points"
                             " ORDER BY year, person_id")
    return [tuple(text(value) for value in row) for row in found]


def without_version(found: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{**row, "plan_version": ""} for row in found]


def before_settlement(found: list[dict[str, str]]) -> list[dict[str, str]]:
    """The rows as a from-scratch computation has them: no prior adjustments (total = earned), no
    zero rows. What SPEC 7 leaves of a row once its adjustments are taken out."""
    out = []
    for row in found:
        prior = Decimal(row["prior_adjustments"])
        row = {**row, "prior_adjustments": "0.00", "total_bonus": str(Decimal(row["total_bonus"]) - prior)}
        if not is_zero(row):
            out.append(row)
    return out


# -- 1. the programmes' columns, settled, exported and adjusted ---------------------------

#: November 2026: an upsell and a cross-sell (fr-1), a converted lead (tm-1 -> fr-2), a lead held
#: but not yet converted (tm-2 -> fr-3) and a rating of fr-1.
NOVEMBER = [
    sale("s1", "2026-11-02T10:00:00Z", "c1", "S1", "fr-1", [("a", "laptops", 1, "1000.00")]),
    # line a: laptops held (S1), 1500.00 above U = 1000.00: an upsell of (1500 - 1000) x 1 = 500.00;
    # line b: accessories, not held, in matrix[laptops]: a cross-sell of 200.00. No touch: fr-1 100%.
    sale("s2", "2026-11-05T10:00:00Z", "c1", "S2", "fr-1",
         [("a", "laptops", 1, "1500.00"), ("b", "accessories", 1, "200.00")]),
    held("h1", "2026-11-10T10:00:00Z", "c2", "L1", "tm-1", "fr-2"),
    # by fr-2, 2 days after the held event: converts L1 (tm-1 and fr-2 each one KPI conversion)
    sale("s3", "2026-11-12T10:00:00Z", "c2", "S3", "fr-2", [("a", "phones", 1, "400.00")]),
    feedback("f1", "2026-11-20T10:00:00Z", "c1", "fr-1", "field_rep", 4),
    held("h2", "2026-11-25T10:00:00Z", "c3", "L2", "tm-2", "fr-3"),
]

#: KPI: 100.00 x (0.5 x min(conversions / 2, 1) + 0.3 x min(mean rating / 5, 1) + 0.2 x passed share).
#: fr-1: no conversion (0), rating 4 -> 0.3 x 0.8 = 0.24: 24.00; cross-sell 200.00 x 3% = 6.00;
#:       upsell 10% x 500.00 = 50.00. Total 6.00 + 50.00 + 24.00 = 80.00.
#: fr-2: only a conversion: 0.5 x 1/2 = 0.25: 25.00 (field_rep: counted only through conversions).
#: tm-1: held + converted 25.00 + 10.00 = 35.00; conversion 0.25: 25.00. Total 60.00.
#: tm-2: held 25.00; no KPI input (no conversion, no feedback, no review): no KPI bonus. 25.00.
NOVEMBER_ROWS = """
    period,person_id,role,cross_sell_count,cross_sell_amount,appointments_held,appointments_converted,cross_sell_bonus,appointment_bonus,prior_adjustments,total_bonus,upsell_count,upsell_amount,upsell_bonus,kpi_bonus,prize_bonus,plan_version
    2026-11,fr-1,field_rep,1,200.00,0,0,6.00,0.00,0.00,80.00,1,500.00,50.00,24.00,0.00,prog-1
    2026-11,fr-2,field_rep,0,0.00,0,0,0.00,0.00,0.00,25.00,0,0.00,0.00,25.00,0.00,prog-1
    2026-11,tm-1,telemarketer,0,0.00,1,1,0.00,35.00,0.00,60.00,0,0.00,0.00,25.00,0.00,prog-1
    2026-11,tm-2,telemarketer,0,0.00,1,0,0.00,25.00,0.00,25.00,0,0.00,0.00,0.00,0.00,prog-1
"""


async def test_settlement_carries_the_programmes_and_late_changes_become_adjustments(
        pg_url: str, brokers: Brokers, tmp_path: Path) -> None:
    payroll = Payroll(brokers, pg_url, tmp_path, PROGRAMMES_PLAN)
    await payroll.replay(NOVEMBER)
    november = table(NOVEMBER_ROWS)
    assert await running(pg_url) == november
    assert await running(pg_url) == payroll.from_scratch()
    assert await lead_points(pg_url) == [("2026", "tm-1", "1", "400.00", "none", "true")]  # S3's 400.00

    said = payroll.settle("2026-11")
    assert "settled 2026-11: 4 rows, total_bonus 190.00" in said  # 80 + 25 + 60 + 25
    assert await settled(pg_url) == november  # every column, the programmes' and plan_version included

    header, exported = payroll.export_csv("2026-11")
    assert header == [*COLUMNS, "settlement_id", "settled_at"]
    assert [{name: row[name] for name in COLUMNS} for row in exported] == november
    as_json = payroll.export_json("2026-11")
    assert [{name: row[name] for name in PROGRAMME_COLUMNS} for row in as_json["rows"]] == [
        {"upsell_count": 1, "upsell_amount": "500.00", "upsell_bonus": "50.00", "kpi_bonus": "24.00",
         "prize_bonus": "0.00", "plan_version": "prog-1"},
        {"upsell_count": 0, "upsell_amount": "0.00", "upsell_bonus": "0.00", "kpi_bonus": "25.00",
         "prize_bonus": "0.00", "plan_version": "prog-1"},
        {"upsell_count": 0, "upsell_amount": "0.00", "upsell_bonus": "0.00", "kpi_bonus": "25.00",
         "prize_bonus": "0.00", "plan_version": "prog-1"},
        {"upsell_count": 0, "upsell_amount": "0.00", "upsell_bonus": "0.00", "kpi_bonus": "0.00",
         "prize_bonus": "0.00", "plan_version": "prog-1"},
    ]
    assert {name: as_json["totals"][name] for name in ("upsell_amount", "upsell_bonus", "kpi_bonus", "prize_bonus",
                                                        "total_bonus")} == {
        "upsell_amount": "500.00", "upsell_bonus": "50.00", "kpi_bonus": "74.00", "prize_bonus": "0.00",
        "total_bonus": "190.00"}

    # -- late KPI events of November, after November is settled
    await payroll.replay([
        # fr-1's mean rating (4 + 2) / 2 = 3: 0.3 x 3/5 = 0.18 -> 18.00; earned 6 + 50 + 18 = 74.00, paid 80.00
        feedback("f2", "2026-11-28T10:00:00Z", "c1", "fr-1", "field_rep", 2),
        # tm-1 compliance 1/1: + 0.2 -> KPI 100 x (0.25 + 0.2) = 45.00; earned 35 + 45 = 80.00, paid 60.00
        review("q1", "2026-11-29T10:00:00Z", "c2", "tm-1", "telemarketer", True),
    ])
    assert await adjustments(pg_url) == [
        ("2026-11", "2026-12", "fr-1", "field_rep", "-6.00", "74.00", "80.00"),
        ("2026-11", "2026-12", "tm-1", "telemarketer", "20.00", "80.00", "60.00"),
    ]
    assert await settled(pg_url) == november

    # -- a late conversion: S4 by fr-3 to c3 on Dec 3, 8 days after L2 was held (Nov 25)
    await payroll.replay([sale("s4", "2026-12-03T10:00:00Z", "c3", "S4", "fr-3", [("a", "tv", 1, "300.00")])])
    # tm-2's November: held + converted 35.00, a KPI conversion 25.00: earned 60.00, paid 25.00 -> +35.00;
    # fr-3's November: a KPI conversion 25.00, nothing settled -> +25.00; tm-2 a lead point of 300.00
    assert await adjustments(pg_url) == [
        ("2026-11", "2026-12", "fr-1", "field_rep", "-6.00", "74.00", "80.00"),
        ("2026-11", "2026-12", "fr-3", "field_rep", "25.00", "25.00", "0.00"),
        ("2026-11", "2026-12", "tm-1", "telemarketer", "20.00", "80.00", "60.00"),
        ("2026-11", "2026-12", "tm-2", "telemarketer", "35.00", "60.00", "25.00"),
    ]
    assert await lead_points(pg_url) == [("2026", "tm-1", "1", "400.00", "none", "true"),
                                         ("2026", "tm-2", "1", "300.00", "none", "false")]

    # -- a late refund of the upsell line (S2 line a, 33 days after the sale: inside the clawback).
    # Line b stays a cross-sell (laptops still held from S1). fr-1 earned 6.00 + 0.00 + 18.00 = 24.00,
    # paid 80.00: the pending adjustment is recomputed to -56.00, not added to -6.00.
    await payroll.replay([refund("r1", "2026-12-08T10:00:00Z", "c1", "S2", "a")])
    assert await adjustments(pg_url) == [
        ("2026-11", "2026-12", "fr-1", "field_rep", "-56.00", "24.00", "80.00"),
        ("2026-11", "2026-12", "fr-3", "field_rep", "25.00", "25.00", "0.00"),
        ("2026-11", "2026-12", "tm-1", "telemarketer", "20.00", "80.00", "60.00"),
        ("2026-11", "2026-12", "tm-2", "telemarketer", "35.00", "60.00", "25.00"),
    ]
    assert await settled(pg_url) == november  # bonus_settled never changes

    # November as computed now (prior adjustments as settled: 0.00); December holds only the
    # adjustments, in rows created for them. Total -56 + 25 + 20 + 35 = 24.00.
    now = table("""
        period,person_id,role,cross_sell_count,cross_sell_amount,appointments_held,appointments_converted,cross_sell_bonus,appointment_bonus,prior_adjustments,total_bonus,upsell_count,upsell_amount,upsell_bonus,kpi_bonus,prize_bonus,plan_version
        2026-11,fr-1,field_rep,1,200.00,0,0,6.00,0.00,0.00,24.00,0,0.00,0.00,18.00,0.00,prog-1
        2026-11,fr-2,field_rep,0,0.00,0,0,0.00,0.00,0.00,25.00,0,0.00,0.00,25.00,0.00,prog-1
        2026-11,fr-3,field_rep,0,0.00,0,0,0.00,0.00,0.00,25.00,0,0.00,0.00,25.00,0.00,prog-1
        2026-11,tm-1,telemarketer,0,0.00,1,1,0.00,35.00,0.00,80.00,0,0.00,0.00,45.00,0.00,prog-1
        2026-11,tm-2,telemarketer,0,0.00,1,1,0.00,35.00,0.00,60.00,0,0.00,0.00,25.00,0.00,prog-1
        2026-12,fr-1,field_rep,0,0.00,0,0,0.00,0.00,-56.00,-56.00,0,0.00,0.00,0.00,0.00,prog-1
        2026-12,fr-3,field_rep,0,0.00,0,0,0.00,0.00,25.00,25.00,0,0.00,0.00,0.00,0.00,prog-1
        2026-12,tm-1,telemarketer,0,0.00,0,0,0.00,0.00,20.00,20.00,0,0.00,0.00,0.00,0.00,prog-1
        2026-12,tm-2,telemarketer,0,0.00,0,0,0.00,0.00,35.00,35.00,0,0.00,0.00,0.00,0.00,prog-1
    """)
    # plan_version of the December rows made for adjustments: test_rows_made_for_adjustments_carry_the_plan_version
    assert without_version(await running(pg_url)) == without_version(now)
    assert before_settlement(await running(pg_url)) == payroll.from_scratch()
    # fr-1's November KPI as recomputed: no conversion (null, 0), mean rating 3 (3/5), no review (null, 0)
    scores = await query(pg_url, "SELECT component, value, attainment FROM kpi_scores WHERE period = '2026-11'"
                                 " AND person_id = 'fr-1' ORDER BY component")
    assert [(row["component"], row["value"] if row["value"] is None else row["value"].normalize(),
             row["attainment"].normalize()) for row in scores] == [
        ("compliance", None, Decimal("0")), ("conversions", None, Decimal("0")),
        ("rating", Decimal("3"), Decimal("0.6"))]

    said = payroll.settle("2026-12")
    assert "settled 2026-12: 4 rows, total_bonus 24.00" in said
    december = [row for row in now if row["period"] == "2026-12"]
    _, exported = payroll.export_csv("2026-12")
    assert [{name: row[name] for name in COLUMNS if name != "plan_version"} for row in exported] == [
        {name: row[name] for name in COLUMNS if name != "plan_version"} for row in december]
    assert payroll.export_json("2026-12")["totals"]["prior_adjustments"] == "24.00"
    assert without_version(await settled(pg_url)) == without_version([*november, *december])
    assert (await settled(pg_url))[:len(november)] == november


async def test_rows_made_for_adjustments_carry_the_plan_version(pg_url: str, brokers: Brokers, tmp_path: Path) -> None:
    """SPEC 12: `bonus_running` and `bonus_settled` carry `plan_version`. A December row made only
    for an adjustment of November (SPEC 7: "a row is created if needed") is a row of December,
    under the version in force for December, as every other row of the month is."""
    payroll = Payroll(brokers, pg_url, tmp_path, PROGRAMMES_PLAN)
    await payroll.replay(NOVEMBER)
    payroll.settle("2026-11")
    # fr-1's mean rating 3: KPI 18.00 instead of 24.00: -6.00 into December, in a row made for it
    await payroll.replay([feedback("f2", "2026-11-28T10:00:00Z", "c1", "fr-1", "field_rep", 2)])
    december = await rows(pg_url, "bonus_running", "period = '2026-12'")
    assert [(row["person_id"], row["prior_adjustments"], row["total_bonus"]) for row in december] == [
        ("fr-1", "-6.00", "-6.00")]
    payroll.settle("2026-12")
    _, exported = payroll.export_csv("2026-12")
    assert [(row["person_id"], row["plan_version"]) for row in exported] == [("fr-1", "prog-1")]
    assert [row["plan_version"] for row in december] == ["prog-1"]


# -- 2. the December prize ------------------------------------------------------------------

#: 2026: tm-a converts one lead (800.00) in March; tm-b two (500.00 in June, 2 x 200.00 in
#: September): tm-b's 900.00 is the year's greatest turnover: gold, the whole prize of 100.01.
YEAR = [
    held("a-h1", "2026-03-10T10:00:00Z", "p1", "L-A1", "tm-a", "fr-1"),
    sale("a-s1", "2026-03-12T10:00:00Z", "p1", "A1", "fr-1", [("1", "laptops", 1, "800.00")]),
    held("b-h1", "2026-06-05T10:00:00Z", "p2", "L-B1", "tm-b", "fr-2"),
    sale("b-s1", "2026-06-06T10:00:00Z", "p2", "B1", "fr-2", [("1", "phones", 1, "500.00")]),
    held("b-h2", "2026-09-01T10:00:00Z", "p3", "L-B2", "tm-b", "fr-2"),
    sale("b-s2", "2026-09-03T10:00:00Z", "p3", "B2", "fr-2", [("1", "tv", 2, "200.00")]),
]

HEADER = ("period,person_id,role,cross_sell_count,cross_sell_amount,appointments_held,appointments_converted,"
          "cross_sell_bonus,appointment_bonus,prior_adjustments,total_bonus,upsell_count,upsell_amount,upsell_bonus,"
          "kpi_bonus,prize_bonus,plan_version")
#: Each converted lead: held 25.00 + converted 10.00 = 35.00 in the month of its held event.
APPOINTMENTS = """
    2026-03,tm-a,telemarketer,0,0.00,1,1,0.00,35.00,0.00,35.00,0,0.00,0.00,0.00,0.00,prize-1
    2026-06,tm-b,telemarketer,0,0.00,1,1,0.00,35.00,0.00,35.00,0,0.00,0.00,0.00,0.00,prize-1
    2026-09,tm-b,telemarketer,0,0.00,1,1,0.00,35.00,0.00,35.00,0,0.00,0.00,0.00,0.00,prize-1
"""


def prize_row(period: str, person: str, prize: str, prior: str = "0.00") -> str:
    """A December (or January) row of a telemarketer with only a prize (or only an adjustment)."""
    total = Decimal(prize) + Decimal(prior)
    return f"{period},{person},telemarketer,0,0.00,0,0,0.00,0.00,{prior},{total},0,0.00,0.00,0.00,{prize},prize-1"


async def test_the_december_prize_moves_while_december_is_open_then_as_adjustments(
        pg_url: str, brokers: Brokers, tmp_path: Path) -> None:
    payroll = Payroll(brokers, pg_url, tmp_path, PRIZE_PLAN)
    await payroll.replay(YEAR)
    # badges: bronze at 2 points, silver at 3
    assert await lead_points(pg_url) == [("2026", "tm-a", "1", "800.00", "none", "false"),
                                         ("2026", "tm-b", "2", "900.00", "bronze", "true")]
    # tm-b has nothing else in December: a row is created for the prize
    assert await running(pg_url) == table(HEADER + APPOINTMENTS + prize_row("2026-12", "tm-b", "100.01"))
    assert await running(pg_url) == payroll.from_scratch()

    # -- December open: a refund of one of B2's two televisions (Oct 1, inside the clawback) leaves
    # B2 converting with 200.00: tm-b 700.00 < tm-a 800.00, the prize moves to tm-a
    await payroll.replay([refund("b-r2", "2026-10-01T10:00:00Z", "p3", "B2", "1")])
    assert await lead_points(pg_url) == [("2026", "tm-a", "1", "800.00", "none", "true"),
                                         ("2026", "tm-b", "2", "700.00", "bronze", "false")]
    assert await running(pg_url) == table(HEADER + APPOINTMENTS + prize_row("2026-12", "tm-a", "100.01"))
    assert await running(pg_url) == payroll.from_scratch()

    # -- December open: tm-c converts a November lead with 800.00: a tie with tm-a. 100.01 / 2 =
    # 50.005, 50.00 each rounded down, the cent left over to the first by person_id: tm-a 50.01.
    await payroll.replay([
        held("c-h1", "2026-11-20T10:00:00Z", "p4", "L-C1", "tm-c", "fr-3"),
        sale("c-s1", "2026-11-25T10:00:00Z", "p4", "C1", "fr-3", [("1", "laptops", 1, "800.00")]),
    ])
    assert await lead_points(pg_url) == [("2026", "tm-a", "1", "800.00", "none", "true"),
                                         ("2026", "tm-b", "2", "700.00", "bronze", "false"),
                                         ("2026", "tm-c", "1", "800.00", "none", "true")]
    before_close = table("\n".join([
        HEADER + APPOINTMENTS,
        "2026-11,tm-c,telemarketer,0,0.00,1,1,0.00,35.00,0.00,35.00,0,0.00,0.00,0.00,0.00,prize-1",
        prize_row("2026-12", "tm-a", "50.01"),
        prize_row("2026-12", "tm-c", "50.00"),
    ]))
    assert await running(pg_url) == before_close
    assert await running(pg_url) == payroll.from_scratch()

    # tm-b's December row, left with no figure, is not copied (SPEC 14)
    said = payroll.settle("2026-12")
    assert "settled 2026-12: 2 rows, total_bonus 100.01" in said
    december = [row for row in before_close if row["period"] == "2026-12"]
    assert await settled(pg_url) == december
    as_json = payroll.export_json("2026-12")
    assert [(row["person_id"], row["prize_bonus"], row["total_bonus"]) for row in as_json["rows"]] == [
        ("tm-a", "50.01", "50.01"), ("tm-c", "50.00", "50.00")]
    assert as_json["totals"]["prize_bonus"] == "100.01"
    _, exported = payroll.export_csv("2026-12")
    assert [{name: row[name] for name in COLUMNS} for row in exported] == december

    # -- December settled: a second sale converting L-C1 (Dec 2, 12 days after it was held; phones
    # is no cross-sell of laptops) takes tm-c's turnover to 860.00: tm-c alone holds gold.
    # December as computed now: tm-c 100.01, tm-a 0.00; the difference goes to January 2027:
    # tm-a earned 0.00 - paid 50.01 = -50.01, tm-c earned 100.01 - paid 50.00 = +50.01.
    await payroll.replay([sale("c-s2", "2026-12-02T10:00:00Z", "p4", "C2", "fr-3", [("1", "phones", 1, "60.00")])])
    assert await lead_points(pg_url) == [("2026", "tm-a", "1", "800.00", "none", "false"),
                                         ("2026", "tm-b", "2", "700.00", "bronze", "false"),
                                         ("2026", "tm-c", "1", "860.00", "none", "true")]
    # (role, the fourth column: checked last, below)
    assert [row[:3] + row[4:] for row in await adjustments(pg_url)] == [
        ("2026-12", "2027-01", "tm-a", "-50.01", "0.00", "50.01"),
        ("2026-12", "2027-01", "tm-c", "50.01", "100.01", "50.00"),
    ]
    assert await settled(pg_url) == december  # never changes
    after = table("\n".join([
        HEADER + APPOINTMENTS,
        "2026-11,tm-c,telemarketer,0,0.00,1,1,0.00,35.00,0.00,35.00,0,0.00,0.00,0.00,0.00,prize-1",
        prize_row("2026-12", "tm-c", "100.01"),
        prize_row("2027-01", "tm-a", "0.00", prior="-50.01"),
        prize_row("2027-01", "tm-c", "0.00", prior="50.01"),
    ]))
    # plan_version of January's rows made for adjustments: test_rows_made_for_adjustments_carry_the_plan_version
    assert without_role(without_version(await running(pg_url))) == without_role(without_version(after))
    assert before_settlement(await running(pg_url)) == payroll.from_scratch()

    said = payroll.settle("2027-01")
    assert "settled 2027-01: 2 rows, total_bonus 0.00" in said  # -50.01 + 50.01
    assert without_role(without_version(await settled(pg_url))) == without_role(without_version([*december,
                                                                                                *after[-2:]]))
    exported = payroll.export_json("2027-01")["rows"]
    assert [(row["person_id"], row["prior_adjustments"], row["prize_bonus"], row["total_bonus"])
            for row in exported] == [("tm-a", "-50.01", "0.00", "-50.01"), ("tm-c", "50.01", "0.00", "50.01")]

    # The role of tm-a's adjustment: the prize taken back was a telemarketer's (tm-a's settled December
    # row says telemarketer, lead points are only a telemarketer's); January's payroll row says the same.
    assert await adjustments(pg_url) == [
        ("2026-12", "2027-01", "tm-a", "telemarketer", "-50.01", "0.00", "50.01"),
        ("2026-12", "2027-01", "tm-c", "telemarketer", "50.01", "100.01", "50.00"),
    ]
    assert [(row["person_id"], row["role"]) for row in exported] == [("tm-a", "telemarketer"),
                                                                      ("tm-c", "telemarketer")]
    assert without_version(await running(pg_url)) == without_version(after)


def without_role(found: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{**row, "role": ""} for row in found]
