-- wsgate history, schema 2 (SQLite): messages are found through spans, not a per-row
-- index, and a message's direction is a small integer.
--
-- A span is one session's messages in one batch. The writer gives each batch's rows
-- to one session after another, so a span is a contiguous run of message ids:
-- finding a session's messages is a walk over its spans (few: one per batch it had
-- traffic in) and a rowid range scan in each. That replaces the `(sid, seq)` index,
-- whose insert was as much work as the row itself: the writer now does one B-tree
-- insert per message and two per span.
--
-- `first_id` is the rowid, so spans are in message-id order, which retention by
-- count uses to drop the spans whose messages are gone.
CREATE TABLE message_spans (
    first_id  INTEGER PRIMARY KEY,
    last_id   INTEGER NOT NULL,
    sid       INTEGER NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq  INTEGER NOT NULL
);
CREATE INDEX message_spans_by_session ON message_spans (sid, first_seq);

-- Direction codes (sqlite.rs, `direction_code`; never renumbered):
--   0 client_to_upstream, 1 upstream_to_client, 2 client_to_gateway, 3 gateway_to_client.
-- A text direction cost the writer a sixth of its time: SQLite copies every bound
-- string into a buffer of its own.
CREATE TABLE messages_v2 (
    id         INTEGER PRIMARY KEY,
    sid        INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    direction  INTEGER NOT NULL,
    opcode     INTEGER NOT NULL,
    fin        INTEGER NOT NULL,
    size       INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    injected   INTEGER NOT NULL,
    truncated  INTEGER NOT NULL,
    payload    BLOB NOT NULL
);
INSERT INTO messages_v2
    SELECT id, sid, seq,
           CASE direction WHEN 'client_to_upstream' THEN 0 WHEN 'upstream_to_client' THEN 1
                          WHEN 'client_to_gateway' THEN 2 ELSE 3 END,
           opcode, fin, size, at, injected, truncated, payload
    FROM messages;
DROP TABLE messages;
ALTER TABLE messages_v2 RENAME TO messages;

-- Messages written by schema 1 were not grouped by session: each gets a span of its
-- own, which reads exactly as the old index did.
INSERT INTO message_spans (first_id, last_id, sid, first_seq, last_seq)
    SELECT id, id, sid, seq, seq FROM messages;
