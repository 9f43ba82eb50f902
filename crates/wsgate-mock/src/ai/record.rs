//! `--ai-record FILE`: what a session's generator produced, written as a wsgate
//! transcript (`docs/transcript.md`) that `wsgate mock --replay FILE` plays back —
//! the same events, byte for byte, at the same spacing, then the same close.
//!
//! A transcript rather than MockForge's lines because a transcript's messages are
//! sent as recorded, where MockForge's `text` is a template: an event holding `{{`
//! would not replay as generated. Times are the schedule the rate makes (event `i`
//! at `i / rate` seconds), not the model's latency, so a replay starts at once and
//! keeps the rate.
//!
//! Each session records its own stream: the first session of the process writes
//! FILE itself, later ones `NAME-2.EXT`, `NAME-3.EXT` and so on (in the order they
//! opened), so concurrent sessions never interleave in one file and the first
//! recording is where the user said. An existing file is replaced.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use wsgate_core::SessionInfo;
use wsgate_transcript::{Close, Direction, Frame, Header, Offset, Payload, SessionKind};

use crate::ai::error::AiError;

/// Where a route's recordings go.
#[derive(Debug)]
pub(crate) struct RecordTarget {
    path: PathBuf,
    /// Sessions that have recorded so far.
    sessions: AtomicU64,
}

impl RecordTarget {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path, sessions: AtomicU64::new(0) }
    }

    /// The file of the next session to record.
    pub(crate) fn next_path(&self) -> PathBuf {
        numbered(&self.path, self.sessions.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

/// `path` for the first session; `NAME-n.EXT` for the n-th.
pub(crate) fn numbered(path: &Path, n: u64) -> PathBuf {
    if n <= 1 {
        return path.to_owned();
    }
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{n}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{n}"),
    };
    path.with_file_name(name)
}

/// One session's recording, open.
#[derive(Debug)]
pub(crate) struct Recording {
    path: PathBuf,
    out: tokio::io::BufWriter<tokio::fs::File>,
    interval: Duration,
    events: u64,
    seq: u64,
}

impl Recording {
    /// Creates (or replaces) the file and writes the session line.
    pub(crate) async fn create(path: PathBuf, session: &SessionInfo, interval: Duration) -> Result<Self, AiError> {
        let file = tokio::fs::File::create(&path).await.map_err(|e| failed(&path, &e))?;
        let mut r = Self { path, out: tokio::io::BufWriter::new(file), interval, events: 0, seq: 0 };
        let header = Header {
            version: wsgate_transcript::VERSION,
            id: session.id.to_string(),
            kind: SessionKind::Mock,
            route: session.route.to_string(),
            path: session.path.clone(),
            subprotocol: None,
            upstream: None,
            opened_at: session.opened_at,
            closed_at: None,
            close_code: None,
            close_reason: None,
            initiator: None,
        };
        r.write(wsgate_transcript::to_line(&header)).await?;
        Ok(r)
    }

    /// The next event, at its place in the rate's schedule.
    pub(crate) async fn event(&mut self, text: &Bytes) -> Result<(), AiError> {
        let t = self.at(self.events);
        self.events += 1;
        self.frame(t, Payload::Text(text.clone()), text.len()).await
    }

    /// The close that ended the stream, right after its last event.
    pub(crate) async fn close(&mut self, code: u16, reason: &str) -> Result<(), AiError> {
        let t = self.at(self.events.saturating_sub(1));
        let close = Close { code, reason: reason.to_owned() };
        self.frame(t, Payload::Close(Some(close)), 2 + reason.len()).await
    }

    fn at(&self, event: u64) -> Offset {
        let micros = self.interval.as_micros().saturating_mul(u128::from(event));
        Offset::from_micros(i64::try_from(micros).unwrap_or(i64::MAX))
    }

    async fn frame(&mut self, t: Offset, payload: Payload, size: usize) -> Result<(), AiError> {
        self.seq += 1;
        let frame = Frame {
            t,
            seq: self.seq,
            dir: Direction::GatewayToClient,
            fin: true,
            size: size as u64,
            payload,
            injected: false,
            truncated: false,
            marks: Vec::new(),
        };
        self.write(wsgate_transcript::to_line(&frame)).await
    }

    /// One line, flushed: a session cut short (the gateway killed) leaves every line
    /// before it readable.
    async fn write(&mut self, mut line: String) -> Result<(), AiError> {
        line.push('\n');
        let written = match self.out.write_all(line.as_bytes()).await {
            Ok(()) => self.out.flush().await,
            Err(e) => Err(e),
        };
        written.map_err(|e| failed(&self.path, &e))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

fn failed(path: &Path, e: &std::io::Error) -> AiError {
    AiError::Record { path: path.display().to_string(), detail: e.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_sessions_record_beside_the_first() {
        let p = Path::new("/tmp/out/stream.jsonl");
        assert_eq!(numbered(p, 1), p);
        assert_eq!(numbered(p, 2), Path::new("/tmp/out/stream-2.jsonl"));
        assert_eq!(numbered(Path::new("rec"), 3), Path::new("rec-3"));
    }
}
