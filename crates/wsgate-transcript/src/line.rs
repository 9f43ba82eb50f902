//! The lines of a transcript as values: what a line means, not how it is spelled
//! (that is `write` and `read`).

use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// One line of a transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// The first line: `{"type":"session",..}`.
    Header(Header),
    /// Every following line: one frame.
    Frame(Frame),
}

impl From<Header> for Line {
    fn from(h: Header) -> Self {
        Line::Header(h)
    }
}

impl From<Frame> for Line {
    fn from(f: Frame) -> Self {
        Line::Frame(f)
    }
}

/// The session a transcript records (its first line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The format version the line was written in (this crate writes [`crate::VERSION`]).
    pub version: u32,
    /// The session id, as the API spells it (a UUIDv7 for wsgate's own sessions;
    /// opaque to a reader).
    pub id: String,
    pub kind: SessionKind,
    pub route: String,
    /// Request path and query.
    pub path: String,
    pub subprotocol: Option<String>,
    /// The URL dialled (proxy and outbound sessions).
    pub upstream: Option<String>,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub close_code: Option<u16>,
    pub close_reason: Option<String>,
    pub initiator: Option<Initiator>,
}

/// What kind of session it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    Proxy,
    Relay,
    Mock,
    Outbound,
}

/// Who ended the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Initiator {
    Client,
    Upstream,
    Gateway,
    Admin,
}

/// Which way a frame went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Proxy: client → upstream; outbound: what wsgate sent.
    ClientToUpstream,
    UpstreamToClient,
    /// Mock and relay: the client → wsgate.
    ClientToGateway,
    GatewayToClient,
}

impl Direction {
    /// Sent by the client (to the upstream or to wsgate): what a replay of the
    /// server's side waits for, and what a replay of the client's side sends.
    pub fn is_from_client(self) -> bool {
        matches!(self, Direction::ClientToUpstream | Direction::ClientToGateway)
    }
}

/// One frame (a fragment or a control frame, as the gateway saw it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// When, after the session opened (`t`).
    pub t: Offset,
    /// The session's frame number, from 1; gaps are frames the recorder dropped.
    pub seq: u64,
    pub dir: Direction,
    /// The FIN bit: false on every fragment but a message's last.
    pub fin: bool,
    /// The payload's full size in bytes, even when `payload` is a cut prefix.
    pub size: u64,
    /// Its type (and so its opcode) and payload.
    pub payload: Payload,
    /// An operator sent it through the API.
    pub injected: bool,
    /// `payload` holds only a prefix (the store's payload cap).
    pub truncated: bool,
    /// What a rule or fault did to it on its way (`rule`, `fault`, `dropped`, `delayed`,
    /// `duplicate`, `rewritten`, `answer`); empty for a frame forwarded as it came.
    /// Names this version does not know are kept as they are.
    pub marks: Vec<String>,
}

/// A frame's type and payload. Data, ping and pong payloads are bytes: whether the
/// line spells them as `text` or `base64` is the writer's choice (text when it is a
/// text or continuation frame whose payload is UTF-8), not part of the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Text(Bytes),
    Binary(Bytes),
    Continuation(Bytes),
    /// `None`: an empty close frame (no code, no reason).
    Close(Option<Close>),
    Ping(Bytes),
    Pong(Bytes),
}

impl Payload {
    pub fn frame_type(&self) -> FrameType {
        match self {
            Payload::Text(_) => FrameType::Text,
            Payload::Binary(_) => FrameType::Binary,
            Payload::Continuation(_) => FrameType::Continuation,
            Payload::Close(_) => FrameType::Close,
            Payload::Ping(_) => FrameType::Ping,
            Payload::Pong(_) => FrameType::Pong,
        }
    }

    /// The payload bytes of a data, ping or pong frame; `None` for a close frame.
    pub fn data(&self) -> Option<&Bytes> {
        match self {
            Payload::Text(b) | Payload::Binary(b) | Payload::Continuation(b) | Payload::Ping(b) | Payload::Pong(b) => {
                Some(b)
            }
            Payload::Close(_) => None,
        }
    }
}

/// A close frame's code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    pub code: u16,
    pub reason: String,
}

/// A frame's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameType {
    Text,
    Binary,
    Continuation,
    Close,
    Ping,
    Pong,
}

impl FrameType {
    /// The RFC 6455 opcode (`opcode` on the line).
    pub fn opcode(self) -> u8 {
        match self {
            FrameType::Continuation => 0,
            FrameType::Text => 1,
            FrameType::Binary => 2,
            FrameType::Close => 8,
            FrameType::Ping => 9,
            FrameType::Pong => 10,
        }
    }

    /// The type of a frame with this opcode (`None` for the reserved ones).
    pub fn from_opcode(opcode: u8) -> Option<Self> {
        Some(match opcode {
            0 => FrameType::Continuation,
            1 => FrameType::Text,
            2 => FrameType::Binary,
            8 => FrameType::Close,
            9 => FrameType::Ping,
            10 => FrameType::Pong,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FrameType::Text => "text",
            FrameType::Binary => "binary",
            FrameType::Continuation => "continuation",
            FrameType::Close => "close",
            FrameType::Ping => "ping",
            FrameType::Pong => "pong",
        }
    }
}

impl std::fmt::Display for FrameType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A frame's time since the session opened, in whole microseconds (`t` on the line is
/// seconds with microsecond precision).
///
/// Kept as an integer, within ±[`Offset::MAX_MICROS`] (about 8.9 years), so that a
/// value survives the trip through a JSON float exactly: serde_json's float parsing
/// may be off by one unit in the last place, which rounding to the microsecond
/// absorbs only while the number of microseconds is well inside f64's 53 bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Offset(i64);

impl Offset {
    /// 2^48 µs: about 8.9 years.
    pub const MAX_MICROS: i64 = 1 << 48;

    /// `us` microseconds, clamped to ±[`Self::MAX_MICROS`].
    pub fn from_micros(us: i64) -> Self {
        Self(us.clamp(-Self::MAX_MICROS, Self::MAX_MICROS))
    }

    /// A time difference, cut to whole microseconds and clamped.
    pub fn from_delta(d: TimeDelta) -> Self {
        let us = d.num_microseconds().unwrap_or(if d < TimeDelta::zero() { i64::MIN } else { i64::MAX });
        Self::from_micros(us)
    }

    /// Seconds as written on the line (`None` when out of range or not a number).
    pub fn from_secs_f64(secs: f64) -> Option<Self> {
        let us = (secs * 1e6).round();
        (us.is_finite() && us.abs() <= Self::MAX_MICROS as f64).then_some(Self(us as i64))
    }

    pub fn micros(self) -> i64 {
        self.0
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }

    pub fn as_delta(self) -> TimeDelta {
        TimeDelta::microseconds(self.0)
    }
}
