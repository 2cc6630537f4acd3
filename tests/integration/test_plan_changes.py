"""A change of the plans is another input (SPEC §12, §7; issue 16 item 2), through real workers.

Each test writes plan directories in its tmp dir, runs real `crmbonus worker` processes (given
`CRMBONUS_PLAN`) on an embedded tansu broker and a real Postgres, publishes events across several
months, stops the worker, changes the directory (a version added, edited, removed) and starts a
worker again, which finds the periods whose version changed (by content, against `plan_versions`)
and recomputes them from the stored events before it consumes anything. Then the tables are
asserted exactly: `bonus_running` (the rows with a figure, with `plan_version`), `bonus_settled`
(never changed), the `bonus_adjustments` audit rows (earned, paid), `plan_state.generation`, and
`stream.bonus.compute_results(events, load_plans(directory))` for every column but
`prior_adjustments`.

The events: in each of 2026-03, -05, -07 and -09, customer cMM has a lead held by tm-1 for fr-1
(no `booked` event: no touch) and two days later fr-1's sale of a laptop (1000.00, the primary
line) and accessories (a cross-sell of the laptop: 200.00, 300.00, 400.00, 500.00 by month). So
each month fr-1 has one cross-sell, all his (no touch): its amount x the version's first tier
rate; tm-1 has one appointment held and converted: held_credit + conversion_bonus.

| version | rate | held + converted | fr-1 03 / 05 / 07 / 09          | tm-1 each month |
|---------|------|------------------|---------------------------------|-----------------|
| v1      | 3%   | 25.00 + 10.00    | 6.00 / 9.00 / 12.00 / 15.00     | 35.00           |
| v1 (ed.)| 3%   | 40.00 + 10.00    | as v1                           | 50.00           |
| v2      | 4%   | 30.00 + 20.00    | 8.00 / 12.00 / 16.00 / 20.00    | 50.00           |
| v3      | 2%   | 20.00 +  5.00    | 4.00 / 6.00 / 8.00 / 10.00      | 25.00           |

The cases: a version added mid-year (and a restart with the same plans, or the same content
moved and commented, recomputes nothing); an edited version of settled months (adjustments into
the earliest open month, and back once that month is settled); a version removed, then the
earliest too (a settled month's change as adjustments); two workers starting at once (one
recomputation); two live workers with different plans (the one started last wins, the other
exits 2 saying the plans changed); a new December version (the year's prize, settled: an
adjustment; unchanged: the row still names its version); another time zone (credits move
between months); a KPI programme added to a version and taken away; tables whose plans nobody
stored (recomputed once); the progress bar on a terminal.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from stream import embedded
from stream.bonus import compute_results
from stream.plan_versions import load_plans
from tests.examples import ROOT
from tests.integration.conftest import (
    Broker,
    Offsets,
    StartWorker,
    Worker,
    command_env,
    crmbonus,
    merge_ends,
    query,
    wait_caught_up,
)
from tests.integration.test_programmes_order import decoded
from tests.integration.test_settlement_programmes import (
    COLUMNS,
    adjustments,
    before_settlement,
    feedback,
    held,
    rows,
    running,
    sale,
    table,
    text,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.brokers("tansu", reason="plan changes are found and recomputed from Postgres at start-up; the "
                        "broker only carries the events (test_replay runs the Kafka path on both)"),
]

HEADER = ",".join(COLUMNS)
RECOMPUTING = "recomputing"  # plan_changes' warning: "the plans changed (...): recomputing N period(s) ..."


class Version(NamedTuple):
    name: str
    effective_from: str
    rate: str  # the first tier's
    held_credit: str
    conversion_bonus: str
    gold_prize: str | None = None  # a [lead_sharing] section with this prize; none without
    timezone: str = "UTC"
    kpi: bool = False  # a KPI bonus of 100.00 on the mean rating alone (target 5)


V1 = Version("v1", "2026-01", "0.03", "25.00", "10.00")
V1_EDITED = Version("v1", "2026-01", "0.03", "40.00", "10.00")  # same name and month, another content
V2 = Version("v2", "2026-06", "0.04", "30.00", "20.00")
V3 = Version("v3", "2026-08", "0.02", "20.00", "5.00")


def plan_text(v: Version) -> str:
    """A complete plan file: every key of SPEC §4, effective_from, and the version's own figures."""
    return f"""\
version = "{v.name}"
effective_from = "{v.effective_from}"
timezone = "{v.timezone}"
attribution_window_days = 30
attribution_model = "last_touch"
telemarketer_share = "0.30"
clawback_days = 90

[cross_sell]
min_count = 1
tiers = [ {{ up_to = "5000.00", rate = "{v.rate}" }}, {{ rate = "0.05" }} ]

[cross_sell.matrix]
laptops  = ["accessories", "software", "insurance", "warranty"]
phones   = ["accessories", "insurance", "plans", "warranty"]
plans    = ["phones", "insurance"]
tv       = ["accessories", "warranty", "streaming"]
insurance = ["warranty"]

[appointments]
held_credit = "{v.held_credit}"
conversion_bonus = "{v.conversion_bonus}"
conversion_window_days = 14
""" + ("" if v.gold_prize is None else f"""
[lead_sharing]
gold_prize = "{v.gold_prize}"
""") + ("" if not v.kpi else """
[kpi]
target_bonus = "100.00"

[[kpi.components]]
name = "rating"
weight = "1"
metric = "rating"
target = 5
""")


def plan_dir(tmp_path: Path, name: str, *versions: Version) -> Path:
    directory = tmp_path / name
    directory.mkdir()
    for version in versions:
        (directory / f"{version.effective_from}.toml").write_text(plan_text(version), encoding="utf-8")
    return directory


ACCESSORIES = {"03": "200.00", "05": "300.00", "07": "400.00", "09": "500.00"}


def month_events(month: str, customer: str | None = None) -> list[dict[str, Any]]:
    """cMM's lead held by tm-1 for fr-1 on the 10th; fr-1's sale on the 12th (a conversion)."""
    cid = customer or f"c{month}"
    price = ACCESSORIES.get(month, "100.00")
    return [
        held(f"{cid}-h", f"2026-{month}-10T10:00:00Z", cid, f"L-{cid}", "tm-1", "fr-1"),
        sale(f"{cid}-s", f"2026-{month}-12T10:00:00Z", cid, f"S-{cid}", "fr-1",
             [("a", "laptops", 1, "1000.00"), ("b", "accessories", 1, price)]),
    ]


EVENTS = [event for month in ACCESSORIES for event in month_events(month)]


def fr(period: str, amount: str, bonus: str, version: str, prior: str = "0.00") -> str:
    total = f"{float(bonus) + float(prior):.2f}"
    return f"{period},fr-1,field_rep,1,{amount},0,0,{bonus},0.00,{prior},{total},0,0.00,0.00,0.00,0.00,{version}"


def tm(period: str, bonus: str, version: str, prior: str = "0.00") -> str:
    total = f"{float(bonus) + float(prior):.2f}"
    return f"{period},tm-1,telemarketer,0,0.00,1,1,0.00,{bonus},{prior},{total},0,0.00,0.00,0.00,0.00,{version}"


def adjustment_row(period: str, person: str, role: str, prior: str, version: str) -> str:
    """A row made only to carry an adjustment (no figure of its own)."""
    return f"{period},{person},{role},0,0.00,0,0,0.00,0.00,{prior},{prior},0,0.00,0.00,0.00,0.00,{version}"


def expected(*lines: str) -> list[dict[str, str]]:
    return table("\n".join([HEADER, *lines]))


class Company:
    """One database, one broker, the events published so far and the workers started."""

    def __init__(self, url: str, tmp_path: Path, broker: Broker, workers: StartWorker) -> None:
        self.url, self.tmp_path, self.broker, self.workers = url, tmp_path, broker, workers
        self.events: list[dict[str, Any]] = []
        self.ends: Offsets = {}

    def start(self, name: str, plans: Path) -> Worker:
        return self.workers(self.url, name, env={"CRMBONUS_PLAN": str(plans)})

    async def run(self, name: str, plans: Path) -> Worker:
        """A worker with `plans`, once healthy: its start-up (and any recomputation) is done."""
        worker = self.start(name, plans)
        await worker.wait_healthy(120)
        return worker

    async def publish(self, events: Sequence[dict[str, Any]], *watch: Worker) -> None:
        lines = [json.dumps(event).encode() for event in events]
        self.ends = merge_ends(self.ends, await self.broker.publish(lines))
        await wait_caught_up(self.url, self.ends, 120, *watch)
        self.events += events

    def settle(self, period: str) -> str:
        done = crmbonus("settle", "--period", period, "--database-url", self.url, data_dir=self.tmp_path)
        return str(done.stderr)

    def from_scratch(self, plans: Path) -> list[dict[str, str]]:
        """`compute_results` of every event so far under `plans`, as strings."""
        results = compute_results(decoded(json.dumps(e).encode() for e in self.events), load_plans(plans))
        return [{name: text(getattr(row, name)) for name in COLUMNS} for row in results.running]

    async def assert_computed_under(self, plans: Path) -> None:
        """Every table equals the from-scratch computation under `plans` (prior adjustments aside)."""
        results = compute_results(decoded(json.dumps(e).encode() for e in self.events), load_plans(plans))
        assert before_settlement(await running(self.url)) == self.from_scratch(plans)
        assert await lead_points(self.url) == [tuple(text(v) for v in row) for row in results.lead_points]
        assert await kpi_scores(self.url) == [tuple(text(v) for v in row) for row in results.kpi_scores]


def stop(worker: Worker) -> None:
    worker.stop()
    assert worker.process.returncode == 0, f"worker {worker.name} exited {worker.process.returncode}:\n{worker.log()}"


async def generation(url: str) -> int:
    return int((await query(url, "SELECT generation FROM plan_state"))[0]["generation"])


async def wait_for_generation(url: str, wanted: int, timeout: float) -> None:
    """Until a recomputation has committed (`plan_state.generation` reached `wanted`)."""
    deadline = time.monotonic() + timeout
    while await generation(url) < wanted:
        assert time.monotonic() < deadline, f"plan_state.generation did not reach {wanted} in {timeout} s"
        await asyncio.sleep(0.2)


async def stored_versions(url: str) -> list[tuple[str, str, str]]:
    found = await query(url, "SELECT effective_from, version, digest FROM plan_versions ORDER BY effective_from")
    return [(r["effective_from"], r["version"], r["digest"]) for r in found]


def versions_of(plans: Path) -> list[tuple[str, str, str]]:
    return [(str(r.effective_from), r.version, r.digest) for r in load_plans(plans).records]


async def lead_points(url: str) -> list[tuple[str, ...]]:
    found = await query(url, "SELECT year, person_id, points, turnover, badge, gold FROM lead_points"
                             " ORDER BY year, person_id")
    return [tuple(text(value) for value in row) for row in found]


async def kpi_scores(url: str) -> list[tuple[str, ...]]:
    found = await query(url, "SELECT period, person_id, component, metric, value, attainment, weight FROM kpi_scores"
                             " ORDER BY period, person_id, component")
    return [tuple(text(value) for value in row) for row in found]


async def touched(url: str) -> dict[tuple[str, str], object]:
    """When each `bonus_running` row was last written."""
    found = await query(url, "SELECT period, person_id, updated_at FROM bonus_running")
    return {(r["period"], r["person_id"]): r["updated_at"] for r in found}


async def settled_rows(url: str) -> list[tuple[object, ...]]:
    """`bonus_settled` in full, its settlement ids and times included."""
    return [tuple(r) for r in await query(url, "SELECT * FROM bonus_settled ORDER BY period, person_id")]


def recomputations(*watch: Worker) -> int:
    return sum(worker.log(tail=10**6).count(RECOMPUTING) for worker in watch)


# -- the rows under the first plans ---------------------------------------------------------------

UNDER_V1 = [fr("2026-03", "200.00", "6.00", "v1"), tm("2026-03", "35.00", "v1"),
            fr("2026-05", "300.00", "9.00", "v1"), tm("2026-05", "35.00", "v1"),
            fr("2026-07", "400.00", "12.00", "v1"), tm("2026-07", "35.00", "v1"),
            fr("2026-09", "500.00", "15.00", "v1"), tm("2026-09", "35.00", "v1")]
#: v2 from 2026-06: July and September at 4% and 30.00 + 20.00.
UNDER_V1_V2 = [*UNDER_V1[:4],
               fr("2026-07", "400.00", "16.00", "v2"), tm("2026-07", "50.00", "v2"),
               fr("2026-09", "500.00", "20.00", "v2"), tm("2026-09", "50.00", "v2")]


async def test_a_version_added_mid_year_recomputes_the_months_from_it_on_and_a_restart_nothing(
        pg_url: str, broker: Broker, workers: StartWorker, tmp_path: Path) -> None:
    company = Company(pg_url, tmp_path, broker, workers)
    only_v1 = plan_dir(tmp_path, "only-v1", V1)
    first = await company.run("first", only_v1)
    await company.publish(EVENTS, first)
    assert await running(pg_url) == expected(*UNDER_V1)
    await company.assert_computed_under(only_v1)
    assert await stored_versions(pg_url) == versions_of(only_v1)
    stop(first)
    before = await generation(pg_url)
    untouched = {key: at for key, at in (await touched(pg_url)).items() if key[0] in ("2026-03", "2026-05")}

    # -- v2 from June: July and September are recomputed under it; March and May not even rewritten
    mid_year = plan_dir(tmp_path, "mid-year", V1, V2)
    second = await company.run("second", mid_year)
    assert await running(pg_url) == expected(*UNDER_V1_V2)
    await company.assert_computed_under(mid_year)
    assert await generation(pg_url) == before + 1
    assert await stored_versions(pg_url) == versions_of(mid_year)
    assert {key: at for key, at in (await touched(pg_url)).items() if key in untouched} == untouched
    assert await adjustments(pg_url) == []  # nothing settled
    assert recomputations(second) == 1
    # the worker goes on under the new plans: an October sale is v2's
    await company.publish(month_events("10"), second)
    october = [fr("2026-10", "100.00", "4.00", "v2"), tm("2026-10", "50.00", "v2")]
    assert await running(pg_url) == expected(*UNDER_V1_V2, *october)
    await company.assert_computed_under(mid_year)
    stop(second)

    # -- the same plans again, then the same content moved elsewhere with comments: nothing recomputed
    state = await touched(pg_url)
    third = await company.run("third", mid_year)
    stop(third)
    moved = tmp_path / "moved"
    moved.mkdir()
    for index, version in enumerate((V2, V1)):
        (moved / f"{index}-renamed.toml").write_text(f"# version {version.name}\n" + plan_text(version))
    fourth = await company.run("fourth", moved)
    stop(fourth)
    assert await generation(pg_url) == before + 1
    assert await touched(pg_url) == state
    assert recomputations(third, fourth) == 0
    assert await running(pg_url) == expected(*UNDER_V1_V2, *october)


async def test_an_edited_version_of_settled_months_reaches_payroll_as_adjustments(
        pg_url: str, broker: Broker, workers: StartWorker, tmp_path: Path) -> None:
    company = Company(pg_url, tmp_path, broker, workers)
    v1_v2 = plan_dir(tmp_path, "v1-v2", V1, V2)
    first = await company.run("first", v1_v2)
    await company.publish(EVENTS, first)
    assert await running(pg_url) == expected(*UNDER_V1_V2)
    stop(first)
    assert "settled 2026-03: 2 rows, total_bonus 41.00" in company.settle("2026-03")  # 6.00 + 35.00
    assert "settled 2026-04: 0 rows, total_bonus 0" in company.settle("2026-04")
    assert "settled 2026-05: 2 rows, total_bonus 44.00" in company.settle("2026-05")  # 9.00 + 35.00
    settled_before = await settled_rows(pg_url)
    assert await rows(pg_url, "bonus_settled") == expected(*UNDER_V1[:4])
    before = await generation(pg_url)
    later = {key: at for key, at in (await touched(pg_url)).items() if key[0] in ("2026-07", "2026-09")}

    # -- v1 edited in place (same file, name and month): held_credit 25.00 -> 40.00. March and May
    # are recomputed: tm-1 earned 40.00 + 10.00 = 50.00 in each, paid 35.00: +15.00 each, into the
    # earliest open month after them, June (April and May are closed), a row made for it (v2's
    # month). fr-1's figures are the same. July and September (v2) are not touched.
    edited = tmp_path / "v1-v2"
    (edited / "2026-01.toml").write_text(plan_text(V1_EDITED))
    second = await company.run("second", edited)
    assert await running(pg_url) == expected(
        fr("2026-03", "200.00", "6.00", "v1"), tm("2026-03", "50.00", "v1"),
        fr("2026-05", "300.00", "9.00", "v1"), tm("2026-05", "50.00", "v1"),
        adjustment_row("2026-06", "tm-1", "telemarketer", "30.00", "v2"),
        *UNDER_V1_V2[4:])
    assert await adjustments(pg_url) == [
        ("2026-03", "2026-06", "tm-1", "telemarketer", "15.00", "50.00", "35.00"),
        ("2026-05", "2026-06", "tm-1", "telemarketer", "15.00", "50.00", "35.00"),
    ]
    assert await settled_rows(pg_url) == settled_before  # bonus_settled is never touched
    assert {key: at for key, at in (await touched(pg_url)).items() if key in later} == later
    await company.assert_computed_under(edited)
    assert await generation(pg_url) == before + 1
    assert await stored_versions(pg_url) == versions_of(edited)
    assert recomputations(second) == 1

    # June settled pays the 30.00; editing v1 back then pays it back into July: earned 35.00,
    # paid 35.00 settled + 15.00 settled in June = 50.00: -15.00 for each of March and May
    stop(second)
    assert "settled 2026-06: 1 rows, total_bonus 30.00" in company.settle("2026-06")
    (edited / "2026-01.toml").write_text(plan_text(V1))
    third = await company.run("third", edited)
    stop(third)
    assert await adjustments(pg_url) == [
        ("2026-03", "2026-06", "tm-1", "telemarketer", "15.00", "50.00", "35.00"),
        ("2026-03", "2026-07", "tm-1", "telemarketer", "-15.00", "35.00", "50.00"),
        ("2026-05", "2026-06", "tm-1", "telemarketer", "15.00", "50.00", "35.00"),
        ("2026-05", "2026-07", "tm-1", "telemarketer", "-15.00", "35.00", "50.00"),
    ]
    assert await running(pg_url) == expected(
        *UNDER_V1[:4],
        adjustment_row("2026-06", "tm-1", "telemarketer", "30.00", "v2"),
        fr("2026-07", "400.00", "16.00", "v2"), tm("2026-07", "50.00", "v2", prior="-30.00"),
        *UNDER_V1_V2[6:])
    await company.assert_computed_under(edited)
    assert await generation(pg_url) == before + 2


async def test_a_version_removed_then_the_earliest_too(
        pg_url: str, broker: Broker, workers: StartWorker, tmp_path: Path) -> None:
    company = Company(pg_url, tmp_path, broker, workers)
    three = plan_dir(tmp_path, "three", V1, V2, V3)
    first = await company.run("first", three)
    await company.publish(EVENTS, first)
    # v1 for March and May, v2 for July, v3 (from August) for September
    assert await running(pg_url) == expected(
        *UNDER_V1[:4], fr("2026-07", "400.00", "16.00", "v2"), tm("2026-07", "50.00", "v2"),
        fr("2026-09", "500.00", "10.00", "v3"), tm("2026-09", "25.00", "v3"))
    await company.assert_computed_under(three)
    stop(first)
    assert "settled 2026-03: 2 rows, total_bonus 41.00" in company.settle("2026-03")
    settled_before = await settled_rows(pg_url)
    before = await generation(pg_url)

    # -- v2 removed: July falls back to v1 (12.00, 35.00); the rest keeps its version
    (three / f"{V2.effective_from}.toml").unlink()
    second = await company.run("second", three)
    stop(second)
    assert await running(pg_url) == expected(
        *UNDER_V1[:6], fr("2026-09", "500.00", "10.00", "v3"), tm("2026-09", "25.00", "v3"))
    assert await adjustments(pg_url) == []
    await company.assert_computed_under(three)
    assert await generation(pg_url) == before + 1
    assert await stored_versions(pg_url) == versions_of(three)

    # -- v1 removed too: v3 alone is in force for every month, March (closed) to July as well.
    # March now earns fr-1 4.00 (paid 6.00: -2.00) and tm-1 25.00 (paid 35.00: -10.00), into April.
    (three / f"{V1.effective_from}.toml").unlink()
    third = await company.run("third", three)
    assert await running(pg_url) == expected(
        fr("2026-03", "200.00", "4.00", "v3"), tm("2026-03", "25.00", "v3"),
        adjustment_row("2026-04", "fr-1", "field_rep", "-2.00", "v3"),
        adjustment_row("2026-04", "tm-1", "telemarketer", "-10.00", "v3"),
        fr("2026-05", "300.00", "6.00", "v3"), tm("2026-05", "25.00", "v3"),
        fr("2026-07", "400.00", "8.00", "v3"), tm("2026-07", "25.00", "v3"),
        fr("2026-09", "500.00", "10.00", "v3"), tm("2026-09", "25.00", "v3"))
    assert await adjustments(pg_url) == [
        ("2026-03", "2026-04", "fr-1", "field_rep", "-2.00", "4.00", "6.00"),
        ("2026-03", "2026-04", "tm-1", "telemarketer", "-10.00", "25.00", "35.00"),
    ]
    assert await settled_rows(pg_url) == settled_before
    assert await rows(pg_url, "bonus_settled") == expected(*UNDER_V1[:2])  # plan_version v1 kept
    await company.assert_computed_under(three)
    assert await generation(pg_url) == before + 2
    assert await stored_versions(pg_url) == versions_of(three)
    # and the worker goes on: an October sale under v3
    await company.publish(month_events("10"), third)
    await company.assert_computed_under(three)
    stop(third)


async def test_two_workers_starting_at_once_recompute_once(
        pg_url: str, broker: Broker, workers: StartWorker, tmp_path: Path) -> None:
    company = Company(pg_url, tmp_path, broker, workers)
    only_v1 = plan_dir(tmp_path, "only-v1", V1)
    first = await company.run("first", only_v1)
    await company.publish(EVENTS, first)
    stop(first)
    before = await generation(pg_url)

    mid_year = plan_dir(tmp_path, "mid-year", V1, V2)
    pair = company.start("a", mid_year), company.start("b", mid_year)
    for worker in pair:
        await worker.wait_healthy(120)
    assert await generation(pg_url) == before + 1  # one recomputation; the other found the plans stored
    assert recomputations(*pair) == 1, "\n".join(w.log() for w in pair)
    assert await running(pg_url) == expected(*UNDER_V1_V2)
    await company.assert_computed_under(mid_year)
    # both go on consuming under the same generation: customers over every partition
    later = [event for n in range(12) for event in month_events("10", customer=f"c10-{n:02d}")]
    await company.publish(later, *pair)
    assert all(worker.alive() for worker in pair)
    await company.assert_computed_under(mid_year)
    assert await generation(pg_url) == before + 1


async def test_the_live_worker_with_the_older_plans_stops_and_the_one_started_last_wins(
        pg_url: str, broker: Broker, workers: StartWorker, tmp_path: Path) -> None:
    company = Company(pg_url, tmp_path, broker, workers)
    dir1 = plan_dir(tmp_path, "dir1", V1)
    a = await company.run("a", dir1)
    await company.publish(EVENTS, a)
    assert await running(pg_url) == expected(*UNDER_V1)
    before = await generation(pg_url)

    # B starts with other plans while A runs: B recomputes under them at once
    dir2 = plan_dir(tmp_path, "dir2", V1, V2)
    b = await company.run("b", dir2)
    assert a.alive()
    assert await generation(pg_url) == before + 1
    assert await running(pg_url) == expected(*UNDER_V1_V2)
    await company.assert_computed_under(dir2)

    # A's next batch finds the generation moved: A stops, non-zero, saying why, and commits nothing;
    # B takes A's partitions and computes everything under dir2
    later = [event for n in range(12) for event in month_events("10", customer=f"c10-{n:02d}")]
    lines = [json.dumps(event).encode() for event in later]
    company.ends = merge_ends(company.ends, await broker.publish(lines))
    company.events += later
    code = await asyncio.to_thread(a.wait, 60)
    log = " ".join(a.log(tail=10**6).split())  # the terminal may wrap the message
    assert code == 2, log
    assert ("error: the plans changed: a worker started later recomputed the tables under other plan "
            f"versions (generation {before + 1}, this worker started at {before}); this worker stops so as "
            "not to undo them. Start it again with the same --plan / CRMBONUS_PLAN as the others.") in log, log
    await wait_caught_up(pg_url, company.ends, 120, b)
    assert b.alive()
    await company.assert_computed_under(dir2)
    october = await query(pg_url, "SELECT person_id, cross_sell_count, cross_sell_amount, cross_sell_bonus,"
                                  " appointment_bonus, plan_version FROM bonus_running WHERE period = '2026-10'"
                                  " ORDER BY person_id")
    # twelve October customers: fr-1 12 x 100.00 at 4%, tm-1 12 x (30.00 + 20.00), all v2
    assert [tuple(text(v) for v in r) for r in october] == [
        ("fr-1", "12", "1200.00", "48.00", "0.00", "v2"), ("tm-1", "0", "0.00", "0.00", "600.00", "v2")]
    assert await generation(pg_url) == before + 1
    assert recomputations(a) == 0 and recomputations(b) == 1
    stop(b)


# -- a year's prize follows its December's version ------------------------------------------------

def prize_row(period: str, prize: str, version: str, prior: str = "0.00") -> str:
    """tm-1's row of a month with nothing but the year's prize (or an adjustment)."""
    total = f"{float(prize) + float(prior):.2f}"
    return f"{period},tm-1,telemarketer,0,0.00,0,0,0.00,0.00,{prior},{total},0,0.00,0.00,0.00,{prize},{version}"


#: v1 with a gold prize of 100.00: tm-1, the only telemarketer with turnover (4 leads, 1200.00 +
#: 1300.00 + 1400.00 + 1500.00 = 5400.00), holds gold; the prize is paid in a December row of its own.
P1 = V1._replace(gold_prize="100.00")
UNDER_P1 = [*UNDER_V1, prize_row("2026-12", "100.00", "v1")]


async def test_a_new_december_version_changes_a_settled_prize_into_an_adjustment(
        pg_url: str, broker: Broker, workers: StartWorker, tmp_path: Path) -> None:
    company = Company(pg_url, tmp_path, broker, workers)
    plans = plan_dir(tmp_path, "plans", P1)
    first = await company.run("first", plans)
    await company.publish(EVENTS, first)
    stop(first)
    assert await running(pg_url) == expected(*UNDER_P1)
    await company.assert_computed_under(plans)
    assert await lead_points(pg_url) == [("2026", "tm-1", "4", "5400.00", "none", "true")]
    assert "settled 2026-12: 1 rows, total_bonus 100.00" in company.settle("2026-12")
    settled_before = await settled_rows(pg_url)
    before = await generation(pg_url)

    # v4 from December: the prize is 150.00. No event is in December, but the year's prize follows
    # December's version: earned 150.00 - paid 100.00 = +50.00 into January 2027.
    v4 = Version("v4", "2026-12", "0.03", "25.00", "10.00", gold_prize="150.00")
    (plans / f"{v4.effective_from}.toml").write_text(plan_text(v4))
    second = await company.run("second", plans)
    stop(second)
    assert await adjustments(pg_url) == [("2026-12", "2027-01", "tm-1", "telemarketer", "50.00", "150.00", "100.00")]
    assert await running(pg_url) == expected(*UNDER_V1, prize_row("2026-12", "150.00", "v4"),
                                             prize_row("2027-01", "0.00", "v4", prior="50.00"))
    assert await settled_rows(pg_url) == settled_before
    await company.assert_computed_under(plans)
    assert await generation(pg_url) == before + 1


async def test_a_new_december_version_with_the_same_prize_names_the_december_row(
        pg_url: str, broker: Broker, workers: StartWorker, tmp_path: Path) -> None:
    """SPEC §12: a period recomputed under another version carries it as plan_version, though no
    event is in it and its figure (the prize) stays the same."""
    company = Company(pg_url, tmp_path, broker, workers)
    plans = plan_dir(tmp_path, "plans", P1)
    first = await company.run("first", plans)
    await company.publish(EVENTS, first)
    stop(first)
    assert await running(pg_url) == expected(*UNDER_P1)

    v5 = Version("v5", "2026-12", "0.03", "99.00", "10.00", gold_prize="100.00")
    (plans / f"{v5.effective_from}.toml").write_text(plan_text(v5))
    second = await company.run("second", plans)
    stop(second)
    assert await running(pg_url) == expected(*UNDER_V1, prize_row("2026-12", "100.00", "v5"))
    await company.assert_computed_under(plans)


# -- the plans' time zone changes: every month is recomputed --------------------------------------

async def test_another_time_zone_moves_credits_between_months(
        pg_url: str, broker: Broker, workers: StartWorker, tmp_path: Path) -> None:
    company = Company(pg_url, tmp_path, broker, workers)
    utc = plan_dir(tmp_path, "utc", V1)
    first = await company.run("first", utc)
    # the lead held on May 29 (May in both zones), the sale on May 31 at 20:00 UTC: June 1 in Tokyo
    late_may = [held("c05-h", "2026-05-29T10:00:00Z", "c05", "L-c05", "tm-1", "fr-1"),
                sale("c05-s", "2026-05-31T20:00:00Z", "c05", "S-c05", "fr-1",
                     [("a", "laptops", 1, "1000.00"), ("b", "accessories", 1, "300.00")])]
    await company.publish([*month_events("03"), *late_may], first)
    stop(first)
    assert await running(pg_url) == expected(*UNDER_V1[:4])

    tokyo = plan_dir(tmp_path, "tokyo", V1._replace(timezone="Asia/Tokyo"))
    second = await company.run("second", tokyo)
    stop(second)
    assert await running(pg_url) == expected(UNDER_V1[0], UNDER_V1[1], tm("2026-05", "35.00", "v1"),
                                             fr("2026-06", "300.00", "9.00", "v1"))
    await company.assert_computed_under(tokyo)
    assert recomputations(second) == 1


# -- a programme added to a version, then taken away ----------------------------------------------

async def test_a_kpi_bonus_added_to_a_version_then_removed(
        pg_url: str, broker: Broker, workers: StartWorker, tmp_path: Path) -> None:
    company = Company(pg_url, tmp_path, broker, workers)
    plans = plan_dir(tmp_path, "plans", V1, V2)
    first = await company.run("first", plans)
    ratings = [feedback("c05-f", "2026-05-20T10:00:00Z", "c05", "fr-1", "field_rep", 3),
               feedback("c07-f", "2026-07-20T10:00:00Z", "c07", "fr-1", "field_rep", 4)]
    await company.publish([*EVENTS, *ratings], first)
    stop(first)
    assert await running(pg_url) == expected(*UNDER_V1_V2)
    assert await kpi_scores(pg_url) == []

    # v2 gains [kpi]: July and September. fr-1's July: 100.00 x min(4 / 5, 1) = 80.00; tm-1 and
    # fr-1 (the held leads' telemarketer and field rep) take part through their conversions, with
    # no rating: 0.00. May (v1, no [kpi]) keeps its rating unpaid.
    (plans / f"{V2.effective_from}.toml").write_text(plan_text(V2._replace(kpi=True)))
    second = await company.run("second", plans)
    stop(second)
    july = "2026-07,fr-1,field_rep,1,400.00,0,0,16.00,0.00,0.00,96.00,0,0.00,0.00,80.00,0.00,v2"
    assert await running(pg_url) == expected(*UNDER_V1_V2[:4], july, *UNDER_V1_V2[5:])
    assert await kpi_scores(pg_url) == [
        ("2026-07", "fr-1", "rating", "rating", "4.0000000000", "0.8000000000", "1"),
        ("2026-07", "tm-1", "rating", "rating", "", "0E-10", "1"),
        ("2026-09", "fr-1", "rating", "rating", "", "0E-10", "1"),
        ("2026-09", "tm-1", "rating", "rating", "", "0E-10", "1"),
    ]
    await company.assert_computed_under(plans)

    # and taken away again: no KPI bonus, no kpi_scores row left
    (plans / f"{V2.effective_from}.toml").write_text(plan_text(V2))
    third = await company.run("third", plans)
    stop(third)
    assert await running(pg_url) == expected(*UNDER_V1_V2)
    assert await kpi_scores(pg_url) == []
    await company.assert_computed_under(plans)


# -- a database whose plans nobody stored; the progress bar --------------------------------------

async def test_tables_without_stored_plans_are_recomputed_once_and_settled_months_keep_their_pay(
        pg_url: str, broker: Broker, workers: StartWorker, tmp_path: Path) -> None:
    """As after an upgrade to migration 0009: nobody knows which plan computed the rows, so every
    month is recomputed, once; under the same plans nothing changes, settled or not."""
    company = Company(pg_url, tmp_path, broker, workers)
    plans = plan_dir(tmp_path, "plans", V1, V2)
    first = await company.run("first", plans)
    await company.publish(EVENTS, first)
    stop(first)
    assert "settled 2026-03: 2 rows, total_bonus 41.00" in company.settle("2026-03")
    settled_before = await settled_rows(pg_url)
    await query(pg_url, "DELETE FROM plan_versions")
    await query(pg_url, "DELETE FROM plan_state")
    second = await company.run("second", plans)
    stop(second)
    third = await company.run("third", plans)
    stop(third)
    assert await generation(pg_url) == 1
    assert (recomputations(second), recomputations(third)) == (1, 0)
    assert await stored_versions(pg_url) == versions_of(plans)
    assert await running(pg_url) == expected(*UNDER_V1_V2)
    assert await adjustments(pg_url) == []
    assert await settled_rows(pg_url) == settled_before
    await company.assert_computed_under(plans)


ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def read_terminal(master: int, wanted: Sequence[str], timeout: float) -> str:
    """What a pseudo-terminal shows until every one of `wanted` appeared (escape codes removed)."""
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the process closed the terminal
                break
            if not chunk:
                break
            seen += chunk
            shown = ANSI.sub("", seen.decode(errors="replace"))
            if all(part in shown for part in wanted):
                return shown
    return ANSI.sub("", seen.decode(errors="replace"))


def worker_on_a_terminal(data_dir: Path, url: str, plans: Path) -> tuple[subprocess.Popen[bytes], int]:
    """`crmbonus worker` with a pseudo-terminal for its output, as an operator starts it; and the
    terminal's other end, to read what it shows."""
    master, terminal = pty.openpty()
    env = command_env(data_dir, {"CRMBONUS_PLAN": str(plans), "COLUMNS": "160"})
    process = subprocess.Popen(
        [sys.executable, "-m", "stream", "worker", "--database-url", url, "--web-port", str(embedded.free_port())],
        stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal, cwd=ROOT, env=env)
    os.close(terminal)
    return process, master


async def test_the_recomputation_shows_a_progress_bar_on_a_terminal(
        pg_url: str, broker: Broker, workers: StartWorker, tmp_path: Path) -> None:
    company = Company(pg_url, tmp_path, broker, workers)
    first = await company.run("first", plan_dir(tmp_path, "only-v1", V1))
    await company.publish(EVENTS, first)
    stop(first)
    assert "recomputing under the changed plans" not in first.log(tail=10**6)  # a log file: no bar

    mid_year = plan_dir(tmp_path, "mid-year", V1, V2)
    before = await generation(pg_url)
    process, master = worker_on_a_terminal(tmp_path, pg_url, mid_year)
    try:
        # the two customers of July and September, c07 and c09, in one step
        shown = await asyncio.to_thread(read_terminal, master, ["recomputing under the changed plans", "2/2",
                                                                "customers"], 120)
        # the bar reaches 2/2 before the transaction commits: stop the worker only once it has
        await wait_for_generation(pg_url, before + 1, 120)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        os.close(master)
    assert "recomputing under the changed plans" in shown and "2/2 customers" in " ".join(shown.split()), shown
    assert await running(pg_url) == expected(*UNDER_V1_V2)
