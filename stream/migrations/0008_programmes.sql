-- SPEC sections 13 and 14: upsells, the cross-sell amount gate, lead sharing (points, badges,
-- the gold prize) and the KPI bonus; `plan_version` on the bonus rows (section 12).
--
-- New bonus columns go at the end of the rows, after the version-1 columns, so a payroll
-- reader that takes the version-1 columns by position keeps reading the same figures.

ALTER TABLE bonus_running
    ADD COLUMN upsell_count   integer       NOT NULL DEFAULT 0,
    ADD COLUMN upsell_amount  numeric(18,2) NOT NULL DEFAULT 0,
    ADD COLUMN upsell_bonus   numeric(18,2) NOT NULL DEFAULT 0,
    ADD COLUMN kpi_bonus      numeric(18,2) NOT NULL DEFAULT 0,
    ADD COLUMN prize_bonus    numeric(18,2) NOT NULL DEFAULT 0,
    ADD COLUMN plan_version   text;

ALTER TABLE bonus_settled
    ADD COLUMN upsell_count   integer       NOT NULL DEFAULT 0,
    ADD COLUMN upsell_amount  numeric(18,2) NOT NULL DEFAULT 0,
    ADD COLUMN upsell_bonus   numeric(18,2) NOT NULL DEFAULT 0,
    ADD COLUMN kpi_bonus      numeric(18,2) NOT NULL DEFAULT 0,
    ADD COLUMN prize_bonus    numeric(18,2) NOT NULL DEFAULT 0,
    ADD COLUMN plan_version   text;

-- SPEC section 14: `credits.kind` gains `upsell`.
ALTER TABLE credits DROP CONSTRAINT credits_kind_check;
ALTER TABLE credits ADD CONSTRAINT credits_kind_check
    CHECK (kind IN ('cross_sell', 'upsell', 'appointment_held', 'appointment_converted'));

-- The exact month of a person (stream/bonus.py `Tally`) gains the new programmes' sums.
ALTER TABLE credit_totals
    ADD COLUMN upsell_count     integer NOT NULL DEFAULT 0,
    ADD COLUMN upsell_amount    numeric NOT NULL DEFAULT 0,
    ADD COLUMN kpi_conversions  integer NOT NULL DEFAULT 0,
    ADD COLUMN rating_sum       integer NOT NULL DEFAULT 0,
    ADD COLUMN rating_count     integer NOT NULL DEFAULT 0,
    ADD COLUMN reviews          integer NOT NULL DEFAULT 0,
    ADD COLUMN reviews_passed   integer NOT NULL DEFAULT 0,
    ADD COLUMN prize            numeric NOT NULL DEFAULT 0;

-- What the rules derive per customer besides credits (stream/rules.py `Fact`): a converted
-- appointment counted for the KPI, a lead's point and turnover, a rating, a quality review.
-- Kept, like `credits`, as the rows now in force, so a recomputation writes only its change.
CREATE TABLE customer_facts (
    id           bigserial PRIMARY KEY,
    kind         text NOT NULL,
    scope        text NOT NULL,          -- 'YYYY-MM' (a period) or 'YYYY' (a lead's year)
    person_id    text NOT NULL,
    customer_id  text NOT NULL,
    key          text NOT NULL,          -- lead_id, or the KPI event's event_id
    value        numeric NOT NULL,
    role         text,                   -- person_role of a KPI event
    occurred_at  timestamptz             -- of a KPI event: its latest decides a KPI-only role
);
CREATE INDEX customer_facts_customer_idx ON customer_facts (customer_id);
CREATE INDEX customer_facts_person_idx ON customer_facts (scope, person_id);

-- A lead's year per telemarketer, exact; `lead_points` is what reports read.
CREATE TABLE lead_totals (
    year       integer NOT NULL,
    person_id  text NOT NULL,
    points     integer NOT NULL DEFAULT 0,
    turnover   numeric NOT NULL DEFAULT 0,
    prize      numeric NOT NULL DEFAULT 0,   -- this person's part of the year's gold prize, in cents
    PRIMARY KEY (year, person_id)
);

CREATE TABLE lead_points (
    year       integer NOT NULL,
    person_id  text NOT NULL,
    points     integer NOT NULL,
    turnover   numeric(18,2) NOT NULL,
    badge      text NOT NULL CHECK (badge IN ('none', 'bronze', 'silver')),
    gold       boolean NOT NULL,
    PRIMARY KEY (year, person_id)
);

CREATE TABLE kpi_scores (
    period      text NOT NULL,
    person_id   text NOT NULL,
    component   text NOT NULL,
    metric      text NOT NULL,
    value       numeric,
    attainment  numeric NOT NULL,
    weight      numeric NOT NULL,
    PRIMARY KEY (period, person_id, component)
);

-- Existing databases: facts were never derived, so every customer is computed again from its
-- stored events at the next worker start (stream/ledger.py `rebuild_if_pending`).
INSERT INTO ledger_rebuilds (reason)
SELECT 'migration 0008: derive facts (conversions, lead points) from the stored events'
WHERE EXISTS (SELECT 1 FROM events)
ON CONFLICT DO NOTHING;

-- The reporting tables are read by crmbonus_reader (rule of migration 0007).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'crmbonus_reader') THEN
        GRANT SELECT ON lead_points, kpi_scores TO crmbonus_reader;
    END IF;
END $$;
