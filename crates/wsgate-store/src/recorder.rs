//! The recorder: the event-bus observer that keeps history.
//!
//! It turns [`SessionEvent`]s into rows and hands them to the store in batches (every
//! [`RecorderConfig::batch_rows`] rows, [`RecorderConfig::batch_bytes`] of payload
//! or [`RecorderConfig::flush_interval`], whichever comes first). Two tasks: the
//! collector builds batches while the writer commits the previous one, through a
//! queue of one batch, so conversion and disk overlap and a slow disk backs up into
//! the observer queue, where the bus's overflow policy (`--record drop|strict`)
//! decides what happens.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use wsgate_core::{LogEntry, MessageEvent, ObserverQueue, SessionEvent, SessionId, SessionInfo, State, Transition};

use crate::model::{Batch, EventKind, EventRow, LogEntryRow, MessageRow, RunRow, SessionRow};
use crate::{Store, WriterPriority, now};

/// Headers never stored in clear, whatever the handler recorded.
pub const ALWAYS_REDACTED: &[&str] = &["authorization", "proxy-authorization", "cookie", "set-cookie"];

/// How often the recorder looks at its queue while it is building a batch.
const TICK: Duration = Duration::from_millis(10);
/// Events taken off the queue at a time.
const TAKE: usize = 1024;

/// What replaces a redacted header's value.
pub const REDACTED: &str = "[redacted]";

#[derive(Debug, Clone)]
pub struct RecorderConfig {
    /// Written on every session, for the restart rule.
    pub instance: String,
    /// Payload bytes kept per message; the rest is cut and the row flagged.
    pub payload_cap: usize,
    pub batch_rows: usize,
    /// Payload bytes after which a batch goes at once, whatever its row count:
    /// bounds the memory a batch holds when messages are large.
    pub batch_bytes: usize,
    pub flush_interval: Duration,
    /// Header names (any case) redacted on top of [`ALWAYS_REDACTED`].
    pub redact: Vec<String>,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        Self {
            instance: "wsgate".into(),
            payload_cap: 64 * 1024,
            // Each commit rewrites the index page of every session it touched (16 KiB
            // each), so small frequent commits cost far more than the rows: with 64
            // busy sessions, 5 ms batches spent a third of a core in SQLite for a
            // proxy at 60 000 rows/s, 100 ms batches a tenth. History is for later;
            // the live stream shows traffic at once.
            batch_rows: 16384,
            batch_bytes: 16 << 20,
            flush_interval: Duration::from_millis(100),
            redact: Vec::new(),
        }
    }
}

/// What the recorder did, for `/metrics`.
#[derive(Debug, Default)]
pub struct RecorderStats {
    pub rows_written: AtomicU64,
    pub batches_written: AtomicU64,
    /// Payload bytes of the messages committed (after the cap and the payload policy).
    pub payload_bytes_written: AtomicU64,
    /// Batches the store refused (logged; their rows are lost).
    pub write_errors: AtomicU64,
}

/// Per open session: what its row says beyond the facts fixed at REQUESTED (those
/// are rebuilt from the event's `SessionInfo` when the row is written again), and
/// where its numbering is. Kept small: the recorder holds one for every open
/// session, and a relay holds tens of thousands of idle ones.
#[derive(Default)]
struct Open {
    subprotocol: Option<Box<str>>,
    upstream: Option<Box<str>>,
    event_seq: u32,
    recorded: u64,
}

struct Collector {
    cfg: RecorderConfig,
    /// Payload bytes in `batch`.
    bytes: usize,
    open: HashMap<SessionId, Open>,
    batch: Batch,
    /// Index of each session's row in `batch.sessions`, so a batch carries one row
    /// per session however many times it changed.
    in_batch: HashMap<SessionId, usize>,
}

impl Collector {
    fn new(cfg: RecorderConfig) -> Self {
        Self { cfg, bytes: 0, open: HashMap::new(), batch: Batch::default(), in_batch: HashMap::new() }
    }

    /// Whether the batch is big enough to go without waiting for the interval.
    fn full(&self) -> bool {
        self.batch.rows() >= self.cfg.batch_rows.max(1) || self.bytes >= self.cfg.batch_bytes
    }

    fn take(&mut self) -> Batch {
        self.in_batch.clear();
        self.bytes = 0;
        std::mem::take(&mut self.batch)
    }

    fn open_entry(&mut self, info: &SessionInfo) -> &mut Open {
        self.open.entry(info.id).or_default()
    }

    /// Puts `row` in the batch, in place of an earlier row of the same session.
    fn stage_row(&mut self, row: SessionRow) {
        match self.in_batch.get(&row.id) {
            Some(&i) => self.batch.sessions[i] = row,
            None => {
                self.in_batch.insert(row.id, self.batch.sessions.len());
                self.batch.sessions.push(row);
            }
        }
    }

    fn add(&mut self, event: SessionEvent) {
        match event {
            SessionEvent::Lifecycle { info, transition } => self.lifecycle(&info, transition),
            SessionEvent::Message(m) => self.message(m),
            // The message was recorded when the client sent it, and a drop comes with
            // its own error event: nothing new to store.
            SessionEvent::Queue(_) => {}
            SessionEvent::Logged(e) => self.log_entry(e),
            SessionEvent::Delivered(r) => {
                let open = self.open_entry(&r.info);
                open.recorded += r.count;
                self.batch.runs.push(RunRow {
                    session_id: r.info.id,
                    first_seq: r.first_seq,
                    count: r.count,
                    log: r.log.id,
                    first_offset: r.first_offset,
                });
            }
            SessionEvent::Error { info, kind, message } => {
                let open = self.open_entry(&info);
                open.event_seq += 1;
                let row = EventRow {
                    session_id: info.id,
                    seq: open.event_seq,
                    at: now(),
                    kind: EventKind::Error,
                    state: None,
                    error_kind: Some(kind.as_str().to_owned()),
                    detail: serde_json::json!({ "message": message }),
                };
                self.batch.events.push(row);
            }
        }
    }

    fn lifecycle(&mut self, info: &SessionInfo, t: Transition) {
        let mut row = first_row(info, &self.cfg.instance, &self.cfg.redact);
        let open = self.open_entry(info);
        open.event_seq += 1;
        let d = &t.detail;
        if let Some(s) = &d.subprotocol {
            open.subprotocol = Some(s.as_str().into());
        }
        if let Some(u) = &d.upstream {
            open.upstream = Some(u.as_str().into());
        }
        row.state = t.state;
        row.subprotocol = open.subprotocol.as_deref().map(str::to_owned);
        row.upstream = open.upstream.as_deref().map(str::to_owned);
        if t.state.is_final() {
            row.closed_at = Some(t.at);
            row.close_code = d.close_code;
            row.close_reason = d.close_reason.clone();
            row.initiator = d.initiator;
            if t.state == State::Failed {
                row.failure = d.reason.clone();
                row.failure_kind = d.reason_kind.map(|k| k.as_str().to_owned());
                row.http_status = d.http_status;
            }
            if let Some(tot) = d.totals {
                row.messages_in = tot.messages_in;
                row.messages_out = tot.messages_out;
                row.bytes_in = tot.bytes_in;
                row.bytes_out = tot.bytes_out;
                row.messages_dropped = (tot.messages_in + tot.messages_out).saturating_sub(open.recorded);
            }
        }
        let event = EventRow {
            session_id: info.id,
            seq: open.event_seq,
            at: t.at,
            kind: EventKind::Lifecycle,
            state: Some(t.state),
            error_kind: None,
            detail: serde_json::to_value(d).unwrap_or_default(),
        };
        self.batch.events.push(event);
        self.stage_row(row);
        if t.state.is_final() {
            self.open.remove(&info.id);
        }
    }

    /// A shared log's entry: stored once, whoever received it.
    fn log_entry(&mut self, e: LogEntry) {
        let (size, truncated, payload) = self.capped(e.payload);
        self.batch.log_entries.push(LogEntryRow {
            log: e.log.id,
            offset: e.offset,
            opcode: e.opcode.as_u8(),
            size,
            at: crate::model::from_micros(crate::model::to_micros(e.at)),
            truncated,
            payload,
        });
    }

    /// A payload cut at the cap: its full size, whether it was cut, what is kept.
    fn capped(&mut self, payload: bytes::Bytes) -> (u64, bool, bytes::Bytes) {
        let cap = self.cfg.payload_cap;
        let size = payload.len() as u64;
        let truncated = payload.len() > cap;
        let payload = if truncated { payload.slice(..cap) } else { payload };
        self.bytes += payload.len();
        (size, truncated, payload)
    }

    fn message(&mut self, m: MessageEvent) {
        let open = self.open_entry(&m.info);
        open.recorded += 1;
        // The route's payload policy: a message whose payload is not kept is stored
        // as its headers (size, opcode, time, flags), flagged truncated.
        let (size, truncated, payload) = if m.info.payloads.keeps(m.seq) {
            self.capped(m.payload)
        } else {
            (m.payload.len() as u64, !m.payload.is_empty(), bytes::Bytes::new())
        };
        self.batch.messages.push(MessageRow {
            session_id: m.info.id,
            seq: m.seq,
            direction: m.direction,
            opcode: m.opcode.as_u8(),
            fin: m.fin,
            size,
            at: m.at,
            injected: m.injected,
            marks: m.marks,
            truncated,
            payload,
        });
    }
}

fn first_row(info: &SessionInfo, instance: &str, redact: &[String]) -> SessionRow {
    let headers = info
        .headers
        .iter()
        .map(|(k, v)| {
            let secret = ALWAYS_REDACTED.iter().any(|r| k.eq_ignore_ascii_case(r))
                || redact.iter().any(|r| k.eq_ignore_ascii_case(r));
            (k.clone(), if secret { REDACTED.to_owned() } else { v.clone() })
        })
        .collect();
    SessionRow {
        id: info.id,
        instance: instance.to_owned(),
        kind: info.kind,
        route: info.route.to_string(),
        path: info.path.clone(),
        client_addr: info.client_addr.map(|a| a.to_string()),
        headers,
        subprotocol: None,
        upstream: None,
        state: State::Requested,
        opened_at: crate::model::from_micros(crate::model::to_micros(info.opened_at)),
        closed_at: None,
        close_code: None,
        close_reason: None,
        initiator: None,
        failure: None,
        failure_kind: None,
        http_status: None,
        messages_in: 0,
        messages_out: 0,
        bytes_in: 0,
        bytes_out: 0,
        messages_dropped: 0,
    }
}

/// Runs [`run`] on a thread of its own at `priority`: turning events into rows then
/// takes only the CPU traffic leaves under `--record drop` (see [`crate::priority`]),
/// and never a turn on the runtime that forwards frames. The receiver completes
/// once every batch is committed (or the recorder is gone).
pub fn spawn(
    store: Arc<dyn Store>,
    queue: ObserverQueue,
    cfg: RecorderConfig,
    stats: Arc<RecorderStats>,
    stop: CancellationToken,
    priority: WriterPriority,
) -> std::io::Result<oneshot::Receiver<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (done, finished) = oneshot::channel();
    std::thread::Builder::new().name("wsgate-recorder".into()).spawn(move || {
        priority.apply_to_current_thread();
        runtime.block_on(run(store, queue, cfg, stats, stop));
        let _ = done.send(());
    })?;
    Ok(finished)
}

/// Records what `queue` delivers until `stop` fires, then records what is still
/// queued and returns once every batch is committed. The gateway fires `stop` after
/// its sessions have ended, so their last events are in the queue by then.
pub async fn run(
    store: Arc<dyn Store>,
    mut queue: ObserverQueue,
    cfg: RecorderConfig,
    stats: Arc<RecorderStats>,
    stop: CancellationToken,
) {
    let (batches, mut rx) = mpsc::channel::<Batch>(1);
    let writer = tokio::spawn(async move {
        while let Some(batch) = rx.recv().await {
            let rows = batch.rows() as u64;
            let bytes: u64 = batch.messages.iter().map(|m| m.payload.len() as u64).sum();
            match store.write(batch).await {
                Ok(()) => {
                    stats.rows_written.fetch_add(rows, Ordering::Relaxed);
                    stats.payload_bytes_written.fetch_add(bytes, Ordering::Relaxed);
                    stats.batches_written.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    stats.write_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, rows, "cannot write session history");
                }
            }
        }
    });
    let interval = cfg.flush_interval;
    let mut c = Collector::new(cfg);
    let mut buf = Vec::with_capacity(TAKE);
    // When the batch being built got its first row.
    let mut started = tokio::time::Instant::now();
    'run: loop {
        if c.batch.is_empty() {
            // Nothing to write: sleep until there is something.
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                n = queue.recv_many(&mut buf, TAKE) => {
                    if n == 0 {
                        break;
                    }
                    started = tokio::time::Instant::now();
                }
            }
        } else {
            // Building a batch: look at the queue once a tick instead of being woken
            // for every event. Those wake-ups (a task switch, often a thread unpark)
            // cost a busy proxy more than turning the events into rows.
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(TICK) => {}
            }
        }
        // Everything queued by now, without waiting for more.
        let mut closed = false;
        loop {
            for ev in buf.drain(..) {
                c.add(ev);
            }
            if c.full() {
                if batches.send(c.take()).await.is_err() {
                    break 'run;
                }
                started = tokio::time::Instant::now();
            }
            match queue.recv_many(&mut buf, TAKE).now_or_never() {
                Some(0) => {
                    closed = true;
                    break;
                }
                Some(_) => {}
                None => break,
            }
        }
        if !c.batch.is_empty() && (closed || started.elapsed() >= interval) && batches.send(c.take()).await.is_err() {
            break;
        }
        if closed {
            break;
        }
    }
    // Stopping: what is queued now is the last of it.
    while let Ok(ev) = queue.try_recv() {
        c.add(ev);
        if c.full() {
            let _ = batches.send(c.take()).await;
        }
    }
    if !c.batch.is_empty() {
        let _ = batches.send(c.take()).await;
    }
    drop(batches);
    let _ = writer.await;
}
