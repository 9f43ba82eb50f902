-- wsgate history, schema 3 (SQLite): instance leases (lease.rs). A running gateway
-- holds the row of its instance name and renews `expires_at`; the restart rule only
-- closes open sessions whose instance has no row here, or whose row is gone.
-- Sessions written before this schema have no lease: they count as abandoned.
CREATE TABLE instance_leases (
    instance   TEXT PRIMARY KEY,
    run_id     BLOB NOT NULL,     -- UUIDv7, 16 bytes
    host       TEXT NOT NULL,
    pid        INTEGER NOT NULL,
    started_at INTEGER NOT NULL,  -- Unix microseconds, like every time here
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
