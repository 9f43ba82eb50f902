-- wsgate history, schema 5 (SQLite): messages are written as segments, one row per
-- session per batch (segment.rs: an index of each frame's facts and the payloads
-- back to back), instead of a row each. Histories written before stay in `messages`
-- and `message_spans`, read as they were; new frames go here.
--
-- `id` orders segments by arrival, which retention by count uses. The counts, bytes
-- and last time are what the restart rule needs without decoding.
CREATE TABLE message_segments (
    id        INTEGER PRIMARY KEY,
    sid       INTEGER NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq  INTEGER NOT NULL,
    frames    INTEGER NOT NULL,
    msgs_in   INTEGER NOT NULL,
    msgs_out  INTEGER NOT NULL,
    bytes_in  INTEGER NOT NULL,
    bytes_out INTEGER NOT NULL,
    last_at   INTEGER NOT NULL,
    idx       BLOB NOT NULL,
    payloads  BLOB NOT NULL
);
CREATE INDEX message_segments_by_session ON message_segments (sid, first_seq);
