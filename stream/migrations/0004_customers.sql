-- One row per customer with a version that every recomputation of the customer bumps.
-- Taking the row (INSERT .. ON CONFLICT DO UPDATE) serialises two workers on one customer,
-- and the version tells a worker whether its in-memory copy of the customer is current.
CREATE TABLE customers (
    customer_id  text PRIMARY KEY,
    version      bigint NOT NULL
);
INSERT INTO customers (customer_id, version) SELECT DISTINCT customer_id, 1 FROM events;
