-- Every valid event once (SPEC section 3), invalid input as dead letters, and the
-- consumer's progress, all written in the batch's one transaction.

CREATE TABLE events (
    event_id     text PRIMARY KEY,                -- the idempotency key
    event_type   text NOT NULL,
    customer_id  text NOT NULL,
    occurred_at  timestamptz NOT NULL,
    sale_id      text,                            -- set for `sale` events only
    raw          bytea NOT NULL,                  -- the message value exactly as received
    topic        text NOT NULL,
    "partition"  integer NOT NULL,
    "offset"     bigint NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_customer_idx ON events (customer_id);
-- A second `sale` with an existing sale_id is a dead letter (duplicate_sale_id).
CREATE UNIQUE INDEX events_sale_id_idx ON events (sale_id) WHERE event_type = 'sale';

CREATE TABLE dead_letters (
    id           bigserial PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    topic        text NOT NULL,
    "partition"  integer NOT NULL,
    "offset"     bigint NOT NULL,
    key          bytea,
    payload      bytea NOT NULL,                  -- the raw bytes, whatever they contain
    reason       text NOT NULL CHECK (reason IN ('invalid_json', 'schema_violation',
                     'unknown_event_type', 'conflicting_duplicate', 'duplicate_sale_id')),
    detail       text NOT NULL
);
-- Redelivery of the same message (same place, same bytes) adds no second dead letter.
CREATE UNIQUE INDEX dead_letters_message_idx
    ON dead_letters (topic, "partition", "offset", md5(payload));

-- Where each consumer group has got to, committed with the results it produced.
CREATE TABLE consumer_progress (
    group_id     text NOT NULL,
    topic        text NOT NULL,
    "partition"  integer NOT NULL,
    next_offset  bigint NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, "partition")
);
