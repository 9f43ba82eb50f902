-- wsgate history, schema 4 (SQLite): shared logs. A relay publication is stored once,
-- as an entry of its room's log, however many members received it; each member's
-- history holds runs of deliveries that refer to the log (shared.rs reads them back
-- as messages). One publication to 1 000 members is one entry, not 1 000 messages.

-- `log` is the log's UUIDv7 (16 bytes); a room emptied and made again starts a new
-- one, its offsets from 1 again. Keyed by (log, offset): a run reads a range of it.
CREATE TABLE log_entries (
    log       BLOB NOT NULL,
    "offset"  INTEGER NOT NULL,
    opcode    INTEGER NOT NULL,
    size      INTEGER NOT NULL,
    at        INTEGER NOT NULL,
    truncated INTEGER NOT NULL,
    payload   BLOB NOT NULL,
    PRIMARY KEY (log, "offset")
) WITHOUT ROWID;
CREATE INDEX log_entries_at ON log_entries (at);

-- A session's messages first_seq .. first_seq + count - 1 are the log's entries
-- first_offset .. first_offset + count - 1, each sent gateway_to_client.
CREATE TABLE delivery_runs (
    sid          INTEGER NOT NULL,
    first_seq    INTEGER NOT NULL,
    count        INTEGER NOT NULL,
    log          BLOB NOT NULL,
    first_offset INTEGER NOT NULL,
    PRIMARY KEY (sid, first_seq)
) WITHOUT ROWID;
-- Retention keeps an entry while a run refers to it.
CREATE INDEX delivery_runs_by_log ON delivery_runs (log, first_offset);
