-- The read-only role that Grafana (and anything else that only reports) logs in as:
-- crmbonus_reader, SELECT on the reporting tables and nothing else (SPEC sections 6, 7, 9, 14).
--
-- The role is server-wide and holds a password, so no migration creates it: the compose
-- Postgres creates it at its first start (deploy/postgres/init/10-crmbonus-reader.sh), a DBA
-- does elsewhere. This migration only grants, and only when the role exists: a database
-- without it is left exactly as it was. The block is idempotent, so a role created after the
-- migration ran gets its grants by running this file again as the tables' owner
-- (`psql -f stream/migrations/0007_reader_role.sql`; README, section Security).
--
-- What is granted, and why:
--   bonus_running       the Grafana leaderboard dashboard (deploy/grafana/dashboards/leaderboard.json:
--                       its only table), the leaderboards and the export
--   bonus_settled       the payroll export: the immutable copy of a closed month
--   periods_closed      which months are closed, and their settlement ids
--   bonus_adjustments   the audit of prior-period adjustments (statements, payroll questions)
--   credits             the statement trace: why every cent was credited
--   lead_points, kpi_scores   SPEC section 14's reporting tables, when an earlier migration made them
-- Never granted: events and dead_letters (raw payloads, exactly as received, whatever they
-- contain), consumer_progress, customers, credit_totals, ledger_rebuilds and schema_migrations
-- (the worker's own bookkeeping: nothing a report reads, nothing a reader should see). No
-- INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES or TRIGGER on anything: bonus_settled's
-- immutability must not rest on its trigger alone, and a role that may not UPDATE cannot take
-- row locks (SELECT ... FOR UPDATE) or table locks above ACCESS SHARE that would stall the worker.
--
-- RULE FOR LATER MIGRATIONS: a migration that adds a table a report reads grants SELECT on it
-- to crmbonus_reader itself, with the same IF EXISTS block. ALTER DEFAULT PRIVILEGES is not
-- used and is not enough: it would hand the reader every future table, raw ones included, and
-- it binds only tables created by the role that issued it. A table nobody grants stays unread.
-- A migration that adds a function revokes EXECUTE on it from PUBLIC, as below (a SECURITY
-- DEFINER one must: it would run with its owner's rights).
--
-- Also revoked from PUBLIC, i.e. from every role without a grant of its own, as far as the
-- role running the migration may (owner of the database / schema, or superuser; otherwise
-- skipped, and a DBA does it):
--   TEMPORARY on this database: temporary tables. The worker keeps its own (stream/store.py's
--     incoming_events) as the database owner or superuser; a worker role that is neither needs
--     GRANT TEMPORARY ON DATABASE ... TO it.
--   CREATE on the schema: tables in it (PostgreSQL < 15 grants it to PUBLIC on `public`; 15
--     and later do not, and the REVOKE changes nothing there).
--   EXECUTE on crmbonus's trigger functions (firing a trigger does not check it).
-- What stays with PUBLIC because only a superuser owns it: USAGE on the languages (DO blocks,
-- which run with the caller's own privileges) and EXECUTE on pg_catalog functions. The role's
-- login defaults (read-only transactions, statement timeouts) are set where it is created;
-- they are a convenience, not the boundary: the boundary is the grants here.
DO $$
DECLARE
    reader CONSTANT name := 'crmbonus_reader';
    here CONSTANT name := current_schema();
    reporting CONSTANT text[] := ARRAY['bonus_running', 'bonus_settled', 'periods_closed',
                                       'bonus_adjustments', 'credits'];
    optional CONSTANT text[] := ARRAY['lead_points', 'kpi_scores'];
    tbl text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = reader) THEN
        RETURN;
    END IF;

    EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), reader);
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', here, reader);
    FOREACH tbl IN ARRAY reporting LOOP
        EXECUTE format('GRANT SELECT ON TABLE %I.%I TO %I', here, tbl, reader);
    END LOOP;
    FOREACH tbl IN ARRAY optional LOOP
        IF to_regclass(format('%I.%I', here, tbl)) IS NOT NULL THEN
            EXECUTE format('GRANT SELECT ON TABLE %I.%I TO %I', here, tbl, reader);
        END IF;
    END LOOP;

    IF pg_has_role(current_user, (SELECT datdba FROM pg_database WHERE datname = current_database()),
                   'USAGE') THEN
        EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
    END IF;
    IF pg_has_role(current_user, (SELECT nspowner FROM pg_namespace WHERE nspname = here), 'USAGE') THEN
        EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC', here);
    END IF;
    EXECUTE format('REVOKE EXECUTE ON FUNCTION %I.crmbonus_refuse_change(), '
                   '%I.crmbonus_refuse_settled_adjustment() FROM PUBLIC', here, here);
END $$;
