"""`crmbonus demo`: a generated month through the whole system, ending in a payroll file.

Generate a month (stream/demo_data.py), publish it, process it with the real
worker under the demo plan (unless another is given), then inside that worker:
rank the people, settle the month and write the payroll CSV. With `serve`, the
worker stays up afterwards with its web page and metrics, and the broker is
announced so `crmbonus publish` can add events.

It ends with a what-if (SPEC §12, `stream.whatif`): the month again under a candidate, the plan in force
with a telemarketer share of `WHATIF_SHARE`, and what that would cost. The candidate is written to the
data directory as a plan file, so `crmbonus whatif --candidate FILE` asks again.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from stream import reports
from stream.demo_data import DemoConfig, generate, write_jsonl
from stream.errors import CrmbonusError, PlanError
from stream.plan import DEMO_PLAN_PATH, Plan
from stream.plan_versions import Plans, as_plans, load_plans
from stream.replay import ReplayProgress, ReplayReport, process
from stream.runtime import Runtime
from stream.settings import Settings
from stream.settlement import Settlement, settle
from stream.whatif import WhatIf, what_if

#: The demo's candidate (issue 16 item 4): the plan in force for the month with this telemarketer share.
WHATIF_SHARE = Decimal("0.40")


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
class DemoWhatIf:
    """The month under the candidate: its share against the plan's, and the file it was written to (None
    when the plan in force has no file, or one whose text could not be edited)."""

    share_now: Decimal
    share: Decimal
    candidate_file: Path | None
    found: WhatIf


def whatif_candidate(plans: Plans, month: str, directory: Path) -> tuple[Plans, Path | None]:
    """The plan in force for `month` with telemarketer_share `WHATIF_SHARE` (and its own version name).

    Written as `directory`/whatif-candidate.toml: the plan's own file with those two top-level keys
    changed, kept only when it reads back as exactly that plan; otherwise the plan made in code."""
    record = plans.version_for(month)
    wanted = dataclasses.replace(record.plan, telemarketer_share=WHATIF_SHARE,
                                 version=f"{record.version}-share-{WHATIF_SHARE}")
    source = Path(record.source)
    if source.is_file():
        path = directory / "whatif-candidate.toml"
        try:
            text = _with_top_level(source.read_text(), telemarketer_share=json.dumps(str(WHATIF_SHARE)),
                                   version=json.dumps(wanted.version))
            path.write_text(text)
            written = load_plans(path)
        except (OSError, UnicodeDecodeError, PlanError):
            written = None
        if written is not None and written.first == wanted:
            return written, path
    return Plans.of(wanted, source="the demo's what-if"), None


def _with_top_level(text: str, **values: str) -> str:
    """`text` (TOML) with each top-level ``key = value`` line replaced, or added first when missing."""
    lines = text.splitlines()
    tables = next((i for i, line in enumerate(lines) if line.lstrip().startswith("[")), len(lines))
    for key, value in values.items():
        at = [i for i in range(tables) if lines[i].split("=", 1)[0].strip() == key and "=" in lines[i]]
        if at:
            lines[at[0]] = f"{key} = {value}"
        else:
            lines.insert(0, f"{key} = {value}")
            tables += 1
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class DemoOutcome:
    events_file: Path
    report: ReplayReport
    standings: dict[str, list[reports.Standing]]
    settlement: Settlement
    payroll_file: Path
    payroll_total: str
    whatif: DemoWhatIf


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
    plans = as_plans(plan)
    candidate, candidate_file = whatif_candidate(plans, config.month, settings.data_dir)

    async def close_month(runtime: Runtime, report: ReplayReport) -> None:
        assert runtime.pool is not None
        async with runtime.pool.acquire() as conn:
            standings = {role: await reports.leaderboard(conn, config.month, role, 10) for role in reports.ROLES}
            settlement = await settle(conn, config.month)
            payroll = await reports.payroll_file(conn, config.month)
            found = await what_if(conn, candidate, config.month, config.month)
        payroll_path = payroll_dir / f"payroll-{config.month}.csv"
        try:
            payroll_path.write_text(payroll.to_csv())
        except OSError as error:
            raise CrmbonusError(f"cannot write the payroll file {payroll_path}: {error.strerror or error}; "
                                "run the demo in a directory you may write to") from error
        whatif = DemoWhatIf(plans.for_period(config.month).telemarketer_share, WHATIF_SHARE, candidate_file, found)
        show(DemoOutcome(events_file, report, standings, settlement, payroll_path,
                         str(payroll.totals()["total_bonus"]), whatif))

    process(lines, settings, plan, progress, then=close_month, keep_serving=serve, command="demo")
