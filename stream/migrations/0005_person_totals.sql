-- A person credited with both parts of one line (the field rep who also made the touch)
-- counts it once (SPEC section 5.6); per-role sums counted it twice, in the count that
-- feeds the min_count gate. credit_totals becomes one row per (period, person) holding the
-- rules' own tally (stream/bonus.py): counts over distinct lines, and the credited items per
-- role that choose the role shown (SPEC section 6).
--
-- Only the rules can tally, so this migration leaves the table empty and asks for a rebuild:
-- the next worker (or `settle`) refills it from `credits`, recomputes bonus_running and
-- carries a closed month's change into the earliest open one as an adjustment (SPEC
-- section 7), all in one transaction (stream/ledger.py, `rebuild_if_pending`).
DROP TABLE credit_totals;
CREATE TABLE credit_totals (
    period                  text NOT NULL,
    person_id               text NOT NULL,
    cross_sell_count        integer NOT NULL DEFAULT 0,
    cross_sell_amount       numeric NOT NULL DEFAULT 0,
    appointments_held       integer NOT NULL DEFAULT 0,
    appointments_converted  integer NOT NULL DEFAULT 0,
    telemarketer_items      integer NOT NULL DEFAULT 0,
    field_rep_items         integer NOT NULL DEFAULT 0,
    PRIMARY KEY (period, person_id)
);

CREATE TABLE ledger_rebuilds (
    reason        text PRIMARY KEY,
    requested_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO ledger_rebuilds (reason)
SELECT 'migration 0005: a line counts once per person, whatever the roles' WHERE EXISTS (SELECT 1 FROM credits);
