//! Lines as JSON: the field names and order of `docs/transcript.md`.
//!
//! Written by hand rather than derived because which fields appear depends on the
//! value (`text` or `base64`, `code`/`reason` only on close frames, `injected` and
//! `truncated` only when true) and the order follows the documentation.

use std::io::Write;

use base64::Engine as _;
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::line::{Frame, FrameType, Header, Line, Payload};

/// A value that is one transcript line: [`Line`], [`Header`] or [`Frame`].
pub trait Encode: Serialize + sealed::Sealed {}
impl Encode for Line {}
impl Encode for Header {}
impl Encode for Frame {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::Line {}
    impl Sealed for crate::Header {}
    impl Sealed for crate::Frame {}
}

/// One line's JSON, without the newline.
pub fn to_line(line: &impl Encode) -> String {
    // Every field is a string, an integer, a bool or a finite float (an `Offset` is
    // bounded): serializing cannot fail.
    serde_json::to_string(line).expect("a transcript line always serializes")
}

/// Writes one line: its JSON and `\n`.
pub fn write<W: Write + ?Sized>(out: &mut W, line: &impl Encode) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, line).map_err(std::io::Error::from)?;
    out.write_all(b"\n")
}

impl Serialize for Line {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Line::Header(h) => h.serialize(s),
            Line::Frame(f) => f.serialize(s),
        }
    }
}

impl Serialize for Header {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Absent values are written as `null` (the documented shape: every field is
        // always there on the first line).
        let mut m = s.serialize_map(Some(13))?;
        m.serialize_entry("type", "session")?;
        m.serialize_entry("version", &self.version)?;
        m.serialize_entry("id", &self.id)?;
        m.serialize_entry("kind", &self.kind)?;
        m.serialize_entry("route", &self.route)?;
        m.serialize_entry("path", &self.path)?;
        m.serialize_entry("subprotocol", &self.subprotocol)?;
        m.serialize_entry("upstream", &self.upstream)?;
        m.serialize_entry("opened_at", &self.opened_at)?;
        m.serialize_entry("closed_at", &self.closed_at)?;
        m.serialize_entry("close_code", &self.close_code)?;
        m.serialize_entry("close_reason", &self.close_reason)?;
        m.serialize_entry("initiator", &self.initiator)?;
        m.end()
    }
}

impl Serialize for Frame {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let ty = self.payload.frame_type();
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("t", &self.t.as_secs_f64())?;
        m.serialize_entry("seq", &self.seq)?;
        m.serialize_entry("dir", &self.dir)?;
        m.serialize_entry("type", &ty)?;
        m.serialize_entry("opcode", &ty.opcode())?;
        m.serialize_entry("fin", &self.fin)?;
        m.serialize_entry("size", &self.size)?;
        if self.injected {
            m.serialize_entry("injected", &true)?;
        }
        if self.truncated {
            m.serialize_entry("truncated", &true)?;
        }
        if !self.marks.is_empty() {
            m.serialize_entry("marks", &self.marks)?;
        }
        match &self.payload {
            Payload::Close(Some(c)) => {
                m.serialize_entry("code", &c.code)?;
                m.serialize_entry("reason", &c.reason)?;
            }
            Payload::Close(None) => {}
            Payload::Text(b) | Payload::Binary(b) | Payload::Continuation(b) | Payload::Ping(b) | Payload::Pong(b) => {
                // Text stays text when it is whole UTF-8; a fragment may split a
                // character, and then base64 keeps the bytes exact.
                let text = matches!(ty, FrameType::Text | FrameType::Continuation)
                    .then(|| std::str::from_utf8(b).ok())
                    .flatten();
                match text {
                    Some(text) => m.serialize_entry("text", text)?,
                    None => m.serialize_entry("base64", &base64::engine::general_purpose::STANDARD.encode(b))?,
                }
            }
        }
        m.end()
    }
}
