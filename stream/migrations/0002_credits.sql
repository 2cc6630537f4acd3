-- The crediting results (SPEC section 6): the statement trace and the running bonus table.

CREATE TABLE credits (
    id               bigserial PRIMARY KEY,
    period           text NOT NULL,
    person_id        text NOT NULL,
    role             text NOT NULL CHECK (role IN ('telemarketer', 'field_rep')),
    kind             text NOT NULL CHECK (kind IN ('cross_sell', 'appointment_held', 'appointment_converted')),
    customer_id      text NOT NULL,
    sale_id          text,
    line_id          text,
    lead_id          text,
    amount           numeric NOT NULL,            -- exact credited part, never rounded here
    share            numeric NOT NULL,
    touch_event_id   text,
    source_event_id  text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX credits_customer_idx ON credits (customer_id);
CREATE INDEX credits_person_idx ON credits (period, person_id);

-- Exact per-(period, person, role) sums of `credits`, kept by deltas so that a batch
-- never re-aggregates a person's whole month. bonus_running is derived from it.
CREATE TABLE credit_totals (
    period                  text NOT NULL,
    person_id               text NOT NULL,
    role                    text NOT NULL,
    cross_sell_count        integer NOT NULL DEFAULT 0,
    cross_sell_amount       numeric NOT NULL DEFAULT 0,
    appointments_held       integer NOT NULL DEFAULT 0,
    appointments_converted  integer NOT NULL DEFAULT 0,
    PRIMARY KEY (period, person_id, role)
);

CREATE TABLE bonus_running (
    period                  text NOT NULL,
    person_id               text NOT NULL,
    role                    text NOT NULL,
    cross_sell_count        integer NOT NULL,
    cross_sell_amount       numeric(18,2) NOT NULL,
    appointments_held       integer NOT NULL,
    appointments_converted  integer NOT NULL,
    cross_sell_bonus        numeric(18,2) NOT NULL,
    appointment_bonus       numeric(18,2) NOT NULL,
    prior_adjustments       numeric(18,2) NOT NULL DEFAULT 0,
    total_bonus             numeric(18,2) NOT NULL,
    updated_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (period, person_id)
);
CREATE INDEX bonus_running_leaderboard_idx ON bonus_running (period, role, total_bonus DESC);
