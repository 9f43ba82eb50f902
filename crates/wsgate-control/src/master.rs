//! websocket-multiplex's master-control connection on the control port's root, so
//! its users' monitoring scripts connect to `ws://HOST:PORT/` and read the shapes they
//! already parse (docs/migrating-from-websocket-multiplex.md has them side by side).
//!
//! A root connection is one more subscriber of the live hub ([`crate::live`]): the
//! live observer turns each bus event into these shapes once ([`render`]) and shares
//! the result with every root connection, each behind its own bounded queue (drops
//! counted in `wsgate_live_dropped_total`). Handlers never know it exists.
//!
//! Out (one JSON text message each):
//! - `{"type":"status","clients":[paths],"upstreams":[paths]}` first;
//! - `{"type":"connection","event":"client-connected","connectionId":path,"ip","headers"}`,
//!   `upstream-connected` (accept-early only: otherwise the client is answered only
//!   once the upstream has, and `client-connected` says both), `upstream-disconnected`
//!   and `client-disconnected` with `code` and `reason`, `connection-closed-by-master`
//!   with `reason` and `timestamp`;
//! - `{"type":"message","direction":"client-to-upstream"|"upstream-to-client","connectionId","message"}`
//!   per whole data message (fragments joined; messages injected by an operator are
//!   not reported, as websocket-multiplex does not report its own injections);
//!   `client-to-upstream-dequeued` with `queuedAt` and `sentAt`, and
//!   `{"type":"message","event":"message-discarded",..,"queuedAt","reason"}` under
//!   accept-early;
//! - `{"type":"error","event":"upstream-error","connectionId","message","code","target","path","time"}`.
//!
//! A binary message's `message` is its bytes read as UTF-8 with invalid sequences
//! replaced (what websocket-multiplex's `toString()` gives, so string-handling scripts
//! keep working), plus `"binary":true` and the exact bytes in `"base64"`. The traffic
//! itself is never converted.
//!
//! In: websocket-multiplex's `inject` (`target`: `client:/p`, `upstream:/p`,
//! `all-clients`, `all-upstreams`) and `close` (`connectionId`, optional `reason`)
//! commands. Like websocket-multiplex, the root does not answer commands; `/api/live`
//! takes the same commands and acknowledges each.
//!
//! Only proxy sessions are reported and addressed: the multiplexer is a proxy.

use std::collections::{BTreeMap, HashSet};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use http::header;
use serde::{Deserialize, Serialize};
use wsgate_core::{
    Command, Direction, ErrorKind, Initiator, QueueOutcome, ReasonKind, Registry, SessionEvent, SessionId, SessionInfo,
    SessionKind, State as SessionState, Transition,
};
use wsgate_protocol::{CloseCode, Message};

use crate::ControlPlane;
use crate::auth::AdminToken;
use crate::commands;
use crate::error::ApiError;
use crate::live::{Filter, LiveHub};
use crate::ws::{LIVE_WS_CONFIG, pump, upgrade};

/// The close reason (and `connection-closed-by-master` reason) when a `close` command
/// gives none.
pub const DEFAULT_CLOSE_REASON: &str = "closed by master control";

/// Whether a request to `/` asks for a WebSocket (the master connection) rather than
/// the index page.
pub fn wants_upgrade(req: &Request) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case("websocket")))
}

/// `WS /`: the master connection. Reached through `GET /` ([`crate::index::index`]),
/// so every layer over the router covers it; the admin token is checked here because
/// the index page itself is open.
pub(crate) fn root(cp: ControlPlane, req: Request) -> Response {
    if let Some(token) = &cp.inner.cfg.admin_token
        && !AdminToken::new(token).authorizes(&req)
    {
        return ApiError::Unauthorized.into_response();
    }
    let sub = cp.inner.hub.subscribe(Filter::Master);
    let registry = cp.inner.registry.clone();
    let hub = cp.inner.hub.clone();
    let shutdown = cp.inner.shutdown.clone();
    // The status is the first thing the live observer queues for this subscriber,
    // taken in order with the events ([`Tracker::status`]).
    let answer = upgrade(&cp, req, LIVE_WS_CONFIG, move |ws| async move {
        sub.open();
        pump(ws, sub, shutdown, |msg| {
            let (registry, hub) = (registry.clone(), hub.clone());
            async move {
                if let Message::Text(b) | Message::Binary(b) = msg {
                    command(&registry, &hub, &b).await;
                }
                // The root answers nothing, as websocket-multiplex's does not.
                None
            }
        })
        .await;
    });
    answer.unwrap_or_else(IntoResponse::into_response)
}

/// The fields of a root command that decide what it is.
#[derive(Debug, Deserialize)]
struct RootCommand {
    #[serde(rename = "type")]
    kind: String,
    #[serde(rename = "connectionId")]
    connection_id: Option<String>,
    reason: Option<String>,
}

/// Carries out one root command. A `close` announces `connection-closed-by-master`
/// to every root connection before the sessions are told to close, so that
/// notification comes before their disconnections, as in websocket-multiplex.
async fn command(registry: &Registry, hub: &LiveHub, text: &[u8]) {
    let cmd: RootCommand = match serde_json::from_slice(text) {
        Ok(c) => c,
        Err(e) => return tracing::debug!(error = %e, "master command is not a command"),
    };
    match (cmd.kind.as_str(), cmd.connection_id) {
        ("close", Some(path)) => {
            let reason = cmd.reason.unwrap_or_else(|| DEFAULT_CLOSE_REASON.to_owned());
            if let Err(e) = commands::close_command(None, Some(reason.clone())) {
                return tracing::debug!(error = %e, "master close refused");
            }
            let sessions: Vec<_> = registry
                .live_on_path(&path)
                .into_iter()
                .filter(|id| registry.live_kind(*id) == Some(SessionKind::Proxy))
                .collect();
            if sessions.is_empty() {
                return tracing::debug!(path, "master close: no connection on this path");
            }
            hub.broadcast_master(to_bytes(&MasterEvent::Connection(ConnectionEvent {
                event: "connection-closed-by-master",
                connection_id: &path,
                reason: Some(&reason),
                timestamp: Some(iso(Utc::now())),
                ..Default::default()
            })));
            for id in sessions {
                let close = Command::Close { code: CloseCode::NORMAL, reason: reason.clone(), kind: None };
                if let Err(e) = registry.command(id, close) {
                    tracing::debug!(session = %id, error = %e, "master close not delivered");
                }
            }
        }
        _ => {
            // inject (and anything else): the live stream's command language, which
            // speaks these shapes; its ack is for `/api/live`, not for the root.
            let ack = commands::execute(registry, text).await;
            if !ack.is_ok() {
                tracing::debug!(ack = %String::from_utf8_lossy(&ack.to_bytes()), "master command refused");
            }
        }
    }
}

/// What the master knows of each live proxy session: kept by the live observer from
/// the lifecycle events it sees, whether or not a root connection is open, so the
/// status a new connection starts with ([`Tracker::status`]) is exactly what the
/// events it receives afterwards change. Entries leave on the session's final
/// transition: this holds at most the live proxy sessions.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    /// By id: UUIDv7, so in the order the clients arrived.
    sessions: BTreeMap<SessionId, Known>,
}

#[derive(Debug)]
struct Known {
    path: String,
    /// Announced with `client-connected` (to connections that were open then).
    announced: bool,
    /// The upstream is being dialled (CONNECTING) or connected.
    dialling: bool,
    upstream: bool,
}

/// The connection events one lifecycle step means, decided by [`Tracker::step`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Step {
    session: Option<SessionId>,
    client_connected: bool,
    upstream_connected: bool,
    upstream_error: bool,
    upstream_disconnected: bool,
    /// `Some(true)`: every connection hears it; `Some(false)`: only connections whose
    /// status listed the session before it was announced.
    client_disconnected: Option<bool>,
}

/// Who a rendered master message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Audience {
    All,
    /// `client-connected`: not for a connection whose status already listed the session.
    NotListed(SessionId),
    /// The end of a session a connection's status listed but that was never announced
    /// (its upstream refused it, or its client left before the answer).
    OnlyListed(SessionId),
}

impl Tracker {
    pub(crate) fn step(&mut self, ev: &SessionEvent) -> Step {
        let SessionEvent::Lifecycle { info, transition } = ev else { return Step::default() };
        if info.kind != SessionKind::Proxy {
            return Step::default();
        }
        let d = &transition.detail;
        let mut s = Step { session: Some(info.id), ..Step::default() };
        let known = || Known { path: info.path_only().to_owned(), announced: false, dialling: false, upstream: false };
        match transition.state {
            SessionState::Requested => {
                self.sessions.insert(info.id, known());
            }
            SessionState::Connecting => {
                let k = self.sessions.entry(info.id).or_insert_with(known);
                k.dialling = true;
                if d.accepted_early == Some(true) && !k.announced {
                    k.announced = true;
                    s.client_connected = true;
                }
            }
            SessionState::Connected => {
                let k = self.sessions.entry(info.id).or_insert_with(known);
                (k.dialling, k.upstream) = (true, true);
                if k.announced {
                    s.upstream_connected = true;
                } else {
                    k.announced = true;
                    s.client_connected = true;
                }
            }
            SessionState::Failed => {
                s.upstream_error = true;
                s.client_disconnected = self.sessions.remove(&info.id).map(|k| k.announced);
            }
            SessionState::Disconnected => {
                if let Some(k) = self.sessions.remove(&info.id) {
                    s.upstream_disconnected = k.announced && k.upstream && d.initiator == Some(Initiator::Upstream);
                    s.client_disconnected = Some(k.announced);
                }
            }
        }
        s
    }

    /// The first message of a master connection, and the sessions it lists that have
    /// not been announced yet (that connection must not hear `client-connected` for
    /// them later). Like websocket-multiplex, which registers both legs the moment a
    /// client arrives, every live proxy session is listed as both a client and an
    /// upstream, each path once.
    pub(crate) fn status(&self) -> (Bytes, HashSet<SessionId>) {
        let mut clients: Vec<&str> = Vec::new();
        let mut upstreams: Vec<&str> = Vec::new();
        let mut unannounced = HashSet::new();
        for (id, k) in &self.sessions {
            if !clients.contains(&k.path.as_str()) {
                clients.push(&k.path);
            }
            if !upstreams.contains(&k.path.as_str()) {
                upstreams.push(&k.path);
            }
            if !k.announced {
                unannounced.insert(*id);
            }
        }
        (to_bytes(&MasterEvent::Status { clients, upstreams }), unannounced)
    }

    /// How many sessions are tracked.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.sessions.len()
    }
}

/// One bus event as master messages (often none). `whole` is the whole data message
/// a message event completes, if any.
pub(crate) fn render(ev: &SessionEvent, step: Step, whole: Option<&Message>) -> Vec<(Bytes, Audience)> {
    let mut out = Vec::new();
    match ev {
        SessionEvent::Lifecycle { info, transition } => lifecycle(info, transition, step, &mut out),
        SessionEvent::Message(m) => {
            let direction = match m.direction {
                Direction::ClientToUpstream => "client-to-upstream",
                Direction::UpstreamToClient => "upstream-to-client",
                Direction::ClientToGateway | Direction::GatewayToClient => return out,
            };
            if m.injected || m.info.kind != SessionKind::Proxy {
                return out;
            }
            if let Some(msg) = whole {
                let body = MessageBody::of(msg);
                out.push((
                    to_bytes(&MasterEvent::Message(MessageEvent {
                        direction: Some(direction),
                        connection_id: m.info.path_only(),
                        message: &body.text,
                        binary: body.binary.then_some(true),
                        base64: body.base64,
                        ..Default::default()
                    })),
                    Audience::All,
                ));
            }
        }
        SessionEvent::Queue(q) => {
            if q.info.kind != SessionKind::Proxy {
                return out;
            }
            let msg = if q.opcode == wsgate_protocol::OpCode::Binary {
                Message::Binary(q.payload.clone())
            } else {
                Message::Text(q.payload.clone())
            };
            let body = MessageBody::of(&msg);
            let (direction, event, sent_at, reason) = match q.outcome {
                QueueOutcome::Sent => (Some("client-to-upstream-dequeued"), None, Some(iso(q.at)), None),
                QueueOutcome::Dropped(kind) => (None, Some("message-discarded"), None, Some(discard_reason(kind))),
            };
            out.push((
                to_bytes(&MasterEvent::Message(MessageEvent {
                    direction,
                    event,
                    connection_id: q.info.path_only(),
                    message: &body.text,
                    binary: body.binary.then_some(true),
                    base64: body.base64,
                    queued_at: Some(iso(q.queued_at)),
                    sent_at,
                    reason,
                })),
                Audience::All,
            ));
        }
        SessionEvent::Error { .. } | SessionEvent::Logged(_) | SessionEvent::Delivered(_) => {}
    }
    out
}

fn lifecycle(info: &SessionInfo, t: &Transition, s: Step, out: &mut Vec<(Bytes, Audience)>) {
    let path = info.path_only();
    let all = |b: Bytes| (b, Audience::All);
    let d = &t.detail;
    if s.client_connected {
        let headers: serde_json::Map<String, serde_json::Value> =
            info.headers.iter().fold(serde_json::Map::new(), |mut m, (k, v)| {
                // Repeated headers joined as Node joins them in `req.headers`.
                let joined = match m.get(k).and_then(|p| p.as_str()) {
                    Some(prev) => format!("{prev}, {v}"),
                    None => v.clone(),
                };
                m.insert(k.to_ascii_lowercase(), serde_json::Value::String(joined));
                m
            });
        let ip = info.client_addr.map(|a| a.ip().to_string());
        let ev = to_bytes(&MasterEvent::Connection(ConnectionEvent {
            event: "client-connected",
            connection_id: path,
            ip: ip.as_deref(),
            headers: Some(headers),
            ..Default::default()
        }));
        out.push((ev, Audience::NotListed(info.id)));
    }
    if s.upstream_connected {
        out.push(all(to_bytes(&MasterEvent::Connection(ConnectionEvent {
            event: "upstream-connected",
            connection_id: path,
            ..Default::default()
        }))));
    }
    if s.upstream_error {
        let target = d.upstream.as_deref().unwrap_or_default();
        out.push(all(to_bytes(&MasterEvent::Error {
            event: "upstream-error",
            connection_id: path,
            message: d.reason.as_deref().unwrap_or_default(),
            code: error_code(d.reason_kind, d.http_status),
            target,
            path,
            time: iso(t.at),
        })));
    }
    if s.upstream_disconnected {
        out.push(all(to_bytes(&MasterEvent::Connection(ConnectionEvent {
            event: "upstream-disconnected",
            connection_id: path,
            code: d.close_code,
            reason: Some(d.close_reason.as_deref().unwrap_or("No reason provided")),
            was_clean: d.close_code.map(|c| c == CloseCode::NORMAL || c == CloseCode::GOING_AWAY),
            ..Default::default()
        }))));
    }
    if let Some(announced) = s.client_disconnected {
        // A failed session: an accept-early client was closed with 1014 (what the
        // proxy sends when the upstream cannot be reached after the client was in);
        // any other was refused its upgrade with an HTTP status.
        let (code, reason) = match t.state {
            SessionState::Failed => (Some(CloseCode::BAD_GATEWAY), d.reason.as_deref()),
            _ => (d.close_code, d.close_reason.as_deref()),
        };
        let ev = to_bytes(&MasterEvent::Connection(ConnectionEvent {
            event: "client-disconnected",
            connection_id: path,
            code,
            reason: Some(reason.unwrap_or_default()),
            ..Default::default()
        }));
        out.push((ev, if announced { Audience::All } else { Audience::OnlyListed(info.id) }));
    }
}

/// websocket-multiplex reports Node's error code (`ECONNREFUSED`, `ENOTFOUND`,
/// `ETIMEDOUT`); the classes that have one get it, the others wsgate's `reason_kind`
/// (`tls`, `handshake`, `resolver`, …), and a refused upgrade `http_<status>`.
fn error_code(kind: Option<ReasonKind>, status: Option<u16>) -> String {
    match (kind, status) {
        (Some(ReasonKind::Refused), _) => "ECONNREFUSED".into(),
        (Some(ReasonKind::Dns), _) => "ENOTFOUND".into(),
        (Some(ReasonKind::Timeout), _) => "ETIMEDOUT".into(),
        (Some(ReasonKind::Connect), _) => "ECONNRESET".into(),
        (_, Some(status)) => format!("http_{status}"),
        (Some(k), None) => k.as_str().into(),
        (None, None) => "unknown".into(),
    }
}

fn discard_reason(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::QueueOverflow => "queue-full",
        // websocket-multiplex's only reason.
        _ => "timeout",
    }
}

/// `2024-01-01T12:00:00.000Z`, as JavaScript's `toISOString()` writes it.
fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A data message as the master shows it.
struct MessageBody {
    text: String,
    binary: bool,
    base64: Option<String>,
}

impl MessageBody {
    fn of(msg: &Message) -> Self {
        match msg {
            Message::Binary(b) => Self {
                text: String::from_utf8_lossy(b).into_owned(),
                binary: true,
                base64: Some(base64::engine::general_purpose::STANDARD.encode(b)),
            },
            Message::Text(b) | Message::Ping(b) | Message::Pong(b) => {
                Self { text: String::from_utf8_lossy(b).into_owned(), binary: false, base64: None }
            }
            Message::Close(_) => Self { text: String::new(), binary: false, base64: None },
        }
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum MasterEvent<'a> {
    Status {
        clients: Vec<&'a str>,
        upstreams: Vec<&'a str>,
    },
    Connection(ConnectionEvent<'a>),
    Message(MessageEvent<'a>),
    Error {
        event: &'static str,
        #[serde(rename = "connectionId")]
        connection_id: &'a str,
        message: &'a str,
        code: String,
        target: &'a str,
        path: &'a str,
        time: String,
    },
}

#[derive(Serialize, Default)]
struct ConnectionEvent<'a> {
    event: &'static str,
    #[serde(rename = "connectionId")]
    connection_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(rename = "wasClean", skip_serializing_if = "Option::is_none")]
    was_clean: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<String>,
}

#[derive(Serialize, Default)]
struct MessageEvent<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    direction: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'static str>,
    #[serde(rename = "connectionId")]
    connection_id: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    binary: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    base64: Option<String>,
    #[serde(rename = "queuedAt", skip_serializing_if = "Option::is_none")]
    queued_at: Option<String>,
    #[serde(rename = "sentAt", skip_serializing_if = "Option::is_none")]
    sent_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

fn to_bytes(ev: &MasterEvent<'_>) -> Bytes {
    // Strings, numbers and string-keyed maps only: encoding cannot fail.
    Bytes::from(serde_json::to_vec(ev).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use wsgate_core::TransitionDetail;

    fn info(kind: SessionKind) -> Arc<SessionInfo> {
        Arc::new(SessionInfo {
            id: SessionId::new(),
            kind,
            route: "default".into(),
            path: "/cp1?x=1".into(),
            client_addr: Some("127.0.0.1:5000".parse().unwrap_or_else(|_| unreachable!())),
            headers: vec![("user-agent".into(), "t".into())],
            opened_at: Utc::now(),
            payloads: Default::default(),
        })
    }

    fn lc(info: &Arc<SessionInfo>, state: SessionState, detail: TransitionDetail) -> SessionEvent {
        SessionEvent::Lifecycle { info: info.clone(), transition: Transition { state, at: Utc::now(), detail } }
    }

    fn json(b: &Bytes) -> serde_json::Value {
        serde_json::from_slice(b).unwrap_or_default()
    }

    #[test]
    fn default_mode_lifecycle() {
        let mut t = Tracker::default();
        let i = info(SessionKind::Proxy);
        let ev = lc(&i, SessionState::Requested, TransitionDetail::default());
        t.step(&ev);
        let ev = lc(&i, SessionState::Connecting, TransitionDetail::default());
        assert!(!t.step(&ev).client_connected);
        // Listed in a status before it is announced: both lists, and remembered.
        let (status, unannounced) = t.status();
        assert_eq!(json(&status), serde_json::json!({"type":"status","clients":["/cp1"],"upstreams":["/cp1"]}));
        assert!(unannounced.contains(&i.id));
        let ev = lc(&i, SessionState::Connected, TransitionDetail::default());
        let out = render(&ev, t.step(&ev), None);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1, Audience::NotListed(i.id));
        let v = json(&out[0].0);
        assert_eq!(
            (&v["type"], &v["event"], &v["connectionId"], &v["ip"]),
            (&"connection".into(), &"client-connected".into(), &"/cp1".into(), &"127.0.0.1".into())
        );
        assert_eq!(v["headers"]["user-agent"], "t");
        let detail = TransitionDetail {
            close_code: Some(4001),
            close_reason: Some("bye".into()),
            initiator: Some(Initiator::Upstream),
            ..Default::default()
        };
        let ev = lc(&i, SessionState::Disconnected, detail);
        let out: Vec<_> = render(&ev, t.step(&ev), None).iter().map(|(b, _)| json(b)).collect();
        assert_eq!(out.len(), 2);
        assert_eq!((&out[0]["event"], &out[0]["code"]), (&"upstream-disconnected".into(), &4001.into()));
        assert_eq!((&out[1]["event"], &out[1]["reason"]), (&"client-disconnected".into(), &"bye".into()));
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn refused_upstream_is_an_error_only() {
        let mut t = Tracker::default();
        let i = info(SessionKind::Proxy);
        let detail = TransitionDetail {
            reason: Some("refused".into()),
            reason_kind: Some(ReasonKind::Refused),
            upstream: Some("ws://127.0.0.1:9/cp1".into()),
            ..Default::default()
        };
        let ev = lc(&i, SessionState::Failed, detail);
        let out: Vec<_> = render(&ev, t.step(&ev), None).iter().map(|(b, _)| json(b)).collect();
        assert_eq!(out.len(), 1);
        assert_eq!((&out[0]["type"], &out[0]["code"]), (&"error".into(), &"ECONNREFUSED".into()));
        assert_eq!(out[0]["target"], "ws://127.0.0.1:9/cp1");
    }

    #[test]
    fn early_mode_announces_both_legs() {
        let mut t = Tracker::default();
        let i = info(SessionKind::Proxy);
        let ev =
            lc(&i, SessionState::Connecting, TransitionDetail { accepted_early: Some(true), ..Default::default() });
        assert!(t.step(&ev).client_connected);
        let ev = lc(&i, SessionState::Connected, TransitionDetail::default());
        assert!(t.step(&ev).upstream_connected);
    }

    #[test]
    fn other_kinds_are_not_reported() {
        let mut t = Tracker::default();
        let i = info(SessionKind::Mock);
        let ev = lc(&i, SessionState::Connected, TransitionDetail::default());
        assert!(render(&ev, t.step(&ev), None).is_empty());
    }

    #[test]
    fn binary_messages_are_readable_and_exact() {
        let b = MessageBody::of(&Message::Binary(Bytes::from_static(&[b'h', b'i', 0xff])));
        assert_eq!((b.text.as_str(), b.binary, b.base64.as_deref()), ("hi\u{fffd}", true, Some("aGn/")));
    }
}
