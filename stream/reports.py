"""What payroll and the floor read: the payroll file of a settled period and the leaderboard.

Zero rows (SPEC section 14): a `bonus_running` row whose every numeric column is zero may be
there or not, depending on history (a person whose credits all went away keeps one). Every
reader here leaves such rows out (`NONZERO_ROW`), and `settle` does not copy them, so no
output depends on whether one is there.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg

from schemas.events import ROLES
from stream.bonus import RUNNING_COLUMNS, RunningRow, type_name
from stream.errors import CrmbonusError
from stream.periods import Zoned, period_of

#: What makes a spreadsheet read a cell as a formula (OWASP, "CSV Injection"): these first characters.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: The numeric columns of a `bonus_running` row (counts and money): the text ones are the key and role.
#: A numeric column added to `RunningRow` joins them; one that is not a figure (a plan version) must not.
#: The programmes' columns of SPEC section 14 are named here too, in RunningRow's order, so a row with
#: only an upsell count (a plan with rate 0) is a figure whatever RunningRow holds yet.
PROGRAMME_COLUMNS = ("upsell_count", "upsell_amount", "upsell_bonus", "kpi_bonus", "prize_bonus")
NUMERIC_COLUMNS = tuple(dict.fromkeys(
    [*(f.name for f in fields(RunningRow) if type_name(f) in ("int", "Decimal")), *PROGRAMME_COLUMNS]))
#: The money columns of a payroll file, summed in its totals.
MONEY_COLUMNS = tuple(f.name for f in fields(RunningRow) if type_name(f) == "Decimal")
#: SQL: the row (of bonus_running or bonus_settled, unqualified) has a numeric column that is not zero.
NONZERO_ROW = "(" + " OR ".join(f"{name} <> 0" for name in NUMERIC_COLUMNS) + ")"
#: SQL: the calendar year of a bonus row's period (`b`), the key of its `lead_points` (SPEC section 13).
YEAR_OF_PERIOD = "substr(b.period, 1, 4)::integer"
ZERO_MONEY = Decimal("0.00")


def csv_cell(value: object) -> object:
    """A value for a CSV cell that a spreadsheet never runs as a formula.

    Text starting with = + - @ or a tab/CR gets a leading apostrophe, which spreadsheets show
    as text (OWASP's rule); numbers stay numbers, so a money column's `-12.50` is still -12.50.
    Ids come from CRM publishers, so every text cell is treated as hostile.
    """
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


@dataclass(frozen=True)
class PayrollFile:
    period: str
    settlement_id: str
    settled_at: str
    rows: list[dict[str, object]]

    def totals(self) -> dict[str, Decimal]:
        return {name: sum((Decimal(str(row[name])) for row in self.rows), Decimal("0.00"))
                for name in MONEY_COLUMNS}

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([*RUNNING_COLUMNS, "settlement_id", "settled_at"])
        for row in self.rows:
            writer.writerow([csv_cell(cell) for cell in (*(row[name] for name in RUNNING_COLUMNS),
                                                         self.settlement_id, self.settled_at)])
        return buffer.getvalue()

    def to_json(self) -> str:
        document = {
            "period": self.period,
            "settlement_id": self.settlement_id,
            "settled_at": self.settled_at,
            "rows": [{name: _json_value(row[name]) for name in RUNNING_COLUMNS} for row in self.rows],
            "totals": {name: str(value) for name, value in self.totals().items()},
        }
        return json.dumps(document, indent=2) + "\n"


def _json_value(value: object) -> object:
    return str(value) if isinstance(value, Decimal) else value  # money stays exact: "10.65"


async def payroll_file(conn: asyncpg.Connection, period: str) -> PayrollFile:
    """The settled rows of `period`; refuses a period that is still open."""
    closed = await conn.fetchrow("SELECT settlement_id, settled_at FROM periods_closed WHERE period = $1", period)
    if closed is None:
        raise CrmbonusError(
            f"period {period} is not settled yet; payroll files come from settled periods only. "
            f"Run `crmbonus settle --period {period}` first."
        )
    rows = await conn.fetch(
        f"SELECT {', '.join(RUNNING_COLUMNS)} FROM bonus_settled WHERE period = $1 AND {NONZERO_ROW}"
        " ORDER BY person_id", period
    )
    return PayrollFile(period, str(closed["settlement_id"]), closed["settled_at"].isoformat(),
                       [dict(row) for row in rows])


@dataclass(frozen=True)
class Standing:
    """One person's place on a leaderboard: their `bonus_running` figures, and the lead points and
    badge of the period's year (SPEC sections 13-14: `lead_points`; none for who has no row there)."""

    rank: int
    person_id: str
    role: str
    cross_sell_count: int
    cross_sell_amount: Decimal
    appointments_held: int
    appointments_converted: int
    total_bonus: Decimal
    cross_sell_bonus: Decimal = ZERO_MONEY
    appointment_bonus: Decimal = ZERO_MONEY
    prior_adjustments: Decimal = ZERO_MONEY
    upsell_count: int = 0
    upsell_amount: Decimal = ZERO_MONEY
    upsell_bonus: Decimal = ZERO_MONEY
    kpi_bonus: Decimal = ZERO_MONEY
    prize_bonus: Decimal = ZERO_MONEY
    lead_points: int = 0
    badge: str = "none"
    gold: bool = False


async def periods(conn: asyncpg.Connection) -> list[str]:
    """The periods with bonus rows (zero rows aside), latest first."""
    return [row["period"] for row in await conn.fetch(
        f"SELECT DISTINCT period FROM bonus_running WHERE {NONZERO_ROW} ORDER BY 1 DESC")]


def current_period(plan: Zoned, now: datetime | None = None) -> str:
    """This month in the plan's time zone."""
    return period_of(now or datetime.now(UTC), plan)


def default_period(periods: list[str], current: str) -> str | None:
    """The default of every leaderboard (SPEC section 16): the latest of `periods` (latest first)
    that is not after `current`; None when there is none (rows only in future months)."""
    return next((period for period in periods if period <= current), None)


async def leaderboard(
    conn: asyncpg.Connection, period: str, role: str | None = None, limit: int | None = None
) -> list[Standing]:
    """People of a period ranked by total bonus, then cross-sell amount; ties share a rank. Each with
    the lead points, badge and gold of the period's calendar year (`lead_points`)."""
    if role is not None and role not in ROLES:
        raise CrmbonusError(f"role {role!r} must be one of {', '.join(ROLES)}")
    rows: Sequence[asyncpg.Record] = await conn.fetch(
        f"""
        SELECT rank() OVER (ORDER BY b.total_bonus DESC, b.cross_sell_amount DESC) AS rank, b.person_id, b.role,
               b.cross_sell_count, b.cross_sell_amount, b.appointments_held, b.appointments_converted,
               b.total_bonus, b.cross_sell_bonus, b.appointment_bonus, b.prior_adjustments,
               b.upsell_count, b.upsell_amount, b.upsell_bonus, b.kpi_bonus, b.prize_bonus,
               COALESCE(lp.points, 0) AS lead_points, COALESCE(lp.badge, 'none') AS badge,
               COALESCE(lp.gold, false) AS gold
        FROM bonus_running b
        LEFT JOIN lead_points lp ON lp.year = {YEAR_OF_PERIOD} AND lp.person_id = b.person_id
        WHERE b.period = $1 AND ($2::text IS NULL OR b.role = $2) AND {NONZERO_ROW}
        ORDER BY b.total_bonus DESC, b.cross_sell_amount DESC, b.person_id
        LIMIT $3
        """,
        period, role, limit,
    )
    return [Standing(**dict(row)) for row in rows]
