"""crmbonus_reader, the role Grafana logs in as, may read the reporting tables and do nothing else
(stream/migrations/0007_reader_role.sql, deploy/postgres/init/10-crmbonus-reader.sh).

Tried as an attacker with Grafana's datasource would: every write, lock, DDL, trigger change,
server-side file or program access and every raw or bookkeeping table is refused with
insufficient_privilege (42501), the privilege check, not a trigger's exception (P0001) that a
role holding UPDATE would meet; and every SQL query of the Grafana leaderboard dashboard
(extracted by test_dashboard_sql.py) runs as the role with the superuser's results.

Roles are server-wide and this server is shared by every test database (and, with
CRMBONUS_TEST_DATABASE_URL, maybe by other runs): `crmbonus_reader` is created, by the real init
script, only when missing (runs take turns under an advisory lock), and never dropped (other
databases may hold grants to it). The tests
log in as a login role of their own, unique to the run, a NOINHERIT member of crmbonus_reader that
`SET ROLE`s to it, so that every check is against crmbonus_reader's privileges alone; when this
run created crmbonus_reader (it knows the password), the same refusals are also tried logged in
as crmbonus_reader itself, with its read-only login default switched off, as an attacker would.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import pytest

from stream import db
from tests.examples import ROOT
from tests.integration.conftest import drop_database, with_database
from tests.integration.test_dashboard_sql import dashboard_queries, load_leaderboard, seed

pytestmark = pytest.mark.integration

READER = "crmbonus_reader"
INIT_SCRIPT = ROOT / "deploy" / "postgres" / "init" / "10-crmbonus-reader.sh"
MIGRATION = db.MIGRATIONS_DIR / "0007_reader_role.sql"
INSUFFICIENT_PRIVILEGE = "42501"
ROLE_LOCK_KEY = 0x63726D72  # any constant: the same in every run that may make the role

#: What the reader may SELECT, and nothing else anywhere (the migration's comment says why).
REPORTING = {"bonus_running", "bonus_settled", "periods_closed", "bonus_adjustments", "credits"}
#: SPEC section 14's reporting tables, granted when an earlier migration created them.
OPTIONAL_REPORTING = {"lead_points", "kpi_scores"}
NOT_READABLE = ["events", "dead_letters", "consumer_progress", "customers", "credit_totals",
                "ledger_rebuilds", "schema_migrations"]


def as_user(url: str, user: str, password: str) -> str:
    """`url` logging in as `user` (host, port, database and query kept)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"))


def psql_dir() -> Path | None:
    """The directory of a psql 15+ (the init script's \\getenv): the embedded server's, else PATH's."""
    try:
        from pgserver._commands import POSTGRES_BIN_PATH
    except ImportError:
        pass
    else:
        if (Path(POSTGRES_BIN_PATH) / "psql").is_file():
            return Path(POSTGRES_BIN_PATH)
    found = shutil.which("psql")
    return Path(found).parent if found else None


@dataclass
class Reader:
    """How to be crmbonus_reader on the test server."""

    member: str                  # this run's login role: NOINHERIT member of crmbonus_reader
    member_password: str
    reader_password: str | None  # crmbonus_reader's own, when this run created it

    async def connect(self, url: str, direct: bool = False) -> asyncpg.Connection:
        """A connection whose current_user is crmbonus_reader, read-write transactions allowed."""
        if direct:
            assert self.reader_password is not None
            conn = await asyncpg.connect(as_user(url, READER, self.reader_password))
            # the login default is read-only transactions; an attacker switches that off first
            assert await conn.fetchval("SHOW default_transaction_read_only") == "on"
        else:
            conn = await asyncpg.connect(as_user(url, self.member, self.member_password))
            await conn.execute(f'SET ROLE "{READER}"')
        await conn.execute("SET default_transaction_read_only = off")
        assert await conn.fetchval("SELECT current_user") == READER
        return conn


async def reader_exists(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)", READER))


@pytest.fixture(scope="module")
async def reader(pg_server_url: str) -> AsyncIterator[Reader]:
    """crmbonus_reader exists (made by the init script if missing) and this run has a login into it."""
    admin = await asyncpg.connect(pg_server_url)
    member = f"crmbonus_reader_test_{uuid.uuid4().hex[:12]}"
    try:
        reader_password = None
        # runs sharing the server take turns here, so that one makes the role and knows its password
        await admin.execute("SELECT pg_advisory_lock($1)", ROLE_LOCK_KEY)
        if not await reader_exists(admin):
            bin_dir = psql_dir()
            if bin_dir is None:
                pytest.skip("no psql to run deploy/postgres/init/10-crmbonus-reader.sh with")
            password = secrets.token_hex(16)
            env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                   "POSTGRES_USER": urlsplit(pg_server_url).username or "postgres",
                   "POSTGRES_DB": pg_server_url, "CRMBONUS_GRAFANA_DB_PASSWORD": password}
            done = await asyncio.to_thread(subprocess.run, ["bash", str(INIT_SCRIPT)], env=env,
                                           capture_output=True, text=True, timeout=60)
            if done.returncode != 0:
                raise AssertionError(f"{INIT_SCRIPT.name} failed:\n{done.stdout}\n{done.stderr}")
            reader_password = password
        await admin.execute("SELECT pg_advisory_unlock($1)", ROLE_LOCK_KEY)
        member_password = secrets.token_hex(16)
        await admin.execute(f"CREATE ROLE \"{member}\" LOGIN NOINHERIT PASSWORD '{member_password}' "
                            f'IN ROLE "{READER}"')
        try:
            yield Reader(member, member_password, reader_password)
        finally:
            await admin.execute(f'DROP ROLE IF EXISTS "{member}"')
    finally:
        await admin.close()


@pytest.fixture
async def reader_db(pg_server_url: str, reader: Reader) -> AsyncIterator[str]:
    """A fresh database migrated (stream.db.migrate, via a pool) while crmbonus_reader exists."""
    url = with_database(pg_server_url, f"t_{uuid.uuid4().hex[:12]}")
    admin = await asyncpg.connect(pg_server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{urlsplit(url).path[1:]}"')
    finally:
        await admin.close()
    try:
        pool = await db.create_pool(url)
        try:
            applied = await db.migrate(pool)
        finally:
            await pool.close()
        assert MIGRATION.stem in applied
        yield url
    finally:
        await drop_database(pg_server_url, url)


MODES = ["member", "direct"]


@pytest.fixture(params=MODES)
def connect_as_reader(request: pytest.FixtureRequest, reader: Reader) -> Callable[[str], Awaitable[asyncpg.Connection]]:
    """member: this run's login, SET ROLE crmbonus_reader; direct: log in as crmbonus_reader."""
    direct = request.param == "direct"
    if direct and reader.reader_password is None:
        pytest.skip("crmbonus_reader existed before this run, which does not know its password")

    def connect(url: str) -> Awaitable[asyncpg.Connection]:
        return reader.connect(url, direct=direct)

    return connect


SETTLED = ("2026-10", "fr-ann", "field_rep", 9, Decimal("9999.00"), 0, 0, Decimal("399.95"), Decimal("0.00"),
           Decimal("0.00"), Decimal("399.95"))


async def seed_settled(conn: asyncpg.Connection) -> None:
    """A closed month with one settled row, as `crmbonus settle` leaves it."""
    settlement = uuid.uuid4()
    await conn.execute("INSERT INTO periods_closed (period, settlement_id, settled_at) VALUES ($1, $2, now())",
                       SETTLED[0], settlement)
    await conn.execute(
        "INSERT INTO bonus_settled (settlement_id, settled_at, period, person_id, role, cross_sell_count,"
        " cross_sell_amount, appointments_held, appointments_converted, cross_sell_bonus, appointment_bonus,"
        " prior_adjustments, total_bonus, updated_at)"
        " VALUES ($1, now(), $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, now())", settlement, *SETTLED)


async def settled_state(conn: asyncpg.Connection) -> list[tuple[object, ...]]:
    rows = await conn.fetch("SELECT period, person_id, total_bonus FROM bonus_settled ORDER BY 1, 2")
    triggers = await conn.fetch("SELECT tgname, tgenabled FROM pg_trigger WHERE NOT tgisinternal"
                                " AND tgrelid IN ('bonus_settled'::regclass, 'periods_closed'::regclass,"
                                " 'bonus_adjustments'::regclass) ORDER BY 1")
    return [tuple(r) for r in rows] + [tuple(t) for t in triggers]


# Each statement as the reader, and what proves it refused: the privilege check, 42501.
REFUSED = {
    # payroll's immutable rows: refused before any trigger (P0001) gets to refuse it
    "update bonus_settled": "UPDATE bonus_settled SET total_bonus = 0",
    "delete bonus_settled": "DELETE FROM bonus_settled",
    "truncate bonus_settled": "TRUNCATE bonus_settled",
    "insert bonus_settled": "INSERT INTO bonus_settled SELECT * FROM bonus_settled",
    "update periods_closed": "UPDATE periods_closed SET settled_at = now()",
    "update bonus_running": "UPDATE bonus_running SET total_bonus = total_bonus + 1000",
    "insert bonus_running": "INSERT INTO bonus_running (period, person_id, role, cross_sell_count, cross_sell_amount,"
                            " appointments_held, appointments_converted, cross_sell_bonus, appointment_bonus,"
                            " total_bonus) VALUES ('2026-11', 'x', 'field_rep', 0, 0, 0, 0, 0, 0, 1000000)",
    "delete credits": "DELETE FROM credits",
    "update bonus_adjustments": "UPDATE bonus_adjustments SET amount = 0",
    "plpgsql update": "DO $$ BEGIN UPDATE bonus_settled SET total_bonus = 0; END $$",
    # locks that would stall the worker or settle
    "row locks": "SELECT * FROM bonus_running FOR UPDATE",
    # the triggers that keep settled rows immutable, and the tables themselves
    "disable trigger": "ALTER TABLE bonus_settled DISABLE TRIGGER bonus_settled_immutable",
    "disable all triggers": "ALTER TABLE bonus_settled DISABLE TRIGGER ALL",
    "drop trigger": "DROP TRIGGER bonus_settled_immutable ON bonus_settled",
    "replace trigger function": "CREATE OR REPLACE FUNCTION crmbonus_refuse_change() RETURNS trigger"
                                " LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
    "call trigger function": "SELECT crmbonus_refuse_change()",
    "create trigger": "CREATE TRIGGER t BEFORE INSERT ON bonus_running FOR EACH ROW"
                      " EXECUTE FUNCTION crmbonus_refuse_change()",
    "replica mode": "SET session_replication_role = replica",  # would skip every trigger
    "alter table": "ALTER TABLE bonus_running ADD COLUMN x integer",
    "take ownership": "ALTER TABLE bonus_settled OWNER TO crmbonus_reader",
    "drop table": "DROP TABLE bonus_settled",
    "create index": "CREATE INDEX ON bonus_running (person_id)",
    "comment": "COMMENT ON TABLE bonus_settled IS 'x'",
    # new objects
    "create table": "CREATE TABLE public.x (a integer)",
    "create table unqualified": "CREATE TABLE x AS SELECT * FROM bonus_running",
    "create temp table": "CREATE TEMP TABLE x (a integer)",
    "create view": "CREATE VIEW public.v AS SELECT 1 AS a",
    "create function": "CREATE FUNCTION public.f() RETURNS integer LANGUAGE sql AS 'SELECT 1'",
    "create schema": "CREATE SCHEMA x",
    # the server's programs and files
    "copy to program": "COPY (SELECT 1) TO PROGRAM 'id'",
    "copy from program": "COPY bonus_running FROM PROGRAM 'id'",
    "copy to file": "COPY bonus_running TO '/tmp/crmbonus_reader_copy'",
    "copy from file": "COPY bonus_running FROM '/etc/hostname'",
    "read file": "SELECT pg_read_file('/etc/hostname')",
    "import large object": "SELECT lo_import('/etc/hostname')",
    # other roles
    "become superuser": "SET ROLE postgres",
    "alter own role": "ALTER ROLE crmbonus_reader SUPERUSER",
    # raw payloads and the worker's bookkeeping
    **{f"read {table}": f"SELECT * FROM {table}" for table in NOT_READABLE},
}


async def test_every_refusal_is_insufficient_privilege(reader_db: str, connect_as_reader: Callable[
        [str], Awaitable[asyncpg.Connection]]) -> None:
    admin = await asyncpg.connect(reader_db)
    conn = await connect_as_reader(reader_db)
    try:
        await seed(admin)
        await seed_settled(admin)
        before = await settled_state(admin)
        outcomes = {}
        for name, sql in REFUSED.items():
            try:
                async with conn.transaction():
                    await conn.execute(sql)
                outcomes[name] = "ran"
            except asyncpg.PostgresError as error:
                outcomes[name] = f"{error.sqlstate}: {error}"
        wrong = {name: outcome for name, outcome in outcomes.items()
                 if not outcome.startswith(INSUFFICIENT_PRIVILEGE + ":")}
        assert not wrong, wrong
        # the program and file refusals are the COPY checks themselves, not a missing table grant
        assert "external program" in outcomes["copy to program"], outcomes["copy to program"]
        assert "external program" in outcomes["copy from program"], outcomes["copy from program"]
        # a lock above ACCESS SHARE on payroll's table: refused too (inside a transaction, as LOCK must be)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with conn.transaction():
                await conn.execute("LOCK TABLE bonus_settled IN ACCESS EXCLUSIVE MODE")
        assert await settled_state(admin) == before
    finally:
        await conn.close()
        await admin.close()


async def test_the_reader_reads_the_reporting_tables(reader_db: str, connect_as_reader: Callable[
        [str], Awaitable[asyncpg.Connection]]) -> None:
    admin = await asyncpg.connect(reader_db)
    conn = await connect_as_reader(reader_db)
    try:
        await seed(admin)
        await seed_settled(admin)
        for table in sorted(REPORTING):
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == await admin.fetchval(
                f"SELECT count(*) FROM {table}"), table
        assert await conn.fetchval("SELECT total_bonus FROM bonus_settled") == SETTLED[-1]
    finally:
        await conn.close()
        await admin.close()


@pytest.mark.parametrize("role", ["telemarketer", "field_rep", None], ids=["telemarketer", "field_rep", "All"])
async def test_every_leaderboard_dashboard_query_runs_as_the_reader(reader_db: str, connect_as_reader: Callable[
        [str], Awaitable[asyncpg.Connection]], role: str | None) -> None:
    """The queries test_dashboard_sql.py checks the results of, as Grafana's datasource sends them."""
    queries = dashboard_queries(load_leaderboard(), role)
    assert len(queries) == 6  # the period variable and five panels
    admin = await asyncpg.connect(reader_db)
    conn = await connect_as_reader(reader_db)
    try:
        await seed(admin)
        for key, sql in queries.items():
            rows = await conn.fetch(sql)
            assert rows, key
            assert [tuple(r) for r in rows] == [tuple(r) for r in await admin.fetch(sql)], key
    finally:
        await conn.close()
        await admin.close()


async def test_privileges_are_exactly_select_on_the_reporting_tables(reader_db: str) -> None:
    """Not only the statements tried above: every privilege on every object of the schema."""
    admin = await asyncpg.connect(reader_db)
    try:
        version = await admin.fetchval("SELECT current_setting('server_version_num')::int")
        table_privileges = ["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"]
        if version >= 170000:
            table_privileges.append("MAINTAIN")
        relations = await admin.fetch(
            "SELECT c.oid, c.relname, c.relkind FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace"
            " AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')")
        held = {}
        for rel in relations:
            if rel["relkind"] == "S":
                privileges = [p for p in ("USAGE", "SELECT", "UPDATE")
                              if await admin.fetchval("SELECT has_sequence_privilege($1, $2::oid, $3)",
                                                      READER, rel["oid"], p)]
            else:
                privileges = [p for p in table_privileges
                              if await admin.fetchval("SELECT has_table_privilege($1, $2::oid, $3)",
                                                      READER, rel["oid"], p)]
            columns = await admin.fetchval(
                "SELECT count(*) FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped"
                " AND has_column_privilege($2, attrelid, attnum, 'INSERT, UPDATE, REFERENCES')", rel["oid"], READER)
            if privileges or columns:
                held[rel["relname"]] = privileges + ([f"columns: {columns}"] if columns else [])
        tables = {rel["relname"] for rel in relations}
        expected_tables = REPORTING | (OPTIONAL_REPORTING & tables)
        assert held == {name: ["SELECT"] for name in expected_tables}

        database = await admin.fetchval("SELECT current_database()")
        assert await admin.fetchval("SELECT has_database_privilege($1, $2, 'CONNECT')", READER, database)
        for privilege in ("CREATE", "TEMPORARY"):
            assert not await admin.fetchval("SELECT has_database_privilege($1, $2, $3)", READER, database,
                                            privilege), privilege
        assert await admin.fetchval("SELECT has_schema_privilege($1, current_schema(), 'USAGE')", READER)
        assert not await admin.fetchval("SELECT has_schema_privilege($1, current_schema(), 'CREATE')", READER)
        # crmbonus's trigger functions, and any function that would run with its owner's rights
        functions = await admin.fetch("SELECT oid::regprocedure::text AS name, prosecdef FROM pg_proc"
                                      " WHERE pronamespace = current_schema()::regnamespace")
        names = {f["name"] for f in functions}
        assert names >= {"crmbonus_refuse_change()", "crmbonus_refuse_settled_adjustment()"}
        for function in functions:
            if function["prosecdef"] or function["name"].startswith("crmbonus_"):
                assert not await admin.fetchval("SELECT has_function_privilege($1, $2, 'EXECUTE')", READER,
                                                function["name"]), function["name"]

        role = await admin.fetchrow("SELECT * FROM pg_roles WHERE rolname = $1", READER)
        assert not any(role[flag] for flag in ("rolsuper", "rolcreaterole", "rolcreatedb", "rolreplication",
                                               "rolbypassrls")), dict(role)
        owned = await admin.fetchval("SELECT count(*) FROM pg_class WHERE relowner = $1", role["oid"])
        assert owned == 0
    finally:
        await admin.close()


async def test_the_init_script_makes_a_login_with_read_only_defaults(reader: Reader, pg_server_url: str) -> None:
    if reader.reader_password is None:
        pytest.skip("crmbonus_reader existed before this run: made by someone else's script")
    admin = await asyncpg.connect(pg_server_url)
    try:
        role = await admin.fetchrow("SELECT * FROM pg_roles WHERE rolname = $1", READER)
        assert role["rolcanlogin"] and role["rolconnlimit"] == 10
        assert sorted(role["rolconfig"]) == ["default_transaction_read_only=on",
                                             "idle_in_transaction_session_timeout=60s", "statement_timeout=30s"]
        memberships = await admin.fetchval("SELECT count(*) FROM pg_auth_members WHERE member = $1", role["oid"])
        assert memberships == 0
    finally:
        await admin.close()
    conn = await asyncpg.connect(as_user(pg_server_url, READER, reader.reader_password))
    try:
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):  # the login default, before any privilege
            await conn.execute("CREATE TEMP TABLE x (a integer)")
        assert await conn.fetchval("SHOW statement_timeout") == "30s"
    finally:
        await conn.close()


def acls_query() -> str:
    return ("SELECT 'database', datname::text, datacl::text FROM pg_database WHERE datname = current_database()"
            " UNION ALL SELECT 'schema', nspname::text, nspacl::text FROM pg_namespace"
            " UNION ALL SELECT 'relation', oid::regclass::text, relacl::text FROM pg_class"
            " WHERE relnamespace = current_schema()::regnamespace"
            " UNION ALL SELECT 'function', oid::regprocedure::text, proacl::text FROM pg_proc"
            " WHERE pronamespace = current_schema()::regnamespace ORDER BY 1, 2")


async def test_the_migration_is_idempotent(reader_db: str) -> None:
    """Running 0007 again (README: how an existing database gets its grants) changes nothing more."""
    admin = await asyncpg.connect(reader_db)
    try:
        before = await admin.fetch(acls_query())
        await admin.execute(MIGRATION.read_text())
        assert await admin.fetch(acls_query()) == before
    finally:
        await admin.close()


async def test_a_database_without_the_role_is_unchanged(pg_url: str) -> None:
    """The migration with its role name swapped for one that exists nowhere: no grant, no revoke."""
    text = MIGRATION.read_text()
    assert text.count(f"'{READER}'") == 1, "the role is named once, in the DO block's constant"
    missing = f"crmbonus_nobody_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_url)
    try:
        assert not await admin.fetchval("SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)", missing)
        before = await admin.fetch(acls_query())
        await admin.execute(text.replace(f"'{READER}'", f"'{missing}'"))
        assert await admin.fetch(acls_query()) == before
    finally:
        await admin.close()
