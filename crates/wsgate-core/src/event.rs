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
}

impl SessionEvent {
    pub fn info(&self) -> &Arc<SessionInfo> {
        match self {
            Self::Lifecycle { info, .. } | Self::Error { info, .. } => info,
            Self::Message(m) => &m.info,
            Self::Queue(q) => &q.info,
        }
    }
}
