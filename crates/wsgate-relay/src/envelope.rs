//! The envelope protocol's wire format (`docs/relay-protocol.md`): JSON frames
//! `{"type", "id", "room", "to", "data"}` parsed once into [`ClientFrame`], and the
//! server's frames written here and nowhere else.
//!
//! WarpSocket's shape (`{"type": "event"|"ack"|"heartbeat", "id", "data",
//! "timestamp"}`) is a subset: its `event` is a publication, its `heartbeat` is
//! answered, its `ack` accepted. Deliveries are `event` frames, so a WarpSocket
//! client reads them as its own.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use wsgate_core::SessionId;
use wsgate_protocol::Message;

/// Most connections one `send` may address.
pub const MAX_RECIPIENTS: usize = 1000;
/// Longest room name, in bytes.
pub const MAX_ROOM_LEN: usize = 256;

/// What is published or sent, as it arrived: raw members get it as a frame of its
/// own kind, envelope members as the envelope's `data` (or `base64`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// A text message (UTF-8): a string in an envelope.
    Text(Bytes),
    /// A JSON value, serialized: a text frame for raw members, `data` as is in an envelope.
    Json(Bytes),
    /// Binary: a binary frame for raw members, `base64` in an envelope.
    Binary(Bytes),
}

impl Payload {
    /// The frame a raw member gets.
    pub fn raw(&self) -> Message {
        match self {
            Self::Text(b) | Self::Json(b) => Message::Text(b.clone()),
            Self::Binary(b) => Message::Binary(b.clone()),
        }
    }
}

/// A command's `id`, kept as the client wrote it (string or number) to be echoed in
/// its `ack` or `error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Id(String);

impl Id {
    pub fn as_json(&self) -> &str {
        &self.0
    }
}

/// Who a `send` is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipients {
    One(SessionId),
    Group(Vec<SessionId>),
}

impl Recipients {
    pub fn ids(&self) -> &[SessionId] {
        match self {
            Self::One(id) => std::slice::from_ref(id),
            Self::Group(ids) => ids,
        }
    }
}

/// A client's frame, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    Join {
        id: Option<Id>,
        room: String,
    },
    Leave {
        id: Option<Id>,
        room: String,
    },
    /// `publish` (room required) or WarpSocket's `event` (room optional: the rooms
    /// the client is in).
    Publish {
        id: Option<Id>,
        room: Option<String>,
        data: Payload,
        timestamp: Option<i64>,
        event: bool,
    },
    Send {
        id: Option<Id>,
        to: Recipients,
        data: Payload,
        timestamp: Option<i64>,
    },
    Heartbeat {
        id: Option<Id>,
    },
    /// A client's acknowledgement (kept for reliable delivery; nothing to do yet).
    Ack {
        id: Option<Id>,
    },
}

/// Why a frame was refused: the `code` of the error frame it gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("binary frames are not envelopes: send JSON text, with binary data as \"base64\"")]
    Binary,
    #[error("not a JSON object: {0}")]
    NotJson(String),
    #[error("no \"type\"")]
    MissingType,
    #[error("unknown type {0:?}: one of join, leave, publish, send, event, heartbeat, ack")]
    UnknownType(String),
    #[error("{0:?} is required for this type")]
    MissingField(&'static str),
    #[error("{field:?}: {why}")]
    BadField { field: &'static str, why: String },
    #[error("not a member of room {0:?}: join it first")]
    NotMember(String),
    #[error("room {0:?} is not allowed for this connection")]
    Forbidden(String),
}

impl EnvelopeError {
    /// The error frame's `code`.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::Binary => "binary_frame",
            Self::NotJson(_) => "not_json",
            Self::MissingType => "missing_type",
            Self::UnknownType(_) => "unknown_type",
            Self::MissingField(_) => "missing_field",
            Self::BadField { .. } => "bad_field",
            Self::NotMember(_) => "not_member",
            Self::Forbidden(_) => "forbidden",
        }
    }

    /// Whether it counts towards the malformed-frame limit (a well-formed command
    /// that is not allowed does not).
    pub const fn is_malformed(&self) -> bool {
        !matches!(self, Self::NotMember(_) | Self::Forbidden(_))
    }
}

/// A refused frame: the error and the id to answer with, if the frame had one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub id: Option<Id>,
    pub error: EnvelopeError,
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    room: Option<String>,
    #[serde(borrow)]
    to: Option<&'a RawValue>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    base64: Option<String>,
    timestamp: Option<serde_json::Number>,
}

/// Parses one text frame from a client.
pub fn parse(text: &[u8]) -> Result<ClientFrame, Refused> {
    let wire: Wire<'_> =
        serde_json::from_slice(text).map_err(|e| Refused { id: None, error: EnvelopeError::NotJson(e.to_string()) })?;
    let id = match wire.id {
        // A string, echoed as written: only one that reads back (not a lone surrogate
        // escape, `"\udaaa"`, which the first parse skipped over).
        Some(raw) if raw.get().starts_with('"') && serde_json::from_str::<Readable>(raw.get()).is_ok() => {
            Some(Id(raw.get().to_owned()))
        }
        // A number, echoed as written: only one a JSON parser can read back (not
        // `1E20000`, which overflows a double and which serde_json, for one, refuses).
        Some(raw)
            if matches!(raw.get().as_bytes().first(), Some(b'-' | b'0'..=b'9'))
                && raw.get().parse::<serde_json::Number>().is_ok() =>
        {
            Some(Id(raw.get().to_owned()))
        }
        Some(_) => {
            let why = "a string or a number".to_owned();
            return Err(Refused { id: None, error: EnvelopeError::BadField { field: "id", why } });
        }
        None => None,
    };
    let refuse = |error| Refused { id: id.clone(), error };
    let kind = wire.kind.ok_or_else(|| refuse(EnvelopeError::MissingType))?;
    let room = |r: Option<String>, required: bool| -> Result<Option<String>, Refused> {
        match r {
            None if required => Err(refuse(EnvelopeError::MissingField("room"))),
            None => Ok(None),
            Some(r) if r.is_empty() || r.len() > MAX_ROOM_LEN => Err(refuse(EnvelopeError::BadField {
                field: "room",
                why: format!("between 1 and {MAX_ROOM_LEN} bytes"),
            })),
            Some(r) => Ok(Some(r)),
        }
    };
    let data = |required: bool| -> Result<Payload, Refused> {
        match (wire.data, &wire.base64) {
            (_, Some(b)) => B64
                .decode(b)
                .map(|v| Payload::Binary(v.into()))
                .map_err(|e| refuse(EnvelopeError::BadField { field: "base64", why: e.to_string() })),
            (Some(raw), None) => {
                // Relayed as written, so it must read back: the first parse only
                // skipped over its numbers (`Readable`).
                serde_json::from_str::<Readable>(raw.get()).map_err(|e| {
                    refuse(EnvelopeError::BadField { field: "data", why: format!("JSON every member can read ({e})") })
                })?;
                Ok(Payload::Json(Bytes::copy_from_slice(raw.get().as_bytes())))
            }
            (None, None) if required => Err(refuse(EnvelopeError::MissingField("data"))),
            (None, None) => Ok(Payload::Json(Bytes::from_static(b"null"))),
        }
    };
    let timestamp = wire.timestamp.as_ref().and_then(|n| n.as_i64());
    Ok(match &*kind {
        "join" => ClientFrame::Join { room: room(wire.room, true)?.unwrap_or_default(), id },
        "leave" => ClientFrame::Leave { room: room(wire.room, true)?.unwrap_or_default(), id },
        "publish" => {
            let room = room(wire.room, true)?;
            ClientFrame::Publish { data: data(true)?, room, timestamp, event: false, id }
        }
        "event" => {
            let room = room(wire.room, false)?;
            ClientFrame::Publish { data: data(false)?, room, timestamp, event: true, id }
        }
        "send" => {
            let to = recipients(wire.to).map_err(refuse)?;
            ClientFrame::Send { data: data(true)?, to, timestamp, id }
        }
        "heartbeat" => ClientFrame::Heartbeat { id },
        "ack" => ClientFrame::Ack { id },
        other => return Err(refuse(EnvelopeError::UnknownType(other.chars().take(64).collect()))),
    })
}

/// Any JSON value, kept as nothing, but read through: unlike `IgnoredAny` (and the
/// `RawValue` the frame is first read into), which serde_json skips over without
/// reading its numbers, every number is parsed, so one no double holds (`1e99999`,
/// valid JSON grammar that serde_json, for one, refuses) is found. Depth is bounded
/// by serde_json's recursion limit.
struct Readable;

impl<'de> Deserialize<'de> for Readable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ReadThrough)
    }
}

struct ReadThrough;

impl<'de> serde::de::Visitor<'de> for ReadThrough {
    type Value = Readable;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Readable, E> {
        Ok(Readable)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Readable, E> {
        Ok(Readable)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Readable, E> {
        Ok(Readable)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Readable, E> {
        Ok(Readable)
    }
    fn visit_str<E>(self, _: &str) -> Result<Readable, E> {
        Ok(Readable)
    }
    fn visit_unit<E>(self) -> Result<Readable, E> {
        Ok(Readable)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Readable, A::Error> {
        while seq.next_element::<Readable>()?.is_some() {}
        Ok(Readable)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Readable, A::Error> {
        while map.next_key::<serde::de::IgnoredAny>()?.is_some() {
            map.next_value::<Readable>()?;
        }
        Ok(Readable)
    }
}

fn recipients(to: Option<&RawValue>) -> Result<Recipients, EnvelopeError> {
    let bad = |why: String| EnvelopeError::BadField { field: "to", why };
    let one = |s: &str| s.parse::<SessionId>().map_err(|_| bad(format!("{s:?} is not a connection id")));
    let Some(raw) = to else { return Err(EnvelopeError::MissingField("to")) };
    match serde_json::from_str::<serde_json::Value>(raw.get()) {
        Ok(serde_json::Value::String(s)) => Ok(Recipients::One(one(&s)?)),
        Ok(serde_json::Value::Array(items)) => {
            if items.is_empty() || items.len() > MAX_RECIPIENTS {
                return Err(bad(format!("between 1 and {MAX_RECIPIENTS} connection ids")));
            }
            let ids = items
                .iter()
                .map(|v| v.as_str().ok_or_else(|| bad("connection ids are strings".into())).and_then(one))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Recipients::Group(ids))
        }
        _ => Err(bad("a connection id or a list of them".into())),
    }
}

/// Milliseconds since the Unix epoch, as WarpSocket's `timestamp`.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Writes `"key":` and a JSON string.
fn string_field(out: &mut Vec<u8>, key: &str, value: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
    // Writing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

fn number_field(out: &mut Vec<u8>, key: &str, value: impl std::fmt::Display) {
    use std::io::Write as _;
    let _ = write!(out, ",\"{key}\":{value}");
}

fn payload_fields(out: &mut Vec<u8>, payload: &Payload) {
    match payload {
        Payload::Text(b) => string_field(out, "data", &String::from_utf8_lossy(b)),
        Payload::Json(b) => {
            out.extend_from_slice(b",\"data\":");
            out.extend_from_slice(b);
        }
        Payload::Binary(b) => string_field(out, "base64", &B64.encode(b)),
    }
}

fn frame(kind: &str, fill: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.push(b'"');
    fill(&mut out);
    out.push(b'}');
    out.into()
}

/// A room publication as envelope members get it.
pub fn publication(
    room: &str,
    offset: u64,
    from: Option<SessionId>,
    payload: &Payload,
    timestamp: Option<i64>,
) -> Bytes {
    frame("event", |out| {
        string_field(out, "id", &format!("{room}#{offset}"));
        string_field(out, "room", room);
        number_field(out, "offset", offset);
        if let Some(f) = from {
            string_field(out, "from", &f.to_string());
        }
        payload_fields(out, payload);
        number_field(out, "timestamp", timestamp.unwrap_or_else(now_ms));
    })
}

/// A unicast or group message as envelope members get it.
pub fn direct(from: Option<SessionId>, payload: &Payload, timestamp: Option<i64>) -> Bytes {
    frame("event", |out| {
        if let Some(f) = from {
            string_field(out, "from", &f.to_string());
        }
        payload_fields(out, payload);
        number_field(out, "timestamp", timestamp.unwrap_or_else(now_ms));
    })
}

/// The first frame of an envelope connection: its id and the rooms it is in.
pub fn welcome(connection: SessionId, rooms: &[std::sync::Arc<str>]) -> Bytes {
    frame("welcome", |out| {
        string_field(out, "connection", &connection.to_string());
        out.extend_from_slice(b",\"rooms\":");
        let _ = serde_json::to_writer(&mut *out, rooms);
        number_field(out, "timestamp", now_ms());
    })
}

/// What an `ack` may say besides its id.
#[derive(Debug, Default, Clone, Copy)]
pub struct AckInfo<'a> {
    pub room: Option<&'a str>,
    pub offset: Option<u64>,
    pub delivered: Option<usize>,
}

pub fn ack(id: &Id, info: AckInfo<'_>) -> Bytes {
    frame("ack", |out| {
        out.extend_from_slice(b",\"id\":");
        out.extend_from_slice(id.as_json().as_bytes());
        if let Some(r) = info.room {
            string_field(out, "room", r);
        }
        if let Some(o) = info.offset {
            number_field(out, "offset", o);
        }
        if let Some(d) = info.delivered {
            number_field(out, "delivered", d);
        }
        number_field(out, "timestamp", now_ms());
    })
}

/// WarpSocket's heartbeat answer: the same id, the server's time.
pub fn heartbeat(id: Option<&Id>) -> Bytes {
    frame("heartbeat", |out| {
        if let Some(id) = id {
            out.extend_from_slice(b",\"id\":");
            out.extend_from_slice(id.as_json().as_bytes());
        }
        number_field(out, "timestamp", now_ms());
    })
}

pub fn error(id: Option<&Id>, e: &EnvelopeError) -> Bytes {
    frame("error", |out| {
        if let Some(id) = id {
            out.extend_from_slice(b",\"id\":");
            out.extend_from_slice(id.as_json().as_bytes());
        }
        string_field(out, "code", e.code());
        string_field(out, "message", &e.to_string());
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(b: &Bytes) -> serde_json::Value {
        serde_json::from_slice(b).unwrap_or_default()
    }

    #[test]
    fn commands_parse() {
        let f = parse(br#"{"type":"join","room":"/a","id":"1"}"#);
        assert_eq!(f, Ok(ClientFrame::Join { id: Some(Id("\"1\"".into())), room: "/a".into() }));
        let f = parse(br#"{"type":"publish","room":"/a","data":{"x":[1,2]}}"#);
        assert!(
            matches!(f, Ok(ClientFrame::Publish { data: Payload::Json(d), event: false, .. }) if &d[..] == br#"{"x":[1,2]}"#)
        );
        let f = parse(br#"{"type":"event","id":7,"data":"hi","timestamp":1700000000000}"#);
        assert!(matches!(
            f,
            Ok(ClientFrame::Publish { room: None, event: true, timestamp: Some(1_700_000_000_000), .. })
        ));
        let f = parse(br#"{"type":"publish","room":"/a","base64":"AAE="}"#);
        assert!(matches!(f, Ok(ClientFrame::Publish { data: Payload::Binary(b), .. }) if b[..] == [0, 1]));
        let id = SessionId::new();
        let f = parse(format!(r#"{{"type":"send","to":["{id}"],"data":1}}"#).as_bytes());
        assert!(matches!(f, Ok(ClientFrame::Send { to: Recipients::Group(v), .. }) if v == vec![id]));
    }

    #[test]
    fn bad_frames_are_typed_and_keep_their_id() {
        let code = |s: &[u8]| parse(s).err().map(|r| (r.error.code(), r.id.map(|i| i.0)));
        assert_eq!(code(b"nope"), Some(("not_json", None)));
        assert_eq!(code(b"[1]"), Some(("not_json", None)));
        assert_eq!(code(br#"{"id":3}"#), Some(("missing_type", Some("3".into()))));
        assert_eq!(code(br#"{"type":"dance","id":"a"}"#), Some(("unknown_type", Some("\"a\"".into()))));
        assert_eq!(code(br#"{"type":"publish","data":1}"#), Some(("missing_field", None)));
        assert_eq!(code(br#"{"type":"send","to":"nobody","data":1}"#), Some(("bad_field", None)));
        assert_eq!(code(br#"{"type":"join","room":""}"#), Some(("bad_field", None)));
        assert_eq!(code(br#"{"type":"join","room":"a","id":{}}"#), Some(("bad_field", None)));
        // Found by the relay_envelope fuzz target: valid JSON, but no double holds it.
        assert_eq!(code(br#"{"type":"dance","id":1700000E20000}"#), Some(("bad_field", None)));
        // Found by it again, in the data a publication relays as written.
        let huge = br#"{"type":"publish","room":"/r","id":7,"data":{"a":[1,5555e55555,2]}}"#;
        assert_eq!(code(huge), Some(("bad_field", Some("7".into()))));
        assert_eq!(code(br#"{"type":"heartbeat","id":"a\udaaab"}"#), Some(("bad_field", None)));
        assert_eq!(code(br#"{"type":"publish","room":"/r","data":"\udaaa"}"#).map(|c| c.0), Some("bad_field"));
        let fine = br#"{"type":"publish","room":"/r","data":{"a":[1,-2.5e300,"e5",{"b":null}],"c":"\ud83d\ude00"}}"#;
        assert!(parse(fine).is_ok());
    }

    #[test]
    fn server_frames_are_json_with_their_fields() {
        let id = SessionId::new();
        let p = json(&publication("/r", 3, Some(id), &Payload::Text("a\"b".into()), Some(5)));
        assert_eq!(p["type"], "event");
        assert_eq!((p["room"].as_str(), p["offset"].as_u64(), p["data"].as_str()), (Some("/r"), Some(3), Some("a\"b")));
        assert_eq!((p["from"].as_str(), p["timestamp"].as_i64()), (Some(id.to_string().as_str()), Some(5)));
        let b = json(&direct(None, &Payload::Binary(vec![0u8, 1].into()), None));
        assert_eq!(b["base64"], "AAE=");
        let j = json(&direct(None, &Payload::Json(r#"{"k":true}"#.into()), None));
        assert_eq!(j["data"]["k"], true);
        let a = json(&ack(&Id("12".into()), AckInfo { offset: Some(4), ..AckInfo::default() }));
        assert_eq!((a["type"].as_str(), a["id"].as_u64(), a["offset"].as_u64()), (Some("ack"), Some(12), Some(4)));
        let e = json(&error(None, &EnvelopeError::MissingType));
        assert_eq!(e["code"], "missing_type");
        let w = json(&welcome(id, &["/r".into()]));
        assert_eq!((w["connection"].as_str(), w["rooms"][0].as_str()), (Some(id.to_string().as_str()), Some("/r")));
    }
}
