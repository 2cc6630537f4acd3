"""SPEC sections 5 and 13-14 through the real pipeline: a month with every programme on, shuffled,
with duplicates, in small batches, across a worker restart, gives the tables of `compute_results`.

The plan is written by the test (amount gate, `[upsell]`, `[lead_sharing]` with an odd-cent gold
prize, `[kpi]` over all three metrics) and given to the workers by CRMBONUS_PLAN. The events are
the demo's December (upgrades, feedback, quality reviews, the year's converted hand-offs) plus a
few written here across the year boundary: a lead held on 31 December that converts on 2 January
(its point and turnover are 2026's) and one held in January 2027 (a 2027 lead year, so a prize in
a December row that has no other figure). Compared exactly: `bonus_running` (the rows with a
figure, every SPEC 14 column), `lead_points`, `kpi_scores` and `credits`.

tests/integration/test_programmes_concurrency.py uses the helpers below for two workers at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import signal
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

from schemas.decode import InvalidEvent, decode_event
from schemas.events import Event
from stream.bonus import FIGURE_COLUMNS, RUNNING_COLUMNS, Results, compute_results
from stream.demo_data import DemoConfig, generate
from stream.plan import Plan, load_plan
from stream.rules import Credit
from tests.integration.conftest import (
    Broker,
    Offsets,
    StartWorker,
    merge_ends,
    query,
    wait_caught_up,
    wait_stored,
)

pytestmark = pytest.mark.integration

#: Every SPEC 13 programme; a prize of odd cents (a tie splits it 250.01 / 250.00), low badge
#: thresholds so badges differ, KPI targets that make attainments uneven fractions.
PLAN_TOML = """
version = "programmes-it-1"
timezone = "UTC"
attribution_window_days = 30
attribution_model = "last_touch"
telemarketer_share = "0.30"
clawback_days = 90

[cross_sell]
min_count = 3
min_amount = "100.00"
tiers = [ { up_to = "5000.00", rate = "0.03" }, { rate = "0.05" } ]

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

[upsell]
rate = "0.10"

[lead_sharing]
bronze_points = 2
silver_points = 4
gold_prize = "500.01"

[kpi]
target_bonus = "150.00"
roles = ["telemarketer", "field_rep"]

[[kpi.components]]
name = "conversions"
weight = "0.5"
metric = "conversions"
target = 3
cap = "1.5"

[[kpi.components]]
name = "rating"
weight = "0.3"
metric = "rating"
target = "4.5"

[[kpi.components]]
name = "compliance"
weight = "0.2"
metric = "compliance"
target = "0.9"
"""

CREDIT_COLUMNS = Credit._fields
LEAD_POINT_COLUMNS = ("year", "person_id", "points", "turnover", "badge", "gold")
KPI_COLUMNS = ("period", "person_id", "component", "metric", "value", "attainment", "weight")


def write_plan(directory: Path) -> tuple[Path, Plan]:
    path = directory / "programmes.toml"
    path.write_text(PLAN_TOML)
    return path, load_plan(path)


def line(**event: Any) -> bytes:
    return json.dumps(event).encode()


def sale_line(event_id: str, when: str, customer: str, sale_id: str, seller: str, *lines: tuple[str, str, str],
              role: str = "field_rep") -> bytes:
    """A sale; each line (line_id, category, unit_price), quantity 1."""
    return line(event_id=event_id, event_type="sale", occurred_at=when, customer_id=customer, sale_id=sale_id,
                seller_id=seller, seller_role=role, currency="EUR",
                lines=[{"line_id": lid, "sku": f"sku-{category}", "category": category, "quantity": 1,
                        "unit_price": price} for lid, category, price in lines])


def handoff_line(event_id: str, when: str, customer: str, lead_id: str, status: str, telemarketer: str,
                 field_rep: str) -> bytes:
    return line(event_id=event_id, event_type="lead_handoff", occurred_at=when, customer_id=customer,
                lead_id=lead_id, telemarketer_id=telemarketer, field_rep_id=field_rep, status=status)


def feedback_line(event_id: str, when: str, customer: str, person: str, role: str, rating: int) -> bytes:
    return line(event_id=event_id, event_type="feedback", occurred_at=when, customer_id=customer, person_id=person,
                person_role=role, rating=rating)


def review_line(event_id: str, when: str, customer: str, person: str, role: str, passed: bool) -> bytes:
    return line(event_id=event_id, event_type="quality_review", occurred_at=when, customer_id=customer,
                person_id=person, person_role=role, passed=passed)


def year_boundary() -> list[bytes]:
    """A lead held on 31 December converting on 2 January, one held and converted in January 2027."""
    return [
        handoff_line("yb-1", "2026-12-28T10:00:00Z", "c-yb-1", "lead-yb-1", "booked", "tm-yb", "fr-yb"),
        handoff_line("yb-2", "2026-12-31T22:00:00Z", "c-yb-1", "lead-yb-1", "held", "tm-yb", "fr-yb"),
        sale_line("yb-3", "2027-01-02T09:00:00Z", "c-yb-1", "S-yb-1", "fr-yb",
                  ("L1", "laptops", "4000.00"), ("L2", "accessories", "120.00")),
        handoff_line("yb-4", "2027-01-04T10:00:00Z", "c-yb-2", "lead-yb-2", "booked", "tm-yb2", "fr-yb"),
        handoff_line("yb-5", "2027-01-05T10:00:00Z", "c-yb-2", "lead-yb-2", "held", "tm-yb2", "fr-yb"),
        sale_line("yb-6", "2027-01-07T10:00:00Z", "c-yb-2", "S-yb-2", "fr-yb", ("L1", "phones", "800.00")),
        sale_line("yb-7", "2027-01-09T10:00:00Z", "c-yb-2", "S-yb-3", "fr-yb", ("L1", "phones", "950.00")),
        feedback_line("yb-8", "2027-01-02T12:00:00Z", "c-yb-1", "fr-yb", "field_rep", 4),
        review_line("yb-9", "2027-01-08T12:00:00Z", "c-yb-2", "tm-yb2", "telemarketer", True),
    ]


def decoded(lines: Iterable[bytes]) -> list[Event]:
    """The valid events of `lines`, in order (the store's admission is compute_results' own)."""
    events = []
    for raw in lines:
        try:
            events.append(decode_event(raw))
        except InvalidEvent:
            continue
    return events


def expected_tables(results: Results) -> dict[str, Any]:
    """`compute_results` in the shape `stored_tables` reads."""
    return {
        "bonus_running": [dataclasses.astuple(row) for row in results.running],
        "lead_points": [tuple(row) for row in results.lead_points],
        "kpi_scores": sorted(tuple(row) for row in results.kpi_scores),
        "credits": Counter(tuple(credit) for credit in results.credits),
    }


async def stored_tables(url: str) -> dict[str, Any]:
    """The four tables as Postgres holds them: bonus_running without the rows whose every figure
    is zero (SPEC 14), kpi_scores by (period, person, component), credits as a multiset (numerics
    compared by value, so 30.0000 is 30)."""
    running = await query(url, f"SELECT {', '.join(RUNNING_COLUMNS)} FROM bonus_running ORDER BY period, person_id")
    leads = await query(url, f"SELECT {', '.join(LEAD_POINT_COLUMNS)} FROM lead_points ORDER BY year, person_id")
    scores = await query(url, f"SELECT {', '.join(KPI_COLUMNS)} FROM kpi_scores")
    credits = await query(url, f"SELECT {', '.join(CREDIT_COLUMNS)} FROM credits")
    return {
        "bonus_running": [tuple(row) for row in running if any(row[name] for name in FIGURE_COLUMNS)],
        "lead_points": [tuple(row) for row in leads],
        "kpi_scores": sorted(tuple(row) for row in scores),
        "credits": Counter(tuple(row) for row in credits),
    }


def assert_tables_equal(stored: dict[str, Any], expected: dict[str, Any]) -> None:
    for name in ("lead_points", "kpi_scores", "bonus_running"):
        got, want = stored[name], expected[name]
        assert got == want, (name, [r for r in got if r not in want][:5], [r for r in want if r not in got][:5])
    assert stored["credits"] == expected["credits"], (stored["credits"] - expected["credits"],
                                                      expected["credits"] - stored["credits"])


async def publish_in_chunks(broker: Broker, lines: Sequence[bytes], chunk: int, pause: float = 0.02) -> Offsets:
    """Publish a few lines at a time, so workers see many small batches; the broker's ends."""
    ends: Offsets = {}
    for start in range(0, len(lines), chunk):
        ends = merge_ends(ends, await broker.publish(lines[start:start + chunk]))
        await asyncio.sleep(pause)
    return ends


async def test_every_programme_shuffled_with_duplicates_and_a_restart_equals_compute_results(
    pg_url: str, broker: Broker, workers: StartWorker, tmp_path: Path
) -> None:
    plan_path, plan = write_plan(tmp_path)
    lines = generate(DemoConfig(seed=15, month="2026-12", customers=160, telemarketers=5, field_reps=6,
                                invalid_lines=0)) + year_boundary()
    rng = random.Random(15)
    arrival = lines + rng.sample(lines, len(lines) // 5)  # a fifth redelivered
    rng.shuffle(arrival)
    expected = compute_results(decoded(lines), plan)
    # the month exercises every table and programme (else the comparison proves little)
    assert any(row.upsell_count for row in expected.running) and any(row.kpi_bonus for row in expected.running)
    assert {row.year for row in expected.lead_points} == {2026, 2027}
    assert [row.period for row in expected.running if row.prize_bonus] == ["2026-12", "2027-12"]
    assert any(row.badge != "none" for row in expected.lead_points)

    env = {"CRMBONUS_PLAN": str(plan_path)}
    first = workers(pg_url, "first", env=env)
    await first.wait_healthy()
    half = len(arrival) // 2
    ends = await publish_in_chunks(broker, arrival[:half], chunk=17)
    await wait_stored(pg_url, len(decoded(arrival[:half])) // 3, 60, first)
    first.signal(signal.SIGKILL)  # mid-stream, not at a batch's end
    first.wait(10)
    second = workers(pg_url, "second", env=env)
    ends = merge_ends(ends, await publish_in_chunks(broker, arrival[half:], chunk=17))
    await wait_caught_up(pg_url, ends, 120, second)

    stored = await stored_tables(pg_url)
    assert_tables_equal(stored, expected_tables(expected))
    assert {row[-1] for row in stored["bonus_running"]} == {plan.version}
