//! The JSON the live stream sends. Each event is serialized once, by the live
//! observer, and the resulting `Bytes` shared by every subscriber that wants it.
//!
//! Shapes (`at` is RFC 3339, UTC):
//! - `{"type":"status","sessions":[SessionSnapshot..]}` — first message on connect;
//! - `{"type":"lifecycle","session","kind","route","path","state","at",..detail}` —
//!   detail fields as in `TransitionDetail` (`reason`, `reason_kind`, `http_status`,
//!   `upstream`, `subprotocol`, `close_code`, `close_reason`, `initiator`,
//!   `connect_ms`, `attempt`), present only when set;
//! - `{"type":"message","session","path","seq","direction","opcode","fin","size",
//!   "text"|"base64","truncated","injected","marks"?,"at"}` — `size` is the full payload
//!   length; the payload is cut to the configured cap; `text` when the opcode is text
//!   and the (cut) payload is UTF-8, `base64` otherwise; close frames also carry
//!   `close_code` and `close_reason` when they parse;
//! - `{"type":"error","session","kind","message"}`.

use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use wsgate_core::{Direction, MessageEvent, SessionEvent, SessionId, SessionKind, SessionSnapshot, Transition};
use wsgate_protocol::{CloseFrame, OpCode};

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum LiveEvent<'a> {
    Status {
        sessions: &'a [SessionSnapshot],
    },
    Lifecycle {
        session: SessionId,
        kind: SessionKind,
        route: &'a str,
        path: &'a str,
        #[serde(flatten)]
        transition: &'a Transition,
    },
    Message {
        session: SessionId,
        path: &'a str,
        seq: u64,
        direction: Direction,
        opcode: &'static str,
        fin: bool,
        size: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        base64: Option<String>,
        truncated: bool,
        injected: bool,
        /// What a rule or fault did to it (`wsgate_core::marks`); absent when nothing.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        marks: Vec<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        close_code: Option<u16>,
        #[serde(skip_serializing_if = "Option::is_none")]
        close_reason: Option<String>,
        at: DateTime<Utc>,
    },
    Error {
        session: SessionId,
        kind: &'a str,
        message: &'a str,
    },
}

fn to_bytes(ev: &LiveEvent<'_>) -> Bytes {
    // These shapes hold only strings, numbers and derived Serialize impls: encoding
    // them into a Vec cannot fail.
    Bytes::from(serde_json::to_vec(ev).unwrap_or_default())
}

/// The first message of a live connection.
pub fn status(sessions: &[SessionSnapshot]) -> Bytes {
    to_bytes(&LiveEvent::Status { sessions })
}

/// One bus event as the live stream shows it, payload cut to `payload_cap` bytes;
/// `None` for events it does not show (a queued message's fate: the message itself
/// was shown when the client sent it, and a drop has its own error event).
pub fn event(ev: &SessionEvent, payload_cap: usize) -> Option<Bytes> {
    Some(match ev {
        SessionEvent::Lifecycle { info, transition } => to_bytes(&LiveEvent::Lifecycle {
            session: info.id,
            kind: info.kind,
            route: &info.route,
            path: &info.path,
            transition,
        }),
        SessionEvent::Message(m) => message(m, payload_cap),
        SessionEvent::Error { info, kind, message } => {
            to_bytes(&LiveEvent::Error { session: info.id, kind: kind.as_str(), message })
        }
        SessionEvent::Queue(_) | SessionEvent::Logged(_) | SessionEvent::Delivered(_) => return None,
    })
}

fn message(m: &MessageEvent, payload_cap: usize) -> Bytes {
    let cut = PayloadView::new(m.opcode, &m.payload, payload_cap);
    let (close_code, close_reason) = match m.opcode {
        OpCode::Close => match CloseFrame::parse(&m.payload) {
            Ok(Some(c)) => (Some(c.code), Some(c.reason)),
            _ => (None, None),
        },
        _ => (None, None),
    };
    to_bytes(&LiveEvent::Message {
        session: m.info.id,
        path: &m.info.path,
        seq: m.seq,
        direction: m.direction,
        opcode: m.opcode.name(),
        fin: m.fin,
        size: m.payload.len(),
        text: cut.text,
        base64: cut.base64,
        truncated: cut.truncated,
        injected: m.injected,
        marks: m.marks.names(),
        close_code,
        close_reason,
        at: m.at,
    })
}

/// A payload as shown: cut, then either text or base64.
#[derive(Debug, PartialEq, Eq)]
struct PayloadView<'a> {
    text: Option<&'a str>,
    base64: Option<String>,
    truncated: bool,
}

impl<'a> PayloadView<'a> {
    fn new(opcode: OpCode, payload: &'a [u8], cap: usize) -> Self {
        let truncated = payload.len() > cap;
        let cut = &payload[..payload.len().min(cap)];
        if opcode == OpCode::Text {
            match std::str::from_utf8(cut) {
                Ok(text) => return Self { text: Some(text), base64: None, truncated },
                // Our cut landed inside a character: show the whole characters
                // before it. (A fragment that itself ends mid-character is shown as
                // base64 instead, so no byte the peer sent goes missing.)
                Err(e) if truncated && e.error_len().is_none() => {
                    let text = std::str::from_utf8(&cut[..e.valid_up_to()]).unwrap_or_default();
                    return Self { text: Some(text), base64: None, truncated: true };
                }
                Err(_) => {}
            }
        }
        Self { text: None, base64: Some(base64::engine::general_purpose::STANDARD.encode(cut)), truncated }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_views() {
        let v = PayloadView::new(OpCode::Text, b"hello", 10);
        assert_eq!(v, PayloadView { text: Some("hello"), base64: None, truncated: false });
        let v = PayloadView::new(OpCode::Text, b"hello world", 5);
        assert_eq!(v, PayloadView { text: Some("hello"), base64: None, truncated: true });
        // "é" is two bytes; a cut after its first byte shows the text before it.
        let v = PayloadView::new(OpCode::Text, "aé".as_bytes(), 2);
        assert_eq!(v, PayloadView { text: Some("a"), base64: None, truncated: true });
        let v = PayloadView::new(OpCode::Text, b"\xff\xfe", 10);
        assert_eq!(v, PayloadView { text: None, base64: Some("//4=".into()), truncated: false });
        let v = PayloadView::new(OpCode::Binary, b"hi", 10);
        assert_eq!(v, PayloadView { text: None, base64: Some("aGk=".into()), truncated: false });
        let v = PayloadView::new(OpCode::Binary, &[0, 1, 2, 255], 3);
        assert_eq!(v, PayloadView { text: None, base64: Some("AAEC".into()), truncated: true });
    }
}
