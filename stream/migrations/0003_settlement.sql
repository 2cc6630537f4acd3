-- Month close (SPEC section 7): closed periods, their immutable copy, and the adjustments
-- that carry later changes of a closed period into the next open one.

CREATE TABLE periods_closed (
    period         text PRIMARY KEY,
    settlement_id  uuid NOT NULL UNIQUE,
    settled_at     timestamptz NOT NULL
);

CREATE TABLE bonus_settled (
    settlement_id           uuid NOT NULL REFERENCES periods_closed (settlement_id),
    settled_at              timestamptz NOT NULL,
    period                  text NOT NULL,
    person_id               text NOT NULL,
    role                    text NOT NULL,
    cross_sell_count        integer NOT NULL,
    cross_sell_amount       numeric(18,2) NOT NULL,
    appointments_held       integer NOT NULL,
    appointments_converted  integer NOT NULL,
    cross_sell_bonus        numeric(18,2) NOT NULL,
    appointment_bonus       numeric(18,2) NOT NULL,
    prior_adjustments       numeric(18,2) NOT NULL,
    total_bonus             numeric(18,2) NOT NULL,
    updated_at              timestamptz NOT NULL,
    PRIMARY KEY (period, person_id)
);

-- Payroll's rows are never updated or deleted: not by crmbonus, not by hand.
CREATE FUNCTION crmbonus_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% rows are immutable: % refused', TG_TABLE_NAME, TG_OP
        USING HINT = 'late changes are paid as prior_adjustments in the next open period';
END $$;
CREATE TRIGGER bonus_settled_immutable BEFORE UPDATE OR DELETE ON bonus_settled
    FOR EACH ROW EXECUTE FUNCTION crmbonus_refuse_change();
CREATE TRIGGER bonus_settled_no_truncate BEFORE TRUNCATE ON bonus_settled
    FOR EACH STATEMENT EXECUTE FUNCTION crmbonus_refuse_change();
CREATE TRIGGER periods_closed_immutable BEFORE UPDATE OR DELETE ON periods_closed
    FOR EACH ROW EXECUTE FUNCTION crmbonus_refuse_change();

-- The audit of adjustments: what each closed source period carries into a later period.
-- A row is recomputed while its target period is open and frozen once that one is settled.
CREATE TABLE bonus_adjustments (
    source_period  text NOT NULL,
    target_period  text NOT NULL,
    person_id      text NOT NULL,
    role           text NOT NULL,
    amount         numeric(18,2) NOT NULL,   -- earned(source) - paid(source) when last computed
    earned         numeric(18,2) NOT NULL,   -- cross_sell_bonus + appointment_bonus of source, now
    paid           numeric(18,2) NOT NULL,   -- settled row of source + adjustments already settled
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_period, target_period, person_id),
    CHECK (target_period > source_period)
);
CREATE INDEX bonus_adjustments_target_idx ON bonus_adjustments (target_period, person_id);

CREATE FUNCTION crmbonus_refuse_settled_adjustment() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM periods_closed WHERE period = OLD.target_period) THEN
        RAISE EXCEPTION 'adjustment % -> % of % was settled with % and is immutable',
            OLD.source_period, OLD.target_period, OLD.person_id, OLD.target_period;
    END IF;
    IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER bonus_adjustments_settled BEFORE UPDATE OR DELETE ON bonus_adjustments
    FOR EACH ROW EXECUTE FUNCTION crmbonus_refuse_settled_adjustment();
