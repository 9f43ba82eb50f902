//! SQLite's payload files (`src/sqlite/payload_files.rs`): a busy batch's payloads
//! beside the database, its segments holding where they are. Every frame reads
//! back exactly, from any starting point; another store on the same file reads them
//! and writes its own file; retention cuts and deletes what it should and nothing a
//! writer holds; a damaged file or row is an error; a history written by schema 5
//! migrates in place.

#![allow(clippy::unwrap_used)]
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use wsgate_core::{Direction, SessionId};
use wsgate_store::{Batch, MessageRow, Prune, SessionRow, Store, StoreError, StoreUrl};

mod common;
use common::session_row;

/// Frame `seq` of session `id`: its own bytes (naming both) padded to a length that
/// varies with `seq` (0 to 700 bytes), so that no two frames are alike.
fn payload(id: SessionId, seq: u64) -> Bytes {
    let mut p = format!("{id}#{seq}:").into_bytes();
    p.resize((seq as usize * 37) % 700, b'a' + (seq % 26) as u8);
    Bytes::from(p)
}

fn message(id: SessionId, seq: u64) -> MessageRow {
    let payload = payload(id, seq);
    MessageRow {
        session_id: id,
        seq,
        direction: if seq.is_multiple_of(3) { Direction::UpstreamToClient } else { Direction::ClientToUpstream },
        opcode: if seq.is_multiple_of(5) { 2 } else { 1 },
        fin: true,
        size: payload.len() as u64,
        at: wsgate_store::now(),
        injected: false,
        marks: wsgate_core::Marks::NONE,
        truncated: false,
        payload,
    }
}

struct History {
    _dir: tempfile::TempDir,
    db: PathBuf,
    store: Arc<dyn Store>,
    ids: Vec<SessionId>,
    /// Each session's seqs, as written.
    written: Vec<Vec<u64>>,
}

impl History {
    async fn new(sessions: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("h.db");
        let store = open(&db).await;
        let rows: Vec<SessionRow> = (0..sessions).map(|i| session_row("a", &format!("/s{i}"))).collect();
        let ids = rows.iter().map(|s| s.id).collect();
        store.write(Batch { sessions: rows, ..Default::default() }).await.unwrap();
        Self { _dir: dir, db, store, ids, written: vec![Vec::new(); sessions] }
    }

    /// A batch of `frames` frames, the sessions interleaved unevenly, session 1
    /// skipping every seventh seq (dropped frames).
    fn batch(&mut self, frames: usize) -> Batch {
        let mut messages = Vec::with_capacity(frames);
        for n in 0..frames {
            let i = (n * 5 + n / 3) % self.ids.len();
            let mut seq = self.written[i].last().copied().unwrap_or(0) + 1;
            if i == 1 && seq.is_multiple_of(7) {
                seq += 1;
            }
            messages.push(message(self.ids[i], seq));
            self.written[i].push(seq);
        }
        Batch { messages, ..Default::default() }
    }

    async fn write(&mut self, frames: usize) {
        let b = self.batch(frames);
        self.store.write(b).await.unwrap();
    }

    fn files(&self) -> Vec<PathBuf> {
        files_in(&payload_dir(&self.db))
    }

    fn sql(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(&self.db).unwrap()
    }
}

async fn open(db: &Path) -> Arc<dyn Store> {
    wsgate_store::open(&StoreUrl::Sqlite(db.to_path_buf())).await.unwrap()
}

fn payload_dir(db: &Path) -> PathBuf {
    db.with_file_name(format!("{}-payloads", db.file_name().unwrap().to_string_lossy()))
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir).map(|d| d.map(|e| e.unwrap().path()).collect()).unwrap_or_default();
    v.sort();
    v
}

/// Every frame of every session in `h`, read through `store` in pages of `limit`
/// from the start, checked byte for byte; and a page starting after every seq.
async fn check_all(h: &History, store: &Arc<dyn Store>, limit: usize) {
    for (i, id) in h.ids.iter().enumerate() {
        let mut seen = Vec::new();
        let mut after = 0;
        loop {
            let page = store.messages(*id, after, limit).await.unwrap();
            assert!(page.len() <= limit);
            let Some(last) = page.last() else { break };
            after = last.seq;
            for m in &page {
                assert_eq!(m.payload, payload(*id, m.seq), "session {i} seq {}", m.seq);
                assert_eq!(m.opcode, if m.seq.is_multiple_of(5) { 2 } else { 1 });
                assert_eq!(m.size, m.payload.len() as u64);
            }
            seen.extend(page.iter().map(|m| m.seq));
        }
        assert_eq!(seen, h.written[i], "session {i}, pages of {limit}");
    }
}

#[tokio::test]
async fn a_busy_batch_goes_to_a_payload_file_and_reads_back_exactly() {
    let mut h = History::new(6).await;
    // ~700 KiB of payloads per batch: well past the 64 KiB below which they stay in
    // the rows. Then a light batch (inline) between busy ones.
    h.write(2000).await;
    h.write(10).await;
    h.write(2000).await;
    let files = h.files();
    assert_eq!(files.len(), 1, "one writer, one file: {files:?}");
    let (in_file, inline): (i64, i64) = h
        .sql()
        .query_row(
            "SELECT count(*) FILTER (WHERE file IS NOT NULL), count(*) FILTER (WHERE file IS NULL) FROM message_segments",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((in_file, inline), (12, 6), "each busy batch's segments in the file, the light one's in their rows");
    let payload_bytes: i64 = h
        .sql()
        .query_row("SELECT sum(length(payloads)) FROM message_segments WHERE file IS NOT NULL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(payload_bytes, 0, "a segment in the file keeps no payloads in its row");
    for limit in [1, 7, 100, 5000] {
        check_all(&h, &h.store, limit).await;
    }
    // Pages that start inside a segment, at each of a session's seqs.
    let id = h.ids[1];
    for &after in h.written[1].iter().step_by(13) {
        let page = h.store.messages(id, after, 3).await.unwrap();
        let want: Vec<u64> = h.written[1].iter().copied().filter(|s| *s > after).take(3).collect();
        assert_eq!(page.iter().map(|m| m.seq).collect::<Vec<_>>(), want);
        assert!(page.iter().all(|m| m.payload == payload(id, m.seq)));
    }
}

#[tokio::test]
async fn another_store_on_the_file_reads_them_and_writes_a_file_of_its_own() {
    let mut h = History::new(4).await;
    h.write(3000).await;
    let other = open(&h.db).await;
    check_all(&h, &other, 250).await;
    let b = h.batch(3000);
    other.write(b).await.unwrap();
    h.write(3000).await;
    assert_eq!(h.files().len(), 2, "each writer its own file");
    check_all(&h, &h.store, 500).await;
    check_all(&h, &other, 500).await;
}

#[tokio::test]
async fn retention_cuts_a_segment_in_a_file_and_deletes_only_files_no_one_needs() {
    let mut h = History::new(3).await;
    h.write(3000).await;
    h.write(3000).await;
    let total: u64 = h.written.iter().map(|w| w.len() as u64).sum();
    // By count: the oldest segment is cut inside, its rest rewritten in its row.
    let keep = total - 1500 - 17;
    let p = Prune { ended_before: None, keep_messages: Some(keep), chunk: 100_000 };
    assert_eq!(h.store.prune(p).await.unwrap().messages, 1517);
    let left: u64 = {
        let mut n = 0;
        for id in &h.ids {
            n += h.store.messages(*id, 0, 100_000).await.unwrap().len() as u64;
        }
        n
    };
    assert_eq!(left, keep);
    for (i, id) in h.ids.iter().enumerate() {
        let msgs = h.store.messages(*id, 0, 100_000).await.unwrap();
        let want = &h.written[i][h.written[i].len() - msgs.len()..];
        assert_eq!(msgs.iter().map(|m| m.seq).collect::<Vec<_>>(), want, "session {i} keeps its newest");
        assert!(msgs.iter().all(|m| m.payload == payload(*id, m.seq)));
    }
    let dir = payload_dir(&h.db);
    // A file no segment needs and no writer holds (its writer stopped) goes; one
    // no segment needs that a writer holds stays; so do the writer's own.
    let orphan = dir.join("0-stopped.payloads");
    let held = dir.join("1-held.payloads");
    std::fs::write(&orphan, b"x").unwrap();
    std::fs::write(&held, b"y").unwrap();
    let lock = std::fs::File::open(&held).unwrap();
    lock.try_lock().unwrap();
    h.sql()
        .execute_batch("INSERT INTO payload_files (name) VALUES ('0-stopped.payloads'), ('1-held.payloads')")
        .unwrap();
    let p = Prune { ended_before: None, keep_messages: Some(keep), chunk: 100_000 };
    assert_eq!(h.store.prune(p).await.unwrap().messages, 0);
    assert!(!orphan.exists(), "an unused file no writer holds is deleted");
    assert!(held.exists(), "a held file is not");
    assert_eq!(h.files().len(), 2);
    // By count to nothing: every segment goes; the writer's own file stays (it is
    // still writing to it), and new frames read back.
    let p = Prune { ended_before: None, keep_messages: Some(0), chunk: 100_000 };
    assert_eq!(h.store.prune(p).await.unwrap().messages, keep);
    assert_eq!(h.files().len(), 2);
    h.written.iter_mut().for_each(Vec::clear);
    h.write(3000).await;
    check_all(&h, &h.store, 1000).await;
    drop(lock);
    let p = Prune { ended_before: None, keep_messages: None, chunk: 1 };
    h.store.prune(p).await.unwrap();
    assert!(!held.exists(), "let go of, it is deleted at the next pass");
    let names: i64 = h.sql().query_row("SELECT count(*) FROM payload_files", [], |r| r.get(0)).unwrap();
    assert_eq!(names, 1, "rows go with their files");
}

#[tokio::test]
async fn a_file_left_without_a_row_is_deleted_when_a_store_opens_unless_held() {
    let h = History::new(1).await;
    let dir = payload_dir(&h.db);
    std::fs::create_dir_all(&dir).unwrap();
    let (orphan, held, other) = (dir.join("2-orphan.payloads"), dir.join("3-held.payloads"), dir.join("notes.txt"));
    for p in [&orphan, &held, &other] {
        std::fs::write(p, b"z").unwrap();
    }
    let lock = std::fs::File::open(&held).unwrap();
    lock.try_lock().unwrap();
    let again = open(&h.db).await;
    // The sweep runs on the new store's writer thread before its first job: a
    // write's answer comes after it.
    again.write(Batch { sessions: vec![session_row("a", "/x")], ..Default::default() }).await.unwrap();
    assert!(!orphan.exists());
    assert!(held.exists() && other.exists(), "a held file and what is not a payload file stay");
}

#[tokio::test]
async fn a_damaged_file_or_row_is_an_error_not_a_guess() {
    let mut h = History::new(2).await;
    h.write(3000).await;
    let file = h.files().pop().unwrap();
    let len = std::fs::metadata(&file).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(len / 2).unwrap();
    let err = h.store.messages(h.ids[1], 0, 10_000).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    assert!(err.to_string().contains(&*file.file_name().unwrap().to_string_lossy()), "names the file: {err}");
    std::fs::remove_file(&file).unwrap();
    let err = h.store.messages(h.ids[0], 0, 10).await.unwrap_err();
    assert!(err.to_string().contains("payload file"), "{err}");
    h.sql().execute_batch("UPDATE message_segments SET file_len = 9223372036854775807 WHERE file IS NOT NULL").unwrap();
    assert!(h.store.messages(h.ids[0], 0, 10).await.is_err());
    h.sql().execute_batch("DELETE FROM payload_files").unwrap();
    let err = h.store.messages(h.ids[0], 0, 10).await.unwrap_err();
    assert!(err.to_string().contains("not listed"), "{err}");
}

/// A history written by schema 5 (segments with their payloads in their rows) is
/// migrated in place: its frames read back as before, and busy batches written
/// after it go to a file and follow them.
#[tokio::test]
async fn a_schema_5_history_migrates_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    let row = session_row("a", "/old");
    let id = row.id;
    let old: Vec<MessageRow> = (1..=40).map(|seq| message(id, seq)).collect();
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        for sql in [
            include_str!("../src/sqlite/0001_init.sql"),
            include_str!("../src/sqlite/0002_message_spans.sql"),
            include_str!("../src/sqlite/0003_instance_leases.sql"),
            include_str!("../src/sqlite/0004_shared_logs.sql"),
            include_str!("../src/sqlite/0005_message_segments.sql"),
        ] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 5).unwrap();
        conn.execute(
            "INSERT INTO sessions (sid, id, instance, kind, route, path, headers, state, opened_at)
             VALUES (7, ?1, 'a', 'proxy', 'r', '/old', '[]', 'CONNECTED', 0)",
            [id.as_uuid().into_bytes()],
        )
        .unwrap();
        for part in old.chunks(16) {
            let s = wsgate_store::segment::encode(part);
            conn.execute(
                "INSERT INTO message_segments (sid, first_seq, last_seq, frames, msgs_in, msgs_out, bytes_in, bytes_out,
                    last_at, idx, payloads) VALUES (7, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                rusqlite::params![
                    s.first_seq as i64,
                    s.last_seq as i64,
                    s.frames as i64,
                    s.msgs_in as i64,
                    s.msgs_out as i64,
                    s.bytes_in as i64,
                    s.bytes_out as i64,
                    s.last_at,
                    s.index,
                    s.payloads
                ],
            )
            .unwrap();
        }
    }
    let store = open(&db).await;
    let version: i64 =
        rusqlite::Connection::open(&db).unwrap().pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(version, 6);
    let new: Vec<MessageRow> = (41..=2040).map(|seq| message(id, seq)).collect();
    store.write(Batch { messages: new, ..Default::default() }).await.unwrap();
    assert_eq!(files_in(&payload_dir(&db)).len(), 1);
    let back = store.messages(id, 0, 10_000).await.unwrap();
    assert_eq!(back.iter().map(|m| m.seq).collect::<Vec<_>>(), (1..=2040).collect::<Vec<_>>());
    assert!(back.iter().all(|m| m.payload == payload(id, m.seq)));
    let across = store.messages(id, 38, 4).await.unwrap();
    assert_eq!(across.iter().map(|m| m.seq).collect::<Vec<_>>(), [39, 40, 41, 42], "a page across the migration");
}
