//! Operator commands (inject, close): validation shared by the REST API and the live
//! stream, and the live stream's command language, which also speaks
//! websocket-multiplex's master-control shapes so its users keep their scripts.
//!
//! Live-stream commands, one JSON text message each, each answered with an `ack`:
//! - `{"type":"inject","session":"<id>","to":"client"|"upstream","text":".."}` (or
//!   `"base64":".."`)
//! - `{"type":"close","session":"<id>","code":1000,"reason":".."}` (code and reason
//!   optional)
//! - `{"type":"inject","target":"client:/chat"|"upstream:/chat"|"all-clients"|"all-upstreams","message":..}`
//!   — `client:/p` and `upstream:/p` address every live session whose path (without
//!   query) is `/p`; `all-*` every live proxy session. A string `message` is sent as
//!   is, any other JSON value as its JSON text.
//! - `{"type":"close","connectionId":"/chat"}` — closes every live session on that
//!   path with 1000.
//!
//! The ack is `{"type":"ack","ok":true,"sessions":<affected>}` or
//! `{"type":"ack","ok":false,"error":".."}`; an `"id"` in the command is echoed back.
//! An inject is acknowledged only once its session has said whether it sent the
//! message ([`deliver`]): a peer that is not reading makes it `"error":"busy"` (with a
//! `"detail"`), a side the session does not have (a mock's upstream) an error naming
//! why.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use wsgate_core::{
    Command, CommandError, InjectAck, InjectRefused, InjectReply, Registry, SessionId, SessionKind, Target,
};
use wsgate_protocol::CloseCode;

/// How long an inject waits for its session to say whether the message was sent. A
/// session answers when its task next looks at its commands, normally within
/// microseconds; one that has not answered by then (a proxied session still dialling
/// its upstream with `accept_early`) keeps the message in its bounded command queue,
/// and the inject is reported as queued.
pub const INJECT_ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest close reason that fits a close frame (125 bytes less the 2-byte code).
pub const MAX_CLOSE_REASON: usize = 123;

/// Why a command is malformed. All are the caller's fault (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidCommand {
    #[error("give exactly one of \"text\" and \"base64\"")]
    PayloadChoice,
    #[error("\"base64\" is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("close code {0} cannot be sent in a close frame")]
    CloseCode(u16),
    #[error("close reason is {0} bytes; at most {MAX_CLOSE_REASON} fit in a close frame")]
    ReasonTooLong(usize),
    #[error("missing \"{0}\"")]
    Missing(&'static str),
    #[error("invalid session id {0:?}")]
    SessionId(String),
    #[error("unknown target {0:?}: expected client:/path, upstream:/path, all-clients or all-upstreams")]
    Target(String),
    #[error("unknown command type {0:?}: expected inject or close")]
    Type(String),
    #[error("invalid JSON command: {0}")]
    Json(String),
    #[error("commands are JSON text messages, not binary")]
    Binary,
}

/// The payload of an inject, as the REST body and the live command give it.
#[derive(Debug, Default, Deserialize)]
pub struct InjectPayload {
    pub text: Option<String>,
    pub base64: Option<String>,
}

impl InjectPayload {
    /// Exactly one of text and base64, decoded.
    pub fn into_inject(self, to: Target) -> Result<Inject, InvalidCommand> {
        match (self.text, self.base64) {
            (Some(text), None) => Ok(Inject { to, payload: Bytes::from(text), binary: false }),
            (None, Some(b64)) => {
                // Canonical base64 only (padded, no whitespace, zero trailing bits): one
                // spelling per payload, which the OpenAPI document's pattern states.
                let payload = base64::engine::general_purpose::STANDARD.decode(b64)?;
                Ok(Inject { to, payload: Bytes::from(payload), binary: true })
            }
            _ => Err(InvalidCommand::PayloadChoice),
        }
    }
}

/// A validated inject, before it is addressed to a session (one inject may go to
/// many: each gets its own command and ack).
#[derive(Debug, Clone)]
pub struct Inject {
    pub to: Target,
    pub payload: Bytes,
    pub binary: bool,
}

impl Inject {
    /// The command for one session, and the reply its session will send.
    pub fn command(&self) -> (Command, InjectReply) {
        let (ack, reply) = InjectAck::channel();
        (Command::Inject { to: self.to, payload: self.payload.clone(), binary: self.binary, ack }, reply)
    }
}

/// Why an inject was not carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    /// Not handed to the session (no such session, or its command queue is full).
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The session refused it (its peer is not reading, or it has no such side).
    #[error(transparent)]
    Refused(#[from] InjectRefused),
}

impl InjectError {
    /// Transient: the session (or its peer) cannot take more now (HTTP 503).
    pub fn is_busy(&self) -> bool {
        matches!(self, Self::Command(CommandError::Busy) | Self::Refused(InjectRefused::Busy { .. }))
    }
}

/// Hands `inject` to session `id` and waits (at most [`INJECT_ACK_TIMEOUT`]) for its
/// answer. Not answered in time: still queued, which counts as accepted.
pub async fn deliver(registry: &Registry, id: SessionId, inject: &Inject) -> Result<(), InjectError> {
    let (command, reply) = inject.command();
    registry.command(id, command)?;
    settle(reply, Instant::now() + INJECT_ACK_TIMEOUT).await
}

async fn settle(reply: InjectReply, deadline: Instant) -> Result<(), InjectError> {
    match tokio::time::timeout_at(deadline, reply).await {
        Ok(Ok(answer)) => Ok(answer?),
        // The session ended with the command still queued: it was never sent.
        Ok(Err(_)) => Err(CommandError::NotFound.into()),
        Err(_) => Ok(()),
    }
}

/// A validated close command: default 1000 and an empty reason.
pub fn close_command(code: Option<u16>, reason: Option<String>) -> Result<Command, InvalidCommand> {
    let (code, reason) = close_parts(code, reason)?;
    Ok(Command::Close { code, reason, kind: None })
}

/// A close's code and reason, validated (default 1000 and an empty reason).
fn close_parts(code: Option<u16>, reason: Option<String>) -> Result<(u16, String), InvalidCommand> {
    let code = code.unwrap_or(CloseCode::NORMAL);
    if !CloseCode::is_sendable(code) {
        return Err(InvalidCommand::CloseCode(code));
    }
    let reason = reason.unwrap_or_default();
    if reason.len() > MAX_CLOSE_REASON {
        return Err(InvalidCommand::ReasonTooLong(reason.len()));
    }
    Ok((code, reason))
}

/// A close code: a JSON number with no fractional part in 0‥65535. JSON (and JSON
/// Schema's `integer`) does not tell `1000` from `1000.0`, so neither does this;
/// whether the code may be sent is checked later ([`close_command`]).
pub fn close_code<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    use serde::de::Error;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else { return Ok(None) };
    let integral = n.as_u64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0).map(|f| f as u64));
    match integral.and_then(|v| u16::try_from(v).ok()) {
        Some(code) => Ok(Some(code)),
        None => Err(D::Error::custom(format_args!("close code {n} is not an integer from 0 to 65535"))),
    }
}

/// Every field any live command shape may carry; which ones are present decides the
/// shape. Parsed permissively so an unknown extra field never breaks a script.
#[derive(Debug, Deserialize)]
struct RawCommand {
    #[serde(rename = "type")]
    kind: String,
    id: Option<serde_json::Value>,
    session: Option<String>,
    to: Option<Target>,
    text: Option<String>,
    base64: Option<String>,
    target: Option<String>,
    message: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "close_code")]
    code: Option<u16>,
    reason: Option<String>,
    #[serde(rename = "connectionId")]
    connection_id: Option<String>,
}

/// What a live command asks of each session it addresses.
#[derive(Debug, Clone)]
enum Action {
    Inject(Inject),
    Close { code: u16, reason: String },
}

/// A live command after parsing: what to send, and to which sessions.
#[derive(Debug)]
struct Plan {
    sessions: Vec<SessionId>,
    action: Action,
    /// One named session (errors are reported) or a set selected by path or kind
    /// (sessions that ended in between are skipped).
    single: bool,
}

/// The reply to a live command.
#[derive(Debug, Serialize)]
pub struct Ack {
    #[serde(rename = "type")]
    kind: &'static str,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    sessions: Option<usize>,
    /// Sessions selected but not reached (their command queue was full, or they ended).
    #[serde(skip_serializing_if = "Option::is_none")]
    skipped: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// With `"error":"busy"`: which side is not reading, and how much waits for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<serde_json::Value>,
}

impl Ack {
    fn ok(sessions: usize, skipped: usize, id: Option<serde_json::Value>) -> Self {
        Self {
            kind: "ack",
            ok: true,
            sessions: Some(sessions),
            skipped: (skipped > 0).then_some(skipped),
            error: None,
            detail: None,
            id,
        }
    }
    fn err(error: impl ToString, id: Option<serde_json::Value>) -> Self {
        Self { kind: "ack", ok: false, sessions: None, skipped: None, error: Some(error.to_string()), detail: None, id }
    }
    /// A refused inject: `busy` (with the detail) when it may succeed later.
    fn refused(e: InjectError, id: Option<serde_json::Value>) -> Self {
        if e.is_busy() {
            return Self { error: Some("busy".into()), detail: Some(e.to_string()), ..Self::err("", id) };
        }
        Self::err(e, id)
    }
    pub fn to_bytes(&self) -> Bytes {
        // Serializing this struct cannot fail: no maps with non-string keys, no
        // fallible Serialize impls.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }
    pub fn is_ok(&self) -> bool {
        self.ok
    }
}

/// An ack for a message that is not a command at all.
pub fn reject(e: InvalidCommand) -> Ack {
    Ack::err(e, None)
}

/// Parses and carries out one live command; an inject is answered once its sessions
/// have (see [`deliver`]).
pub async fn execute(registry: &Registry, text: &[u8]) -> Ack {
    let raw: RawCommand = match serde_json::from_slice(text) {
        Ok(r) => r,
        Err(e) => return Ack::err(InvalidCommand::Json(e.to_string()), None),
    };
    let id = raw.id.clone();
    let plan = match plan(registry, raw) {
        Ok(p) => p,
        Err(e) => return Ack::err(e, id),
    };
    match (plan.action, plan.single) {
        (Action::Inject(inject), true) => match plan.sessions.first() {
            Some(s) => match deliver(registry, *s, &inject).await {
                Ok(()) => Ack::ok(1, 0, id),
                Err(e) => Ack::refused(e, id),
            },
            None => Ack::err(CommandError::NotFound, id),
        },
        (Action::Inject(inject), false) => {
            // Every session gets the command at once; then the answers are collected
            // under one deadline, so many sessions cost one wait, not one each.
            let replies: Vec<_> = plan
                .sessions
                .iter()
                .filter_map(|s| {
                    let (command, reply) = inject.command();
                    registry.command(*s, command).ok().map(|()| reply)
                })
                .collect();
            let deadline = Instant::now() + INJECT_ACK_TIMEOUT;
            let mut sent = 0;
            for reply in replies {
                if settle(reply, deadline).await.is_ok() {
                    sent += 1;
                }
            }
            Ack::ok(sent, plan.sessions.len() - sent, id)
        }
        (Action::Close { code, reason }, true) => {
            let command = Command::Close { code, reason, kind: None };
            match plan.sessions.first().map(|s| registry.command(*s, command)) {
                Some(Ok(())) => Ack::ok(1, 0, id),
                Some(Err(e)) => Ack::err(e, id),
                None => Ack::err(CommandError::NotFound, id),
            }
        }
        (Action::Close { code, reason }, false) => {
            let sent = plan
                .sessions
                .iter()
                .filter(|s| registry.command(**s, Command::Close { code, reason: reason.clone(), kind: None }).is_ok())
                .count();
            Ack::ok(sent, plan.sessions.len() - sent, id)
        }
    }
}

fn plan(registry: &Registry, raw: RawCommand) -> Result<Plan, InvalidCommand> {
    match raw.kind.as_str() {
        "inject" => {
            if let Some(target) = raw.target {
                // websocket-multiplex shape.
                let (to, sessions) = resolve_target(registry, &target)?;
                let payload = match (raw.message, raw.text, raw.base64) {
                    (Some(serde_json::Value::String(s)), None, None) => InjectPayload { text: Some(s), base64: None },
                    (Some(v), None, None) => InjectPayload { text: Some(v.to_string()), base64: None },
                    (None, text, base64) => InjectPayload { text, base64 },
                    _ => return Err(InvalidCommand::PayloadChoice),
                };
                return Ok(Plan { sessions, action: Action::Inject(payload.into_inject(to)?), single: false });
            }
            let session = parse_session(raw.session)?;
            let to = raw.to.ok_or(InvalidCommand::Missing("to"))?;
            let payload = match (raw.message, raw.text, raw.base64) {
                (Some(serde_json::Value::String(s)), None, None) => InjectPayload { text: Some(s), base64: None },
                (Some(_), _, _) => return Err(InvalidCommand::PayloadChoice),
                (None, text, base64) => InjectPayload { text, base64 },
            };
            Ok(Plan { sessions: vec![session], action: Action::Inject(payload.into_inject(to)?), single: true })
        }
        "close" => {
            let (code, reason) = close_parts(raw.code, raw.reason)?;
            let action = Action::Close { code, reason };
            if let Some(path) = raw.connection_id {
                // websocket-multiplex shape: a "connection" is every session on a path.
                return Ok(Plan { sessions: registry.live_on_path(&path), action, single: false });
            }
            Ok(Plan { sessions: vec![parse_session(raw.session)?], action, single: true })
        }
        other => Err(InvalidCommand::Type(other.to_owned())),
    }
}

fn parse_session(s: Option<String>) -> Result<SessionId, InvalidCommand> {
    let s = s.ok_or(InvalidCommand::Missing("session"))?;
    s.parse().map_err(|_| InvalidCommand::SessionId(s))
}

/// `client:/p`, `upstream:/p`, `all-clients`, `all-upstreams`.
fn resolve_target(registry: &Registry, target: &str) -> Result<(Target, Vec<SessionId>), InvalidCommand> {
    match target {
        "all-clients" => Ok((Target::Client, registry.live_of_kind(SessionKind::Proxy))),
        "all-upstreams" => Ok((Target::Upstream, registry.live_of_kind(SessionKind::Proxy))),
        _ => {
            let (side, path) = target.split_once(':').ok_or_else(|| InvalidCommand::Target(target.to_owned()))?;
            let to = match side {
                "client" => Target::Client,
                "upstream" => Target::Upstream,
                _ => return Err(InvalidCommand::Target(target.to_owned())),
            };
            if !path.starts_with('/') {
                return Err(InvalidCommand::Target(target.to_owned()));
            }
            Ok((to, registry.live_on_path(path)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_choice() {
        let p = InjectPayload { text: Some("hi".into()), base64: None };
        assert!(matches!(p.into_inject(Target::Client), Ok(Inject { binary: false, .. })));
        let p = InjectPayload { text: None, base64: Some("AAE=".into()) };
        match p.into_inject(Target::Upstream) {
            Ok(Inject { to: Target::Upstream, payload, binary: true }) => assert_eq!(&payload[..], &[0, 1]),
            other => panic!("unexpected {other:?}"),
        }
        let both = InjectPayload { text: Some("a".into()), base64: Some("AA==".into()) };
        assert_eq!(both.into_inject(Target::Client).err(), Some(InvalidCommand::PayloadChoice));
        assert_eq!(InjectPayload::default().into_inject(Target::Client).err(), Some(InvalidCommand::PayloadChoice));
        let bad = InjectPayload { text: None, base64: Some("***".into()) };
        assert!(matches!(bad.into_inject(Target::Client), Err(InvalidCommand::Base64(_))));
    }

    #[test]
    fn close_validation() {
        assert!(matches!(close_command(None, None), Ok(Command::Close { code: 1000, .. })));
        assert_eq!(close_command(Some(1005), None).err(), Some(InvalidCommand::CloseCode(1005)));
        assert_eq!(close_command(Some(999), None).err(), Some(InvalidCommand::CloseCode(999)));
        assert!(close_command(Some(4000), Some("x".repeat(123))).is_ok());
        assert_eq!(close_command(None, Some("x".repeat(124))).err(), Some(InvalidCommand::ReasonTooLong(124)));
    }

    #[test]
    fn close_codes_are_json_integers() {
        #[derive(Debug, Deserialize)]
        struct C {
            #[serde(default, deserialize_with = "close_code")]
            code: Option<u16>,
        }
        let code = |json: &str| serde_json::from_str::<C>(json).map(|c| c.code).map_err(|e| e.to_string());
        assert_eq!(code(r#"{"code":4043}"#), Ok(Some(4043)));
        assert_eq!(code(r#"{"code":4043.0}"#), Ok(Some(4043)));
        assert_eq!(code(r#"{"code":4.043e3}"#), Ok(Some(4043)));
        assert_eq!(code(r#"{"code":null}"#), Ok(None));
        assert_eq!(code("{}"), Ok(None));
        for bad in
            [r#"{"code":4043.5}"#, r#"{"code":-1}"#, r#"{"code":65536}"#, r#"{"code":1e300}"#, r#"{"code":"1000"}"#]
        {
            assert!(code(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn malformed_live_commands_get_error_acks() {
        let r = Registry::default();
        for bad in [
            &b"not json"[..],
            br#"{"no":"type"}"#,
            br#"{"type":"explode"}"#,
            br#"{"type":"inject","target":"sideways:/x","message":"m"}"#,
            br#"{"type":"inject","session":"nope","to":"client","text":"x"}"#,
            br#"{"type":"inject","session":"0190c3a0-0000-7000-8000-000000000000","text":"x"}"#,
            br#"{"type":"close","session":"0190c3a0-0000-7000-8000-000000000000","code":1006}"#,
            br#"[1,2,3]"#,
        ] {
            let ack = execute(&r, bad).await;
            assert!(!ack.is_ok(), "{}", String::from_utf8_lossy(bad));
        }
        // A well-formed command for a session that does not exist.
        let ack = execute(
            &r,
            br#"{"type":"inject","session":"0190c3a0-0000-7000-8000-000000000000","to":"client","text":"x","id":7}"#,
        )
        .await;
        let v: serde_json::Value = serde_json::from_slice(&ack.to_bytes()).unwrap_or_default();
        assert_eq!(v["ok"], false);
        assert_eq!(v["id"], 7);
        // Multiplex shapes on no sessions succeed with 0 affected.
        let ack = execute(&r, br#"{"type":"inject","target":"all-clients","message":{"a":1}}"#).await;
        assert!(ack.is_ok());
        let ack = execute(&r, br#"{"type":"close","connectionId":"/chat"}"#).await;
        assert!(ack.is_ok());
    }
}
