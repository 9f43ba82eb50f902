-- wsgate history, schema 6 (SQLite): a busy batch's payloads go to a payload file
-- beside the database (`<database>-payloads/<name>`), appended in one write, and
-- its segments keep their index here and say where their payloads are (`file`,
-- `file_offset`, `file_len`). Through SQLite, every payload byte was copied into
-- a page, checksummed, written to the WAL and copied again by the checkpoint: most
-- of the writer's time at 2 M frames/s. Segments written before, and those of
-- light batches, keep their payloads in `payloads` (`file` NULL).
--
-- A file is named at random and listed here only once its writer holds a lock on
-- it; retention deletes a file no segment refers to unless a writer still holds
-- it (`sqlite/payload_files.rs`).
CREATE TABLE payload_files (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
ALTER TABLE message_segments ADD COLUMN file INTEGER;
ALTER TABLE message_segments ADD COLUMN file_offset INTEGER;
ALTER TABLE message_segments ADD COLUMN file_len INTEGER;
CREATE INDEX message_segments_by_file ON message_segments (file) WHERE file IS NOT NULL;
