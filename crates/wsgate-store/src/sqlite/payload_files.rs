//! Payload files: where the SQLite writer puts a busy batch's payloads, beside the
//! database (`<database>-payloads/<name>`), as Kafka and pcap do: the batch's
//! payloads back to back in one write, each segment's row holding its index and
//! where its payloads start (`sqlite/0006_payload_files.sql`).
//!
//! Stored through SQLite, every payload byte was copied into a page, checksummed,
//! written to the WAL and copied again by the checkpoint; that was most of the
//! writer's time. A write here is one copy into the page cache.
//!
//! Crashes: the payloads are written before the transaction that refers to them
//! commits, so a `kill -9` leaves at most bytes no row names (the page cache keeps
//! what was written). A file is created and locked before its row is written; one
//! left without a row by a writer that stopped in between is deleted by the next
//! store to open the database ([`PayloadFiles::sweep`]).
//!
//! Several processes may share a database: each writer appends to a file of its own,
//! holding an advisory lock on it, and nobody deletes a locked file. Retention
//! deletes the files no segment refers to ([`PayloadFiles::collect`]).

use std::collections::HashSet;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, Transaction};

use crate::StoreError;

/// A batch whose payloads come to less than this keeps them in its segments' rows:
/// light traffic's history stays in the database file alone, where a file write
/// would save nothing.
pub(super) const INLINE_BELOW: usize = 64 * 1024;

/// A file past this size is left and another started, so that retention gives disk
/// space back a file at a time.
const FILE_BYTES: u64 = 256 * 1024 * 1024;

/// The folder of `db`'s payload files.
pub(super) fn dir_of(db: &Path) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push("-payloads");
    db.with_file_name(name)
}

fn io_error(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::PayloadFile { path: path.display().to_string(), source }
}

/// Where a segment's payloads are.
pub(super) struct Placed {
    pub file: i64,
    pub offset: u64,
    pub len: u64,
}

/// The writer's side: the file it appends to (locked while it does), and a buffer
/// for a batch's payloads kept from one batch to the next.
pub(super) struct PayloadFiles {
    dir: PathBuf,
    current: Option<Current>,
    buffer: Vec<u8>,
}

struct Current {
    id: i64,
    file: File,
    len: u64,
}

impl PayloadFiles {
    pub fn new(db: &Path) -> Self {
        Self { dir: dir_of(db), current: None, buffer: Vec::new() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// An empty buffer for a batch's payloads; give it back with [`Self::append`].
    pub fn take_buffer(&mut self) -> Vec<u8> {
        let mut b = std::mem::take(&mut self.buffer);
        b.clear();
        b
    }

    /// Appends `bytes` (a batch's payloads) to the current file, first starting one
    /// when there is none or it is full (its row written in `tx`); the file and the
    /// offset where they start. Keeps `bytes`' allocation for the next batch.
    pub fn append(&mut self, tx: &Transaction, bytes: Vec<u8>) -> Result<(i64, u64), StoreError> {
        let len = bytes.len() as u64;
        let full = |c: &Current| c.len > 0 && c.len + len > FILE_BYTES;
        let mut current = match self.current.take() {
            Some(c) if !full(&c) => c,
            _ => self.start(tx)?,
        };
        // Positioned, not appended: the offsets are ours, and a write that failed
        // half way leaves nothing a row names.
        current.file.write_all_at(&bytes, current.len).map_err(|e| io_error(&self.dir, e))?;
        let at = current.len;
        current.len += len;
        let id = current.id;
        self.current = Some(current);
        self.buffer = bytes;
        Ok((id, at))
    }

    fn start(&self, tx: &Transaction) -> Result<Current, StoreError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| io_error(&self.dir, e))?;
        // Time-ordered, so a listing shows the files in the order they were written.
        let name = format!("{}.payloads", uuid::Uuid::now_v7().simple());
        let path = self.dir.join(&name);
        let file =
            OpenOptions::new().read(true).write(true).create_new(true).open(&path).map_err(|e| io_error(&path, e))?;
        // Before the row: a file listed is always either locked or finished.
        file.try_lock().map_err(|e| io_error(&path, e.into()))?;
        let id = tx
            .prepare_cached("INSERT INTO payload_files (name) VALUES (?1) RETURNING id")?
            .query_row([&name], |r| r.get(0))?;
        Ok(Current { id, file, len: 0 })
    }

    /// Starts a new file for the next batch: the transaction that wrote the current
    /// one's row may not have committed.
    pub fn forget(&mut self) {
        self.current = None;
    }

    /// Deletes, with their rows, the files no segment refers to that no writer
    /// holds (retention, in its transaction). How many went.
    pub fn collect(&self, tx: &Transaction) -> Result<u64, StoreError> {
        let unused: Vec<(i64, String)> = tx
            .prepare_cached(
                "SELECT id, name FROM payload_files f WHERE NOT EXISTS (SELECT 1 FROM message_segments g WHERE g.file = f.id)",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut gone = 0;
        for (id, name) in unused {
            if self.current.as_ref().is_some_and(|c| c.id == id) {
                continue;
            }
            let path = self.dir.join(&name);
            if !remove_unless_held(&path)? {
                continue;
            }
            tx.prepare_cached("DELETE FROM payload_files WHERE id = ?1")?.execute([id])?;
            gone += 1;
        }
        Ok(gone)
    }

    /// Deletes the files in the folder that no row names and no writer holds: left by
    /// a writer that stopped between creating a file and committing its row.
    pub fn sweep(&self, conn: &Connection) -> Result<(), StoreError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error(&self.dir, e)),
        };
        let listed = |conn: &Connection| -> Result<HashSet<String>, StoreError> {
            let mut st = conn.prepare("SELECT name FROM payload_files")?;
            let names = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
            Ok(names)
        };
        let before = listed(conn)?;
        for entry in entries {
            let entry = entry.map_err(|e| io_error(&self.dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".payloads") || before.contains(&name) {
                continue;
            }
            let path = entry.path();
            let Some(file) = open_if_present(&path)? else { continue };
            match file.try_lock() {
                // Asked again under the lock: its writer may have listed it and let
                // go of it since the first look.
                Ok(()) if !listed(conn)?.contains(&name) => {
                    tracing::info!(path = %path.display(), "payload file no history row names, deleted");
                    std::fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
                }
                Ok(()) | Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => return Err(io_error(&path, e)),
            }
        }
        Ok(())
    }
}

fn open_if_present(path: &Path) -> Result<Option<File>, StoreError> {
    match File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path, e)),
    }
}

/// Deletes `path` unless a writer holds it; whether it is gone.
fn remove_unless_held(path: &Path) -> Result<bool, StoreError> {
    let Some(file) = open_if_present(path)? else { return Ok(true) };
    match file.try_lock() {
        Ok(()) => match std::fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(true),
            Err(e) => Err(io_error(path, e)),
        },
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(e)) => Err(io_error(path, e)),
    }
}

/// A segment's payloads: in its row, or `len` bytes at `offset` of payload file
/// `name` in `dir`. A row that names a file no longer listed, or a range past the
/// end of the file, is a damaged row.
pub(super) fn read(
    dir: &Path,
    inline: Vec<u8>,
    file: Option<i64>,
    name: Option<String>,
    offset: Option<i64>,
    len: Option<i64>,
) -> Result<Vec<u8>, StoreError> {
    let Some(file) = file else { return Ok(inline) };
    let (Some(name), Some(offset), Some(len)) = (name, offset, len) else {
        return Err(StoreError::Corrupt(format!("a message segment names payload file {file}, which is not listed")));
    };
    let path = dir.join(&name);
    let damaged = || {
        StoreError::Corrupt(format!(
            "a message segment's payloads ({len} bytes at {offset}) are not in {}",
            path.display()
        ))
    };
    let (offset, len) = (u64::try_from(offset).map_err(|_| damaged())?, u64::try_from(len).map_err(|_| damaged())?);
    let f = File::open(&path).map_err(|e| io_error(&path, e))?;
    // Checked before allocating: a damaged length may be anything.
    let size = f.metadata().map_err(|e| io_error(&path, e))?.len();
    if offset.checked_add(len).is_none_or(|end| end > size) {
        return Err(damaged());
    }
    let mut out = vec![0; len as usize];
    f.read_exact_at(&mut out, offset).map_err(|e| io_error(&path, e))?;
    Ok(out)
}
