-- wsgate history, schema 1 (SQLite). Times are Unix microseconds; ids are UUIDv7
-- (16 bytes), which sort by creation time.
-- `sid` is the row's integer key: messages refer to it rather than to the 16-byte id,
-- which keeps the message index small and its comparisons cheap.
CREATE TABLE sessions (
    sid              INTEGER PRIMARY KEY,
    id               BLOB NOT NULL UNIQUE,
    instance         TEXT NOT NULL,
    kind             TEXT NOT NULL,
    route            TEXT NOT NULL,
    path             TEXT NOT NULL,
    client_addr      TEXT,
    headers          TEXT NOT NULL,   -- JSON [[name, value], ...], credentials redacted
    subprotocol      TEXT,
    upstream         TEXT,
    state            TEXT NOT NULL,
    opened_at        INTEGER NOT NULL,
    closed_at        INTEGER,
    close_code       INTEGER,
    close_reason     TEXT,
    initiator        TEXT,
    failure          TEXT,
    failure_kind     TEXT,
    http_status      INTEGER,
    messages_in      INTEGER NOT NULL DEFAULT 0,
    messages_out     INTEGER NOT NULL DEFAULT 0,
    bytes_in         INTEGER NOT NULL DEFAULT 0,
    bytes_out        INTEGER NOT NULL DEFAULT 0,
    messages_dropped INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX sessions_open ON sessions (instance) WHERE closed_at IS NULL;
CREATE INDEX sessions_closed_at ON sessions (closed_at) WHERE closed_at IS NOT NULL;

CREATE TABLE events (
    session_id BLOB NOT NULL,
    seq        INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    kind       TEXT NOT NULL,        -- lifecycle | error
    state      TEXT,
    error_kind TEXT,
    detail     TEXT NOT NULL,        -- JSON
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;

-- The rowid orders messages by arrival, which retention by count uses.
CREATE TABLE messages (
    id         INTEGER PRIMARY KEY,
    sid        INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    direction  TEXT NOT NULL,
    opcode     INTEGER NOT NULL,
    fin        INTEGER NOT NULL,
    size       INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    injected   INTEGER NOT NULL,
    truncated  INTEGER NOT NULL,
    payload    BLOB NOT NULL
);
CREATE INDEX messages_by_session ON messages (sid, seq);
