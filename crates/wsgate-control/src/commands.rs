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

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use wsgate_core::{Command, CommandError, Registry, SessionId, SessionKind, Target};
use wsgate_protocol::CloseCode;

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
    pub fn into_command(self, to: Target) -> Result<Command, InvalidCommand> {
        match (self.text, self.base64) {
            (Some(text), None) => Ok(Command::Inject { to, payload: Bytes::from(text), binary: false }),
            (None, Some(b64)) => {
                // Canonical base64 only (padded, no whitespace, zero trailing bits): one
                // spelling per payload, which the OpenAPI document's pattern states.
                let payload = base64::engine::general_purpose::STANDARD.decode(b64)?;
                Ok(Command::Inject { to, payload: Bytes::from(payload), binary: true })
            }
            _ => Err(InvalidCommand::PayloadChoice),
        }
    }
}

/// A validated close command: default 1000 and an empty reason.
pub fn close_command(code: Option<u16>, reason: Option<String>) -> Result<Command, InvalidCommand> {
    let code = code.unwrap_or(CloseCode::NORMAL);
    if !CloseCode::is_sendable(code) {
        return Err(InvalidCommand::CloseCode(code));
    }
    let reason = reason.unwrap_or_default();
    if reason.len() > MAX_CLOSE_REASON {
        return Err(InvalidCommand::ReasonTooLong(reason.len()));
    }
    Ok(Command::Close { code, reason })
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

/// A live command after parsing: what to send, and to which sessions.
#[derive(Debug)]
struct Plan {
    sessions: Vec<SessionId>,
    command: Command,
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
            id,
        }
    }
    fn err(error: impl ToString, id: Option<serde_json::Value>) -> Self {
        Self { kind: "ack", ok: false, sessions: None, skipped: None, error: Some(error.to_string()), id }
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

/// Parses and carries out one live command.
pub fn execute(registry: &Registry, text: &[u8]) -> Ack {
    let raw: RawCommand = match serde_json::from_slice(text) {
        Ok(r) => r,
        Err(e) => return Ack::err(InvalidCommand::Json(e.to_string()), None),
    };
    let id = raw.id.clone();
    let plan = match plan(registry, raw) {
        Ok(p) => p,
        Err(e) => return Ack::err(e, id),
    };
    if plan.single {
        return match plan.sessions.first().map(|s| registry.command(*s, plan.command)) {
            Some(Ok(())) => Ack::ok(1, 0, id),
            Some(Err(e)) => Ack::err(e, id),
            None => Ack::err(CommandError::NotFound, id),
        };
    }
    let mut sent = 0;
    for s in &plan.sessions {
        if registry.command(*s, plan.command.clone()).is_ok() {
            sent += 1;
        }
    }
    Ack::ok(sent, plan.sessions.len() - sent, id)
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
                return Ok(Plan { sessions, command: payload.into_command(to)?, single: false });
            }
            let session = parse_session(raw.session)?;
            let to = raw.to.ok_or(InvalidCommand::Missing("to"))?;
            let payload = match (raw.message, raw.text, raw.base64) {
                (Some(serde_json::Value::String(s)), None, None) => InjectPayload { text: Some(s), base64: None },
                (Some(_), _, _) => return Err(InvalidCommand::PayloadChoice),
                (None, text, base64) => InjectPayload { text, base64 },
            };
            Ok(Plan { sessions: vec![session], command: payload.into_command(to)?, single: true })
        }
        "close" => {
            let command = close_command(raw.code, raw.reason)?;
            if let Some(path) = raw.connection_id {
                // websocket-multiplex shape: a "connection" is every session on a path.
                return Ok(Plan { sessions: registry.live_on_path(&path), command, single: false });
            }
            Ok(Plan { sessions: vec![parse_session(raw.session)?], command, single: true })
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
        assert!(matches!(p.into_command(Target::Client), Ok(Command::Inject { binary: false, .. })));
        let p = InjectPayload { text: None, base64: Some("AAE=".into()) };
        match p.into_command(Target::Upstream) {
            Ok(Command::Inject { to: Target::Upstream, payload, binary: true }) => assert_eq!(&payload[..], &[0, 1]),
            other => panic!("unexpected {other:?}"),
        }
        let both = InjectPayload { text: Some("a".into()), base64: Some("AA==".into()) };
        assert_eq!(both.into_command(Target::Client).err(), Some(InvalidCommand::PayloadChoice));
        assert_eq!(InjectPayload::default().into_command(Target::Client).err(), Some(InvalidCommand::PayloadChoice));
        let bad = InjectPayload { text: None, base64: Some("***".into()) };
        assert!(matches!(bad.into_command(Target::Client), Err(InvalidCommand::Base64(_))));
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

    #[test]
    fn malformed_live_commands_get_error_acks() {
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
            let ack = execute(&r, bad);
            assert!(!ack.is_ok(), "{}", String::from_utf8_lossy(bad));
        }
        // A well-formed command for a session that does not exist.
        let ack = execute(
            &r,
            br#"{"type":"inject","session":"0190c3a0-0000-7000-8000-000000000000","to":"client","text":"x","id":7}"#,
        );
        let v: serde_json::Value = serde_json::from_slice(&ack.to_bytes()).unwrap_or_default();
        assert_eq!(v["ok"], false);
        assert_eq!(v["id"], 7);
        // Multiplex shapes on no sessions succeed with 0 affected.
        let ack = execute(&r, br#"{"type":"inject","target":"all-clients","message":{"a":1}}"#);
        assert!(ack.is_ok());
        let ack = execute(&r, br#"{"type":"close","connectionId":"/chat"}"#);
        assert!(ack.is_ok());
    }
}
