"""Every SQL query of the Grafana leaderboard dashboard runs on the migrated schema and
returns what its panel shows (SPEC sections 6, 9, 13 and 14: the programmes' bonus columns, the
lead points and badge of the period's year, zero rows left out).

Grafana substitutes the dashboard variables before it sends the SQL; `render` does the
same for the forms the dashboard may use, so a renamed column, a broken variable or an
unquoted period is caught here rather than as a red panel.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

pytestmark = pytest.mark.integration

LEADERBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards" / "leaderboard.json"
PERIOD = "2026-11"
TABLE_COLUMNS = ["rank", "person_id", "role", "cross_sell_count", "cross_sell_amount", "appointments_held",
                 "appointments_converted", "cross_sell_bonus", "appointment_bonus", "upsell_count", "upsell_bonus",
                 "kpi_bonus", "prize_bonus", "prior_adjustments", "total_bonus", "lead_points", "badge", "gold"]

# (period, person_id, role, cross_sell_count, cross_sell_amount, held, converted,
#  cross_sell_bonus, appointment_bonus, prior_adjustments); total_bonus is derived.
ROWS: list[tuple[str, str, str, int, str, int, int, str, str, str]] = [
    (PERIOD, "fr-ann", "field_rep", 5, "7000.00", 0, 0, "250.00", "0.00", "0.00"),
    (PERIOD, "fr-bob", "field_rep", 2, "900.00", 0, 0, "0.00", "0.00", "-12.50"),
    (PERIOD, "fr-cid", "field_rep", 4, "3000.00", 0, 0, "90.00", "0.00", "0.00"),
    # twelve telemarketers, tm-01 earning least and tm-12 most, and tm-06b tied with tm-06
    *[(PERIOD, f"tm-{i:02d}", "telemarketer", i, f"{i * 100}.00", i, 0, "0.00", f"{i * 25}.00", "0.00")
      for i in range(1, 13)],
    (PERIOD, "tm-06b", "telemarketer", 0, "0.00", 6, 0, "0.00", "150.00", "0.00"),
    # SPEC 14: figures only in the programmes' columns (below) are figures; a row of zeros is nobody's
    (PERIOD, "fr-upsell", "field_rep", 0, "0.00", 0, 0, "0.00", "0.00", "0.00"),
    (PERIOD, "tm-kpi", "telemarketer", 0, "0.00", 0, 0, "0.00", "0.00", "0.00"),
    (PERIOD, "tm-zero", "telemarketer", 0, "0.00", 0, 0, "0.00", "0.00", "0.00"),
    ("2026-10", "fr-ann", "field_rep", 9, "9999.00", 0, 0, "399.95", "0.00", "0.00"),
    ("2026-10", "tm-99", "telemarketer", 0, "0.00", 3, 1, "0.00", "85.00", "0.00"),
    ("2026-09", "tm-zero", "telemarketer", 0, "0.00", 0, 0, "0.00", "0.00", "0.00"),  # a month of zeros only
]
#: SPEC 13's programmes: (period, person) -> upsell_count, upsell_amount, upsell_bonus, kpi_bonus, prize_bonus
PROGRAMMES: dict[tuple[str, str], tuple[int, str, str, str, str]] = {
    (PERIOD, "tm-12"): (2, "300.00", "30.00", "120.00", "500.00"),
    (PERIOD, "fr-ann"): (1, "50.00", "5.00", "0.00", "0.00"),
    (PERIOD, "fr-upsell"): (1, "0.00", "0.00", "0.00", "0.00"),  # an upsell at rate 0: counted, no bonus
    (PERIOD, "tm-kpi"): (0, "0.00", "0.00", "33.34", "0.00"),
}
#: lead_points: (year, person_id, points, turnover, badge, gold); joined on the period's year only
LEADS: list[tuple[int, str, int, str, str, bool]] = [
    (2026, "tm-12", 17, "15000.00", "silver", True),
    (2026, "tm-03", 6, "2000.00", "bronze", False),
    (2026, "tm-kpi", 1, "10.00", "none", False),
    (2025, "tm-11", 30, "99999.00", "silver", True),  # another year: not this period's
]
NO_PROGRAMME = (0, "0.00", "0.00", "0.00", "0.00")
ZERO_PEOPLE = {"tm-zero"}


def programmes(row: tuple[Any, ...]) -> tuple[int, str, str, str, str]:
    return PROGRAMMES.get((row[0], row[1]), NO_PROGRAMME)


def lead(row: tuple[Any, ...]) -> tuple[int, str, bool]:
    """(lead_points, badge, gold) of the row's person in the period's year; 0, none, false without one."""
    found = [(points, badge, gold) for year, person, points, _, badge, gold in LEADS
             if year == int(row[0][:4]) and person == row[1]]
    return found[0] if found else (0, "none", False)


def total(row: tuple[Any, ...]) -> Decimal:
    _, _, upsell_bonus, kpi_bonus, prize_bonus = programmes(row)
    return sum((Decimal(v) for v in (row[7], row[8], row[9], upsell_bonus, kpi_bonus, prize_bonus)), Decimal(0))


def expected(role: str | None) -> list[tuple[Any, ...]]:
    rows = [r for r in ROWS if r[0] == PERIOD and (role is None or r[2] == role) and r[1] not in ZERO_PEOPLE]
    return sorted(rows, key=lambda r: (-total(r), r[1]))


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


def render(sql: str, values: dict[str, list[str]], multi: dict[str, bool]) -> str:
    """Substitute Grafana's variables and macros the way Grafana does for a SQL datasource.

    `values` holds each variable's selected values (All = every option). `${v:sqlstring}`
    and a multi-value / include-All variable become a quoted list; a plain single-value
    `$v` is inserted raw, as Grafana does, so `period = $period` would be caught.
    """
    def quoted(name: str) -> str:
        return ",".join("'" + value.replace("'", "''") + "'" for value in values[name])

    def substitute(match: re.Match[str]) -> str:
        name = match.group("name") or match.group("bare") or match.group("old")
        fmt = match.group("fmt")
        if name not in values:
            raise AssertionError(f"unknown variable ${name} in {sql!r}")
        if fmt == "sqlstring" or (fmt is None and multi[name]):
            return quoted(name)
        if fmt in (None, "raw"):
            return ",".join(values[name])
        raise AssertionError(f"format {fmt!r} of ${name} is not handled here")

    sql = re.sub(r"\$__timeFilter\([^)]*\)", "true", sql)
    sql = re.sub(r"\$__(timeFrom|timeTo)\(\)", "now()", sql)
    sql = re.sub(r"\$\{(?P<name>\w+)(?::(?P<fmt>\w+))?\}|\$(?P<bare>[A-Za-z]\w*)|\[\[(?P<old>\w+)\]\]",
                 substitute, sql)
    assert "$" not in sql, f"a Grafana macro was left unsubstituted: {sql!r}"
    return sql


def panel_queries(dashboard: dict[str, Any]) -> dict[str, str]:
    return {panel["type"] + ":" + panel["title"]: target["rawSql"]
            for panel in dashboard["panels"] for target in panel.get("targets", [])}


def load_leaderboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(LEADERBOARD.read_text())
    return dashboard


def selection(dashboard: dict[str, Any], role: str | None) -> tuple[dict[str, list[str]], dict[str, bool]]:
    """(values, multi) for `render`: PERIOD and `role` selected (None = All, every option)."""
    templating = variables(dashboard)
    role_options = [o.strip() for o in templating["role"]["query"].split(",")]
    values = {"period": [PERIOD], "role": [role] if role else role_options}
    multi = {name: bool(v.get("multi") or v.get("includeAll")) for name, v in templating.items()}
    return values, multi


def dashboard_queries(dashboard: dict[str, Any], role: str | None) -> dict[str, str]:
    """Every SQL text the dashboard sends, rendered as Grafana would for PERIOD and `role`: its query
    variables' (`variable:NAME`) and its panels' (`TYPE:TITLE`). Also used by test_reader_role.py."""
    values, multi = selection(dashboard, role)
    queries = {f"variable:{name}": render(v["query"], values, multi)
               for name, v in variables(dashboard).items() if v["type"] == "query"}
    queries.update({key: render(sql, values, multi) for key, sql in panel_queries(dashboard).items()})
    return queries


async def seed(conn: asyncpg.Connection) -> None:
    await conn.executemany(
        "INSERT INTO bonus_running (period, person_id, role, cross_sell_count, cross_sell_amount,"
        " appointments_held, appointments_converted, cross_sell_bonus, appointment_bonus,"
        " prior_adjustments, total_bonus, upsell_count, upsell_amount, upsell_bonus, kpi_bonus, prize_bonus)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        [(p, person, role, n, Decimal(amount), held, conv, Decimal(csb), Decimal(ab), Decimal(adj),
          total(row), upsells, *(Decimal(v) for v in money))
         for row in ROWS
         for (p, person, role, n, amount, held, conv, csb, ab, adj), (upsells, *money) in [(row, programmes(row))]],
    )
    await conn.executemany("INSERT INTO lead_points (year, person_id, points, turnover, badge, gold)"
                           " VALUES ($1, $2, $3, $4, $5, $6)",
                           [(year, person, points, Decimal(turnover), badge, gold)
                            for year, person, points, turnover, badge, gold in LEADS])


@pytest.mark.parametrize("role", ["telemarketer", "field_rep", None], ids=["telemarketer", "field_rep", "All"])
async def test_leaderboard_queries_run_and_rank_by_total_bonus(pg_url: str, role: str | None) -> None:
    dashboard = load_leaderboard()
    templating = variables(dashboard)
    values, multi = selection(dashboard, role)
    want = expected(role)

    conn = await asyncpg.connect(pg_url)
    try:
        await seed(conn)
        periods = await conn.fetch(render(templating["period"]["query"], values, multi))
        assert [r[0] for r in periods] == ["2026-11", "2026-10"]

        queries = panel_queries(dashboard)
        assert len(queries) == 5
        for key, sql in queries.items():
            kind = key.split(":")[0]
            rows = await conn.fetch(render(sql, values, multi))
            if kind == "table":
                assert list(rows[0].keys()) == TABLE_COLUMNS
                assert [(r["person_id"], r["role"], r["total_bonus"]) for r in rows] == [
                    (w[1], w[2], total(w)) for w in want
                ]
                assert [r["cross_sell_amount"] for r in rows] == [Decimal(w[4]) for w in want]
                assert [(r["upsell_count"], r["upsell_bonus"], r["kpi_bonus"], r["prize_bonus"]) for r in rows] == [
                    (programmes(w)[0], *(Decimal(v) for v in programmes(w)[2:])) for w in want]
                assert [(r["lead_points"], r["badge"], r["gold"]) for r in rows] == [lead(w) for w in want]
                # RANK(): ties share a rank, the next rank skips
                ranks = [r["rank"] for r in rows]
                assert ranks[0] == 1
                for i in range(1, len(rows)):
                    tie = rows[i]["total_bonus"] == rows[i - 1]["total_bonus"]
                    assert ranks[i] == (ranks[i - 1] if tie else i + 1)
            elif kind == "barchart":
                assert [(r["person_id"], r["total_bonus"]) for r in rows] == [
                    (w[1], total(w)) for w in want[:10]
                ]
            elif kind == "stat":
                (row,) = rows
                (value,) = row.values()
                title = key.split(":", 1)[1].lower()
                if "bonus" in title:
                    assert value == sum((total(w) for w in want), Decimal(0))
                elif "cross-sell" in title:
                    assert value == sum(w[3] for w in want)
                elif "appointments" in title:
                    assert value == sum(w[5] for w in want)
                else:
                    raise AssertionError(f"no expectation for stat panel {key!r}")
            else:
                raise AssertionError(f"no expectation for panel {key!r}")
    finally:
        await conn.close()


async def test_the_table_shows_the_programmes_and_the_years_lead_points_without_zero_rows(pg_url: str) -> None:
    dashboard = load_leaderboard()
    values, multi = selection(dashboard, None)
    (sql,) = [sql for key, sql in panel_queries(dashboard).items() if key.startswith("table:")]
    conn = await asyncpg.connect(pg_url)
    try:
        await seed(conn)
        rows = {r["person_id"]: dict(r) for r in await conn.fetch(render(sql, values, multi))}
    finally:
        await conn.close()
    assert "tm-zero" not in rows and {"fr-upsell", "tm-kpi"} <= set(rows)  # a figure in a new column is a figure
    top = rows["tm-12"]
    assert (top["rank"], top["upsell_count"], top["upsell_bonus"], top["kpi_bonus"], top["prize_bonus"],
            top["total_bonus"]) == (1, 2, Decimal("30.00"), Decimal("120.00"), Decimal("500.00"), Decimal("950.00"))
    assert (top["lead_points"], top["badge"], top["gold"]) == (17, "silver", True)
    assert (rows["tm-03"]["lead_points"], rows["tm-03"]["badge"], rows["tm-03"]["gold"]) == (6, "bronze", False)
    assert (rows["tm-11"]["lead_points"], rows["tm-11"]["badge"], rows["tm-11"]["gold"]) == (0, "none", False)  # 2025's
    assert (rows["fr-upsell"]["upsell_count"], rows["fr-upsell"]["total_bonus"]) == (1, Decimal("0.00"))


async def test_leaderboard_queries_on_an_empty_table(pg_url: str) -> None:
    """A fresh install: no period yet; the stat panels still answer with zeros."""
    dashboard = load_leaderboard()
    templating = variables(dashboard)
    values, multi = selection(dashboard, None)
    assert values["role"] == ["telemarketer", "field_rep"]
    conn = await asyncpg.connect(pg_url)
    try:
        assert await conn.fetch(render(templating["period"]["query"], values, multi)) == []
        for key, sql in panel_queries(dashboard).items():
            rows = await conn.fetch(render(sql, values, multi))
            if key.startswith("stat:"):
                assert [tuple(r.values()) for r in rows] == [(0,)], key
            else:
                assert rows == [], key
    finally:
        await conn.close()


def test_render_quotes_like_grafana() -> None:
    multi = {"period": False, "role": True}
    values = {"period": ["2026-11"], "role": ["telemarketer", "field_rep"]}
    assert render("period = ${period:sqlstring}", values, multi) == "period = '2026-11'"
    assert render("period = $period", values, multi) == "period = 2026-11"
    assert render("role IN ($role)", values, multi) == "role IN ('telemarketer','field_rep')"
    assert render("$__timeFilter(updated_at) AND x", values, multi) == "true AND x"
    with pytest.raises(AssertionError):
        render("$__unixEpochFilter(t)", values, multi)
