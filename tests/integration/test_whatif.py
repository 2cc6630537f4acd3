"""`crmbonus whatif` (SPEC §12, issue 16 item 3) on a real Postgres filled through tansu by `crmbonus replay`.

The data: the demo generator's November and December 2026 (every programme of SPEC §13, the year's earlier
leads for the gold prize), replayed under the demo plan, November settled. Every expected figure is
computed here from the stored events of every customer with `compute_results` (so the what-if's choice of
customers is checked too) and from `bonus_running` with SQL of the test's own.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from schemas.events import Event
from stream.bonus import EARNED_COLUMNS, compute_results
from stream.demo_data import DemoConfig, generate, write_jsonl
from stream.plan import DEMO_PLAN_PATH
from stream.plan_versions import Plans, load_plans
from stream.store import load_customer_events
from tests.integration.conftest import create_database, crmbonus, drop_database

pytestmark = pytest.mark.integration
MONTHS = ("2026-11", "2026-12")
ZERO = Decimal("0.00")


@pytest.fixture(scope="module")
def stored(pg_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(database URL, data dir): two demo months replayed through tansu under the demo plan, November settled."""
    data_dir = tmp_path_factory.mktemp("whatif")
    url = asyncio.run(create_database(pg_server_url))
    lines = [line for month in MONTHS for line in generate(DemoConfig(month=month, customers=150, seed=7))]
    write_jsonl(lines, data_dir / "events.jsonl")
    crmbonus("replay", str(data_dir / "events.jsonl"), "--database-url", url, "--plan", str(DEMO_PLAN_PATH),
             data_dir=data_dir)
    crmbonus("settle", "--period", MONTHS[0], "--database-url", url, "--plan", str(DEMO_PLAN_PATH),
             data_dir=data_dir)
    yield url, data_dir
    asyncio.run(drop_database(pg_server_url, url))


def plan_text(**changes: str) -> str:
    """The demo plan's TOML with top-level keys set (`key = "value"` lines replaced or added at the top)."""
    text = DEMO_PLAN_PATH.read_text()
    for key, value in changes.items():
        lines = text.splitlines()
        at = [i for i, line in enumerate(lines) if line.startswith(f"{key} ")]
        if at:
            lines[at[0]] = f"{key} = {value}"
        else:
            lines.insert(0, f"{key} = {value}")
        text = "\n".join(lines) + "\n"
    return text


def candidate_file(directory: Path, name: str = "candidate.toml", **changes: str) -> Path:
    path = directory / name
    path.write_text(plan_text(**changes))
    return path


def whatif(stored: tuple[str, Path], *args: str, check: bool = True,
           env: dict[str, str] | None = None) -> Any:
    url, data_dir = stored
    return crmbonus("whatif", "--database-url", url, *args, data_dir=data_dir, check=check, env=env)


async def every_event(url: str) -> list[Event]:
    conn = await asyncpg.connect(url)
    try:
        customers = [row["customer_id"] for row in await conn.fetch("SELECT DISTINCT customer_id FROM events")]
        return [event for found in (await load_customer_events(conn, customers)).values() for event in found]
    finally:
        await conn.close()


async def bonus_running_earned(url: str, first: str, last: str) -> dict[str, Decimal]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT person_id, " + ", ".join(EARNED_COLUMNS) + " FROM bonus_running "
                                "WHERE period BETWEEN $1 AND $2", first, last)
    finally:
        await conn.close()
    found: dict[str, Decimal] = {}
    for row in rows:
        found[row["person_id"]] = found.get(row["person_id"], ZERO) + sum(row[name] for name in EARNED_COLUMNS)
    return found


def expected(url: str, candidate: Plans, first: str, last: str) -> dict[str, Any]:
    """SPEC §12's document, from compute_results over every stored event and bonus_running read here."""
    computed: dict[str, Decimal] = {}
    for row in compute_results(asyncio.run(every_event(url)), candidate).running:
        if first <= row.period <= last:
            computed[row.person_id] = computed.get(row.person_id, ZERO) + sum(
                getattr(row, name) for name in EARNED_COLUMNS)
    current = asyncio.run(bonus_running_earned(url, first, last))
    people = [{"person_id": person, "current_total": str(current.get(person, ZERO)),
               "candidate_total": str(computed.get(person, ZERO)),
               "difference": str(computed.get(person, ZERO) - current.get(person, ZERO))}
              for person in sorted({*current, *computed}) if current.get(person) or computed.get(person)]
    now, then = sum(current.values(), ZERO), sum(computed.values(), ZERO)
    return {"from": first, "to": last, "people": people, "current_total": str(now), "candidate_total": str(then),
            "difference": str(then - now)}


async def dump(url: str) -> dict[str, list[str]]:
    """Every row of every table (every column, clocks included) and every sequence's state."""
    conn = await asyncpg.connect(url)
    try:
        tables = [row["relname"] for row in await conn.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY 1")]
        sequences = [row["relname"] for row in await conn.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind = 'S' ORDER BY 1")]
        found = {table: sorted(row[0] for row in await conn.fetch(f'SELECT row_to_json(t)::text FROM "{table}" t'))
                 for table in tables}
        for sequence in sequences:
            found[sequence] = [str(tuple(await conn.fetchrow(f'SELECT last_value, is_called FROM "{sequence}"')))]
        return found
    finally:
        await conn.close()


def test_the_plan_in_force_as_candidate_costs_nothing(stored: tuple[str, Path]) -> None:
    """Under the plan bonus_running was computed with, every person's candidate total is the current one:
    the customers the what-if reads are enough, the December prize included."""
    document = json.loads(whatif(stored, "--candidate", str(DEMO_PLAN_PATH), "--period", MONTHS[0], "--to",
                                 MONTHS[1], "--format", "json").stdout)
    assert len(document["people"]) > 50
    assert all(p["current_total"] == p["candidate_total"] and p["difference"] == "0.00" for p in document["people"])
    assert document["difference"] == "0.00"
    assert document == expected(stored[0], load_plans(DEMO_PLAN_PATH), *MONTHS)
    # November alone reads fewer customers (not December's, not the earlier leads'), and still agrees
    november = whatif(stored, "--candidate", str(DEMO_PLAN_PATH), "--period", MONTHS[0], "--format", "json")
    assert json.loads(november.stdout) == expected(stored[0], load_plans(DEMO_PLAN_PATH), MONTHS[0], MONTHS[0])
    assert all(p["difference"] == "0.00" for p in json.loads(november.stdout)["people"])
    read = {months: int(done.stderr.split(" customers,")[0].rsplit(" ", 1)[1])
            for months, done in ((1, november), (2, whatif(stored, "--candidate", str(DEMO_PLAN_PATH), "--period",
                                                           MONTHS[0], "--to", MONTHS[1], "--format", "csv")))}
    assert 0 < read[1] < read[2]


def test_a_candidate_share_writes_nothing_and_equals_compute_results(stored: tuple[str, Path],
                                                                      tmp_path: Path) -> None:
    path = candidate_file(tmp_path, telemarketer_share='"0.40"', version='"demo-share-40"')
    before = asyncio.run(dump(stored[0]))
    done = whatif(stored, "--candidate", str(path), "--period", MONTHS[0], "--to", MONTHS[1], "--format", "json")
    assert asyncio.run(dump(stored[0])) == before
    document = json.loads(done.stdout)
    assert document == expected(stored[0], load_plans(path), *MONTHS)
    assert list(document) == ["from", "to", "people", "current_total", "candidate_total", "difference"]
    assert all(list(p) == ["person_id", "current_total", "candidate_total", "difference"]
               for p in document["people"])
    assert Decimal(document["difference"]) != 0  # a telemarketer share moves money
    assert "nothing written" in done.stderr and "Traceback" not in done.stderr
    # every money string has exactly two decimals
    money = [document[k] for k in ("current_total", "candidate_total", "difference")] + [
        p[k] for p in document["people"] for k in ("current_total", "candidate_total", "difference")]
    assert all(value.rsplit(".", 1)[1].isdigit() and len(value.rsplit(".", 1)[1]) == 2 for value in money)


def test_a_directory_candidate_and_csv(stored: tuple[str, Path], tmp_path: Path) -> None:
    """Two versions: November at share 0.40, December with a gold prize of 900.00; December alone too."""
    versions = tmp_path / "candidate"
    versions.mkdir()
    candidate_file(versions, "2026-11.toml", telemarketer_share='"0.40"', version='"c-1"',
                   effective_from='"2026-11"')
    (versions / "2026-12.toml").write_text(plan_text(version='"c-2"', effective_from='"2026-12"').replace(
        'gold_prize = "500.00"', 'gold_prize = "900.00"'))
    (versions / "notes.txt").write_text("not a version")
    plans = load_plans(versions)
    for first, last in (MONTHS, ("2026-12", "2026-12")):
        done = whatif(stored, "--candidate", str(versions), "--period", first, "--to", last, "--format", "csv")
        want = expected(stored[0], plans, first, last)
        rows = list(csv.DictReader(io.StringIO(done.stdout)))
        assert rows == want["people"]
        said = " ".join(done.stderr.split())
        assert f"total: current {Decimal(want['current_total']):,.2f}" in said
        assert f"difference {Decimal(want['difference']):+,.2f}" in said
        assert "versions c-1 (from 2026-11), c-2 (from 2026-12)" in said
    december = {row["person_id"]: row for row in expected(stored[0], plans, "2026-12", "2026-12")["people"]}
    assert sum(Decimal(row["difference"]) for row in december.values()) == Decimal("400.00")  # only the prize


def test_the_table_at_80_columns_never_cuts_money(stored: tuple[str, Path], tmp_path: Path) -> None:
    path = candidate_file(tmp_path, telemarketer_share='"0.40"', version='"demo-share-40"')
    done = whatif(stored, "--candidate", str(path), "--period", MONTHS[0], "--to", MONTHS[1],
                  env={"COLUMNS": "80"})
    lines = [line.rstrip() for line in done.stdout.splitlines()]
    assert lines[0] == "What-if 2026-11..2026-12: earned"
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    assert "…" not in done.stdout and "not shown" not in done.stdout
    want = expected(stored[0], load_plans(path), *MONTHS)
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in lines if line.startswith("│")]
    money = lambda value: f"{Decimal(value):,.2f}"  # noqa: E731
    assert rows == [[p["person_id"], money(p["current_total"]), money(p["candidate_total"]),
                     f"{Decimal(p['difference']):+,.2f}"] for p in want["people"]]
    assert lines[-1] == (f"total: current {money(want['current_total'])}, candidate "
                         f"{money(want['candidate_total'])}, difference {Decimal(want['difference']):+,.2f}")


def test_a_candidate_in_another_time_zone_is_computed_in_its_months(stored: tuple[str, Path],
                                                                     tmp_path: Path) -> None:
    """UTC+14: December there starts ten hours before UTC's, so other customers and events count."""
    path = candidate_file(tmp_path, timezone='"Pacific/Kiritimati"', version='"kiritimati"')
    done = whatif(stored, "--candidate", str(path), "--period", "2026-12", "--format", "json")
    assert json.loads(done.stdout) == expected(stored[0], load_plans(path), "2026-12", "2026-12")
    assert ("the candidate's time zone Pacific/Kiritimati is not the one bonus_running was computed in (UTC): "
            "its months are months in Pacific/Kiritimati") in " ".join(done.stderr.split())


@pytest.mark.parametrize(("args", "message"), [
    (("--period", "2026-12", "--to", "2026-11"),
     "--to 2026-11 is before --period 2026-12: the months run from --period to --to"),
    (("--period", "2026-13"), "--period: period '2026-13' must be YYYY-MM, e.g. 2026-11"),
    (("--period", "2026-11", "--to", "2026-1"), "--to: period '2026-1' must be YYYY-MM, e.g. 2026-11"),
])
def test_refusals_exit_2_naming_the_flag(stored: tuple[str, Path], args: tuple[str, ...], message: str) -> None:
    before = asyncio.run(dump(stored[0]))
    done = whatif(stored, "--candidate", str(DEMO_PLAN_PATH), *args, check=False)
    assert done.returncode == 2 and message in " ".join(done.stderr.split()), done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert asyncio.run(dump(stored[0])) == before


def test_a_candidate_that_is_no_plan_exits_2(stored: tuple[str, Path], tmp_path: Path) -> None:
    path = candidate_file(tmp_path, telemarketer_share='"1.5"')
    done = whatif(stored, "--candidate", str(path), "--period", "2026-11", check=False)
    assert done.returncode == 2 and "telemarketer_share" in done.stderr and "Traceback" not in done.stderr
    missing = whatif(stored, "--period", "2026-11", check=False)
    assert missing.returncode == 2 and "Missing option '--candidate'" in missing.stderr


def test_help_explains(stored: tuple[str, Path]) -> None:
    text = " ".join(whatif(stored, "--help").stdout.split())
    for words in ("--candidate PATH", "--period YYYY-MM", "--to YYYY-MM", "[table|csv|json]", "writes nothing",
                  "current_total", "candidate_total", "the candidate's cost", "another time zone"):
        assert words in text, words


def test_a_database_not_current_is_refused_not_migrated(pg_url: str, tmp_path: Path) -> None:
    """A what-if never migrates or rebuilds (it writes nothing): a pending rebuild or a missing migration
    is refused, saying what to run, and the database is left as it was."""
    conn_sql = [("INSERT INTO ledger_rebuilds (reason) VALUES ('test: pending')",
                 "bonus_running awaits a rebuild a migration asked for"),
                ("DELETE FROM schema_migrations WHERE version = '0009_plan_versions'",
                 "the database is not migrated to this crmbonus (missing 0009_plan_versions)")]
    for sql, message in conn_sql:
        asyncio.run(_execute(pg_url, sql))
        before = asyncio.run(dump(pg_url))
        done = crmbonus("whatif", "--database-url", pg_url, "--candidate", str(DEMO_PLAN_PATH), "--period",
                        "2026-11", data_dir=tmp_path, check=False)
        assert done.returncode == 2 and message in " ".join(done.stderr.split()), done.stderr
        assert asyncio.run(dump(pg_url)) == before


async def _execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()
