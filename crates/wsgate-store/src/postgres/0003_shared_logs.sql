-- wsgate history, schema 3 (PostgreSQL): shared logs, as in SQLite's schema 4. A relay
-- publication is stored once, as an entry of its room's log; each member's history
-- holds runs of deliveries that refer to it (shared.rs reads them back as messages).
CREATE TABLE log_entries (
    log       uuid NOT NULL,
    "offset"  bigint NOT NULL,
    opcode    smallint NOT NULL,
    size      bigint NOT NULL,
    at        bigint NOT NULL,
    truncated boolean NOT NULL,
    payload   bytea NOT NULL,
    PRIMARY KEY (log, "offset")
);
CREATE INDEX log_entries_at ON log_entries (at);

-- A session's messages first_seq .. first_seq + count - 1 are the log's entries
-- first_offset .. first_offset + count - 1, each sent gateway_to_client.
CREATE TABLE delivery_runs (
    session_id   uuid NOT NULL,
    first_seq    bigint NOT NULL,
    count        bigint NOT NULL,
    log          uuid NOT NULL,
    first_offset bigint NOT NULL,
    PRIMARY KEY (session_id, first_seq)
);
CREATE INDEX delivery_runs_by_log ON delivery_runs (log, first_offset);
