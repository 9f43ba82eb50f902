//! The outbound session: wsgate dials a WebSocket server on an operator's request
//! (`POST /api/connections`) and keeps the connection as a session of kind
//! `outbound`, with the same lifecycle, message log, send and close as any other.
//!
//! wsgate is the *client* here: what it sends is recorded `client_to_upstream`
//! (flagged `injected`, since an operator asked for it), what the server sends
//! `upstream_to_client`.
//!
//! Lifecycle, all within one session:
//!
//! ```text
//! REQUESTED → CONNECTING{attempt:1} → CONNECTED{attempt, subprotocol, connect_ms}
//!           → DISCONNECTED   server's close frame: its code, initiator upstream
//!                            DELETE /api/connections/{id}: the code given, initiator admin
//!                            gateway shutdown: 1001, initiator gateway
//!                            connection lost (no reconnect): 1006, initiator upstream
//!                            (also when keepalive pings go unanswered for two intervals)
//!           ↘ FAILED{reason, reason_kind, http_status, attempt}
//! ```
//!
//! With reconnect on, an attempt that fails in a way a retry can help
//! ([`DialError::retryable`]: DNS, refused, timeout, a 5xx/429 answer — not a TLS
//! error or a 403), or a connection lost without a close frame, is followed by an
//! `error` event (`attempt_failed` or `connection_lost`, saying how long the wait
//! is) and a new CONNECTING step carrying the next `attempt` number and the
//! `reason`/`reason_kind`/`http_status` of what ended the previous one. The session
//! is CONNECTING during the wait, which is what it is doing. After `max_attempts`
//! failed attempts in a row, FAILED describes the last one. A close frame from the
//! server is a deliberate end and is not retried.
//!
//! Messages sent while no connection is up (during a dial or a wait) are held, at
//! most [`PENDING_SENDS`], and sent first once connected; beyond that they are dropped
//! with a `queue_overflow` error event.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderMap, StatusCode};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use url::Url;
use wsgate_core::{
    Command, Direction, Ending, ErrorKind, Initiator, InjectAck, InjectRefused, ReasonKind, SessionHandle, State,
    Target, TransitionDetail,
};
use wsgate_protocol::tls::ClientConfig;
use wsgate_protocol::{
    CloseCode, CloseFrame, ConnectError, ConnectRequest, Connected, Message, Role, WsConfig, WsError, WsStream,
};

use crate::backoff::{Backoff, BackoffPolicy};
use crate::guard::{self, GuardError, TargetPolicy};

/// Capacity of an outbound session's command queue: the one every session shares.
pub use wsgate_core::COMMAND_QUEUE;
/// Messages held while no connection is up; more are dropped (`queue_overflow`).
pub const PENDING_SENDS: usize = 64;
/// Output queued for the server at or above which sends are refused (503 `busy`):
/// the mark every session shares.
pub use wsgate_core::HIGH_WATER;
/// How long a close handshake may take before the connection is dropped.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// What to connect to, and how.
#[derive(Debug, Clone)]
pub struct OutboundConfig {
    pub url: Url,
    /// Extra request headers for the upgrade.
    pub headers: HeaderMap,
    /// Offered in `Sec-WebSocket-Protocol`, in order.
    pub subprotocols: Vec<String>,
    /// Reconnect after a lost connection or a failed attempt; `None`: one attempt.
    pub reconnect: Option<BackoffPolicy>,
    /// DNS + TCP + TLS + upgrade, for one attempt.
    pub connect_timeout: Duration,
    /// For `wss://`.
    pub tls: Arc<ClientConfig>,
    pub targets: TargetPolicy,
    /// Largest message accepted from the server (it is closed with 1009 above).
    pub max_message_size: usize,
    pub close_timeout: Duration,
    /// While connected, send a ping this often; a server that sends nothing back (no
    /// pong, no message) for two intervals has lost the connection. `None`: no pings.
    pub ping_interval: Option<Duration>,
}

impl OutboundConfig {
    pub fn new(url: Url, tls: Arc<ClientConfig>) -> Self {
        Self {
            url,
            headers: HeaderMap::new(),
            subprotocols: Vec::new(),
            reconnect: None,
            connect_timeout: Duration::from_secs(10),
            tls,
            targets: TargetPolicy::Any,
            max_message_size: 16 << 20,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            ping_interval: None,
        }
    }
}

/// Why an attempt did not connect.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The name now resolves to a non-public address (it did not when the connection
    /// was requested, or the guard would have refused it then).
    #[error("{0}; this gateway dials public addresses only (--allow-private-targets)")]
    Restricted(GuardError),
}

impl From<GuardError> for DialError {
    fn from(e: GuardError) -> Self {
        match e {
            GuardError::Lookup(c) => Self::Connect(c),
            restricted @ GuardError::Restricted { .. } => Self::Restricted(restricted),
        }
    }
}

impl DialError {
    /// The failure's class, as `reason_kind`: `dns`, `refused`, `connect`, `tls`,
    /// `timeout`, `http_status`, `handshake`, `invalid_url`, or `guard`.
    pub fn kind(&self) -> ReasonKind {
        match self {
            Self::Connect(e) => e.into(),
            Self::Restricted(_) => ReasonKind::Guard,
        }
    }

    /// The HTTP status of a refused upgrade.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Connect(e) => e.status().map(|s| s.as_u16()),
            Self::Restricted(_) => None,
        }
    }

    /// Whether another attempt may succeed: the network or the server may recover
    /// (DNS, refused, timeout, an HTTP failure mid-upgrade, 5xx, 429, 408), while a
    /// certificate, a 4xx verdict or a broken handshake will be the same next time.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Connect(e) => match e {
                ConnectError::Dns { .. }
                | ConnectError::Refused { .. }
                | ConnectError::Connect { .. }
                | ConnectError::Timeout { .. }
                | ConnectError::Http(_)
                | ConnectError::Takeover => true,
                ConnectError::Rejected { status, .. } => {
                    status.is_server_error()
                        || *status == StatusCode::TOO_MANY_REQUESTS
                        || *status == StatusCode::REQUEST_TIMEOUT
                }
                ConnectError::InvalidUrl { .. }
                | ConnectError::Tls { .. }
                | ConnectError::NoTlsConfig
                | ConnectError::BadAccept
                | ConnectError::UnofferedSubprotocol(_)
                | ConnectError::Extension(_) => false,
            },
            Self::Restricted(_) => false,
        }
    }

    fn initiator(&self) -> Initiator {
        match self {
            Self::Connect(_) => Initiator::Upstream,
            Self::Restricted(_) => Initiator::Gateway,
        }
    }
}

/// How a session (or one connection of it) ended.
enum Outcome {
    /// A close handshake (or its start): final. The shared [`Ending`], so the final
    /// transition is the one every handler records.
    Closed(Ending),
    /// The connection went away without a close frame: reconnect, if on.
    Lost { reason: String },
    /// The last attempt failed.
    Failed(DialError),
}

/// An operator or the gateway stopped the session while it was not connected.
enum Stop {
    Close { code: u16, reason: String },
    Shutdown,
}

impl From<Stop> for Outcome {
    fn from(s: Stop) -> Self {
        match s {
            Stop::Close { code, reason } => Self::Closed(Ending::new(code, Some(reason), Initiator::Admin)),
            Stop::Shutdown => {
                Self::Closed(Ending::closed(CloseCode::GOING_AWAY, "gateway shutting down", Initiator::Gateway))
            }
        }
    }
}

/// What ended the previous attempt, carried by the next CONNECTING step.
struct Why {
    reason: String,
    kind: ReasonKind,
    status: Option<u16>,
}

/// The session's inputs besides the connection: commands, shutdown, and the messages
/// waiting for a connection.
struct Control {
    commands: wsgate_core::Commands,
    /// False once every sender is gone (never while the session is registered).
    open: bool,
    shutdown: CancellationToken,
    pending: VecDeque<(Bytes, bool)>,
}

impl Control {
    /// Runs `fut` (a dial, a wait) while taking commands: sends are held for the
    /// connection, a close or the shutdown stops the session.
    async fn unless_stopped<F: Future>(&mut self, session: &mut SessionHandle, fut: F) -> Result<F::Output, Stop> {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Err(Stop::Shutdown),
                cmd = self.commands.recv(), if self.open => match cmd {
                    Some(Command::Close { code, reason, .. }) => return Err(Stop::Close { code, reason }),
                    // Held for the connection (or dropped, counted, when too many wait):
                    // either way it takes no more than `PENDING_SENDS` messages.
                    Some(Command::Inject { to: Target::Upstream, payload, binary, ack }) => {
                        self.hold(session, payload, binary);
                        ack.send(Ok(()));
                    }
                    Some(Command::Inject { to: Target::Client, ack, .. }) => no_client_side(session, ack),
                    // Only a proxy's pump holds frames at breakpoints.
                    Some(Command::Release { ack, .. }) => { let _ = ack.send(false); }
                    None => self.open = false,
                },
                out = &mut fut => return Ok(out),
            }
        }
    }

    fn hold(&mut self, session: &mut SessionHandle, payload: Bytes, binary: bool) {
        if self.pending.len() >= PENDING_SENDS {
            let n = payload.len();
            session.error(
                ErrorKind::QueueOverflow,
                format!("not connected and {PENDING_SENDS} messages already wait: dropped a {n}-byte message"),
            );
        } else {
            self.pending.push_back((payload, binary));
        }
    }
}

fn no_client_side(session: &mut SessionHandle, ack: InjectAck) {
    const WHY: &str = "an outbound session has no client to send to (wsgate is the client): send to the upstream";
    session.error(ErrorKind::NoSuchSide, WHY.into());
    ack.send(Err(InjectRefused::NoSuchSide { to: Target::Client, why: WHY }));
}

/// One outbound session, from its first dial to its final state.
pub struct Outbound {
    cfg: OutboundConfig,
    backoff: Option<Backoff>,
    /// Addresses already vetted by the guard, for the first attempt.
    vetted: Option<Vec<SocketAddr>>,
}

impl Outbound {
    pub fn new(cfg: OutboundConfig) -> Self {
        let backoff = cfg.reconnect.map(Backoff::new);
        Self { cfg, backoff, vetted: None }
    }

    /// Draws backoff delays from `rng` (seeded, in tests).
    pub fn with_rng(mut self, rng: fastrand::Rng) -> Self {
        self.backoff = self.cfg.reconnect.map(|p| Backoff::with_rng(p, rng));
        self
    }

    /// The addresses [`guard::vet`] returned when the connection was requested: the
    /// first attempt dials them rather than resolving the name again.
    pub fn with_vetted(mut self, addrs: Vec<SocketAddr>) -> Self {
        self.vetted = Some(addrs);
        self
    }

    /// Runs the session until its final state. `session` was opened (REQUESTED) by
    /// the caller, `commands` is its queue, `shutdown` the gateway's.
    pub async fn run(
        mut self,
        mut session: SessionHandle,
        commands: wsgate_core::Commands,
        shutdown: CancellationToken,
    ) {
        let mut ctl = Control { commands, open: true, shutdown, pending: VecDeque::new() };
        let upstream = self.cfg.url.to_string();
        let mut attempt: u32 = 1;
        let mut why: Option<Why> = None;
        let mut wait: Option<Duration> = None;
        let ending = loop {
            session.transition(
                State::Connecting,
                TransitionDetail {
                    upstream: Some(upstream.clone()),
                    attempt: Some(attempt),
                    reason: why.as_ref().map(|w| w.reason.clone()),
                    reason_kind: why.as_ref().map(|w| w.kind),
                    http_status: why.as_ref().and_then(|w| w.status),
                    ..Default::default()
                },
            );
            if let Some(d) = wait.take()
                && let Err(stop) = ctl.unless_stopped(&mut session, tokio::time::sleep(d)).await
            {
                break stop.into();
            }
            let started = Instant::now();
            let vetted = self.vetted.take();
            let dialled = match ctl.unless_stopped(&mut session, self.dial(vetted)).await {
                Ok(d) => d,
                Err(stop) => break stop.into(),
            };
            match dialled {
                Ok(connected) => {
                    session.transition(
                        State::Connected,
                        TransitionDetail {
                            upstream: Some(upstream.clone()),
                            subprotocol: connected.subprotocol.clone(),
                            connect_ms: Some(started.elapsed().as_secs_f64() * 1000.0),
                            attempt: Some(attempt),
                            ..Default::default()
                        },
                    );
                    if let Some(b) = &mut self.backoff {
                        b.on_connected();
                    }
                    match (self.pump(connected, &mut session, &mut ctl).await, &mut self.backoff) {
                        (Outcome::Lost { reason }, Some(backoff)) if !ctl.shutdown.is_cancelled() => {
                            let d = backoff.on_lost();
                            session.error(
                                ErrorKind::ConnectionLost,
                                format!("{reason}; reconnecting in {} ms (attempt {})", d.as_millis(), attempt + 1),
                            );
                            why = Some(Why { reason, kind: ReasonKind::ConnectionLost, status: None });
                            wait = Some(d);
                        }
                        (end, _) => break end,
                    }
                }
                Err(e) => {
                    let next = if e.retryable() { self.backoff.as_mut().and_then(Backoff::on_failure) } else { None };
                    let Some(d) = next else { break Outcome::Failed(e) };
                    session.error(
                        ErrorKind::AttemptFailed,
                        format!("attempt {attempt} failed ({}): {e}; retrying in {} ms", e.kind(), d.as_millis()),
                    );
                    why = Some(Why { reason: e.to_string(), kind: e.kind(), status: e.status() });
                    wait = Some(d);
                }
            }
            attempt += 1;
        };
        finish(&mut session, ending, upstream, attempt);
        session.settle().await;
    }

    /// One attempt: vet the target if only public ones are allowed, then connect to
    /// exactly the vetted addresses.
    async fn dial(&self, vetted: Option<Vec<SocketAddr>>) -> Result<Connected, DialError> {
        let started = Instant::now();
        let mut req = ConnectRequest::new(self.cfg.url.clone());
        req.headers = self.cfg.headers.clone();
        req.subprotocols = self.cfg.subprotocols.clone();
        req.tls = Some(self.cfg.tls.clone());
        req.timeout = self.cfg.connect_timeout;
        if self.cfg.targets == TargetPolicy::PublicOnly {
            let addrs = match vetted {
                Some(a) => a,
                None => guard::vet(&self.cfg.url, self.cfg.connect_timeout).await?,
            };
            req.resolved = Some(addrs);
            req.timeout = self.cfg.connect_timeout.saturating_sub(started.elapsed());
        }
        Ok(wsgate_protocol::connect(req).await?)
    }

    /// Moves messages until the connection ends.
    async fn pump(&self, connected: Connected, session: &mut SessionHandle, ctl: &mut Control) -> Outcome {
        let max = self.cfg.max_message_size;
        let limits = WsConfig { max_frame_size: max, max_message_size: max };
        let mut ws = WsStream::new(connected.transport, Role::Client, limits, connected.leftover);
        // What was sent while no connection was up goes first, in order.
        while let Some((payload, binary)) = ctl.pending.pop_front() {
            send(&mut ws, session, payload, binary);
        }
        let close_timeout = self.cfg.close_timeout;
        let mut ending: Option<Outcome> = None;
        // Only polled once the session is closing, and re-armed then.
        let close_deadline = tokio::time::sleep(close_timeout);
        tokio::pin!(close_deadline);
        // Keepalive: idle connections die silently behind NATs and load balancers;
        // a ping now and then keeps them open and finds out when they are gone.
        let mut keepalive = self.cfg.ping_interval.map(|every| {
            let mut t = tokio::time::interval_at(Instant::now() + every, every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            (t, every)
        });
        let mut last_heard = Instant::now();
        loop {
            let closing = ending.is_some();
            tokio::select! {
                _ = tick(&mut keepalive), if !closing => {
                    let every = keepalive.as_ref().map_or(Duration::ZERO, |k| k.1);
                    if last_heard.elapsed() >= 2 * every {
                        let reason = format!("connection lost: no answer to keepalive pings for {} ms", last_heard.elapsed().as_millis());
                        ending = Some(Outcome::Lost { reason });
                        break;
                    }
                    let ping = Message::Ping(Bytes::new());
                    if ws.feed(&ping).is_ok() {
                        record(session, Direction::ClientToUpstream, &ping, false, Utc::now());
                    }
                }
                _ = ctl.shutdown.cancelled(), if !closing => {
                    let reason = "gateway shutting down";
                    start_close(&mut ws, session, CloseCode::GOING_AWAY, reason, Initiator::Gateway, &mut ending);
                    close_deadline.as_mut().reset(Instant::now() + close_timeout);
                }
                _ = &mut close_deadline, if closing => break,
                cmd = ctl.commands.recv(), if !closing && ctl.open => match cmd {
                    Some(Command::Inject { to: Target::Upstream, payload, binary, ack }) => {
                        // The server is not reading: refuse rather than buffer without bound.
                        let buffered = ws.buffered();
                        if buffered >= HIGH_WATER {
                            ack.send(Err(InjectRefused::Busy { to: Target::Upstream, buffered }));
                        } else {
                            send(&mut ws, session, payload, binary);
                            ack.send(Ok(()));
                        }
                    }
                    Some(Command::Inject { to: Target::Client, ack, .. }) => no_client_side(session, ack),
                    Some(Command::Close { code, reason, .. }) => {
                        start_close(&mut ws, session, code, &reason, Initiator::Admin, &mut ending);
                        close_deadline.as_mut().reset(Instant::now() + close_timeout);
                    }
                    Some(Command::Release { ack, .. }) => { let _ = ack.send(false); }
                    None => ctl.open = false,
                },
                // Under `--record strict`, events the store could not take yet hold
                // the reads back until it can.
                _ = session.settle(), if session.has_pending() => {}
                msg = ws.recv(), if !session.has_pending() => match msg {
                    Ok(m) => {
                        last_heard = Instant::now();
                        let at = Utc::now();
                        record(session, Direction::UpstreamToClient, &m, false, at);
                        if let Message::Close(c) = &m
                            && ending.is_none()
                        {
                            // The stream answers with the same code (RFC 6455 §5.5.1);
                            // record that reply too, so the history holds both frames.
                            let code = c.as_ref().map(|c| c.code);
                            let reply = Message::Close(Some(CloseFrame::new(code.unwrap_or(CloseCode::NORMAL), "")));
                            record(session, Direction::ClientToUpstream, &reply, false, at);
                            ending = Some(Outcome::Closed(Ending::new(
                                code.unwrap_or(CloseCode::NO_STATUS),
                                c.as_ref().map(|c| c.reason.clone()),
                                Initiator::Upstream,
                            )));
                            close_deadline.as_mut().reset(Instant::now() + close_timeout);
                        }
                    }
                    Err(WsError::Closed) => break,
                    Err(WsError::Protocol(e)) => {
                        session.error(ErrorKind::Protocol, format!("upstream side: {e}"));
                        ending.get_or_insert(Outcome::Closed(Ending::new(
                            e.close_code(),
                            Some(e.to_string()),
                            Initiator::Gateway,
                        )));
                        let _ = tokio::time::timeout(close_timeout, ws.flush_best_effort()).await;
                        break;
                    }
                    Err(e) => {
                        ending.get_or_insert(Outcome::Lost { reason: format!("connection lost: {e}") });
                        break;
                    }
                },
            }
        }
        ending.unwrap_or(Outcome::Lost { reason: "connection lost".into() })
    }
}

/// The next keepalive tick, or never when pings are off.
async fn tick(keepalive: &mut Option<(tokio::time::Interval, Duration)>) {
    match keepalive {
        Some((t, _)) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The final transition.
fn finish(session: &mut SessionHandle, ending: Outcome, upstream: String, attempt: u32) {
    let (state, detail) = match ending {
        Outcome::Closed(e) => (State::Disconnected, e.detail()),
        Outcome::Lost { reason } => {
            (State::Disconnected, Ending::new(CloseCode::ABNORMAL, Some(reason), Initiator::Upstream).detail())
        }
        Outcome::Failed(e) => (
            State::Failed,
            TransitionDetail {
                reason: Some(e.to_string()),
                reason_kind: Some(e.kind()),
                http_status: e.status(),
                upstream: Some(upstream),
                initiator: Some(e.initiator()),
                attempt: Some(attempt),
                ..Default::default()
            },
        ),
    };
    session.transition(state, detail);
}

/// Queues a text or binary message and records it as sent by wsgate.
fn send(ws: &mut WsStream<wsgate_protocol::Transport>, session: &mut SessionHandle, payload: Bytes, binary: bool) {
    let m = if binary { Message::Binary(payload) } else { Message::Text(payload) };
    if ws.feed(&m).is_ok() {
        record(session, Direction::ClientToUpstream, &m, true, Utc::now());
    }
}

/// Queues our close frame and notes who ended the session (the first one wins).
fn start_close(
    ws: &mut WsStream<wsgate_protocol::Transport>,
    session: &mut SessionHandle,
    code: u16,
    reason: &str,
    by: Initiator,
    ending: &mut Option<Outcome>,
) {
    let m = Message::Close(Some(CloseFrame::new(code, reason)));
    if ws.feed(&m).is_ok() {
        record(session, Direction::ClientToUpstream, &m, by == Initiator::Admin, Utc::now());
    }
    ending.get_or_insert(Outcome::Closed(Ending::closed(code, reason, by)));
}

fn record(session: &mut SessionHandle, direction: Direction, m: &Message, injected: bool, at: DateTime<Utc>) {
    let (opcode, payload) = m.to_parts();
    session.frame_parts(direction, opcode, true, &payload, injected, at);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(status: u16) -> DialError {
        DialError::Connect(ConnectError::Rejected {
            status: StatusCode::from_u16(status).expect("status"),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        })
    }

    #[test]
    fn which_failures_are_retried() {
        let addr: SocketAddr = "127.0.0.1:9".parse().expect("addr");
        let io = || std::io::Error::other("x");
        assert!(DialError::Connect(ConnectError::Refused { addr }).retryable());
        assert!(DialError::Connect(ConnectError::Dns { host: "h".into(), source: io() }).retryable());
        let timeout = ConnectError::Timeout { stage: "upgrade", after: Duration::from_secs(1) };
        assert!(DialError::Connect(timeout).retryable());
        assert!(rejected(503).retryable() && rejected(429).retryable());
        assert!(!rejected(403).retryable() && !rejected(404).retryable());
        assert!(!DialError::Connect(ConnectError::Tls { host: "h".into(), source: io() }).retryable());
        let restricted =
            GuardError::Restricted { host: "h".into(), addr: addr.ip(), range: crate::guard::Restricted::Loopback };
        let guarded = DialError::from(restricted);
        assert!(!guarded.retryable());
        assert_eq!(guarded.kind(), ReasonKind::Guard);
        assert_eq!(rejected(403).kind(), ReasonKind::HttpStatus);
        assert_eq!(rejected(403).status(), Some(403));
        // A lookup failure from the guard is a DNS failure like any other.
        let lookup = DialError::from(GuardError::Lookup(ConnectError::Dns { host: "h".into(), source: io() }));
        assert_eq!(lookup.kind(), ReasonKind::Dns);
    }
}
