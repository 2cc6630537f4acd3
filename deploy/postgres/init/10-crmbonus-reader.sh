#!/usr/bin/env bash
# Creates crmbonus_reader, the read-only login Grafana uses (stream/migrations/0007_reader_role.sql
# grants it SELECT on the reporting tables when the worker migrates the database).
#
# Run by the official postgres image from /docker-entrypoint-initdb.d (docker-compose.yml mounts
# this directory there) once, when the data directory is first initialised, as POSTGRES_USER on
# POSTGRES_DB. The password comes from the environment, CRMBONUS_GRAFANA_DB_PASSWORD; it is never
# written to a file or put on a command line (psql 15+ reads it with \getenv; the server stores
# only its SCRAM hash). An existing volume never runs this again: README, section Security, says what to do.
#
# Also usable by hand against any server: POSTGRES_USER, POSTGRES_DB (a database name or a
# postgresql:// URL) and the usual PG* variables say where. It is idempotent: an existing role gets
# its attributes and the current password again. (Plain `set -Eeo pipefail`, the entrypoint's own:
# where the file lost its executable bit, the entrypoint sources it instead of running it.)
set -Eeo pipefail

if [[ -z "${CRMBONUS_GRAFANA_DB_PASSWORD:-}" ]]; then
    echo "10-crmbonus-reader.sh: CRMBONUS_GRAFANA_DB_PASSWORD is not set: no crmbonus_reader role" >&2
    exit 1
fi

psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password \
     --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" <<'SQL'
\getenv reader_password CRMBONUS_GRAFANA_DB_PASSWORD
SELECT 'CREATE ROLE crmbonus_reader'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'crmbonus_reader') \gexec
-- A login and nothing more: no superuser, no CREATEDB/CREATEROLE, no replication, no RLS bypass,
-- a member of no role. A few connections are plenty for Grafana.
ALTER ROLE crmbonus_reader WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
    NOBYPASSRLS INHERIT CONNECTION LIMIT 10 PASSWORD :'reader_password';
-- Login defaults, a convenience rather than the boundary (the grants are; a session may SET these
-- back): read-only transactions, and no query or idle transaction holding locks for long.
ALTER ROLE crmbonus_reader SET default_transaction_read_only = on;
ALTER ROLE crmbonus_reader SET statement_timeout = '30s';
ALTER ROLE crmbonus_reader SET idle_in_transaction_session_timeout = '60s';
SQL
