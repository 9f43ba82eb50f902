//! Reading a transcript back: lines from any `BufRead`, each checked and typed.
//!
//! A transcript may be hand-written (a scripted conversation for `wsgate mock
//! --replay`) or come from an older or newer wsgate, so the reader is strict about
//! what it needs and lenient about the rest: fields it does not know are ignored
//! (the format only grows), blank lines are skipped, and a frame may leave out what
//! follows from the rest (`opcode` from `type`, `fin` is then true, `size` the
//! payload's length). Everything it refuses is named with its line number.

use std::io::{BufRead, Read as _};

use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Datelike as _, Utc};
use serde::Deserialize;

use crate::error::{ErrorKind, TranscriptError};
use crate::line::{Close, Direction, Frame, FrameType, Header, Initiator, Line, Offset, Payload, SessionKind};

/// The longest line a [`Reader`] takes by default: 64 MiB, room for the largest
/// message the gateway accepts (16 MiB) in base64, with margin.
pub const DEFAULT_MAX_LINE: usize = 64 << 20;

/// Reads transcript lines from `R`, one [`Line`] or [`TranscriptError`] per
/// non-blank line.
///
/// The first non-blank line must be the session's [`Header`] and no other may be.
/// After a refused line the reader goes on with the next (each line stands alone),
/// except after a read failure or a line over the length limit, where it stops.
#[derive(Debug)]
pub struct Reader<R> {
    inner: R,
    buf: Vec<u8>,
    /// Lines read so far (the number of the last one).
    line: u64,
    /// A non-blank line has been read: every later one must be a frame.
    started: bool,
    max_line: usize,
    stopped: bool,
}

impl<R: BufRead> Reader<R> {
    pub fn new(inner: R) -> Self {
        Self { inner, buf: Vec::new(), line: 0, started: false, max_line: DEFAULT_MAX_LINE, stopped: false }
    }

    /// Refuse lines longer than `max` bytes (without the newline) instead of
    /// [`DEFAULT_MAX_LINE`]: the reader holds one line in memory.
    pub fn with_max_line(mut self, max: usize) -> Self {
        self.max_line = max;
        self
    }

    /// The number of the last line read (blank ones included).
    pub fn line(&self) -> u64 {
        self.line
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    fn fail(&mut self, kind: ErrorKind) -> TranscriptError {
        if matches!(kind, ErrorKind::Io(_) | ErrorKind::TooLong { .. }) {
            self.stopped = true;
        }
        TranscriptError { line: self.line, kind }
    }
}

impl<R: BufRead> Iterator for Reader<R> {
    type Item = Result<Line, TranscriptError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.stopped {
            self.buf.clear();
            // One byte over the limit tells a line of exactly `max_line` bytes (then
            // its newline) from a longer one, without reading the longer one whole.
            let limit = u64::try_from(self.max_line).unwrap_or(u64::MAX).saturating_add(1);
            let read = (&mut self.inner).take(limit).read_until(b'\n', &mut self.buf);
            match read {
                Ok(0) => {
                    self.stopped = true;
                    return None;
                }
                Ok(_) => self.line += 1,
                Err(e) => {
                    self.line += 1;
                    return Some(Err(self.fail(ErrorKind::Io(e))));
                }
            }
            if self.buf.len() as u64 == limit && self.buf.last() != Some(&b'\n') {
                return Some(Err(self.fail(ErrorKind::TooLong { max: self.max_line })));
            }
            let text = self.buf.trim_ascii();
            if text.is_empty() {
                continue;
            }
            let first = !std::mem::replace(&mut self.started, true);
            let parsed = parse_line(text).and_then(|line| match (&line, first) {
                (Line::Header(_), true) | (Line::Frame(_), false) => Ok(line),
                (Line::Frame(_), true) => Err(ErrorKind::HeaderNotFirst),
                (Line::Header(_), false) => Err(ErrorKind::HeaderAgain),
            });
            return Some(parsed.map_err(|kind| self.fail(kind)));
        }
        None
    }
}

/// One line's JSON (surrounding whitespace allowed) as a [`Line`], wherever it
/// stands; [`Reader`] adds the rule that only the first line is a header.
pub fn parse_line(text: &[u8]) -> Result<Line, ErrorKind> {
    let text = text.trim_ascii();
    // serde would also take a JSON array as a struct, field by field in order: a
    // line that is not an object is refused before it gets the chance.
    if text.first() != Some(&b'{') {
        return Err(ErrorKind::NotAnObject);
    }
    let raw: RawLine = serde_json::from_slice(text)?;
    match raw.ty.ok_or(ErrorKind::Missing("type"))? {
        LineType::Session => raw.header().map(Line::Header),
        LineType::Text => raw.frame(FrameType::Text).map(Line::Frame),
        LineType::Binary => raw.frame(FrameType::Binary).map(Line::Frame),
        LineType::Continuation => raw.frame(FrameType::Continuation).map(Line::Frame),
        LineType::Close => raw.frame(FrameType::Close).map(Line::Frame),
        LineType::Ping => raw.frame(FrameType::Ping).map(Line::Frame),
        LineType::Pong => raw.frame(FrameType::Pong).map(Line::Frame),
    }
}

/// A line's `type`: the session line or a frame's type.
#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum LineType {
    Session,
    Text,
    Binary,
    Continuation,
    Close,
    Ping,
    Pong,
}

/// Every field either kind of line has, as the line spells it. Unknown fields are
/// ignored (serde's default): that is the format's forward compatibility.
#[derive(Deserialize)]
struct RawLine {
    #[serde(rename = "type")]
    ty: Option<LineType>,
    // The session line.
    version: Option<u64>,
    id: Option<String>,
    kind: Option<SessionKind>,
    route: Option<String>,
    path: Option<String>,
    subprotocol: Option<String>,
    upstream: Option<String>,
    opened_at: Option<DateTime<Utc>>,
    closed_at: Option<DateTime<Utc>>,
    close_code: Option<u16>,
    close_reason: Option<String>,
    initiator: Option<Initiator>,
    // Frame lines.
    t: Option<f64>,
    seq: Option<u64>,
    dir: Option<Direction>,
    opcode: Option<u8>,
    fin: Option<bool>,
    size: Option<u64>,
    injected: Option<bool>,
    truncated: Option<bool>,
    marks: Option<Vec<String>>,
    text: Option<String>,
    base64: Option<String>,
    code: Option<u16>,
    reason: Option<String>,
}

impl RawLine {
    fn header(self) -> Result<Header, ErrorKind> {
        let version = self.version.ok_or(ErrorKind::Missing("version"))?;
        if version == 0 {
            return Err(ErrorKind::VersionZero);
        }
        let version = u32::try_from(version)
            .ok()
            .filter(|&v| v <= crate::VERSION)
            .ok_or(ErrorKind::NewerVersion { found: version, supported: crate::VERSION })?;
        let opened_at = self.opened_at.ok_or(ErrorKind::Missing("opened_at"))?;
        Ok(Header {
            version,
            id: self.id.ok_or(ErrorKind::Missing("id"))?,
            kind: self.kind.ok_or(ErrorKind::Missing("kind"))?,
            route: self.route.ok_or(ErrorKind::Missing("route"))?,
            path: self.path.ok_or(ErrorKind::Missing("path"))?,
            subprotocol: self.subprotocol,
            upstream: self.upstream,
            opened_at: in_range("opened_at", opened_at)?,
            closed_at: self.closed_at.map(|at| in_range("closed_at", at)).transpose()?,
            close_code: self.close_code,
            close_reason: self.close_reason,
            initiator: self.initiator,
        })
    }

    fn frame(self, ty: FrameType) -> Result<Frame, ErrorKind> {
        let t = self.t.ok_or(ErrorKind::Missing("t"))?;
        let t = Offset::from_secs_f64(t).ok_or(ErrorKind::TimeOutOfRange)?;
        let seq = self.seq.ok_or(ErrorKind::Missing("seq"))?;
        let dir = self.dir.ok_or(ErrorKind::Missing("dir"))?;
        if let Some(found) = self.opcode
            && found != ty.opcode()
        {
            return Err(ErrorKind::OpcodeMismatch { found, ty });
        }
        let (payload, len) = if ty == FrameType::Close {
            close_payload(self.text, self.base64, self.code, self.reason)?
        } else {
            let close_field = [("code", self.code.is_some()), ("reason", self.reason.is_some())];
            if let Some((field, _)) = close_field.into_iter().find(|(_, present)| *present) {
                return Err(ErrorKind::CloseFieldOnData { field, ty });
            }
            let data = match (self.text, self.base64) {
                (Some(text), None) => Bytes::from(text.into_bytes()),
                (None, Some(b64)) => Bytes::from(base64::engine::general_purpose::STANDARD.decode(b64)?),
                (Some(_), Some(_)) => return Err(ErrorKind::TwoPayloads(ty)),
                (None, None) => return Err(ErrorKind::NoPayload(ty)),
            };
            let len = data.len() as u64;
            let payload = match ty {
                FrameType::Text => Payload::Text(data),
                FrameType::Binary => Payload::Binary(data),
                FrameType::Continuation => Payload::Continuation(data),
                FrameType::Ping => Payload::Ping(data),
                // (Close frames took the other branch.)
                FrameType::Pong | FrameType::Close => Payload::Pong(data),
            };
            (payload, len)
        };
        Ok(Frame {
            t,
            seq,
            dir,
            fin: self.fin.unwrap_or(true),
            size: self.size.unwrap_or(len),
            payload,
            injected: self.injected.unwrap_or(false),
            truncated: self.truncated.unwrap_or(false),
            marks: self.marks.unwrap_or_default(),
        })
    }
}

/// A close frame's payload from its line, and its length on the wire.
fn close_payload(
    text: Option<String>,
    base64: Option<String>,
    code: Option<u16>,
    reason: Option<String>,
) -> Result<(Payload, u64), ErrorKind> {
    if text.is_some() {
        return Err(ErrorKind::PayloadOnClose("text"));
    }
    if base64.is_some() {
        return Err(ErrorKind::PayloadOnClose("base64"));
    }
    match (code, reason) {
        // A code alone is a close frame with an empty reason.
        (Some(code), reason) => {
            let reason = reason.unwrap_or_default();
            let len = 2 + reason.len() as u64;
            Ok((Payload::Close(Some(Close { code, reason })), len))
        }
        (None, Some(_)) => Err(ErrorKind::ReasonWithoutCode),
        (None, None) => Ok((Payload::Close(None), 0)),
    }
}

/// A time the writer can spell back: chrono writes years past 9999 as `+10000-..`,
/// which RFC 3339 (and so the reader) does not take, and an offset such as
/// `9999-12-31T23:00:00-05:00` reaches one.
fn in_range(field: &'static str, at: DateTime<Utc>) -> Result<DateTime<Utc>, ErrorKind> {
    if (0..=9999).contains(&at.year()) { Ok(at) } else { Err(ErrorKind::DateOutOfRange { field }) }
}
