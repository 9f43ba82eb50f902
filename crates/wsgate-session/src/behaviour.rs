//! What a served session says: the part each mode (echo, replay, rules, relay) fills
//! in, while the [`crate::server`] loop owns everything else (reads, commands, idle,
//! shutdown, the close handshake, the final state) — the shape of pingora's
//! `ProxyHttp`: one service owns the lifecycle, an application fills in phases.
//!
//! Every phase is synchronous and writes through an [`Outbox`], which queues output
//! and records it; the loop flushes once per burst. A behaviour that needs to wait
//! (replay's delays) asks for a tick ([`Behaviour::next_tick`]) instead of sleeping;
//! one fed from elsewhere (a relay's deliveries from its hub) says when it has output
//! waiting ([`Behaviour::poll_feed`]) and writes it in [`Behaviour::on_feed`].

use std::task::{Context, Poll};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use tokio::time::Instant;

use wsgate_core::{Direction, LogEntry, SessionHandle, SessionInfo, SharedLog};
use wsgate_protocol::{Message, Transport, WsStream};

/// A served session's behaviour. Only [`Behaviour::on_message`] is required.
pub trait Behaviour: Send + 'static {
    /// Once CONNECTED, before the first read (a replay's opening messages).
    fn on_open(&mut self, _out: &mut Outbox<'_>) {}

    /// A text or binary message the client sent (already recorded), while the session
    /// is not closing.
    fn on_message(&mut self, msg: Message, out: &mut Outbox<'_>);

    /// When [`Behaviour::on_tick`] is next due; `None`: no tick wanted. Asked again
    /// after every phase.
    fn next_tick(&self) -> Option<Instant> {
        None
    }

    /// The time [`Behaviour::next_tick`] named has come.
    fn on_tick(&mut self, _out: &mut Outbox<'_>) {}

    /// Ready when output produced elsewhere waits (a relay member's mailbox). While
    /// `congested` — the client's unwritten output is at [`crate::HIGH_WATER`]: it is
    /// not reading — only news that is not output should make it ready (drops to
    /// report, an overflow to act on); the feed's own bound and overflow policy hold
    /// the rest. Must register `cx` when pending, as any poll function.
    fn poll_feed(&mut self, _cx: &mut Context<'_>, _congested: bool) -> Poll<()> {
        Poll::Pending
    }

    /// [`Behaviour::poll_feed`] was ready: write what waits (a bounded amount, and
    /// nothing while [`Outbox::buffered`] is at [`crate::HIGH_WATER`]).
    fn on_feed(&mut self, _out: &mut Outbox<'_>) {}

    /// The client answered a ping (heartbeats).
    fn on_pong(&mut self, _out: &mut Outbox<'_>) {}
}

/// Where a behaviour's output goes: queued on the client's connection (written once
/// per burst) and recorded as `gateway_to_client`.
pub struct Outbox<'a> {
    pub(crate) ws: &'a mut WsStream<Transport>,
    pub(crate) session: &'a mut SessionHandle,
    pub(crate) at: DateTime<Utc>,
    pub(crate) close: Option<(u16, String)>,
    /// Set by [`Outbox::yield_to_others`].
    pub(crate) yield_now: bool,
    /// The route's faults, when it ever had any (`faults.rs`).
    pub(crate) faults: Option<&'a mut crate::faults::Faults>,
}

impl std::fmt::Debug for Outbox<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").field("buffered", &self.ws.buffered()).finish()
    }
}

impl Outbox<'_> {
    /// The session being served.
    pub fn session(&self) -> &SessionInfo {
        self.session.info()
    }

    /// Queues a message to the client; `false` once the session is closing (nothing
    /// more can be sent).
    #[inline]
    pub fn send(&mut self, msg: Message) -> bool {
        if let Some(f) = self.faults.as_deref_mut() {
            return f.send(self.ws, self.session, msg, self.at);
        }
        if self.ws.feed(&msg).is_err() {
            return false;
        }
        record(self.session, Direction::GatewayToClient, &msg, false, self.at);
        true
    }

    /// Bytes queued for the client and not yet written: a behaviour producing on its
    /// own schedule (ticks) should hold back while this is at [`crate::HIGH_WATER`].
    pub fn buffered(&self) -> usize {
        self.ws.buffered() + self.faults.as_ref().map_or(0, |f| f.held_for_client())
    }

    /// Queues a ping (heartbeats); not recorded as a message.
    pub fn ping(&mut self, payload: Bytes) -> bool {
        self.ws.feed(&Message::Ping(payload)).is_ok()
    }

    /// Queues a message to the client that is entry `offset` of a shared log (a relay
    /// room's publication): recorded as a reference to the log, which holds it once
    /// for every member, rather than as a copy per session.
    #[inline]
    pub fn send_logged(&mut self, msg: Message, log: &Arc<SharedLog>, offset: u64) -> bool {
        if self.ws.feed(&msg).is_err() {
            return false;
        }
        let (opcode, payload) = msg.to_parts();
        self.session.delivered(log, offset, opcode, &payload, self.at);
        true
    }

    /// Whether shared-log entries are kept now ([`Outbox::log`] would be used).
    pub fn keeps_logs(&self) -> bool {
        self.session.keeps_logs()
    }

    /// Hands an entry of a shared log (a publication this session made) to the
    /// recorder.
    pub fn log(&mut self, entry: LogEntry) {
        self.session.logged(entry);
    }

    /// Reports a problem on this session (an `error` event in its history).
    pub fn error(&mut self, kind: wsgate_core::ErrorKind, message: impl Into<String>) {
        self.session.error(kind, message.into());
    }

    /// Ends this burst and lets other tasks run before this session reads more: for a
    /// producer whose consumers are falling behind (a relay publisher whose members'
    /// queues are filling), so they drain before it adds more, instead of losing
    /// messages to their overflow policy. Only this session waits; no one else does.
    pub fn yield_to_others(&mut self) {
        self.yield_now = true;
    }

    /// Whether this phase asked to close the session ([`Outbox::close`]).
    pub fn closing(&self) -> bool {
        self.close.is_some()
    }

    /// Closes the session with this code and reason (initiator: gateway).
    pub fn close(&mut self, code: u16, reason: impl Into<String>) {
        self.close.get_or_insert((code, reason.into()));
    }
}

/// Records a whole message (one frame) seen or sent on the session.
#[inline]
pub(crate) fn record(
    session: &mut SessionHandle,
    direction: Direction,
    m: &Message,
    injected: bool,
    at: DateTime<Utc>,
) {
    let (opcode, payload) = m.to_parts();
    session.frame_parts(direction, opcode, true, &payload, injected, at);
}

/// [`record`], with what a fault did to it.
#[inline]
pub(crate) fn record_marked(
    session: &mut SessionHandle,
    direction: Direction,
    m: &Message,
    injected: bool,
    marks: wsgate_core::Marks,
    at: DateTime<Utc>,
) {
    let (opcode, payload) = m.to_parts();
    session.frame_marked(direction, opcode, true, &payload, injected, marks, at);
}
