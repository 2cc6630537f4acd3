"""The `crmbonus` command (SPEC section 8). Thin: parse flags, call the service, print."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stream import db, embedded
from stream.errors import CrmbonusError
from stream.kafka import ensure_topics
from stream.kafka import publish as publish_messages
from stream.plan import load_plan
from stream.publishing import read_lines, refusals, to_outgoing
from stream.settings import ENV_BROKER, ENV_DATABASE_URL, ENV_PLAN, Settings, load_settings

if TYPE_CHECKING:  # the replay machinery imports Faust: only commands that run it pay for that
    from stream.replay import ReplayProgress
    from stream.settlement import Settlement

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
err = Console(stderr=True, soft_wrap=True)
out = Console()


class Crmbonus(click.Group):
    """Turns our own errors into one readable line and exit code 2, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CrmbonusError as error:
            err.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
            sys.exit(2)


def service_options(command: F) -> F:
    """--broker, --database-url and --plan, accepted by every command (SPEC section 8).

    Each reads its CRMBONUS_* variable when the flag is not given: flag > environment > default.
    """
    options = [
        click.option("--broker", metavar="URL", envvar=ENV_BROKER, show_envvar=True,
                     help="kafka://host:port, several joined by ';' (default: an embedded broker)."),
        click.option("--database-url", metavar="URL", envvar=ENV_DATABASE_URL, show_envvar=True,
                     help="postgresql:// URL (default: an embedded Postgres under ./.crmbonus/)."),
        click.option("--plan", metavar="PATH", envvar=ENV_PLAN, show_envvar=True,
                     help="Bonus plan TOML (default: deploy/plans/default.toml)."),
    ]
    return functools.reduce(lambda cmd, option: option(cmd), reversed(options), command)


def settings_from(broker: str | None, database_url: str | None, plan: str | None, **extra: Any) -> Settings:
    return load_settings(broker=broker, database_url=database_url, plan=plan, **extra)


@click.group(cls=Crmbonus, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """crmbonus: CRM sales activity in, cross-sell and appointment bonus pay out.

    With no --broker/--database-url (or CRMBONUS_* variables), every command uses an
    embedded Kafka-compatible broker and an embedded Postgres kept under ./.crmbonus/.
    """
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.command()
@service_options
@click.option("--web-port", default=6066, show_default=True,
              help="Port of the worker's HTTP server (worker i of --workers serves on this + i).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes in the consumer group: one per core uses them all.")
@click.pass_context
def worker(ctx: click.Context, broker: str | None, database_url: str | None, plan: str | None,
           web_port: int, workers: int) -> None:
    """Run the Faust worker: consume the CRM topics and keep the bonus tables current.

    Stops cleanly on SIGTERM or Ctrl-C: the batch in hand is committed first. With
    --workers N, N processes share the topics' partitions (and the embedded broker and
    Postgres); if one fails, the others are stopped and the command exits with its code.
    """
    from stream.runner import run_worker, supervise

    settings = settings_from(broker, database_url, plan, web_port=web_port)
    bonus_plan = load_plan(settings.plan_path)
    with embedded.services(settings) as resolved:
        asyncio.run(ensure_topics(resolved.broker, resolved.topics, resolved.partitions))
        err.print(f"worker consuming {', '.join(resolved.topics.inputs)} at {resolved.broker}"
                  + (f" ({workers} processes, HTTP on ports {web_port}-{web_port + workers - 1})"
                     if workers > 1 else ""))
        verbose = logging.getLogger().level <= logging.INFO
        if workers == 1:
            run_worker(resolved, bonus_plan, loglevel="info" if verbose else "warn")
            return
        # The children find the embedded broker and Postgres this process started (announced
        # under the data directory), so they get the same services and consumer-group timing.
        parent = ctx.find_root().params
        flags = [*(["-v"] * parent["verbose"]), "worker",
                 *(["--broker", broker] if broker else []),
                 *(["--database-url", database_url] if database_url else []),
                 *(["--plan", plan] if plan else [])]
        code = supervise([[sys.executable, "-m", "stream", *flags, "--web-port", str(web_port + index)]
                          for index in range(workers)])
        if code:
            raise SystemExit(code)


@main.command()
@service_options
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--check", is_flag=True, help="Validate every line first; publish nothing if any is invalid.")
def publish(broker: str | None, database_url: str | None, plan: str | None,
            files: tuple[str, ...], check: bool) -> None:
    """Publish each JSON line of FILES, as it is, to the topic of its event_type.

    Lines without a known event_type (or not JSON) go to the sales topic, where the
    worker dead-letters them. Keyed by customer_id where present. Blank lines are skipped.
    With no --broker, publishes to the embedded broker of a running `crmbonus worker`.
    """
    settings = settings_from(broker, database_url, plan)
    lines = read_lines(files)
    if check:
        problems = list(refusals(lines))
        if problems:
            for problem in problems:
                err.print(problem, highlight=False, soft_wrap=True)
            raise CrmbonusError(f"{len(problems)} of {len(lines)} lines are invalid; nothing was published")
    target = settings.broker or embedded.running_broker(settings.data_dir)
    if target is None:
        raise CrmbonusError(
            "no broker configured (--broker or CRMBONUS_BROKER) and no embedded broker is running "
            f"under {settings.data_dir}/; start `crmbonus worker` first, or use `crmbonus replay`"
        )
    outgoing = [to_outgoing(line.raw, settings.topics) for line in lines]
    with bars() as progress:
        task = progress.add_task("published", total=len(outgoing))

        async def run() -> None:
            await ensure_topics(target, settings.topics, settings.partitions)
            await publish_messages(target, outgoing, on_sent=lambda n: progress.advance(task, n))

        asyncio.run(run())
    err.print(f"published {len(outgoing)} lines to {target}")


@main.command()
@service_options
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def replay(broker: str | None, database_url: str | None, plan: str | None, files: tuple[str, ...]) -> None:
    """Publish FILES in order to a fresh embedded broker (or --broker), process them, exit 0.

    Exits 0 only once every published event is committed to Postgres: stored,
    dead-lettered or recognised as a duplicate. Safe to run twice: nothing doubles.
    """
    from stream.replay import replay as run_replay

    settings = settings_from(broker, database_url, plan)
    bonus_plan = load_plan(settings.plan_path)
    with replay_bars() as (_, bars):
        report = run_replay(settings, bonus_plan, files, bars)
    err.print(
        f"replayed {report.published} lines in {report.seconds:.1f}s: {report.stored} events stored, "
        f"{report.duplicates} duplicates ignored, {report.dead_letters} dead letters"
    )


def with_database(settings: Settings, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Run `work` on a connection to the configured (or embedded) database, migrated first."""
    with embedded.database(settings) as url:

        async def run() -> T:
            pool = await db.create_pool(url, max_size=1)
            try:
                await db.migrate(pool)
                async with pool.acquire() as conn:
                    return await work(conn)
            finally:
                await pool.close()

        return asyncio.run(run())


@main.command()
@service_options
@click.option("--period", required=True, metavar="YYYY-MM", help="The month to close (plan time zone).")
def settle(broker: str | None, database_url: str | None, plan: str | None, period: str) -> None:
    """Close PERIOD: copy its bonus_running rows into the immutable bonus_settled.

    Settling a closed period again changes nothing and says so. Events that change a
    closed period afterwards are paid as prior_adjustments in the next open period.
    """
    from stream.ledger import rebuild_if_pending
    from stream.periods import check_period
    from stream.settlement import settle as close_period

    check_period(period)
    settings = settings_from(broker, database_url, plan)
    bonus_plan = load_plan(settings.plan_path)

    async def work(conn: asyncpg.Connection) -> Settlement:
        async with conn.transaction():  # a migration may ask for it: never settle stale rows
            await rebuild_if_pending(conn, bonus_plan)
        return await close_period(conn, period)

    result = with_database(settings, work)
    when = result.settled_at.isoformat(timespec="seconds")
    if result.already_closed:
        err.print(f"period {period} is already closed (settlement {result.settlement_id} at {when}); "
                  "nothing changed")
    else:
        err.print(f"settled {period}: {result.rows} rows, total_bonus {result.total_bonus} "
                  f"(settlement {result.settlement_id} at {when})")


@main.command()
@service_options
@click.option("--period", required=True, metavar="YYYY-MM", help="A settled month.")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write here, not to standard output.")
def export(broker: str | None, database_url: str | None, plan: str | None, period: str, fmt: str,
           output: str | None) -> None:
    """The payroll file of a settled PERIOD, one row per person, from bonus_settled."""
    from stream.periods import check_period
    from stream.reports import payroll_file

    check_period(period)
    settings = settings_from(broker, database_url, plan)
    payroll = with_database(settings, lambda conn: payroll_file(conn, period))
    text = payroll.to_csv() if fmt == "csv" else payroll.to_json()
    if output is None:
        click.echo(text, nl=False)
    else:
        Path(output).write_text(text)
    totals = payroll.totals()
    err.print(f"{period}: {len(payroll.rows)} people, total_bonus {totals['total_bonus']}"
              + (f", written to {output}" if output else ""))


@main.command()
@service_options
@click.option("--period", metavar="YYYY-MM", help="Default: the latest period with bonus rows.")
@click.option("--role", type=click.Choice(["telemarketer", "field_rep"]), help="Default: everyone.")
@click.option("--limit", type=int, default=20, show_default=True, help="Rows to show.")
def leaderboard(broker: str | None, database_url: str | None, plan: str | None, period: str | None,
                role: str | None, limit: int) -> None:
    """The leaderboard in the terminal: rank, person, role, cross-sells, amount, appointments, bonus."""
    from stream.reports import leaderboard as standings
    from stream.reports import periods

    async def work(conn: asyncpg.Connection) -> tuple[str | None, list[Any]]:
        chosen = period or next(iter(await periods(conn)), None)
        return chosen, ([] if chosen is None else await standings(conn, chosen, role, limit))

    chosen, rows = with_database(settings_from(broker, database_url, plan), work)
    if chosen is None:
        err.print("no bonus rows yet: process some events first (crmbonus replay FILE)")
        return
    out.print(leaderboard_table(chosen, role, rows))


def leaderboard_table(period: str, role: str | None, rows: list[Any]) -> Table:
    table = Table(title=f"Leaderboard {period}" + (f" — {role}" if role else ""), title_justify="left")
    for name, justify in (("#", "right"), ("person", "left"), ("role", "left"), ("cross-sells", "right"),
                          ("amount", "right"), ("held", "right"), ("conv.", "right"), ("bonus", "right")):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(str(row.rank), row.person_id, row.role, str(row.cross_sell_count),
                      f"{row.cross_sell_amount:,.2f}", str(row.appointments_held),
                      str(row.appointments_converted), f"{row.total_bonus:,.2f}")
    return table


@main.command()
@service_options
@click.option("--month", metavar="YYYY-MM", help="Month to generate and settle. Default: last month.")
@click.option("--customers", default=3000, show_default=True, help="Customers in the generated month.")
@click.option("--seed", default=2026, show_default=True, help="Same seed, same month.")
@click.option("--serve", is_flag=True, help="Keep the worker, /leaderboard and /metrics up afterwards.")
@click.option("--web-port", default=6066, show_default=True, help="Port of the web page and metrics (--serve).")
def demo(broker: str | None, database_url: str | None, plan: str | None, month: str | None, customers: int,
         seed: int, serve: bool, web_port: int) -> None:
    """The main job on the embedded default: a realistic month of CRM activity, end to end.

    Generates dozens of telemarketers and field reps and thousands of customers
    (callbacks, bookings, held and missed appointments, multi-line sales, refunds,
    cancellations, late events, a few invalid lines), publishes it, processes it,
    prints the leaderboard, settles the month and writes the payroll CSV here.
    """
    from stream.demo import DemoOutcome, previous_month, run_demo
    from stream.demo_data import DemoConfig
    from stream.periods import check_period

    chosen = check_period(month or previous_month())
    settings = settings_from(broker, database_url, plan, web_port=web_port)
    bonus_plan = load_plan(settings.plan_path)
    config = DemoConfig(seed=seed, month=chosen, customers=customers)

    def show(outcome: DemoOutcome) -> None:
        progress.stop()
        report = outcome.report
        err.print(f"processed {report.published} lines in {report.seconds:.1f}s: {report.stored} events stored, "
                  f"{report.duplicates} duplicates ignored, {report.dead_letters} dead letters "
                  f"(events in {outcome.events_file})")
        for role, rows in outcome.standings.items():
            out.print(leaderboard_table(chosen, role, rows))
        settled = outcome.settlement
        err.print(("already settled" if settled.already_closed else "settled") + f" {chosen}: {settled.rows} "
                  f"rows, settlement {settled.settlement_id}")
        err.print(f"payroll file: {outcome.payroll_file.resolve()} (total_bonus {outcome.payroll_total})")
        if serve:
            err.print(f"serving http://localhost:{web_port}/leaderboard, /metrics and /health "
                      f"at {report.broker}; Ctrl-C stops")

    with replay_bars() as (progress, bars):
        err.print(f"generating {chosen}: {customers} customers, seed {seed}")
        run_demo(settings, bonus_plan, config, Path.cwd(), show, bars, serve=serve)


def bars() -> Progress:
    """Progress bars on a terminal; nothing at all when the output goes elsewhere."""
    return Progress(TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err, disable=not err.is_terminal)


@contextlib.contextmanager
def replay_bars() -> Iterator[tuple[Progress, ReplayProgress]]:
    """'published' and 'committed' bars, fed by a replay's callbacks."""
    from stream.replay import ReplayProgress

    with bars() as progress:
        published = progress.add_task("published", total=None)
        committed = progress.add_task("committed", total=None)

        def set_total(n: int) -> None:
            progress.update(published, total=n)
            progress.update(committed, total=n)

        yield progress, ReplayProgress(
            total=set_total,
            published=lambda n: progress.advance(published, n),
            committed=lambda n: progress.advance(committed, n),
        )
