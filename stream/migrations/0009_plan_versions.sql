-- SPEC section 12: the plan versions the tables were computed under, so that a worker started
-- with other plans finds the periods whose version changed and recomputes them
-- (stream/plan_changes.py). One row per version; `plan_state` is the set's fingerprint and a
-- generation that every batch checks, so that a worker still running with the plans it started
-- with stops when a later worker recomputed under others ("the one started last wins").

CREATE TABLE plan_versions (
    effective_from  text,            -- null: a single file, in force for every period
    version         text NOT NULL PRIMARY KEY,
    digest          text NOT NULL,   -- sha256 of the version's content as parsed
    timezone        text NOT NULL,
    source          text NOT NULL,   -- the file it came from, for messages
    stored_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE plan_state (
    only_row     boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    fingerprint  text NOT NULL,      -- the versions' (effective_from, version, digest), as JSON
    generation   bigint NOT NULL,
    changed_at   timestamptz NOT NULL DEFAULT now()
);
