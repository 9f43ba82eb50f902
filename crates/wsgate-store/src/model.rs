//! What the store keeps: rows for sessions, their events and their messages, the
//! batch the recorder writes, and the questions the API asks.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use wsgate_core::{Direction, Initiator, SessionId, SessionKind, State};

/// A session as stored: the facts fixed at REQUESTED plus what later transitions
/// added. Written whole (an upsert) each time it changes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionRow {
    pub id: SessionId,
    /// Which gateway instance recorded it: the restart rule only closes its own.
    pub instance: String,
    pub kind: SessionKind,
    pub route: String,
    pub path: String,
    pub client_addr: Option<String>,
    /// Request headers as recorded, credentials already redacted.
    pub headers: Vec<(String, String)>,
    pub subprotocol: Option<String>,
    pub upstream: Option<String>,
    pub state: State,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub close_code: Option<u16>,
    pub close_reason: Option<String>,
    pub initiator: Option<Initiator>,
    /// Why it FAILED, in words and as a class (`dns`, `refused`, `tls`, ...).
    pub failure: Option<String>,
    pub failure_kind: Option<String>,
    pub http_status: Option<u16>,
    pub messages_in: u64,
    pub messages_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Messages the recorder could not keep under `--record drop`.
    pub messages_dropped: u64,
}

/// What an event row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Lifecycle,
    Error,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lifecycle => "lifecycle",
            Self::Error => "error",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "lifecycle" => Some(Self::Lifecycle),
            "error" => Some(Self::Error),
            _ => None,
        }
    }
}

/// A lifecycle step or an error, in the order the session emitted them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRow {
    pub session_id: SessionId,
    /// Per-session order, from 1.
    pub seq: u32,
    pub at: DateTime<Utc>,
    pub kind: EventKind,
    /// The state entered, for lifecycle events.
    pub state: Option<State>,
    /// The error class, for error events (`protocol`, `queue_overflow`, ...).
    pub error_kind: Option<String>,
    /// The transition's metadata, or `{"message": ...}` for an error.
    pub detail: serde_json::Value,
}

/// One frame seen on a session.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRow {
    pub session_id: SessionId,
    /// The session's frame sequence number, from 1 (gaps are dropped messages).
    pub seq: u64,
    pub direction: Direction,
    /// The RFC 6455 opcode (1 text, 2 binary, 0 continuation, 8 close, 9 ping, 10 pong).
    pub opcode: u8,
    pub fin: bool,
    /// The payload's full size, even when `payload` was cut at the cap.
    pub size: u64,
    pub at: DateTime<Utc>,
    pub injected: bool,
    /// What a rule or fault did to it (`wsgate_core::marks`).
    pub marks: wsgate_core::Marks,
    pub truncated: bool,
    pub payload: Bytes,
}

/// An entry of a shared log (a relay room's publication), stored once however many
/// sessions received it; their histories refer to it through [`RunRow`]s.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntryRow {
    /// The log ([`wsgate_core::SharedLog::id`]).
    pub log: uuid::Uuid,
    /// Its place in the log, from 1.
    pub offset: u64,
    pub opcode: u8,
    /// The payload's full size, even when `payload` was cut at the cap.
    pub size: u64,
    pub at: DateTime<Utc>,
    pub truncated: bool,
    pub payload: Bytes,
}

/// A run of a session's deliveries from a shared log: its messages `first_seq ..
/// first_seq + count` are the log's entries `first_offset ..`, sent
/// `gateway_to_client`. Reads turn it back into [`MessageRow`]s
/// ([`crate::shared::expand`]), so a relay session's log reads like any other.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub session_id: SessionId,
    pub first_seq: u64,
    pub count: u64,
    pub log: uuid::Uuid,
    pub first_offset: u64,
}

impl RunRow {
    /// The seq after its last message.
    pub fn end_seq(&self) -> u64 {
        self.first_seq + self.count
    }
}

/// What the recorder hands the store in one transaction.
#[derive(Debug, Default)]
pub struct Batch {
    pub sessions: Vec<SessionRow>,
    pub events: Vec<EventRow>,
    pub messages: Vec<MessageRow>,
    pub log_entries: Vec<LogEntryRow>,
    pub runs: Vec<RunRow>,
}

impl Batch {
    pub fn rows(&self) -> usize {
        self.sessions.len() + self.events.len() + self.messages.len() + self.log_entries.len() + self.runs.len()
    }
    pub fn is_empty(&self) -> bool {
        self.rows() == 0
    }
}

/// Filters for listing sessions, newest first.
#[derive(Debug, Clone, Default)]
pub struct SessionQuery {
    /// Any of these states (empty: all).
    pub states: Vec<State>,
    pub kind: Option<SessionKind>,
    pub route: Option<String>,
    pub path_prefix: Option<String>,
    /// Opened at or after.
    pub since: Option<DateTime<Utc>>,
    /// Opened before.
    pub until: Option<DateTime<Utc>>,
    /// Cursor: only sessions older than this one (ids sort by creation).
    pub before: Option<SessionId>,
    pub limit: usize,
}

impl SessionQuery {
    /// Whether `row` passes the filters (the in-memory backend and the API's merge of
    /// live sessions use it; SQL backends say the same in SQL).
    pub fn matches(&self, row: &SessionRow) -> bool {
        self.matches_parts(row.id, row.state, row.kind, &row.route, &row.path, row.opened_at)
    }

    /// [`SessionQuery::matches`] on a session's fields, for callers that hold another
    /// shape of session (the API's live sessions).
    pub fn matches_parts(
        &self,
        id: SessionId,
        state: State,
        kind: SessionKind,
        route: &str,
        path: &str,
        opened_at: DateTime<Utc>,
    ) -> bool {
        (self.states.is_empty() || self.states.contains(&state))
            && self.kind.is_none_or(|k| k == kind)
            && self.route.as_deref().is_none_or(|r| r == route)
            && self.path_prefix.as_deref().is_none_or(|p| wsgate_core::path_matches(p, path))
            && self.since.is_none_or(|t| opened_at >= t)
            && self.until.is_none_or(|t| opened_at < t)
            && self.before.is_none_or(|b| id < b)
    }
}

/// One step of retention: at most `chunk` rows of each kind per call, so a large
/// backlog is deleted in many short transactions that writes interleave with.
#[derive(Debug, Clone, Copy)]
pub struct Prune {
    /// Delete sessions that ended before this, with their events and messages.
    pub ended_before: Option<DateTime<Utc>>,
    /// Keep at most this many messages overall (oldest go first).
    pub keep_messages: Option<u64>,
    pub chunk: usize,
}

/// What one prune step deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub sessions: u64,
    pub messages: u64,
}

impl Pruned {
    /// Whether a full chunk was deleted, so more may be left.
    pub fn maybe_more(&self, chunk: usize) -> bool {
        self.sessions >= chunk as u64 || self.messages >= chunk as u64
    }
}

/// Microseconds since the Unix epoch: how times are stored, in both SQL backends.
pub(crate) fn to_micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}
