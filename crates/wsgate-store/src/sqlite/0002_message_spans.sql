-- wsgate history, schema 2 (SQLite): messages are found through spans, not a per-row
-- index.
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

-- Messages written by schema 1 were not grouped by session: each gets a span of its
-- own, which reads exactly as the old index did.
INSERT INTO message_spans (first_id, last_id, sid, first_seq, last_seq)
    SELECT id, id, sid, seq, seq FROM messages;
DROP INDEX messages_by_session;
