-- wsgate history, schema 4 (PostgreSQL): messages are written as segments, as in
-- SQLite's schema 5: one row per session per batch (segment.rs: an index of each
-- frame's facts and the payloads back to back), instead of a row each. Histories
-- written before stay in `messages`, read as they were; new frames go here.
--
-- `id` orders segments by arrival, which retention by count uses. A plain sequence,
-- not one caching ids per connection as `messages` did: gateways sharing the history
-- would each take ids from their own block, out of arrival order, and with a row per
-- session per batch there are few enough to number one by one. The counts, bytes and
-- last time are what the restart rule needs without decoding.
--
-- A segment of a few KiB is past TOAST's threshold, so its payloads are compressed as
-- the server is set to (`default_toast_compression`; lz4, where the server has it,
-- costs less to write than the default pglz). A row per frame was mostly too small
-- for TOAST to compress at all.
CREATE TABLE message_segments (
    id         bigserial PRIMARY KEY,
    session_id uuid NOT NULL,
    first_seq  bigint NOT NULL,
    last_seq   bigint NOT NULL,
    frames     bigint NOT NULL,
    msgs_in    bigint NOT NULL,
    msgs_out   bigint NOT NULL,
    bytes_in   bigint NOT NULL,
    bytes_out  bigint NOT NULL,
    last_at    bigint NOT NULL,
    idx        bytea NOT NULL,
    payloads   bytea NOT NULL
);
CREATE INDEX message_segments_by_session ON message_segments (session_id, first_seq);
