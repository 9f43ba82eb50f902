//! The JSONL transcript of a session (`GET /api/sessions/{id}/export`,
//! `wsgate history export`): a first line describing the session, then one line per
//! frame. The format is documented in `docs/transcript.md`; `wsgate mock --replay`
//! plays it back, so fields are added, never renamed.

use base64::Engine as _;
use serde::Serialize;
use serde_json::{Value, json};

use crate::{MessageRow, SessionRow};

/// Format version, in the first line.
pub const VERSION: u32 = 1;

/// The first line.
pub fn header(s: &SessionRow) -> Value {
    json!({
        "type": "session",
        "version": VERSION,
        "id": s.id,
        "kind": s.kind,
        "route": s.route,
        "path": s.path,
        "subprotocol": s.subprotocol,
        "upstream": s.upstream,
        "opened_at": s.opened_at,
        "closed_at": s.closed_at,
        "close_code": s.close_code,
        "close_reason": s.close_reason,
        "initiator": s.initiator,
    })
}

/// How a frame's payload is written.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Text,
    Binary,
    Continuation,
    Close,
    Ping,
    Pong,
}

/// One frame's line. `t` is seconds since the session opened.
pub fn frame(s: &SessionRow, m: &MessageRow) -> Value {
    let t = (m.at - s.opened_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
    let kind = match m.opcode {
        0 => Kind::Continuation,
        1 => Kind::Text,
        2 => Kind::Binary,
        8 => Kind::Close,
        9 => Kind::Ping,
        _ => Kind::Pong,
    };
    let mut line = json!({
        "t": t,
        "seq": m.seq,
        "dir": m.direction,
        "type": kind,
        "opcode": m.opcode,
        "fin": m.fin,
        "size": m.size,
    });
    let obj = line.as_object_mut().expect("a JSON object");
    if m.injected {
        obj.insert("injected".into(), Value::Bool(true));
    }
    if m.truncated {
        obj.insert("truncated".into(), Value::Bool(true));
    }
    if m.opcode == 8 {
        if m.payload.len() >= 2 {
            obj.insert("code".into(), json!(u16::from_be_bytes([m.payload[0], m.payload[1]])));
            obj.insert("reason".into(), json!(String::from_utf8_lossy(&m.payload[2..])));
        }
        return line;
    }
    // Text stays text when it is whole UTF-8 (a fragment may split a character: then
    // base64, so the bytes survive exactly).
    match std::str::from_utf8(&m.payload) {
        Ok(text) if matches!(m.opcode, 0 | 1) => {
            obj.insert("text".into(), json!(text));
        }
        _ => {
            obj.insert("base64".into(), json!(base64::engine::general_purpose::STANDARD.encode(&m.payload)));
        }
    }
    line
}

/// Appends one line (JSON + `\n`) to `out`.
pub fn push_line(out: &mut Vec<u8>, v: &Value) {
    // Serializing a `Value` cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
    out.push(b'\n');
}
