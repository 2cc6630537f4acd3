"""`crmbonus demo`: a generated month through the whole system, ending in a payroll file.

Generate a month (stream/demo_data.py), publish it, process it with the real
worker under the demo plan (unless another is given), then inside that worker:
rank the people, settle the month and write the payroll CSV. With `serve`, the
worker stays up afterwards with its web page and metrics, and the broker is
announced so `crmbonus publish` can add events.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from stream import reports
from stream.demo_data import DemoConfig, generate, write_jsonl
from stream.errors import CrmbonusError
from stream.plan import DEMO_PLAN_PATH, Plan
from stream.plan_versions import Plans
from stream.replay import ReplayProgress, ReplayReport, process
from stream.runtime import Runtime
from stream.settings import Settings
from stream.settlement import Settlement, settle


def previous_month(now: datetime | None = None) -> str:
    """The last full calendar month (UTC): the one payroll would settle today."""
    now = now or datetime.now(UTC)
    year, month = (now.year, now.month - 1) if now.month > 1 else (now.year - 1, 12)
    return f"{year:04d}-{month:02d}"


def demo_plan(given: str | None) -> str:
    """The plan the demo runs: the one the user gave (--plan or CRMBONUS_PLAN), else the demo plan
    (`DEMO_PLAN_PATH`, stream/plans/demo.toml): the default plan with every programme of SPEC
    section 13 on, so the month shows upsells, KPI bonuses, lead points and the gold prize."""
    return given if given is not None else str(DEMO_PLAN_PATH)


@dataclass(frozen=True)
class DemoOutcome:
    events_file: Path
    report: ReplayReport
    standings: dict[str, list[reports.Standing]]
    settlement: Settlement
    payroll_file: Path
    payroll_total: str


def run_demo(
    settings: Settings,
    plan: Plan | Plans,
    config: DemoConfig,
    payroll_dir: Path,
    show: Callable[[DemoOutcome], None],
    progress: ReplayProgress | None = None,
    serve: bool = False,
) -> None:
    """Run the demo; `show` gets the outcome once the month is processed and settled."""
    lines = generate(config)
    events_file = settings.data_dir / f"demo-{config.month}.jsonl"
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        write_jsonl(lines, events_file)
    except OSError as error:
        raise CrmbonusError(f"cannot write the demo's events to {events_file}: {error.strerror or error} "
                            "(the data directory, CRMBONUS_DATA_DIR)") from error

    async def close_month(runtime: Runtime, report: ReplayReport) -> None:
        assert runtime.pool is not None
        async with runtime.pool.acquire() as conn:
            standings = {role: await reports.leaderboard(conn, config.month, role, 10) for role in reports.ROLES}
            settlement = await settle(conn, config.month)
            payroll = await reports.payroll_file(conn, config.month)
        payroll_path = payroll_dir / f"payroll-{config.month}.csv"
        try:
            payroll_path.write_text(payroll.to_csv())
        except OSError as error:
            raise CrmbonusError(f"cannot write the payroll file {payroll_path}: {error.strerror or error}; "
                                "run the demo in a directory you may write to") from error
        show(DemoOutcome(events_file, report, standings, settlement, payroll_path,
                         str(payroll.totals()["total_bonus"])))

    process(lines, settings, plan, progress, then=close_month, keep_serving=serve, command="demo")
