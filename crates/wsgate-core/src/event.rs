//! The events sessions emit. Typed all the way to the wire edge, where observers
//! serialize them once.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use wsgate_protocol::OpCode;

use crate::kinds::ErrorKind;
use crate::session::{SessionInfo, Transition};

/// Which way a frame travelled.
///
/// The names are from the session's point of view, whose two ends are a *client*
/// and an *upstream*:
/// - proxy: the connected client ⇄ the upstream it is proxied to;
/// - mock (wsgate is the server): `ClientToGateway` / `GatewayToClient`;
/// - outbound (wsgate *is* the client, dialling out on an operator's request):
///   `ClientToUpstream` for what wsgate sends, `UpstreamToClient` for what the remote
///   server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    ClientToUpstream,
    UpstreamToClient,
    ClientToGateway,
    GatewayToClient,
}

impl Direction {
    /// Every value, in declaration order.
    pub const ALL: [Self; 4] =
        [Self::ClientToUpstream, Self::UpstreamToClient, Self::ClientToGateway, Self::GatewayToClient];

    /// The value whose [`as_str`](Self::as_str) name is `s`, in any case.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str().eq_ignore_ascii_case(s))
    }

    /// Frames that came from the session's client (counted as "in").
    pub fn is_inbound(self) -> bool {
        matches!(self, Self::ClientToUpstream | Self::ClientToGateway)
    }
    /// Position in [`Direction::ALL`].
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientToUpstream => "client_to_upstream",
            Self::UpstreamToClient => "upstream_to_client",
            Self::ClientToGateway => "client_to_gateway",
            Self::GatewayToClient => "gateway_to_client",
        }
    }
}

/// A frame seen on a session. The payload is shared, never copied, between
/// observers.
#[derive(Debug, Clone)]
pub struct MessageEvent {
    pub info: Arc<SessionInfo>,
    /// Per-session sequence number, from 1.
    pub seq: u64,
    pub direction: Direction,
    pub opcode: OpCode,
    pub fin: bool,
    pub payload: Bytes,
    /// Sent by the gateway on an operator's request, not by either peer.
    pub injected: bool,
    /// What a rule or fault did to it on its way (`marks.rs`); empty for most.
    pub marks: crate::Marks,
    pub at: DateTime<Utc>,
}

/// What became of a client message held in the accept-early queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueOutcome {
    /// Sent to the upstream once it was connected.
    Sent,
    /// Dropped; the kind says why (`QueueTimeout`, `QueueOverflow`). The matching
    /// `SessionEvent::Error` is emitted too: that one is what metrics and the store
    /// count, this one carries the message for observers that show it.
    Dropped(ErrorKind),
}

/// A queued client message leaving the accept-early queue. The message itself was
/// already reported as a [`MessageEvent`] when the client sent it; this says when it
/// went on (or that it never did). Emitted, like message events, only while some
/// observer wants message events.
#[derive(Debug, Clone)]
pub struct QueueEvent {
    pub info: Arc<SessionInfo>,
    pub outcome: QueueOutcome,
    /// `Text` or `Binary`: queued messages are whole.
    pub opcode: OpCode,
    pub payload: Bytes,
    pub queued_at: DateTime<Utc>,
    /// When it was sent or dropped.
    pub at: DateTime<Utc>,
}

/// A log of messages stored once and referred to by every session that received
/// them: a relay room's publications, so one publication to 1 000 members is one
/// stored message, not 1 000. One log per rendering of a room (raw and envelope
/// members receive different bytes for the same publication); a room emptied and
/// made again starts a new log, its offsets from 1 again — hence an id of its own.
#[derive(Debug)]
pub struct SharedLog {
    /// UUIDv7: unique across rooms, restarts and gateways sharing a store.
    pub id: uuid::Uuid,
    /// What it is the log of (the room's name), for people reading the store.
    pub name: Arc<str>,
}

impl SharedLog {
    pub fn new(name: Arc<str>) -> Arc<Self> {
        Arc::new(Self { id: uuid::Uuid::now_v7(), name })
    }
}

/// One message appended to a [`SharedLog`] (a publication), carried once.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub log: Arc<SharedLog>,
    /// Its place in the log, from 1 (the room's offset).
    pub offset: u64,
    pub opcode: OpCode,
    pub payload: Bytes,
    pub at: DateTime<Utc>,
}

/// Messages a session received from a [`SharedLog`], as a run: its frames
/// `first_seq ..first_seq + count` were the log's entries `first_offset ..` in order,
/// each sent `gateway_to_client`. A session's deliveries are recorded as runs (a
/// gap, another log or another frame between them starts a new one) instead of a
/// message event each; observers that show messages one by one (the live stream)
/// get those as [`MessageEvent`]s as well.
#[derive(Debug, Clone)]
pub struct DeliveryRun {
    pub info: Arc<SessionInfo>,
    pub first_seq: u64,
    pub count: u64,
    pub log: Arc<SharedLog>,
    pub first_offset: u64,
}

#[derive(Debug, Clone)]
pub enum SessionEvent {
    Lifecycle {
        info: Arc<SessionInfo>,
        transition: Transition,
    },
    Message(MessageEvent),
    /// Something went wrong or was given up (queued messages dropped, resolver
    /// fallback) without necessarily ending the session.
    Error {
        info: Arc<SessionInfo>,
        kind: ErrorKind,
        message: String,
    },
    /// A queued message sent or dropped (accept-early).
    Queue(QueueEvent),
    /// A message appended to a shared log (for the observers that keep shared logs:
    /// the recorder). Not about one session: `info` of the session that published
    /// it, if one did.
    Logged(LogEntry),
    /// A session's run of deliveries from a shared log.
    Delivered(DeliveryRun),
}

impl SessionEvent {
    /// The session it is about; `None` for a shared log's entry, which is about a room.
    pub fn info(&self) -> Option<&Arc<SessionInfo>> {
        match self {
            Self::Lifecycle { info, .. } | Self::Error { info, .. } => Some(info),
            Self::Message(m) => Some(&m.info),
            Self::Queue(q) => Some(&q.info),
            Self::Delivered(r) => Some(&r.info),
            Self::Logged(_) => None,
        }
    }
}
