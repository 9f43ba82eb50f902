//! The SQLite backend: one file, WAL, migrations embedded in the binary.
//!
//! rusqlite is synchronous, so the store owns a writer thread (one connection, every
//! write in one transaction per batch, statements prepared once) and a few reader
//! connections used from `spawn_blocking`. WAL lets readers run while the writer
//! commits; `synchronous=NORMAL` keeps commits off fsync (a power cut may lose the
//! last batches, a crash of wsgate loses nothing committed). Busy batches' payloads
//! go to payload files beside the database (`sqlite/payload_files.rs`), written
//! without fsync too: after a power cut, frames whose payloads had not reached the
//! disk (the kernel writes them back within about 30 s) read as a damaged segment,
//! an error naming the file, never as other bytes.
//!
//! Several processes may share the file (gateways with different instance names in
//! one folder). Every connection waits up to [`BUSY_TIMEOUT`] for a lock, and every
//! transaction that writes begins `IMMEDIATE`: one that began by reading and then
//! wrote would fail at once with SQLITE_BUSY, without waiting, had another process
//! written in between.

use std::ffi::c_int;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, Row, ToSql, params};
use tokio::sync::{mpsc, oneshot};
use wsgate_core::{Initiator, SessionId, SessionKind, State};

use crate::lease::{Claimed, Lease, LeaseHolder};
use crate::memory::orphan_detail;
use crate::model::{
    Batch, EventKind, EventRow, LogEntryRow, MessageRow, Prune, Pruned, RunRow, SessionQuery, SessionRow, from_micros,
    to_micros,
};
use crate::{ORPHAN_REASON, Store, StoreError, WriterPriority, segment, shared};

mod payload_files;
use payload_files::{PayloadFiles, Placed};

/// Schema migrations, in order; `PRAGMA user_version` says how many have run.
const MIGRATIONS: &[&str] = &[
    include_str!("sqlite/0001_init.sql"),
    include_str!("sqlite/0002_message_spans.sql"),
    include_str!("sqlite/0003_instance_leases.sql"),
    include_str!("sqlite/0004_shared_logs.sql"),
    include_str!("sqlite/0005_message_segments.sql"),
    include_str!("sqlite/0006_payload_files.sql"),
];

/// How long a connection waits for another (maybe another process's) to let go of
/// the write lock. A batch commits in milliseconds; this only runs out when the
/// file is stuck.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Readers kept open between queries.
const READERS: usize = 4;

enum Job {
    Write(Batch, oneshot::Sender<Result<(), StoreError>>),
    Claim(Lease, oneshot::Sender<Result<Claimed, StoreError>>),
    Renew(Lease, oneshot::Sender<Result<(), StoreError>>),
    Release(Lease, oneshot::Sender<Result<(), StoreError>>),
    CloseExpired(Lease, oneshot::Sender<Result<u64, StoreError>>),
    Prune(Prune, oneshot::Sender<Result<Pruned, StoreError>>),
}

pub struct SqliteStore {
    path: PathBuf,
    jobs: mpsc::Sender<Job>,
    readers: Arc<Mutex<Vec<Connection>>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish()
    }
}

fn open_conn(path: &Path) -> Result<Connection, StoreError> {
    let open_err = |source| StoreError::OpenSqlite { path: path.display().to_string(), source };
    let conn = Connection::open(path).map_err(open_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
    // Only takes effect on a new file (before the first table; older files keep
    // theirs): a segment is tens of KiB, and at 64 KiB pages it is one page write
    // rather than a chain of overflow pages (the writer alone: 1.75 M -> 1.9 M
    // frames/s against 16 KiB).
    conn.pragma_update(None, "page_size", 65536).map_err(open_err)?;
    wal_mode(&conn).map_err(open_err)?;
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(open_err)?;
    // 64 MiB of page cache keeps the hot ends of the message indexes in memory.
    conn.pragma_update(None, "cache_size", -65536).map_err(open_err)?;
    // Checkpoint in bigger, rarer steps (pages of WAL between checkpoints).
    conn.pragma_update(None, "wal_autocheckpoint", 4096).map_err(open_err)?;
    Ok(conn)
}

/// Switches a file to WAL. On a new file, another process switching it at the same
/// moment makes SQLite answer BUSY at once, without the busy handler (the switch
/// needs the file to itself): two gateways started together on one new file. Retried
/// for as long as the busy timeout allows.
fn wal_mode(conn: &Connection) -> Result<(), rusqlite::Error> {
    let started = std::time::Instant::now();
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && started.elapsed() < BUSY_TIMEOUT =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// WAL pages after which the writer asks for a checkpoint (64 MiB at 64 KiB pages:
/// rarer checkpoints cost the writer less; 16 MiB ones cost it 5 %).
const CHECKPOINT_PAGES: c_int = 1024;
/// WAL pages after which the writer checkpoints itself: the checkpointer has fallen
/// behind, and the WAL must not grow without bound.
const CHECKPOINT_PAGES_MAX: c_int = 4 * CHECKPOINT_PAGES;

/// Where the checkpoint cycle stands (see [`spawn_checkpointer`]).
const IDLE: u8 = 0;
const ASKED: u8 = 1;
const CAUGHT_UP: u8 = 2;

/// Moves most of the checkpoint work (copying the WAL into the database, with an
/// fsync) off the writer thread, where it was a third of the time.
///
/// A cycle: after a commit leaves `CHECKPOINT_PAGES` in the WAL, the writer asks;
/// the checkpointer copies what is there, beside the writer (a passive checkpoint
/// never blocks it); then, after its next commit, the writer copies the little it
/// committed meanwhile. That last step must be the writer's: the WAL only starts over
/// after a checkpoint that copied all of it, which never happens while another
/// thread keeps committing.
fn spawn_checkpointer(path: &Path, writer: &mut Connection, priority: WriterPriority) -> Result<(), StoreError> {
    let open_err = |source| StoreError::OpenSqlite { path: path.display().to_string(), source };
    let conn = open_conn(path)?;
    let state = Arc::new(std::sync::atomic::AtomicU8::new(IDLE));
    let (ask, asked) = std::sync::mpsc::sync_channel::<()>(1);
    let hook_state = state.clone();
    // Replaces SQLite's own auto-checkpoint, which is also a WAL hook. The hook runs
    // after the commit: an error from it would report a committed batch as failed,
    // so failures are only logged, and the next commit tries again.
    writer
        .wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages: c_int| {
            let now = hook_state.load(Ordering::Acquire);
            if now == CAUGHT_UP || pages >= CHECKPOINT_PAGES_MAX {
                match wal.checkpoint() {
                    Ok(()) => hook_state.store(IDLE, Ordering::Release),
                    Err(e) => tracing::debug!(error = %e, pages, "SQLite checkpoint on the writer: retried later"),
                }
            } else if now == IDLE && pages >= CHECKPOINT_PAGES {
                hook_state.store(ASKED, Ordering::Release);
                let _ = ask.try_send(());
            }
            Ok(())
        }))
        .map_err(open_err)?;
    std::thread::Builder::new()
        .name("wsgate-sqlite-ckpt".into())
        // Ends when the writer connection, which owns the hook and its sender, closes.
        .spawn(move || {
            priority.apply_to_current_thread();
            while asked.recv().is_ok() {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "SQLite checkpoint failed; the writer will copy the WAL itself");
                }
                state.store(CAUGHT_UP, Ordering::Release);
            }
        })
        .map_err(|e| open_err(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    // One immediate transaction, the version read inside it: two gateways opening a
    // new file together would otherwise both run migration 1, and the second fail
    // with "table sessions already exists".
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::SchemaTooNew { found: version, known });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
    }
    tx.commit()?;
    Ok(())
}

impl SqliteStore {
    /// Opens (creating and migrating) the database at `path`.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, WriterPriority::Traffic).await
    }

    /// Opens the database at `path`, its writer and checkpointer threads at `priority`.
    pub async fn open_with(path: &Path, priority: WriterPriority) -> Result<Self, StoreError> {
        let path = path.to_path_buf();
        let p = path.clone();
        let mut writer = tokio::task::spawn_blocking(move || -> Result<Connection, StoreError> {
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::OpenSqlite {
                    path: p.display().to_string(),
                    source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
                })?;
            }
            let mut conn = open_conn(&p)?;
            migrate(&mut conn)?;
            spawn_checkpointer(&p, &mut conn, priority)?;
            Ok(conn)
        })
        .await
        .map_err(|_| StoreError::Closed)??;
        // A small queue: the recorder waits here when the disk is behind, which is
        // what makes its own queue fill and its overflow policy apply.
        let (jobs, mut rx) = mpsc::channel::<Job>(2);
        let writer_path = path.clone();
        std::thread::Builder::new()
            .name("wsgate-sqlite".into())
            .spawn(move || {
                priority.apply_to_current_thread();
                let mut sids = Sids::default();
                let mut files = PayloadFiles::new(&writer_path);
                if let Err(e) = files.sweep(&writer) {
                    tracing::warn!(error = %e, "payload files left by a stopped writer were not all deleted");
                }
                while let Some(job) = rx.blocking_recv() {
                    match job {
                        Job::Write(b, reply) => {
                            let written = write_batch(&mut writer, &mut sids, &mut files, &b);
                            if written.is_err() {
                                files.forget();
                            }
                            let _ = reply.send(written);
                        }
                        Job::Claim(lease, reply) => {
                            let _ = reply.send(claim(&mut writer, &lease));
                        }
                        Job::Renew(lease, reply) => {
                            let _ = reply.send(renew(&writer, &lease));
                        }
                        Job::Release(lease, reply) => {
                            let _ = reply.send(release(&writer, &lease));
                        }
                        Job::CloseExpired(lease, reply) => {
                            let _ = reply.send(close_expired(&mut writer, &lease));
                        }
                        Job::Prune(p, reply) => {
                            let _ = reply.send(prune(&mut writer, &files, p));
                        }
                    }
                }
            })
            .map_err(|e| StoreError::OpenSqlite {
                path: path.display().to_string(),
                source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
            })?;
        Ok(Self { path, jobs, readers: Arc::new(Mutex::new(Vec::new())) })
    }

    async fn job<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Job) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.jobs.send(make(tx)).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs a read on a pooled connection, off the async threads.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let taken = readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let conn = match taken {
                Some(c) => c,
                None => open_conn(&path)?,
            };
            let out = f(&conn);
            let mut pool = readers.lock().unwrap_or_else(|p| p.into_inner());
            if pool.len() < READERS {
                pool.push(conn);
            }
            out
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }
}

fn id_bytes(id: SessionId) -> [u8; 16] {
    id.as_uuid().into_bytes()
}

/// The writer's map from session id to `sid`, for sessions still open: a message
/// row needs its session's `sid`, and asking SQLite per row would double the work.
#[derive(Default)]
struct Sids(std::collections::HashMap<SessionId, i64>);

impl Sids {
    fn get(&mut self, tx: &rusqlite::Transaction, id: SessionId) -> Result<Option<i64>, StoreError> {
        if let Some(sid) = self.0.get(&id) {
            return Ok(Some(*sid));
        }
        let sid = tx
            .prepare_cached("SELECT sid FROM sessions WHERE id = ?1")?
            .query_row([id_bytes(id)], |r| r.get::<_, i64>(0))
            .optional()?;
        if let Some(sid) = sid {
            self.0.insert(id, sid);
        }
        Ok(sid)
    }
}

/// Inserts a batch's messages as one segment per session (`segment.rs`); a busy
/// batch's payloads go to a payload file in one write (`sqlite/payload_files.rs`).
fn insert_segments(
    tx: &rusqlite::Transaction,
    sids: &mut Sids,
    files: &mut PayloadFiles,
    messages: &[MessageRow],
) -> Result<(), StoreError> {
    if messages.is_empty() {
        return Ok(());
    }
    let to_file = messages.iter().map(|m| m.payload.len()).sum::<usize>() >= payload_files::INLINE_BELOW;
    let mut buffer = if to_file { files.take_buffer() } else { Vec::new() };
    let mut segments = Vec::new();
    for run in segment::by_session(messages) {
        // The recorder always writes a session before its messages; a message with
        // no session row has nothing to belong to.
        let Some(sid) = sids.get(tx, run[0].session_id)? else {
            tracing::warn!(session = %run[0].session_id, messages = run.len(), "messages for an unknown session not stored");
            continue;
        };
        if !to_file {
            put_segment(tx, None, sid, &segment::encode(run.iter().copied()), None)?;
            continue;
        }
        let start = buffer.len() as u64;
        let s = segment::encode_into(run.iter().copied(), &mut buffer);
        segments.push((sid, s, start, buffer.len() as u64 - start));
    }
    if segments.is_empty() {
        return Ok(());
    }
    let (file, base) = files.append(tx, buffer)?;
    for (sid, s, start, len) in segments {
        put_segment(tx, None, sid, &s, Some(Placed { file, offset: base + start, len }))?;
    }
    Ok(())
}

/// Writes a segment of session `sid`: a new row (`id` `None`), or row `id` again;
/// its payloads in the row, or where `placed` says.
fn put_segment(
    tx: &rusqlite::Transaction,
    id: Option<i64>,
    sid: i64,
    s: &segment::Segment,
    placed: Option<Placed>,
) -> rusqlite::Result<()> {
    let (file, offset, len) = match placed {
        Some(p) => (Some(p.file), Some(p.offset as i64), Some(p.len as i64)),
        None => (None, None, None),
    };
    tx.prepare_cached(
        "INSERT OR REPLACE INTO message_segments (id, sid, first_seq, last_seq, frames, msgs_in, msgs_out, bytes_in,
            bytes_out, last_at, idx, payloads, file, file_offset, file_len)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )?
    .execute(params![
        id,
        sid,
        s.first_seq as i64,
        s.last_seq as i64,
        s.frames as i64,
        s.msgs_in as i64,
        s.msgs_out as i64,
        s.bytes_in as i64,
        s.bytes_out as i64,
        s.last_at,
        s.index,
        s.payloads,
        file,
        offset,
        len
    ])?;
    Ok(())
}

/// `id`'s messages stored as segments: those above `after_seq`, at most `limit`.
fn segment_messages(
    conn: &Connection,
    dir: &Path,
    id: SessionId,
    after_seq: i64,
    limit: usize,
) -> Result<Vec<MessageRow>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT g.first_seq, g.idx, {SEGMENT_PAYLOADS} FROM message_segments g {SEGMENT_FILE}
         WHERE g.sid = (SELECT sid FROM sessions WHERE id = ?1) AND g.last_seq > ?2 ORDER BY g.first_seq LIMIT ?3"
    ))?;
    let mut rows = st.query(params![id_bytes(id), after_seq, limit as i64])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        if out.len() >= limit {
            break;
        }
        let first: i64 = r.get(0)?;
        let idx: Vec<u8> = r.get(1)?;
        let payloads = segment_payloads(r, 2, dir)?;
        let left = limit - out.len();
        let frames = segment::decode(id, first as u64, &idx, payloads.into(), after_seq as u64, left)?;
        out.extend(frames);
    }
    Ok(out)
}

/// The columns [`segment_payloads`] reads, from `message_segments g` joined with
/// [`SEGMENT_FILE`].
const SEGMENT_PAYLOADS: &str = "g.payloads, g.file, f.name, g.file_offset, g.file_len";
const SEGMENT_FILE: &str = "LEFT JOIN payload_files f ON f.id = g.file";

/// A segment's payloads, from the [`SEGMENT_PAYLOADS`] columns starting at `at`.
fn segment_payloads(r: &Row, at: usize, dir: &Path) -> Result<Vec<u8>, StoreError> {
    payload_files::read(dir, r.get(at)?, r.get(at + 1)?, r.get(at + 2)?, r.get(at + 3)?, r.get(at + 4)?)
}

/// A batch's shared-log entries and delivery runs (`sqlite/0004_shared_logs.sql`).
fn insert_shared(tx: &rusqlite::Transaction, sids: &mut Sids, b: &Batch) -> Result<(), StoreError> {
    if !b.log_entries.is_empty() {
        // OR IGNORE: an entry is the same whoever recorded it first.
        let mut st = tx.prepare_cached(
            "INSERT OR IGNORE INTO log_entries (log, \"offset\", opcode, size, at, truncated, payload)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for e in &b.log_entries {
            st.execute(params![
                e.log.as_bytes(),
                e.offset as i64,
                e.opcode,
                e.size as i64,
                to_micros(e.at),
                e.truncated,
                &e.payload[..]
            ])?;
        }
    }
    if !b.runs.is_empty() {
        let mut st = tx.prepare_cached(
            "INSERT OR REPLACE INTO delivery_runs (sid, first_seq, count, log, first_offset) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for r in &b.runs {
            let Some(sid) = sids.get(tx, r.session_id)? else {
                tracing::warn!(session = %r.session_id, "deliveries for an unknown session not stored");
                continue;
            };
            st.execute(params![sid, r.first_seq as i64, r.count as i64, r.log.as_bytes(), r.first_offset as i64])?;
        }
    }
    Ok(())
}

/// `id`'s runs of deliveries that a page after `after_seq` of `limit` messages
/// needs, filled from their logs.
fn delivered(conn: &Connection, id: SessionId, after_seq: i64, limit: usize) -> Result<Vec<MessageRow>, StoreError> {
    let runs: Vec<RunRow> = conn
        .prepare_cached(
            "SELECT first_seq, count, log, first_offset FROM delivery_runs
             WHERE sid = (SELECT sid FROM sessions WHERE id = ?1) AND first_seq + count > ?2 + 1
             ORDER BY first_seq LIMIT ?3",
        )?
        .query_map(params![id_bytes(id), after_seq, limit as i64], |r| {
            Ok(RunRow {
                session_id: id,
                first_seq: r.get::<_, i64>(0)? as u64,
                count: r.get::<_, i64>(1)? as u64,
                log: uuid_from(r, 2)?,
                first_offset: r.get::<_, i64>(3)? as u64,
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::new();
    let mut st = conn.prepare_cached(
        "SELECT \"offset\", opcode, size, at, truncated, payload FROM log_entries
         WHERE log = ?1 AND \"offset\" BETWEEN ?2 AND ?3",
    )?;
    for run in shared::clip(runs, after_seq as u64, limit) {
        let (first, last) = shared::offsets(&run);
        let entries = st
            .query_map(params![run.log.as_bytes(), first as i64, last as i64], |r| {
                let payload: Vec<u8> = r.get(5)?;
                Ok(LogEntryRow {
                    log: run.log,
                    offset: r.get::<_, i64>(0)? as u64,
                    opcode: r.get(1)?,
                    size: r.get::<_, i64>(2)? as u64,
                    at: from_micros(r.get(3)?),
                    truncated: r.get(4)?,
                    payload: payload.into(),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        out.extend(shared::expand(&run, entries));
    }
    Ok(out)
}

fn uuid_from(r: &Row, i: usize) -> rusqlite::Result<uuid::Uuid> {
    let b: Vec<u8> = r.get(i)?;
    uuid::Uuid::from_slice(&b).map_err(|_| corrupt("log id", &format!("{b:?}")))
}

fn write_batch(conn: &mut Connection, sids: &mut Sids, files: &mut PayloadFiles, b: &Batch) -> Result<(), StoreError> {
    // Immediate: the batch reads the next message id before it writes, and a
    // deferred transaction could not then take the write lock if another process
    // had committed in between.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut closed = Vec::new();
    {
        let mut st = tx.prepare_cached(
            "INSERT INTO sessions (id, instance, kind, route, path, client_addr, headers, subprotocol, upstream, state,
                opened_at, closed_at, close_code, close_reason, initiator, failure, failure_kind, http_status,
                messages_in, messages_out, bytes_in, bytes_out, messages_dropped)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23)
             ON CONFLICT (id) DO UPDATE SET subprotocol = excluded.subprotocol, upstream = excluded.upstream,
                state = excluded.state, closed_at = excluded.closed_at, close_code = excluded.close_code,
                close_reason = excluded.close_reason, initiator = excluded.initiator, failure = excluded.failure,
                failure_kind = excluded.failure_kind, http_status = excluded.http_status,
                messages_in = excluded.messages_in, messages_out = excluded.messages_out,
                bytes_in = excluded.bytes_in, bytes_out = excluded.bytes_out,
                messages_dropped = excluded.messages_dropped
             RETURNING sid",
        )?;
        for s in &b.sessions {
            let headers = serde_json::to_string(&s.headers).unwrap_or_else(|_| "[]".into());
            let sid: i64 = st.query_row(
                params![
                    id_bytes(s.id),
                    s.instance,
                    s.kind.as_str(),
                    s.route,
                    s.path,
                    s.client_addr,
                    headers,
                    s.subprotocol,
                    s.upstream,
                    s.state.as_str(),
                    to_micros(s.opened_at),
                    s.closed_at.map(to_micros),
                    s.close_code,
                    s.close_reason,
                    s.initiator.map(Initiator::as_str),
                    s.failure,
                    s.failure_kind,
                    s.http_status,
                    s.messages_in as i64,
                    s.messages_out as i64,
                    s.bytes_in as i64,
                    s.bytes_out as i64,
                    s.messages_dropped as i64,
                ],
                |r| r.get(0),
            )?;
            sids.0.insert(s.id, sid);
            if s.closed_at.is_some() {
                closed.push(s.id);
            }
        }
    }
    {
        let mut st = tx.prepare_cached(
            "INSERT OR REPLACE INTO events (session_id, seq, at, kind, state, error_kind, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for e in &b.events {
            st.execute(params![
                id_bytes(e.session_id),
                e.seq,
                to_micros(e.at),
                e.kind.as_str(),
                e.state.map(State::as_str),
                e.error_kind,
                e.detail.to_string(),
            ])?;
        }
    }
    insert_segments(&tx, sids, files, &b.messages)?;
    insert_shared(&tx, sids, b)?;
    tx.commit()?;
    for id in closed {
        sids.0.remove(&id);
    }
    Ok(())
}

/// Closes the sessions `ids` as the restart rule does (see [`Store::close_expired`]).
fn close_sessions(tx: &rusqlite::Transaction, ids: &[Vec<u8>]) -> Result<u64, StoreError> {
    let detail = orphan_detail().to_string();
    for id in ids {
        let (last_msg, mi, mo, bi, bo): (Option<i64>, i64, i64, i64, i64) = tx.query_row(
            "SELECT max(at),
                    coalesce(sum(direction IN (0, 2)), 0),
                    coalesce(sum(direction NOT IN (0, 2)), 0),
                    coalesce(sum(CASE WHEN direction IN (0, 2) THEN size END), 0),
                    coalesce(sum(CASE WHEN direction NOT IN (0, 2) THEN size END), 0)
             FROM message_spans s JOIN messages m ON m.id BETWEEN s.first_id AND s.last_id AND m.sid = s.sid
             WHERE s.sid = (SELECT sid FROM sessions WHERE id = ?1)",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )?;
        // Frames written as segments count from their totals.
        let (seg_last, smi, smo, sbi, sbo): (Option<i64>, i64, i64, i64, i64) = tx.query_row(
            "SELECT max(last_at), coalesce(sum(msgs_in), 0), coalesce(sum(msgs_out), 0),
                    coalesce(sum(bytes_in), 0), coalesce(sum(bytes_out), 0)
             FROM message_segments WHERE sid = (SELECT sid FROM sessions WHERE id = ?1)",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )?;
        let (last_msg, mi, mo, bi, bo) = (last_msg.max(seg_last), mi + smi, mo + smo, bi + sbi, bo + sbo);
        let (last_seq, last_event): (Option<i64>, Option<i64>) =
            tx.query_row("SELECT max(seq), max(at) FROM events WHERE session_id = ?1", [id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        let at = last_msg.into_iter().chain(last_event).max().unwrap_or_else(|| to_micros(crate::now()));
        tx.execute(
            "UPDATE sessions SET state = 'DISCONNECTED', closed_at = ?2, close_code = ?3, close_reason = ?4,
                initiator = 'gateway', messages_in = ?5, messages_out = ?6, bytes_in = ?7, bytes_out = ?8
             WHERE id = ?1",
            params![id, at, wsgate_protocol::CloseCode::ABNORMAL, ORPHAN_REASON, mi, mo, bi, bo],
        )?;
        tx.execute(
            "INSERT INTO events (session_id, seq, at, kind, state, error_kind, detail)
             VALUES (?1, ?2, ?3, 'lifecycle', 'DISCONNECTED', NULL, ?4)",
            params![id, last_seq.unwrap_or(0) + 1, at, detail],
        )?;
    }
    Ok(ids.len() as u64)
}

const LEASE_COLUMNS: &str = "run_id, instance, host, pid, started_at, expires_at";

fn lease_row(r: &Row) -> rusqlite::Result<LeaseHolder> {
    let run: [u8; 16] = r.get(0)?;
    Ok(LeaseHolder {
        run: uuid::Uuid::from_bytes(run),
        instance: r.get(1)?,
        host: r.get(2)?,
        pid: u32::try_from(r.get::<_, i64>(3)?).unwrap_or(u32::MAX),
        started_at: from_micros(r.get(4)?),
        expires_at: from_micros(r.get(5)?),
    })
}

fn claim(conn: &mut Connection, lease: &Lease) -> Result<Claimed, StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let now = crate::now();
    let replaced = tx
        .query_row(
            &format!("SELECT {LEASE_COLUMNS} FROM instance_leases WHERE instance = ?1"),
            [&lease.instance],
            lease_row,
        )
        .optional()?;
    if let Some(holder) = replaced.as_ref().filter(|h| h.run != lease.run && !h.is_gone(now, lease)) {
        return Err(StoreError::InstanceBusy { holder: Box::new(holder.clone()) });
    }
    // The name is this run's: whatever it has open was left by an earlier run.
    let own: Vec<Vec<u8>> = {
        let mut st = tx.prepare("SELECT id FROM sessions WHERE instance = ?1 AND closed_at IS NULL")?;
        st.query_map([&lease.instance], |r| r.get(0))?.collect::<Result<_, _>>()?
    };
    let mut closed = close_sessions(&tx, &own)?;
    let held = lease.held_until(now);
    tx.execute(
        "INSERT OR REPLACE INTO instance_leases (run_id, instance, host, pid, started_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            held.run.into_bytes(),
            held.instance,
            held.host,
            held.pid,
            to_micros(held.started_at),
            to_micros(held.expires_at)
        ],
    )?;
    closed += close_expired_in(&tx, now, lease)?;
    tx.commit()?;
    Ok(Claimed { closed, replaced: replaced.filter(|h| h.run != lease.run) })
}

fn renew(conn: &Connection, lease: &Lease) -> Result<(), StoreError> {
    let expires = to_micros(crate::now()).saturating_add(lease.ttl_micros());
    let n = conn.execute(
        "UPDATE instance_leases SET expires_at = ?3 WHERE instance = ?1 AND run_id = ?2",
        params![lease.instance, lease.run.into_bytes(), expires],
    )?;
    if n == 0 {
        return Err(StoreError::LeaseLost { instance: lease.instance.clone() });
    }
    Ok(())
}

fn release(conn: &Connection, lease: &Lease) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM instance_leases WHERE instance = ?1 AND run_id = ?2",
        params![lease.instance, lease.run.into_bytes()],
    )?;
    Ok(())
}

fn close_expired(conn: &mut Connection, asker: &Lease) -> Result<u64, StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let closed = close_expired_in(&tx, crate::now(), asker)?;
    tx.commit()?;
    Ok(closed)
}

/// [`Store::close_expired`] inside a transaction; `now` is the store's clock.
fn close_expired_in(
    tx: &rusqlite::Transaction,
    now: chrono::DateTime<chrono::Utc>,
    asker: &Lease,
) -> Result<u64, StoreError> {
    let leases: Vec<LeaseHolder> = {
        let mut st = tx.prepare_cached(&format!("SELECT {LEASE_COLUMNS} FROM instance_leases"))?;
        st.query_map([], lease_row)?.collect::<Result<_, _>>()?
    };
    if !leases.iter().any(|l| l.instance == asker.instance && l.run == asker.run) {
        return Err(StoreError::LeaseLost { instance: asker.instance.clone() });
    }
    for gone in leases.iter().filter(|l| l.is_gone(now, asker)) {
        tx.execute(
            "DELETE FROM instance_leases WHERE instance = ?1 AND run_id = ?2",
            params![gone.instance, gone.run.into_bytes()],
        )?;
    }
    let ids: Vec<Vec<u8>> = {
        let mut st = tx.prepare_cached(
            "SELECT id FROM sessions s WHERE closed_at IS NULL
                AND NOT EXISTS (SELECT 1 FROM instance_leases l WHERE l.instance = s.instance)",
        )?;
        st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?
    };
    close_sessions(tx, &ids)
}

/// Retention by count over segments: drops the oldest frames until at most `keep`
/// are left overall (counting the frames still stored as rows), at most `budget` of
/// them; a segment partly past the line is cut, not dropped whole. How many went.
fn prune_segments(
    tx: &rusqlite::Transaction,
    dir: &Path,
    seg_frames: u64,
    keep: u64,
    budget: u64,
) -> Result<u64, StoreError> {
    let rows: u64 = tx.query_row("SELECT count(*) FROM messages", [], |r| r.get::<_, i64>(0))? as u64;
    let mut excess = (rows + seg_frames).saturating_sub(keep).min(budget);
    let mut gone = 0;
    while excess > 0 {
        let mut st = tx.prepare_cached(
            "SELECT g.id, g.sid, g.first_seq, g.frames FROM message_segments g ORDER BY g.id LIMIT 1",
        )?;
        let oldest = st
            .query_row([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?)))
            .optional()?;
        let Some((id, sid, first_seq, frames)) = oldest else { break };
        let frames = frames as u64;
        if frames <= excess {
            tx.prepare_cached("DELETE FROM message_segments WHERE id = ?1")?.execute([id])?;
            (excess, gone) = (excess - frames, gone + frames);
            continue;
        }
        // Only the segment that is cut is read, payloads and all.
        let (idx, payloads): (Vec<u8>, Vec<u8>) = tx
            .prepare_cached(&format!(
                "SELECT g.idx, {SEGMENT_PAYLOADS} FROM message_segments g {SEGMENT_FILE} WHERE g.id = ?1"
            ))?
            .query_row([id], |r| Ok((r.get(0)?, segment_payloads(r, 1, dir))))
            .map(|(idx, p)| p.map(|p| (idx, p)))??;
        let rest = segment::cut(id, first_seq as u64, &idx, payloads.into(), frames, excess)?;
        // Written again under its own id, its payloads in the row: it stays the oldest.
        put_segment(tx, Some(id), sid, &rest, None)?;
        gone += excess;
        excess = 0;
    }
    Ok(gone)
}

fn prune(conn: &mut Connection, files: &PayloadFiles, p: Prune) -> Result<Pruned, StoreError> {
    // Immediate: it reads before it deletes (see the module doc).
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut out = Pruned::default();
    let chunk = p.chunk as i64;
    if let Some(cutoff) = p.ended_before {
        let cutoff = to_micros(cutoff);
        // Messages first, span by span until a chunk's worth; a session goes once
        // its spans have.
        'spans: while out.messages < p.chunk as u64 {
            let spans: Vec<(i64, i64, i64)> = {
                let mut st = tx.prepare_cached(
                    "SELECT sp.first_id, sp.last_id, sp.sid FROM sessions s JOIN message_spans sp ON sp.sid = s.sid
                     WHERE s.closed_at < ?1 LIMIT 256",
                )?;
                st.query_map([cutoff], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?
            };
            if spans.is_empty() {
                break;
            }
            for (first, last, sid) in spans {
                out.messages += tx
                    .prepare_cached("DELETE FROM messages WHERE id BETWEEN ?1 AND ?2 AND sid = ?3")?
                    .execute(params![first, last, sid])? as u64;
                tx.prepare_cached("DELETE FROM message_spans WHERE first_id = ?1")?.execute([first])?;
                if out.messages >= p.chunk as u64 {
                    break 'spans;
                }
            }
        }
        // Then segments, whole, until a chunk's worth of frames.
        'segments: while out.messages < p.chunk as u64 {
            let segs: Vec<(i64, i64)> = {
                let mut st = tx.prepare_cached(
                    "SELECT g.id, g.frames FROM sessions s JOIN message_segments g ON g.sid = s.sid
                     WHERE s.closed_at < ?1 LIMIT 256",
                )?;
                st.query_map([cutoff], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?
            };
            if segs.is_empty() {
                break;
            }
            for (id, frames) in segs {
                tx.prepare_cached("DELETE FROM message_segments WHERE id = ?1")?.execute([id])?;
                out.messages += frames as u64;
                if out.messages >= p.chunk as u64 {
                    break 'segments;
                }
            }
        }
        if out.messages < p.chunk as u64 {
            let ids: Vec<Vec<u8>> = {
                let mut st = tx.prepare(
                    "SELECT id FROM sessions s WHERE closed_at < ?1
                        AND NOT EXISTS (SELECT 1 FROM message_spans sp WHERE sp.sid = s.sid)
                        AND NOT EXISTS (SELECT 1 FROM message_segments g WHERE g.sid = s.sid) LIMIT ?2",
                )?;
                st.query_map(params![cutoff, chunk], |r| r.get(0))?.collect::<Result<_, _>>()?
            };
            for id in &ids {
                tx.execute("DELETE FROM events WHERE session_id = ?1", [id])?;
                tx.execute("DELETE FROM delivery_runs WHERE sid = (SELECT sid FROM sessions WHERE id = ?1)", [id])?;
                tx.execute("DELETE FROM sessions WHERE id = ?1", [id])?;
            }
            out.sessions = ids.len() as u64;
        }
        // A shared log's entries go once they are old and no kept session's run
        // refers to them.
        out.messages += tx.execute(
            "DELETE FROM log_entries WHERE (log, \"offset\") IN (
                SELECT e.log, e.\"offset\" FROM log_entries e WHERE e.at < ?1 AND NOT EXISTS (
                    SELECT 1 FROM delivery_runs d WHERE d.log = e.log
                        AND d.first_offset <= e.\"offset\" AND e.\"offset\" < d.first_offset + d.count)
                LIMIT ?2)",
            params![cutoff, chunk],
        )? as u64;
    }
    if let Some(keep) = p.keep_messages {
        // Frames stored as rows (before schema 5) are older than any segment: they
        // go first. Both count toward `keep`.
        let seg_frames: i64 =
            tx.query_row("SELECT coalesce(sum(frames), 0) FROM message_segments", [], |r| r.get(0))?;
        let legacy = tx.execute(
            "DELETE FROM messages WHERE id IN (
                SELECT id FROM messages ORDER BY id
                LIMIT min(?2, max(0, (SELECT count(*) FROM messages) + ?3 - ?1)))",
            params![keep as i64, chunk, seg_frames],
        )? as u64;
        out.messages += legacy;
        out.messages +=
            prune_segments(&tx, files.dir(), seg_frames as u64, keep, p.chunk as u64 - legacy.min(p.chunk as u64))?;
        // Spans are in id order and do not overlap: those wholly below the oldest
        // message left name nothing now.
        tx.execute(
            "DELETE FROM message_spans WHERE first_id < ?1 AND last_id < ?1",
            [tx.query_row("SELECT coalesce(min(id), 9223372036854775807) FROM messages", [], |r| r.get::<_, i64>(0))?],
        )?;
        // Shared logs are held to the same count, oldest first (a run whose entries
        // are gone reads as a gap, as pruned messages do).
        out.messages += tx.execute(
            "DELETE FROM log_entries WHERE (log, \"offset\") IN (
                SELECT log, \"offset\" FROM log_entries ORDER BY at
                LIMIT min(?2, max(0, (SELECT count(*) FROM log_entries) - ?1)))",
            params![keep as i64, chunk],
        )? as u64;
    }
    // Files whose every segment is gone give their disk space back.
    files.collect(&tx)?;
    tx.commit()?;
    Ok(out)
}

const SESSION_COLUMNS: &str = "id, instance, kind, route, path, client_addr, headers, subprotocol, upstream, state,
    opened_at, closed_at, close_code, close_reason, initiator, failure, failure_kind, http_status,
    messages_in, messages_out, bytes_in, bytes_out, messages_dropped";

fn corrupt(what: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, format!("bad {what} {value:?}").into())
}

fn session_id(r: &Row, i: usize) -> rusqlite::Result<SessionId> {
    let b: [u8; 16] = r.get(i)?;
    Ok(SessionId::from_uuid(uuid::Uuid::from_bytes(b)))
}

fn session_row(r: &Row) -> rusqlite::Result<SessionRow> {
    let kind: String = r.get(2)?;
    let state: String = r.get(9)?;
    let headers: String = r.get(6)?;
    let initiator: Option<String> = r.get(14)?;
    Ok(SessionRow {
        id: session_id(r, 0)?,
        instance: r.get(1)?,
        kind: SessionKind::from_name(&kind).ok_or_else(|| corrupt("kind", &kind))?,
        route: r.get(3)?,
        path: r.get(4)?,
        client_addr: r.get(5)?,
        headers: serde_json::from_str(&headers).map_err(|_| corrupt("headers", &headers))?,
        subprotocol: r.get(7)?,
        upstream: r.get(8)?,
        state: State::from_name(&state).ok_or_else(|| corrupt("state", &state))?,
        opened_at: from_micros(r.get(10)?),
        closed_at: r.get::<_, Option<i64>>(11)?.map(from_micros),
        close_code: r.get(12)?,
        close_reason: r.get(13)?,
        initiator: initiator.as_deref().and_then(Initiator::from_name),
        failure: r.get(15)?,
        failure_kind: r.get(16)?,
        http_status: r.get(17)?,
        messages_in: r.get::<_, i64>(18)? as u64,
        messages_out: r.get::<_, i64>(19)? as u64,
        bytes_in: r.get::<_, i64>(20)? as u64,
        bytes_out: r.get::<_, i64>(21)? as u64,
        messages_dropped: r.get::<_, i64>(22)? as u64,
    })
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn write(&self, batch: Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.job(|tx| Job::Write(batch, tx)).await
    }

    async fn sessions(&self, q: &SessionQuery) -> Result<Vec<SessionRow>, StoreError> {
        let q = q.clone();
        self.read(move |conn| {
            let mut sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE 1 = 1");
            let mut args: Vec<Box<dyn ToSql>> = Vec::new();
            let mut arg = |sql: &mut String, clause: &str, v: Box<dyn ToSql>| {
                args.push(v);
                sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
            };
            if !q.states.is_empty() {
                let list: Vec<String> = q.states.iter().map(|s| format!("'{}'", s.as_str())).collect();
                sql.push_str(&format!(" AND state IN ({})", list.join(", ")));
            }
            if let Some(k) = q.kind {
                arg(&mut sql, " AND kind = ?", Box::new(k.as_str()));
            }
            if let Some(r) = q.route.clone() {
                arg(&mut sql, " AND route = ?", Box::new(r));
            }
            if let Some(p) = q.path_prefix.clone() {
                arg(&mut sql, " AND substr(path, 1, length(?)) = ", Box::new(p.clone()));
                arg(&mut sql, "?", Box::new(p));
            }
            if let Some(t) = q.since {
                arg(&mut sql, " AND opened_at >= ?", Box::new(to_micros(t)));
            }
            if let Some(t) = q.until {
                arg(&mut sql, " AND opened_at < ?", Box::new(to_micros(t)));
            }
            if let Some(b) = q.before {
                arg(&mut sql, " AND id < ?", Box::new(id_bytes(b)));
            }
            arg(&mut sql, " ORDER BY id DESC LIMIT ?", Box::new(q.limit as i64));
            let mut st = conn.prepare(&sql)?;
            let refs: Vec<&dyn ToSql> = args.iter().map(|b| b.as_ref()).collect();
            let rows = st.query_map(refs.as_slice(), session_row)?.collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn session(&self, id: SessionId) -> Result<Option<SessionRow>, StoreError> {
        self.read(move |conn| {
            let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1");
            Ok(conn.query_row(&sql, [id_bytes(id)], session_row).optional()?)
        })
        .await
    }

    async fn events(&self, id: SessionId) -> Result<Vec<EventRow>, StoreError> {
        self.read(move |conn| {
            let mut st = conn.prepare(
                "SELECT seq, at, kind, state, error_kind, detail FROM events WHERE session_id = ?1 ORDER BY seq",
            )?;
            let rows = st
                .query_map([id_bytes(id)], |r| {
                    let kind: String = r.get(2)?;
                    let state: Option<String> = r.get(3)?;
                    let detail: String = r.get(5)?;
                    Ok(EventRow {
                        session_id: id,
                        seq: r.get(0)?,
                        at: from_micros(r.get(1)?),
                        kind: EventKind::parse(&kind).ok_or_else(|| corrupt("event kind", &kind))?,
                        state: state.as_deref().and_then(State::from_name),
                        error_kind: r.get(4)?,
                        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
                    })
                })?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn messages(&self, id: SessionId, after_seq: u64, limit: usize) -> Result<Vec<MessageRow>, StoreError> {
        let dir = payload_files::dir_of(&self.path);
        self.read(move |conn| {
            let mut st = conn.prepare(
                // From the span holding seq `after_seq + 1` on. Within a span, id
                // order is seq order (see `insert_messages`), and the rowid range
                // scan yields ids in order: ordering by `m.id` too would only add a
                // sort of every span's rows.
                "SELECT m.seq, m.direction, m.opcode, m.fin, m.size, m.at, m.injected, m.truncated, m.payload
                 FROM message_spans s JOIN messages m ON m.id BETWEEN s.first_id AND s.last_id AND m.sid = s.sid
                 WHERE s.sid = (SELECT sid FROM sessions WHERE id = ?1)
                   AND s.first_seq >= coalesce((SELECT max(first_seq) FROM message_spans
                        WHERE sid = (SELECT sid FROM sessions WHERE id = ?1) AND first_seq <= ?2 + 1), 0)
                   AND s.last_seq > ?2 AND m.seq > ?2
                 ORDER BY s.first_seq LIMIT ?3",
            )?;
            let rows = st
                .query_map(params![id_bytes(id), i64::try_from(after_seq).unwrap_or(i64::MAX), limit as i64], |r| {
                    let direction: i64 = r.get(1)?;
                    let payload: Vec<u8> = r.get(8)?;
                    Ok(MessageRow {
                        session_id: id,
                        seq: r.get::<_, i64>(0)? as u64,
                        direction: u8::try_from(direction)
                            .ok()
                            .and_then(segment::direction_from_code)
                            .ok_or_else(|| corrupt("direction", &direction.to_string()))?,
                        opcode: r.get(2)?,
                        fin: r.get(3)?,
                        size: r.get::<_, i64>(4)? as u64,
                        at: from_micros(r.get(5)?),
                        injected: r.get(6)?,
                        marks: wsgate_core::Marks::NONE,
                        truncated: r.get(7)?,
                        payload: payload.into(),
                    })
                })?
                .collect::<Result<_, _>>()?;
            let after = i64::try_from(after_seq).unwrap_or(i64::MAX);
            // Frames written before schema 5 (rows), then segments, then deliveries
            // from shared logs: each in seq order, merged by seq.
            let own = shared::merge(rows, segment_messages(conn, &dir, id, after, limit)?, limit);
            let delivered = delivered(conn, id, after, limit)?;
            Ok(shared::merge(own, delivered, limit))
        })
        .await
    }

    async fn claim(&self, lease: &Lease) -> Result<Claimed, StoreError> {
        let lease = lease.clone();
        self.job(|tx| Job::Claim(lease, tx)).await
    }

    async fn renew(&self, lease: &Lease) -> Result<(), StoreError> {
        let lease = lease.clone();
        self.job(|tx| Job::Renew(lease, tx)).await
    }

    async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        let lease = lease.clone();
        self.job(|tx| Job::Release(lease, tx)).await
    }

    async fn close_expired(&self, asker: &Lease) -> Result<u64, StoreError> {
        let lease = asker.clone();
        self.job(|tx| Job::CloseExpired(lease, tx)).await
    }

    async fn prune(&self, p: Prune) -> Result<Pruned, StoreError> {
        self.job(|tx| Job::Prune(p, tx)).await
    }
}
