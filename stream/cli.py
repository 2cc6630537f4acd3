"""The `crmbonus` command (SPEC section 8). Thin: parse flags, call the service, print."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import json
import logging
import os
import re
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
import click
from click.core import ParameterSource
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from stream import db, embedded
from stream.errors import CrmbonusError
from stream.kafka import ensure_topics, ensure_topics_of, quality_topic_required
from stream.kafka import publish as publish_messages
from stream.plan_versions import Plans, load_plans
from stream.publishing import read_lines, refusals, to_outgoing
from stream.settings import (
    DEFAULT_PARTITIONS,
    ENV_BROKER,
    ENV_DATABASE_URL,
    ENV_KAFKA_SASL_MECHANISM,
    ENV_KAFKA_SASL_PASSWORD,
    ENV_KAFKA_SASL_PASSWORD_FILE,
    ENV_KAFKA_SASL_USERNAME,
    ENV_KAFKA_SECURITY_PROTOCOL,
    ENV_KAFKA_SSL_CAFILE,
    ENV_KAFKA_SSL_CERTFILE,
    ENV_KAFKA_SSL_KEYFILE,
    ENV_PLAN,
    ENV_WEB_HOST,
    ENV_WEB_TOKEN,
    KafkaSecurity,
    Settings,
    is_loopback,
    load_kafka_security,
    load_settings,
    load_web_token,
    topic_replicas,
)
from stream.terminal import Column, FittedTable
from stream.version import package_version

if TYPE_CHECKING:  # the replay machinery imports Faust: only commands that run it pay for that
    from stream.demo import DemoWhatIf
    from stream.replay import ReplayProgress
    from stream.reports import Standing
    from stream.settlement import Settlement

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
# Ids, paths and messages come from data and from users: no console ever reads them as rich markup
# (`[link=...]`, `[/bold]`) or emoji codes (`:smile:`); what is styled is styled through `Text`.
err = Console(stderr=True, soft_wrap=True, markup=False, emoji=False, highlight=False)
out = Console(markup=False, emoji=False, highlight=False)

#: What a terminal would act on rather than show: C0/C1 controls (ESC starts colour, title, clipboard
#: and hyperlink sequences), DEL, and the invisible or reordering format characters (bidi overrides).
UNSHOWABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def shown(value: object, *, lines: bool = False) -> Text:
    """`value` as literal text for the terminal: never markup, and every control character spelled
    out (`\\x1b`), so data can neither style nor move nor rewrite what is around it. `lines`: keep
    newlines (a message of several lines)."""

    def spell(match: re.Match[str]) -> str:
        char = match.group()
        return char if lines and char == "\n" else char.encode("unicode_escape").decode("ascii")

    return Text(UNSHOWABLE.sub(spell, str(value)))


def note(message: object) -> None:
    """A line for the user on standard error, shown literally."""
    err.print(shown(message, lines=True))


class Crmbonus(click.Group):
    """Turns our own errors into one readable line and exit code 2, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CrmbonusError as error:
            err.print(Text.assemble(("error:", "bold red"), " ", shown(error, lines=True)))
            sys.exit(2)


#: The Kafka security flags: (flag, variable, the `load_kafka_security` argument it gives, help).
KAFKA_FLAGS = (
    ("--kafka-security-protocol", ENV_KAFKA_SECURITY_PROTOCOL, "protocol",
     "PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL. Anything but PLAINTEXT needs --broker."),
    ("--kafka-sasl-mechanism", ENV_KAFKA_SASL_MECHANISM, "sasl_mechanism",
     "PLAIN (default with SASL), SCRAM-SHA-256 or SCRAM-SHA-512."),
    ("--kafka-sasl-username", ENV_KAFKA_SASL_USERNAME, "sasl_username",
     f"SASL user. Its password: {ENV_KAFKA_SASL_PASSWORD}, or {ENV_KAFKA_SASL_PASSWORD_FILE} naming a file "
     "that holds it (no flag: a command line is visible to every user of the machine)."),
    ("--kafka-ssl-cafile", ENV_KAFKA_SSL_CAFILE, "ssl_cafile",
     "PEM file of the CA(s) the broker's certificate is checked against (default: the system's)."),
    ("--kafka-ssl-certfile", ENV_KAFKA_SSL_CERTFILE, "ssl_certfile", "PEM client certificate, for mutual TLS."),
    ("--kafka-ssl-keyfile", ENV_KAFKA_SSL_KEYFILE, "ssl_keyfile",
     "PEM key of the client certificate (default: in the certificate file)."),
)


def service_options(command: F) -> F:
    """--broker, --database-url, --plan and the Kafka security flags, accepted by every command (SPEC
    sections 8 and 11); the command gets the security flags as one `kafka: KafkaSecurity`.

    Each reads its CRMBONUS_* variable when the flag is not given: flag > environment > default.
    """
    return _service_options(command, plan_unused=None)


def service_options_without_plan(why: str) -> Callable[[F], F]:
    """`service_options` for a command that no bonus plan changes. SPEC section 8: every command
    accepts `--plan`; here a plan given on the command line is read and validated, so a wrong
    one is still an error, and then not used (`why`); CRMBONUS_PLAN, the deployment's setting
    for every command, is ignored."""
    return lambda command: _service_options(command, plan_unused=why)


def _service_options(command: F, plan_unused: str | None) -> F:
    @functools.wraps(command)
    def with_kafka(*args: Any, **kwargs: Any) -> Any:
        if plan_unused is not None and kwargs["plan"] is not None:
            ctx = click.get_current_context()
            if ctx.get_parameter_source("plan") is ParameterSource.COMMANDLINE:
                plan_at(kwargs["plan"])  # a wrong plan is an error even where none is used
            kwargs["plan"] = None
        return command(*args, kafka=kafka_security(kwargs), **kwargs)

    plan_help = ("Bonus plan: a TOML file, or a directory of versions with effective_from (SPEC 12); "
                 "default: the shipped plan, deploy/plans/default.toml." if plan_unused is None else
                 f"Checked, then not used by this command ({plan_unused}); {ENV_PLAN} is ignored.")
    options = [
        click.option("--broker", metavar="URL", envvar=ENV_BROKER, show_envvar=True,
                     help="kafka://host:port, several joined by ';' (default: an embedded broker)."),
        click.option("--database-url", metavar="URL", envvar=ENV_DATABASE_URL, show_envvar=True,
                     help="postgresql:// URL (default: an embedded Postgres under ./.crmbonus/)."),
        click.option("--plan", metavar="PATH", envvar=ENV_PLAN, show_envvar=True, help=plan_help),
        *(click.option(flag, metavar="PATH" if "ssl" in flag else "NAME", envvar=env, show_envvar=True, help=text)
          for flag, env, _, text in KAFKA_FLAGS),
    ]
    return functools.reduce(lambda cmd, option: option(cmd), reversed(options), with_kafka)  # type: ignore[return-value]


def kafka_security(params: dict[str, Any]) -> KafkaSecurity:
    """The security flags' values, taken out of a command's `params`, loaded (and checked) once."""
    return load_kafka_security(**{argument: params.pop(flag.removeprefix("--").replace("-", "_"))
                                  for flag, _, argument, _ in KAFKA_FLAGS})


def topic_options(command: F) -> F:
    """--create-topics, --partitions, --replication-factor: for the commands that use a broker."""
    options = [
        click.option("--create-topics", is_flag=True,
                     help="Create missing topics on a configured broker; without it, a missing topic is an error "
                          "(the embedded broker's are always created)."),
        click.option("--partitions", type=click.IntRange(1, 100_000), default=DEFAULT_PARTITIONS,
                     show_default=True,
                     help="Partitions of a topic crmbonus creates: the most workers that can share its load."),
        click.option("--replication-factor", type=int, metavar="R",
                     help="Replicas of a topic crmbonus creates. Default -1: the broker's own "
                          "default.replication.factor (CreateTopics takes -1 since Kafka 2.4; tested on 4.4), "
                          "so the cluster's choice applies without crmbonus knowing its size; 1 on the "
                          "embedded broker."),
    ]
    return functools.reduce(lambda cmd, option: option(cmd), reversed(options), command)


def web_options(command: F) -> F:
    """--web-port, --web-host and --web-insecure: for the commands that serve HTTP (SPEC section 16)."""
    options = [
        click.option("--web-port", type=click.IntRange(1, 65535), default=6066, show_default=True,
                     help="Port of the HTTP server (/metrics, /health, /leaderboard, /api/leaderboard)."),
        click.option("--web-host", metavar="ADDRESS", envvar=ENV_WEB_HOST, show_envvar=True, default="127.0.0.1",
                     show_default=True,
                     help="Interface the HTTP server binds; 0.0.0.0 for every one. Any address but loopback "
                          f"needs {ENV_WEB_TOKEN} (every page but /health and /metrics then asks for it) "
                          "or --web-insecure."),
        click.option("--web-insecure", is_flag=True,
                     help=f"Serve a non-loopback --web-host without {ENV_WEB_TOKEN}: everyone who can reach it "
                          "reads everyone's pay."),
    ]
    return functools.reduce(lambda cmd, option: option(cmd), reversed(options), command)


def settings_from(broker: str | None, database_url: str | None, plan: str | None,
                  kafka: KafkaSecurity | None = None, **extra: Any) -> Settings:
    if kafka is not None:
        extra["kafka"] = kafka
    return load_settings(broker=broker, database_url=database_url, plan=plan, **extra)


def web_settings(web_port: int, web_host: str, web_insecure: bool, serve: bool = True) -> dict[str, Any]:
    """The HTTP settings of a serving command; the token only from its variable, never a flag."""
    return {"web_port": web_port, "web_host": web_host.strip(), "web_insecure": web_insecure,
            "web_token": load_web_token(), "web_enabled": serve}


def check_web_bind(host: str, ports: range) -> None:
    """Refuse at start-up, in one line, an HTTP address the server could not listen on (taken, not
    this machine's, a name that does not resolve), rather than a traceback from inside Faust.

    Binds as asyncio's server will (every address `host` resolves to, SO_REUSEADDR) and lets go."""
    for port in ports:
        where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
        try:
            addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            for family, kind, proto, _, address in addresses:
                with socket.socket(family, kind, proto) as probe:
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    probe.bind(address)
        except OSError as error:
            reason = error.strerror or str(error)
            raise CrmbonusError(f"cannot serve HTTP on {where}: {reason} (check --web-host and --web-port)") from error


def bonus_plan(settings: Settings) -> Plans:
    """The plans of `settings` (--plan or CRMBONUS_PLAN, else the shipped one), checked."""
    return plan_at(settings.plan_path)


def describe_versions(plans: Plans) -> str:
    """``version demo-1``, or ``versions v1 (from 2026-01), v2 (from 2026-07)`` for a directory."""
    if plans.single:
        return f"version {plans.first.version}"
    return "versions " + ", ".join(f"{r.version} (from {r.effective_from})" for r in plans.records)


def plan_at(path: str | None) -> Plans:
    """The plan at `path` (None: the shipped one): a file, or a directory of versions (SPEC 12),
    read and validated."""
    return load_plans(path)


def topic_settings(create_topics: bool, partitions: int, replication_factor: int | None) -> dict[str, Any]:
    return {"create_topics": create_topics, "partitions": partitions, "replication_factor": replication_factor}


@click.group(cls=Crmbonus, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_version(), "--version", prog_name="crmbonus", message="%(prog)s %(version)s")
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
@topic_options
@web_options
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes in the consumer group: one per core uses them all; a topic's "
                   "partitions are the most that share its load. Worker i serves HTTP on --web-port + i.")
@click.pass_context
def worker(ctx: click.Context, broker: str | None, database_url: str | None, plan: str | None,
           kafka: KafkaSecurity, create_topics: bool, partitions: int, replication_factor: int | None,
           web_port: int, web_host: str, web_insecure: bool, workers: int) -> None:
    """Run the Faust worker: consume the CRM topics and keep the bonus tables current.

    Stops cleanly on SIGTERM or Ctrl-C: the batch in hand is committed first. With
    --workers N, N processes share the topics' partitions (and the embedded broker and
    Postgres); if one fails, the others are stopped and the command exits with its code.
    On a configured broker the topics must exist, unless --create-topics; the quality
    topic only with a plan that has [kpi], otherwise it is read once it exists.
    """
    from stream.runner import run_worker, supervise

    if web_port + workers - 1 > 65535:
        raise CrmbonusError(f"--web-port {web_port} with --workers {workers}: worker i serves on --web-port + i, "
                            "and the last would be beyond port 65535")
    settings = settings_from(broker, database_url, plan, kafka, **web_settings(web_port, web_host, web_insecure),
                             **topic_settings(create_topics, partitions, replication_factor))
    the_plan = bonus_plan(settings)
    check_web_bind(settings.web_host, range(web_port, web_port + workers))
    with embedded.services(settings) as resolved:
        present = asyncio.run(ensure_topics_of(resolved, quality_required=quality_topic_required(the_plan)))
        waiting = "" if resolved.topics.quality in present else f" ({resolved.topics.quality} once it exists)"
        note(f"worker consuming {', '.join(present)}{waiting} at {resolved.broker}"
             + (f" ({kafka.describe()})" if kafka.configured else "")
             + (f", HTTP at {settings.web_url}" if workers == 1 else
                f" ({workers} processes, HTTP on {settings.web_host} ports {web_port}-{web_port + workers - 1})")
             + ("" if settings.web_token or is_loopback(settings.web_host) else " without a token (--web-insecure)"))
        verbose = logging.getLogger().level <= logging.INFO
        if workers == 1:
            run_worker(resolved, the_plan, loglevel="info" if verbose else "warn")
            return
        # Every setting reaches the children through their environment, none on their command
        # line (a database URL may hold a password; ps shows command lines to every user). With
        # no broker or database configured, the children find the embedded ones this process
        # started (announced under the data directory): the same services and group timing.
        parent = ctx.find_root().params
        flags = [*(["-v"] * parent["verbose"]), "worker", *(["--web-insecure"] if web_insecure else []),
                 *(["--create-topics", "--partitions", str(partitions)] if create_topics else []),
                 *(["--replication-factor", str(replication_factor)]
                   if create_topics and replication_factor is not None else [])]
        code = supervise([[sys.executable, "-m", "stream", *flags, "--web-port", str(web_port + index)]
                          for index in range(workers)], env=child_environment(settings))
        if code:
            raise SystemExit(code)


def child_environment(settings: Settings) -> dict[str, str]:
    """This process's environment with `settings` in its CRMBONUS_* variables (flags included)."""
    env = dict(os.environ)
    for name, value in settings.environment().items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


@main.command()
@service_options_without_plan("it publishes the lines as they are; the worker applies the plan")
@topic_options
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--check", is_flag=True, help="Validate every line first; publish nothing if any is invalid.")
def publish(broker: str | None, database_url: str | None, plan: str | None, kafka: KafkaSecurity,
            create_topics: bool, partitions: int, replication_factor: int | None,
            files: tuple[str, ...], check: bool) -> None:
    """Publish each JSON line of FILES, as it is, to the topic of its event_type.

    Lines without a known event_type (or not JSON) go to the sales topic, where the
    worker dead-letters them. Keyed by customer_id where present. Blank lines are skipped.
    With no --broker, publishes to the embedded broker of a running `crmbonus worker`.
    On a configured broker the input topics must exist (the quality topic only when a
    line goes there), unless --create-topics.
    """
    settings = settings_from(broker, database_url, plan, kafka,
                             **topic_settings(create_topics, partitions, replication_factor))
    lines = read_lines(files)
    if check:
        problems = list(refusals(lines))
        if problems:
            for problem in problems:
                note(problem)
            raise CrmbonusError(f"{len(problems)} of {len(lines)} lines are invalid; nothing was published")
    target = settings.broker or embedded.running_broker(settings.data_dir)
    if target is None:
        raise CrmbonusError(
            "no broker configured (--broker or CRMBONUS_BROKER) and no embedded broker is running "
            f"under {settings.data_dir}/; start `crmbonus worker` first, or use `crmbonus replay`"
        )
    outgoing = [to_outgoing(line.raw, settings.topics) for line in lines]
    destinations = {message.topic for message in outgoing}
    embedded_target = settings.broker is None
    with bars() as progress:
        task = progress.add_task("published", total=len(outgoing))

        async def run() -> None:
            await ensure_topics(target, settings.topics, settings.partitions, security=settings.kafka,
                                create=embedded_target or settings.create_topics,
                                replication_factor=topic_replicas(settings.replication_factor, embedded_target),
                                required=settings.topics.required(quality=settings.topics.quality in destinations),
                                command="publish")
            await publish_messages(target, outgoing, on_sent=lambda n: progress.advance(task, n),
                                   security=settings.kafka)

        asyncio.run(run())
    note(f"published {len(outgoing)} lines to {target}")


@main.command()
@service_options
@topic_options
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def replay(broker: str | None, database_url: str | None, plan: str | None, kafka: KafkaSecurity,
           create_topics: bool, partitions: int, replication_factor: int | None, files: tuple[str, ...]) -> None:
    """Publish FILES in order to a fresh embedded broker (or --broker), process them, exit 0.

    Exits 0 only once every published event is committed to Postgres: stored,
    dead-lettered or recognised as a duplicate. Safe to run twice: no event, credit or
    bonus doubles. On a configured broker the topics must exist, unless --create-topics;
    there a second run publishes the lines again, so its invalid lines are new messages
    and are dead-lettered again (the embedded broker starts empty each time, so they are not).
    """
    from stream.replay import replay as run_replay

    settings = settings_from(broker, database_url, plan, kafka,
                             **topic_settings(create_topics, partitions, replication_factor))
    the_plan = bonus_plan(settings)
    with replay_bars() as (_, bars):
        report = run_replay(settings, the_plan, files, bars)
    note(
        f"replayed {report.published} lines in {report.seconds:.1f}s: {report.stored} events stored, "
        f"{report.duplicates} duplicates ignored, {report.dead_letters} dead letters"
    )


def with_database(settings: Settings, work: Callable[[asyncpg.Connection], Awaitable[T]], migrate: bool = True) -> T:
    """Run `work` on a connection to the configured (or embedded) database, migrated first (unless not
    `migrate`: a command that writes nothing checks the migrations itself)."""
    with embedded.database(settings) as url:

        async def run() -> T:
            pool = await db.create_pool(url, max_size=1)
            try:
                if migrate:
                    await db.migrate(pool)
                async with pool.acquire() as conn:
                    return await work(conn)
            finally:
                await pool.close()

        return asyncio.run(run())


@main.command()
@service_options
@click.option("--period", required=True, metavar="YYYY-MM", help="The month to close (plan time zone).")
def settle(broker: str | None, database_url: str | None, plan: str | None, kafka: KafkaSecurity,
           period: str) -> None:
    """Close PERIOD: copy its bonus_running rows into the immutable bonus_settled.

    Settling a closed period again changes nothing and says so. Events that change a
    closed period afterwards are paid as prior_adjustments in the next open period.
    """
    from stream.ledger import rebuild_if_pending
    from stream.periods import check_period
    from stream.settlement import settle as close_period

    check_period(period)
    settings = settings_from(broker, database_url, plan, kafka)
    the_plan = bonus_plan(settings)

    async def work(conn: asyncpg.Connection) -> Settlement:
        async with conn.transaction():  # a migration may ask for it: never settle stale rows
            await rebuild_if_pending(conn, the_plan)
        return await close_period(conn, period)

    result = with_database(settings, work)
    when = result.settled_at.isoformat(timespec="seconds")
    if result.already_closed:
        note(f"period {period} is already closed (settlement {result.settlement_id} at {when}); nothing changed")
    else:
        note(f"settled {period}: {result.rows} rows, total_bonus {result.total_bonus} "
             f"(settlement {result.settlement_id} at {when})")


@main.command()
@service_options_without_plan("the payroll file is bonus_settled as it was settled, which no plan changes")
@click.option("--period", required=True, metavar="YYYY-MM", help="A settled month.")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write here, not to standard output.")
def export(broker: str | None, database_url: str | None, plan: str | None, kafka: KafkaSecurity, period: str,
           fmt: str, output: str | None) -> None:
    """The payroll file of a settled PERIOD, one row per person, from bonus_settled."""
    from stream.periods import check_period
    from stream.reports import payroll_file

    check_period(period)
    settings = settings_from(broker, database_url, plan, kafka)
    if output is not None and not Path(output).parent.is_dir():  # before any database work
        raise CrmbonusError(f"--output {output}: no directory {Path(output).parent}")
    payroll = with_database(settings, lambda conn: payroll_file(conn, period))
    text = payroll.to_csv() if fmt == "csv" else payroll.to_json()
    if output is None:
        click.echo(text, nl=False)
    else:
        try:
            Path(output).write_text(text)
        except OSError as error:
            raise CrmbonusError(f"--output {output}: cannot write it: {error.strerror or error}") from error
    totals = payroll.totals()
    note(f"{period}: {len(payroll.rows)} people, total_bonus {totals['total_bonus']}"
         + (f", written to {output}" if output else ""))


@main.command()
@service_options
@click.option("--period", metavar="YYYY-MM",
              help="Default: the latest period with bonus rows that is not after this month (plan time zone).")
@click.option("--role", type=click.Choice(["telemarketer", "field_rep"]), help="Default: everyone.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Rows to show.")
def leaderboard(broker: str | None, database_url: str | None, plan: str | None, kafka: KafkaSecurity,
                period: str | None, role: str | None, limit: int) -> None:
    """The leaderboard in the terminal: rank, person, role, cross-sells, amount, appointments, bonus.

    With the programmes of the plan: upsells, KPI and prize bonus, the year's lead points and
    badge. A narrow terminal leaves out the least important columns (and says which) rather
    than cut a figure. The plan (--plan) gives the time zone that says which month is the
    current one.
    """
    from stream.periods import check_period
    from stream.reports import current_period, default_period, periods
    from stream.reports import leaderboard as standings

    if period is not None:
        check_period(period)
    settings = settings_from(broker, database_url, plan, kafka)
    this_month = current_period(bonus_plan(settings))

    async def work(conn: asyncpg.Connection) -> tuple[str | None, list[Any]]:
        chosen = period or default_period(await periods(conn), this_month)
        return chosen, ([] if chosen is None else await standings(conn, chosen, role, limit))

    chosen, rows = with_database(settings, work)
    if chosen is None:
        note(f"no bonus rows up to {this_month} yet: process some events first (crmbonus replay FILE)")
        return
    if not rows:
        note(f"no bonus rows in {chosen}" + (f" for {role}s" if role else ""))
        return
    out.print(leaderboard_table(chosen, role, rows))


def money(value: Decimal) -> str:
    """A money figure for the terminal: thousands separated, two decimals, never cut (stream/terminal.py)."""
    return f"{value:,.2f}"


def badge(standing: Standing) -> str:
    """The year's badge (bronze, silver) and gold, as one cell; empty for none."""
    return " + ".join([*([standing.badge] if standing.badge != "none" else []), *(["gold"] if standing.gold else [])])


#: The leaderboard's columns: (column, the cell of a row, shown only when some row has a figure there).
#: Priority 0 stays at any width (person folds, bonus never); the rest go, greatest first, when the
#: terminal is too narrow: the programmes' details before the counts, the role and the cross-sell amount.
LEADERBOARD_COLUMNS: tuple[tuple[Column, Callable[[Standing], object], Callable[[Standing], bool] | None], ...] = (
    (Column("#", 1), lambda r: r.rank, None),
    (Column("person", 0, "left", fold=True), lambda r: r.person_id, None),
    (Column("role", 3, "left"), lambda r: r.role, None),
    (Column("cross-sells", 4), lambda r: r.cross_sell_count, None),
    (Column("amount", 2), lambda r: money(r.cross_sell_amount), None),
    (Column("upsells", 10), lambda r: r.upsell_count, lambda r: r.upsell_count != 0 or r.upsell_bonus != 0),
    (Column("held", 5), lambda r: r.appointments_held, lambda r: r.appointments_held != 0),
    (Column("conv.", 6), lambda r: r.appointments_converted, lambda r: r.appointments_converted != 0),
    (Column("upsell", 7), lambda r: money(r.upsell_bonus), lambda r: r.upsell_count != 0 or r.upsell_bonus != 0),
    (Column("KPI", 8), lambda r: money(r.kpi_bonus), lambda r: r.kpi_bonus != 0),
    (Column("prize", 9), lambda r: money(r.prize_bonus), lambda r: r.prize_bonus != 0),
    (Column("points", 11), lambda r: r.lead_points, lambda r: r.lead_points != 0 or r.badge != "none" or r.gold),
    (Column("badge", 12, "left"), badge, lambda r: r.lead_points != 0 or r.badge != "none" or r.gold),
    (Column("bonus", 0), lambda r: money(r.total_bonus), None),
)


def leaderboard_table(period: str, role: str | None, rows: Sequence[Standing]) -> FittedTable:
    """The ranked rows, as many columns as the terminal's width takes (never a money figure cut);
    a programme's or an appointment count's column only when some row has a figure in it, the role
    only without `role`.
    Every cell from data goes in as literal `Text` (`shown`)."""
    columns = [(column, cell) for column, cell, when in LEADERBOARD_COLUMNS
               if (when is None or any(when(row) for row in rows)) and not (role and column.header == "role")]
    title = shown(f"Leaderboard {period}" + (f" — {role}" if role else "")
                  + (f" (lead points: {period[:4]})" if any(c.header == "points" for c, _ in columns) else ""))
    return FittedTable([column for column, _ in columns],
                       [[shown(cell(row)) for _, cell in columns] for row in rows], title=title)


@main.command()
@service_options
@click.option("--person", required=True, metavar="ID", help="The person_id (as the CRM publishes it).")
@click.option("--period", required=True, metavar="YYYY-MM", help="The month (plan time zone).")
@click.option("--format", "fmt", type=click.Choice(["text", "csv", "json", "pdf"]), default="text",
              show_default=True, help="text: tables for the terminal; pdf needs -o FILE (or a redirect).")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write here, not to standard output.")
def statement(broker: str | None, database_url: str | None, plan: str | None, kafka: KafkaSecurity, person: str,
              period: str, fmt: str, output: str | None) -> None:
    """One person's month, spelled out (SPEC section 15): why their pay is this number.

    Every credit in force (customer, sale, line, category, amount, share, the touch that earned
    a telemarketer part with its time, the source event); the gates and what is missing ("2 more
    cross-sells unlock the bonus"); each tier band with its amount and rate and the distance to
    the next; appointments, upsells, KPI components (value, target, attainment), the year's lead
    points and badge; prior adjustments with their months; whether the month is settled, what
    was settled and the adjustments this month's later changes sent on.

    The arithmetic uses the version of --plan (or CRMBONUS_PLAN) in force for the month: give the
    worker's plan; should the stored row
    differ from what the credits make under it, the statement says so. A person without a row
    gets zeros. The text fits the terminal: narrow ones leave columns out (and say which), never
    cut a figure. Exit 2 for a malformed period.
    """
    from stream.periods import check_period
    from stream.plan_versions import as_plans
    from stream.statement import statement_json
    from stream.statements import load_statement, to_csv, to_pdf

    check_period(period)
    settings = settings_from(broker, database_url, plan, kafka)
    the_plan = as_plans(bonus_plan(settings)).for_period(period)  # the version in force for the month (SPEC 12)
    if output is not None and not Path(output).parent.is_dir():  # before any database work
        raise CrmbonusError(f"--output {output}: no directory {Path(output).parent}")
    if fmt == "pdf" and output is None and sys.stdout.isatty():
        raise CrmbonusError("--format pdf writes a binary file: give -o FILE (or redirect standard output)")
    found = with_database(settings, lambda conn: load_statement(conn, the_plan, person, period))
    if fmt == "text" and output is None:
        for renderable in statement_text(found):
            out.print(renderable)
        return
    data: bytes
    if fmt == "pdf":
        data = to_pdf(found)
    elif fmt == "json":
        data = (json.dumps(statement_json(found), indent=2, ensure_ascii=False) + "\n").encode()
    elif fmt == "csv":
        data = to_csv(found).encode()
    else:
        console = Console(file=io.StringIO(), width=100, markup=False, emoji=False, highlight=False)
        for renderable in statement_text(found):
            console.print(renderable)
        data = console.file.getvalue().encode()  # type: ignore[attr-defined]
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        Path(output).write_bytes(data)
    except OSError as error:
        raise CrmbonusError(f"--output {output}: cannot write it: {error.strerror or error}") from error
    note(f"statement of {person} for {period} ({fmt}, total_bonus {found.row['total_bonus']}) written to {output}")


def statement_text(found: Any) -> list[Any]:
    """The statement's sections for the terminal: titles, lines and `FittedTable`s, every value literal
    (`shown`); a figure column is never dropped or cut, ids fold."""
    from stream.statement import CREDIT_HEADERS, sections

    shown_parts: list[Any] = []
    for index, section in enumerate(sections(found)):
        shown_parts.append(Text.assemble(("\n" if index else "", ""), (section.title, "bold")))
        shown_parts.extend(shown(line) for line in section.lines)
        if section.table is not None and section.table.rows:
            table = section.table
            credits = table.headers == CREDIT_HEADERS
            columns = [Column(header, _statement_priority(i, table.numeric, credits), "right" if i in table.numeric
                              else "left", fold=i not in table.numeric) for i, header in enumerate(table.headers)]
            shown_parts.append(FittedTable(columns, [[shown(cell) for cell in row] for row in table.rows]))
        shown_parts.extend(shown(line) for line in section.after)
    return shown_parts


#: The credits table at a narrow width: kind, sale and amount stay; then line, customer, category, share,
#: role, touch and source event go, the last first.
_CREDIT_PRIORITIES = (0, 5, 3, 0, 2, 4, 0, 6, 7, 8)


def _statement_priority(index: int, numeric: frozenset[int], credits: bool) -> int:
    if credits:
        return _CREDIT_PRIORITIES[index]
    return 0 if index == 0 or index in numeric else index


@main.command()
@service_options_without_plan("the current figures are bonus_running's, as the worker computed them; the "
                              "candidate is --candidate")
@click.option("--candidate", required=True, metavar="PATH",
              help="The candidate plan: a TOML file, or a directory of versions (as --plan takes).")
@click.option("--period", required=True, metavar="YYYY-MM", help="The first month (the candidate's time zone).")
@click.option("--to", "last", metavar="YYYY-MM", help="The last month, not before --period (default: --period).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True,
              help="table: for the terminal; csv: one row per person; json: with the totals.")
def whatif(broker: str | None, database_url: str | None, plan: str | None, kafka: KafkaSecurity, candidate: str,
           period: str, last: str | None, fmt: str) -> None:
    """What a candidate plan would pay for --period..--to, against bonus_running now (SPEC section 12).

    Recomputes those months from the stored events under the candidate, as if it were the plan
    (each month under its version, for a directory), and writes nothing: one read-only transaction.
    For each person with a non-zero total: current_total, what they earned in bonus_running over the
    months (the bonus without prior adjustments), candidate_total, the same under the candidate, and
    the difference, candidate - current; then the totals, whose difference is the candidate's cost.

    A December in the range brings in its year's leads (the gold prize). A candidate in another time
    zone is computed in its own months, as a worker started with it would pay them, and said so.
    The table fits the terminal and never cuts a figure. Exit 2 for a malformed month, --to before
    --period, or a candidate that is not a valid plan.
    """
    from stream.whatif import what_if

    first = month_flag("--period", period)
    to = first if last is None else month_flag("--to", last)
    if to < first:
        raise CrmbonusError(f"--to {to} is before --period {first}: the months run from --period to --to")
    candidates = plan_at(candidate)
    settings = settings_from(broker, database_url, plan, kafka)
    found = with_database(settings, lambda conn: what_if(conn, candidates, first, to), migrate=False)
    if found.zone_differs:
        note(f"the candidate's time zone {found.candidate_zone} is not the one bonus_running was computed in "
             f"({', '.join(found.current_zones)}): its months are months in {found.candidate_zone}")
    note(f"candidate {candidate} ({describe_versions(candidates)}): {found.customers} customers, "
         f"{found.events} stored events recomputed; nothing written")
    if fmt == "json":
        click.echo(json.dumps(found.to_json(), indent=2, ensure_ascii=False))
        return
    totals = (f"total: current {money(found.current_total)}, candidate {money(found.candidate_total)}, "
              f"difference {found.difference:+,.2f}")
    if fmt == "csv":
        click.echo(found.to_csv(), nl=False)
        note(f"{len(found.people)} people; {totals}")
        return
    span = first if first == to else f"{first}..{to}"
    if not found.people:
        note(f"no one earns anything in {span}, now or under the candidate")
        return
    out.print(whatif_table(span, found.people))
    out.print(shown(totals))


def month_flag(flag: str, value: str) -> str:
    """A ``YYYY-MM`` flag's value, or an error that names the flag."""
    from stream.periods import check_period

    try:
        return check_period(value)
    except CrmbonusError as error:
        raise CrmbonusError(f"{flag}: {error}") from error


def whatif_table(span: str, people: Sequence[Any]) -> FittedTable:
    """Per person: current, candidate, difference; every column stays at any width (the id folds)."""
    columns = [Column("person", 0, "left", fold=True), Column("current", 0), Column("candidate", 0),
               Column("difference", 0)]
    rows = [[shown(p.person_id), shown(money(p.current_total)), shown(money(p.candidate_total)),
             shown(f"{p.difference:+,.2f}")] for p in people]
    return FittedTable(columns, rows, title=shown(f"What-if {span}: earned"))


@main.command()
@service_options
@topic_options
@click.option("--month", metavar="YYYY-MM", help="Month to generate and settle. Default: last month.")
@click.option("--customers", type=click.IntRange(min=0), default=3000, show_default=True,
              help="Customers in the generated month.")
@click.option("--seed", default=2026, show_default=True, help="Same seed, same month.")
@click.option("--serve", is_flag=True, help="Keep the worker, /leaderboard and /metrics up afterwards.")
@web_options
def demo(broker: str | None, database_url: str | None, plan: str | None, kafka: KafkaSecurity,
         create_topics: bool, partitions: int, replication_factor: int | None, month: str | None, customers: int,
         seed: int, serve: bool, web_port: int, web_host: str, web_insecure: bool) -> None:
    """The main job on the embedded default: a realistic month of CRM activity, end to end.

    Generates dozens of telemarketers and field reps and thousands of customers
    (callbacks, bookings, held and missed appointments, multi-line sales, refunds,
    cancellations, late events, a few invalid lines), publishes it, processes it,
    prints the leaderboard, settles the month and writes the payroll CSV here.
    Without --plan (or CRMBONUS_PLAN) it runs the demo plan, stream/plans/demo.toml: the
    default plan with every programme on (upsells, the KPI bonus, lead points, the gold prize).
    """
    from stream.demo import DemoOutcome, demo_plan, previous_month, run_demo
    from stream.demo_data import DemoConfig
    from stream.periods import check_period

    chosen = check_period(month or previous_month())
    settings = settings_from(broker, database_url, demo_plan(plan), kafka,
                             **web_settings(web_port, web_host, web_insecure, serve),
                             **topic_settings(create_topics, partitions, replication_factor))
    the_plan = bonus_plan(settings)
    if serve:
        check_web_bind(settings.web_host, range(web_port, web_port + 1))
    config = DemoConfig(seed=seed, month=chosen, customers=customers)

    def show(outcome: DemoOutcome) -> None:
        progress.stop()
        report = outcome.report
        note(f"processed {report.published} lines in {report.seconds:.1f}s: {report.stored} events stored, "
             f"{report.duplicates} duplicates ignored, {report.dead_letters} dead letters "
             f"(events in {outcome.events_file})")
        for role, rows in outcome.standings.items():
            out.print(leaderboard_table(chosen, role, rows))
        settled = outcome.settlement
        note(("already settled" if settled.already_closed else "settled") + f" {chosen}: {settled.rows} "
             f"rows, settlement {settled.settlement_id}")
        note(f"payroll file: {outcome.payroll_file.resolve()} (total_bonus {outcome.payroll_total})")
        for line in demo_whatif_lines(outcome.whatif, settings):
            out.print(shown(line), soft_wrap=True)  # a long path is left to the terminal: copied whole
        if serve:
            note(f"serving {settings.web_url}/leaderboard, /api/leaderboard, /metrics and /health "
                 + ("(the token: ?token=... or Authorization: Bearer) " if settings.web_token else "")
                 + f"at {report.broker}; Ctrl-C stops")

    with replay_bars() as (progress, bars):
        note(f"generating {chosen}: {customers} customers, seed {seed}; plan {settings.plan_path} "
             f"({describe_versions(the_plan)}" + (", every programme on; --plan for another)" if plan is None else ")"))
        run_demo(settings, the_plan, config, Path.cwd(), show, bars, serve=serve)


def demo_whatif_lines(whatif: DemoWhatIf, settings: Settings) -> list[str]:
    """The demo's last lines: the month under the candidate share, its cost, and how to ask again."""
    found = whatif.found
    gain = [p.difference for p in found.people if p.difference > 0]
    lose = [p.difference for p in found.people if p.difference < 0]
    lines = ["", f"What-if {found.first}: telemarketer_share {whatif.share} instead of {whatif.share_now}",
             f"  earned now {money(found.current_total)}, under the candidate {money(found.candidate_total)}",
             f"  cost {found.difference:+,.2f}: {len(gain)} people gain {money(sum(gain, Decimal(0)))}, "
             f"{len(lose)} lose {money(-sum(lose, Decimal(0)))}"]
    if whatif.candidate_file is not None:
        path = whatif.candidate_file.resolve()
        if path.is_relative_to(Path.cwd()):
            path = path.relative_to(Path.cwd())
        lines.append(f"  ask again: crmbonus whatif --candidate {path} --period {found.first}")
        if settings.database_url:
            lines.append("  (with the same --database-url)")
    return lines


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
