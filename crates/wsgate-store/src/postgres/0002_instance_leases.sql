-- wsgate history, schema 2 (PostgreSQL): instance leases (lease.rs), as in the
-- SQLite schema 3. `expires_at` is set and compared on the server's clock, so
-- gateways on hosts whose clocks disagree still agree on what has expired.
CREATE TABLE instance_leases (
    instance   text PRIMARY KEY,
    run_id     uuid NOT NULL,
    host       text NOT NULL,
    pid        bigint NOT NULL,
    started_at bigint NOT NULL,
    expires_at bigint NOT NULL
);
