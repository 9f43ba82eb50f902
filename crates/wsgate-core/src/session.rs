//! A session: its identity, its lifecycle, and the handle its handler reports through.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use wsgate_protocol::{Frame, OpCode};

use crate::bus::{EventBus, Pending};
use crate::event::{DeliveryRun, Direction, MessageEvent, SessionEvent, SharedLog};
use crate::id::SessionId;
use crate::kinds::{ErrorKind, ReasonKind};
use crate::registry::Registry;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    Proxy,
    Relay,
    Mock,
    Outbound,
}

impl SessionKind {
    /// Every value, in declaration order.
    pub const ALL: [Self; 4] = [Self::Proxy, Self::Relay, Self::Mock, Self::Outbound];

    /// The value whose [`as_str`](Self::as_str) name is `s`, in any case.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str().eq_ignore_ascii_case(s))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Proxy => "proxy",
            Self::Relay => "relay",
            Self::Mock => "mock",
            Self::Outbound => "outbound",
        }
    }
}

/// `REQUESTED → CONNECTING → CONNECTED → DISCONNECTED | FAILED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    Requested,
    Connecting,
    Connected,
    Disconnected,
    Failed,
}

impl State {
    /// Every value, in declaration order.
    pub const ALL: [Self; 5] = [Self::Requested, Self::Connecting, Self::Connected, Self::Disconnected, Self::Failed];

    /// The value whose [`as_str`](Self::as_str) name is `s`, in any case.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str().eq_ignore_ascii_case(s))
    }

    pub fn is_final(self) -> bool {
        matches!(self, Self::Disconnected | Self::Failed)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "REQUESTED",
            Self::Connecting => "CONNECTING",
            Self::Connected => "CONNECTED",
            Self::Disconnected => "DISCONNECTED",
            Self::Failed => "FAILED",
        }
    }
    /// Whether `next` may follow `self`.
    ///
    /// A final state is never left. CONNECTING may repeat, and may follow CONNECTED,
    /// for sessions that reconnect (outbound connections): each attempt is one
    /// CONNECTING step (with its `attempt` number and the reason the previous one
    /// ended), all within the one session. Handlers that never reconnect simply never
    /// ask for those steps.
    pub fn can_become(self, next: State) -> bool {
        use State::*;
        matches!(
            (self, next),
            (Requested, Connecting | Connected | Failed | Disconnected)
                | (Connecting, Connecting | Connected | Failed | Disconnected)
                | (Connected, Connecting | Disconnected | Failed)
        )
    }
}

/// Who ended a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Initiator {
    Client,
    Upstream,
    Gateway,
    Admin,
}

impl Initiator {
    /// Every value, in declaration order.
    pub const ALL: [Self; 4] = [Self::Client, Self::Upstream, Self::Gateway, Self::Admin];

    /// The value whose [`as_str`](Self::as_str) name is `s`, in any case.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str().eq_ignore_ascii_case(s))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Upstream => "upstream",
            Self::Gateway => "gateway",
            Self::Admin => "admin",
        }
    }
}

/// What a session is, fixed when it is requested.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionInfo {
    pub id: SessionId,
    pub kind: SessionKind,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub route: Arc<str>,
    /// Request path and query as the client sent them.
    pub path: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "127.0.0.1:50312"))]
    pub client_addr: Option<SocketAddr>,
    /// Selected request headers, credentials already redacted.
    pub headers: Vec<(String, String)>,
    pub opened_at: DateTime<Utc>,
    /// What history keeps of its payloads (its route's `record_payloads`).
    #[serde(skip)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub payloads: crate::PayloadPolicy,
}

impl SessionInfo {
    /// The path without its query.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or(&self.path)
    }
}

/// How a session ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CloseInfo {
    pub code: Option<u16>,
    pub reason: Option<String>,
    pub initiator: Option<Initiator>,
}

/// Extra facts a transition carries.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TransitionDetail {
    /// Human-readable reason (`connection to 127.0.0.1:9 refused`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Machine-readable class of a failure: `dns`, `refused`, `tls`, `timeout`,
    /// `http_status`, `handshake`, `resolver`, … ([`ReasonKind`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_kind: Option<ReasonKind>,
    /// HTTP status of a refused upstream upgrade.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subprotocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub close_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub close_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initiator: Option<Initiator>,
    /// Time the upstream dial took, for CONNECTED after CONNECTING.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_ms: Option<f64>,
    /// What the session carried, on its final transition (the store compares it with
    /// what it recorded to count dropped messages).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub totals: Option<Totals>,
    /// Which attempt this is, for outbound sessions that reconnect (from 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// On CONNECTING: the client is answered (101) at once, before the upstream
    /// (`--accept-early`); its messages wait in the accept-early queue meanwhile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted_early: Option<bool>,
}

/// Messages and bytes each way.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub messages_in: u64,
    pub messages_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// One step of a lifecycle.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Transition {
    pub state: State,
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub detail: TransitionDetail,
}

/// Per-session counters, written by the owning task only (relaxed atomics so the
/// control plane can read them without a lock).
#[derive(Debug, Default)]
pub struct Counters {
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

/// What a handler holds for one session. Emitting through it is the only way a
/// handler reports anything; dropping it without a final state records the session
/// as DISCONNECTED by the gateway, so no session can stay "live" forever.
pub struct SessionHandle {
    info: Arc<SessionInfo>,
    bus: Arc<EventBus>,
    registry: Arc<Registry>,
    counters: Arc<Counters>,
    state: State,
    seq: u64,
    /// Events a waiting observer could not take yet (see [`crate::bus::Overflow`]).
    pending: Pending,
    /// Deliveries from a shared log not yet handed to the log keepers (boxed: most
    /// sessions never have one, and every open session holds this handle).
    run: Option<Box<OpenRun>>,
}

/// How long a run of deliveries may stay open before it is handed to the recorder,
/// so a live session's history is this far behind at most (the recorder's own batch
/// interval comes on top). A second, not the recorder's 100 ms: at 100 publications
/// a second to 1 000 members, 100 ms runs were a timer wake-up and a row per member
/// every 100 ms — 0.5 µs more relay CPU per delivery, and the batches of run rows
/// showed in the publish → last-subscriber tail.
pub const RUN_FLUSH: std::time::Duration = std::time::Duration::from_secs(1);

/// A run of deliveries being extended ([`crate::DeliveryRun`]).
struct OpenRun {
    log: Arc<SharedLog>,
    first_seq: u64,
    first_offset: u64,
    count: u64,
    due: std::time::Instant,
}

impl SessionHandle {
    /// Registers a new session in REQUESTED and returns its handle and the receiving
    /// end of its command queue (inject/close from the control plane).
    pub fn open(
        info: SessionInfo,
        bus: Arc<EventBus>,
        registry: Arc<Registry>,
        command_capacity: usize,
    ) -> (Self, crate::Commands) {
        let info = Arc::new(info);
        let (tx, rx) = crate::Commands::channel(command_capacity);
        let counters = Arc::new(Counters::default());
        let first = Transition { state: State::Requested, at: Utc::now(), detail: TransitionDetail::default() };
        registry.insert(info.clone(), tx, counters.clone(), first.clone());
        let mut pending = Pending::default();
        bus.emit_or_park(SessionEvent::Lifecycle { info: info.clone(), transition: first }, &mut pending);
        (Self { info, bus, registry, counters, state: State::Requested, seq: 0, pending, run: None }, rx)
    }

    pub fn id(&self) -> SessionId {
        self.info.id
    }
    pub fn info(&self) -> &Arc<SessionInfo> {
        &self.info
    }
    pub fn state(&self) -> State {
        self.state
    }
    pub fn bus(&self) -> &Arc<EventBus> {
        &self.bus
    }

    /// Moves to `state`. Invalid transitions (e.g. out of a final state) are ignored:
    /// the first final state wins.
    pub fn transition(&mut self, state: State, mut detail: TransitionDetail) {
        if !self.state.can_become(state) {
            return;
        }
        if state.is_final() {
            // The history must hold every delivery before the end that counts them.
            self.flush_run();
        }
        self.state = state;
        log_transition(&self.info, state, &detail);
        if state.is_final() {
            detail.totals = Some(self.totals());
        }
        let t = Transition { state, at: Utc::now(), detail };
        self.registry.record(self.info.id, t.clone());
        self.bus.emit_or_park(SessionEvent::Lifecycle { info: self.info.clone(), transition: t }, &mut self.pending);
    }

    /// What the session carried so far, each way.
    pub fn totals(&self) -> Totals {
        let c = &self.counters;
        Totals {
            messages_in: c.messages_in.load(Ordering::Relaxed),
            messages_out: c.messages_out.load(Ordering::Relaxed),
            bytes_in: c.bytes_in.load(Ordering::Relaxed),
            bytes_out: c.bytes_out.load(Ordering::Relaxed),
        }
    }

    /// Whether events wait for a full observer (`--record strict`); a handler stops
    /// reading from its peers until [`SessionHandle::poll_settle`] is ready.
    #[inline]
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Delivers the events waiting for room in an observer's queue; `Ready` when none
    /// is left. Handlers call it before each read, which is how `--record strict`
    /// makes traffic wait instead of losing messages.
    #[inline]
    pub fn poll_settle(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.pending.is_empty() {
            return std::task::Poll::Ready(());
        }
        self.pending.poll_settle(&self.bus, cx)
    }

    /// [`SessionHandle::poll_settle`] as a future.
    pub async fn settle(&mut self) {
        std::future::poll_fn(|cx| self.poll_settle(cx)).await
    }

    /// Records a frame seen (or injected) on `direction`, timestamped now.
    #[inline]
    pub fn frame(&mut self, direction: Direction, frame: &Frame, injected: bool) {
        let at = self.frame_time();
        self.frame_at(direction, frame, injected, at);
    }

    /// The time to stamp a frame with: now, or a constant when no observer wants
    /// message events (the stamp is then never read, and the clock read is saved).
    #[inline]
    pub fn frame_time(&self) -> DateTime<Utc> {
        if self.bus.wants_messages() { Utc::now() } else { DateTime::<Utc>::UNIX_EPOCH }
    }

    /// Records a frame with a timestamp the caller already has: frames decoded from
    /// one read share the time of that read, which saves a clock read per frame on
    /// the hot path.
    #[inline]
    pub fn frame_at(&mut self, direction: Direction, frame: &Frame, injected: bool, at: DateTime<Utc>) {
        self.frame_parts(direction, frame.opcode, frame.fin, &frame.payload, injected, at);
    }

    /// Same as [`SessionHandle::frame_at`] from parts, for callers that have no `Frame`.
    #[inline]
    pub fn frame_parts(
        &mut self,
        direction: Direction,
        opcode: OpCode,
        fin: bool,
        payload: &Bytes,
        injected: bool,
        at: DateTime<Utc>,
    ) {
        self.frame_marked(direction, opcode, fin, payload, injected, crate::Marks::NONE, at);
    }

    /// Records a frame a rule or fault acted on (or produced), with what it did.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn frame_marked(
        &mut self,
        direction: Direction,
        opcode: OpCode,
        fin: bool,
        payload: &Bytes,
        injected: bool,
        marks: crate::Marks,
        at: DateTime<Utc>,
    ) {
        self.count(direction, payload.len() as u64);
        if !self.bus.wants_messages() {
            return;
        }
        let mut event = self.message_event(direction, opcode, fin, payload, injected, at);
        event.marks = marks;
        self.bus.emit_message(event, &mut self.pending);
    }

    /// Numbers the next frame and counts it, in the session's totals and the bus's.
    #[inline]
    fn count(&mut self, direction: Direction, len: u64) {
        self.seq += 1;
        // The owning task is the only writer, so a plain load + store is enough (no
        // locked read-modify-write on the hot path); readers just see a recent value.
        let bump = |a: &AtomicU64, by: u64| a.store(a.load(Ordering::Relaxed) + by, Ordering::Relaxed);
        if direction.is_inbound() {
            bump(&self.counters.messages_in, 1);
            bump(&self.counters.bytes_in, len);
        } else {
            bump(&self.counters.messages_out, 1);
            bump(&self.counters.bytes_out, len);
        }
        self.bus.count_frame(direction, len);
    }

    /// The event for the frame just counted.
    #[inline]
    fn message_event(
        &self,
        direction: Direction,
        opcode: OpCode,
        fin: bool,
        payload: &Bytes,
        injected: bool,
        at: DateTime<Utc>,
    ) -> MessageEvent {
        MessageEvent {
            info: self.info.clone(),
            seq: self.seq,
            direction,
            opcode,
            fin,
            payload: payload.clone(),
            injected,
            marks: crate::Marks::NONE,
            at,
        }
    }

    /// Records a message sent to the client that is entry `offset` of a shared `log`
    /// (a relay room's publication): counted like any frame, shown one by one to
    /// observers that show messages, and kept by the recorder as part of a run that
    /// refers to the log instead of a copy per session.
    #[inline]
    pub fn delivered(&mut self, log: &Arc<SharedLog>, offset: u64, opcode: OpCode, payload: &Bytes, at: DateTime<Utc>) {
        self.count(Direction::GatewayToClient, payload.len() as u64);
        if !self.bus.wants_messages() {
            return;
        }
        if self.bus.wants_deliveries() {
            let event = self.message_event(Direction::GatewayToClient, opcode, true, payload, false, at);
            self.bus.emit_delivery(event, &mut self.pending);
        }
        if !self.bus.wants_runs() {
            return;
        }
        if let Some(r) = &mut self.run
            && Arc::ptr_eq(&r.log, log)
            && r.first_seq + r.count == self.seq
            && r.first_offset + r.count == offset
        {
            r.count += 1;
            return;
        }
        self.flush_run();
        let due = std::time::Instant::now() + RUN_FLUSH;
        self.run =
            Some(Box::new(OpenRun { log: log.clone(), first_seq: self.seq, first_offset: offset, count: 1, due }));
    }

    /// Whether an observer keeps shared logs now: if not, a publisher need not build
    /// their entries.
    #[inline]
    pub fn keeps_logs(&self) -> bool {
        self.bus.wants_runs()
    }

    /// Hands an entry of a shared log (a publication this session made) to the log
    /// keepers; under `--record strict` it waits with this session's other events.
    pub fn logged(&mut self, entry: crate::LogEntry) {
        self.bus.emit_shared(SessionEvent::Logged(entry), Some(&mut self.pending));
    }

    /// When the open run of deliveries is due to be handed on ([`SessionHandle::flush_run`]).
    #[inline]
    pub fn run_due(&self) -> Option<std::time::Instant> {
        self.run.as_ref().map(|r| r.due)
    }

    /// Hands the open run of deliveries to the log keepers.
    pub fn flush_run(&mut self) {
        let Some(r) = self.run.take() else { return };
        let run = DeliveryRun {
            info: self.info.clone(),
            first_seq: r.first_seq,
            count: r.count,
            log: r.log,
            first_offset: r.first_offset,
        };
        self.bus.emit_shared(SessionEvent::Delivered(run), Some(&mut self.pending));
    }

    /// Reports what became of a message the accept-early queue held (see
    /// [`crate::QueueEvent`]); nothing is built while no observer wants messages.
    pub fn queued(&mut self, outcome: crate::QueueOutcome, frame: &Frame, queued_at: DateTime<Utc>) {
        if !self.bus.wants_messages() {
            return;
        }
        let event = crate::QueueEvent {
            info: self.info.clone(),
            outcome,
            opcode: frame.opcode,
            payload: frame.payload.clone(),
            queued_at,
            at: Utc::now(),
        };
        self.bus.emit_payload(SessionEvent::Queue(event), &mut self.pending);
    }

    /// Reports a non-fatal error or a notable event (queued messages dropped, a
    /// resolver fallback).
    pub fn error(&mut self, kind: ErrorKind, message: String) {
        self.bus.emit_or_park(SessionEvent::Error { info: self.info.clone(), kind, message }, &mut self.pending);
    }
}

/// One log line per lifecycle step: failures at `warn` (someone should look),
/// endings at `info`, the steps in between at `debug`.
fn log_transition(info: &SessionInfo, state: State, d: &TransitionDetail) {
    let (id, kind, path) = (info.id, info.kind.as_str(), info.path.as_str());
    match state {
        State::Failed => tracing::warn!(
            session = %id, kind, path, reason = d.reason.as_deref().unwrap_or(""),
            reason_kind = d.reason_kind.map_or("", ReasonKind::as_str), http_status = d.http_status, "session failed"
        ),
        State::Disconnected => tracing::info!(
            session = %id, kind, path, close_code = d.close_code, close_reason = d.close_reason.as_deref().unwrap_or(""),
            initiator = d.initiator.map(Initiator::as_str).unwrap_or(""), "session closed"
        ),
        State::Connected => tracing::info!(
            session = %id, kind, path, upstream = d.upstream.as_deref().unwrap_or(""),
            subprotocol = d.subprotocol.as_deref().unwrap_or(""), "session connected"
        ),
        _ => tracing::debug!(session = %id, kind, path, state = state.as_str(), "session step"),
    }
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        if !self.state.is_final() {
            self.transition(
                State::Disconnected,
                TransitionDetail {
                    reason: Some("session ended without a close".into()),
                    initiator: Some(Initiator::Gateway),
                    close_code: Some(wsgate_protocol::CloseCode::ABNORMAL),
                    ..Default::default()
                },
            );
        }
        self.flush_run();
        self.registry.finish(self.info.id);
        self.pending.hand_off(&self.bus);
    }
}

#[cfg(test)]
mod tests {
    use super::State::{self, *};

    const ALL: [State; 5] = [Requested, Connecting, Connected, Disconnected, Failed];

    #[test]
    fn lifecycle_transitions() {
        let allowed = |from: State| -> Vec<State> { ALL.into_iter().filter(|&to| from.can_become(to)).collect() };
        assert_eq!(allowed(Requested), [Connecting, Connected, Disconnected, Failed]);
        // A reconnecting session: attempt after attempt, and back to CONNECTING when
        // an established connection is lost.
        assert_eq!(allowed(Connecting), [Connecting, Connected, Disconnected, Failed]);
        assert_eq!(allowed(Connected), [Connecting, Disconnected, Failed]);
        // Final states are final: the first one wins.
        assert!(allowed(Disconnected).is_empty());
        assert!(allowed(Failed).is_empty());
        // Nothing goes back to REQUESTED, and CONNECTED never repeats without a new attempt.
        assert!(ALL.iter().all(|s| !s.can_become(Requested)));
        assert!(!Connected.can_become(Connected));
    }
}
