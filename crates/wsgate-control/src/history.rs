//! Session history over HTTP: sessions from the store merged with the live registry,
//! and each session's events, messages and JSONL transcript.
//!
//! - `GET /api/sessions/{id}/events` → `{"events":[..]}`: lifecycle steps and errors.
//! - `GET /api/sessions/{id}/messages?after_seq=&limit=` → `{"messages":[..],
//!   "next_after_seq":N|null}`: frames in order, a page at a time.
//! - `GET /api/sessions/{id}/export` → `application/x-ndjson`, the transcript
//!   documented in `docs/transcript.md`.
//!
//! Live sessions come from the registry (fresher: counters move while they run);
//! ended ones from the store, or from the registry's memory of recent sessions when
//! the gateway runs with `--no-store`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use http::header;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use wsgate_core::registry::{LIFECYCLE_HEAD, LIFECYCLE_TAIL};
use wsgate_core::{CloseInfo, SessionId, SessionKind, SessionSnapshot, State as SessionState};
use wsgate_store::{EventKind, SessionQuery, SessionRow, Store, transcript};

use crate::ControlPlane;
use crate::api::{SessionPath, parse_id};
use crate::error::{ApiError, ErrorBody};

/// Messages one page returns when `limit` is not given, and at most.
pub const DEFAULT_MESSAGES: usize = 100;
pub const MAX_MESSAGES: usize = 1000;

// `SessionView::lifecycle_omitted`'s documentation (and so the OpenAPI document)
// names these numbers.
const _: () = assert!(LIFECYCLE_HEAD == 8 && LIFECYCLE_TAIL == 64);

/// A session as the API shows it, live or stored.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionView {
    #[schema(value_type = String)]
    pub id: SessionId,
    pub kind: SessionKind,
    pub route: String,
    /// Request path and query as the client sent them.
    pub path: String,
    pub client_addr: Option<String>,
    /// Recorded request headers (`[name, value]`), credentials redacted.
    #[schema(value_type = Vec<Vec<String>>)]
    pub headers: Vec<(String, String)>,
    pub opened_at: DateTime<Utc>,
    pub state: SessionState,
    /// Whether the session is still running in this gateway.
    pub live: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subprotocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<DateTime<Utc>>,
    pub close: CloseInfo,
    /// Why it FAILED.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// The failure's class: dns, refused, tls, timeout, http_status, handshake.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_kind: Option<String>,
    /// HTTP status of a refused upgrade.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    pub messages_in: u64,
    pub messages_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Messages the recorder dropped because the store fell behind (`--record drop`).
    pub messages_dropped: u64,
    /// Lifecycle steps (`state`, `at` and their metadata), on single-session answers
    /// and for sessions still in memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub lifecycle: Option<Vec<serde_json::Value>>,
    /// Lifecycle steps left out of `lifecycle`, between its first 8 steps and the
    /// rest: a live session keeps its first 8 and latest 64 steps in memory (one that
    /// reconnects forever would otherwise grow without end). 0 when `lifecycle` is
    /// whole, as it always is for a stored session (the store keeps every step).
    pub lifecycle_omitted: u64,
}

impl SessionView {
    pub fn from_snapshot(s: SessionSnapshot) -> Self {
        let last = s.lifecycle.last().map(|t| &t.detail);
        Self {
            id: s.info.id,
            kind: s.info.kind,
            route: s.info.route.to_string(),
            path: s.info.path.clone(),
            client_addr: s.info.client_addr.map(|a| a.to_string()),
            headers: s.info.headers.clone(),
            opened_at: s.info.opened_at,
            live: !s.state.is_final(),
            failure_kind: last
                .filter(|_| s.state == SessionState::Failed)
                .and_then(|d| d.reason_kind)
                .map(|k| k.as_str().into()),
            http_status: last.filter(|_| s.state == SessionState::Failed).and_then(|d| d.http_status),
            state: s.state,
            upstream: s.upstream,
            subprotocol: s.subprotocol,
            closed_at: s.closed_at,
            close: s.close,
            failure: s.failure,
            messages_in: s.messages_in,
            messages_out: s.messages_out,
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
            messages_dropped: 0,
            lifecycle: Some(s.lifecycle.iter().filter_map(|t| serde_json::to_value(t).ok()).collect()),
            lifecycle_omitted: s.lifecycle_omitted,
        }
    }

    pub fn from_row(r: SessionRow) -> Self {
        Self {
            id: r.id,
            kind: r.kind,
            route: r.route,
            path: r.path,
            client_addr: r.client_addr,
            headers: r.headers,
            opened_at: r.opened_at,
            live: false,
            state: r.state,
            upstream: r.upstream,
            subprotocol: r.subprotocol,
            closed_at: r.closed_at,
            close: CloseInfo { code: r.close_code, reason: r.close_reason, initiator: r.initiator },
            failure: r.failure,
            failure_kind: r.failure_kind,
            http_status: r.http_status,
            messages_in: r.messages_in,
            messages_out: r.messages_out,
            bytes_in: r.bytes_in,
            bytes_out: r.bytes_out,
            messages_dropped: r.messages_dropped,
            lifecycle: None,
            lifecycle_omitted: 0,
        }
    }

    fn matches(&self, q: &SessionQuery) -> bool {
        q.matches_parts(self.id, self.state, self.kind, &self.route, &self.path, self.opened_at)
    }
}

/// How long after its end a session is listed from the registry's memory when the
/// store does not have it yet. The recorder commits every ~100 ms; a session that
/// just ended is in neither the live set nor the store until then, and must not
/// vanish from the list. Bounded, so a session the retention rule deleted from the
/// store does not come back from memory.
const RECENTLY_ENDED: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

/// Sessions matching `q`, newest first: stored ones, overlaid with what the registry
/// knows (live sessions, and ones that ended too recently to be stored yet, or every
/// recent one when there is no store).
pub(crate) async fn list(cp: &ControlPlane, q: &SessionQuery) -> Result<Vec<SessionView>, ApiError> {
    let mut out: BTreeMap<SessionId, SessionView> = BTreeMap::new();
    let stored = cp.inner.cfg.store.is_some();
    if let Some(store) = &cp.inner.cfg.store {
        for row in store.sessions(q).await? {
            out.insert(row.id, SessionView::from_row(row));
        }
    }
    let now = Utc::now();
    for snap in cp.inner.registry.all() {
        let ended_long_ago = snap.closed_at.is_some_and(|at| now - at > RECENTLY_ENDED);
        let view = SessionView::from_snapshot(snap);
        if !view.matches(q) {
            continue;
        }
        if !view.state.is_final() {
            // Live: the registry is fresher than the store (counters move).
            let dropped = out.get(&view.id).map(|v| v.messages_dropped).unwrap_or(0);
            out.insert(view.id, SessionView { messages_dropped: dropped, ..view });
        } else if !stored || !ended_long_ago {
            // Ended: the stored row is the record once it shows the end; until the
            // recorder's batch lands it may still say CONNECTED.
            match out.get(&view.id) {
                Some(row) if row.state.is_final() => {}
                _ => {
                    out.insert(view.id, view);
                }
            }
        }
    }
    Ok(out.into_values().rev().take(q.limit).collect())
}

/// One session: live from the registry, else from the store with its lifecycle.
pub(crate) async fn get(cp: &ControlPlane, id: SessionId) -> Result<SessionView, ApiError> {
    let snap = cp.inner.registry.get(id);
    if let Some(snap) = snap.as_ref().filter(|s| !s.state.is_final()) {
        return Ok(SessionView::from_snapshot(snap.clone()));
    }
    if let Some(store) = &cp.inner.cfg.store
        && let Some(row) = store.session(id).await?
        // A row not yet showing the end the registry knows of is stale (its final
        // batch is not committed yet): the registry's snapshot is the truth for now.
        && (row.state.is_final() || snap.is_none())
    {
        let lifecycle = store
            .events(id)
            .await?
            .into_iter()
            .filter(|e| e.kind == EventKind::Lifecycle)
            .map(|e| {
                let mut v = e.detail;
                if let Some(o) = v.as_object_mut() {
                    o.insert("state".into(), serde_json::json!(e.state));
                    o.insert("at".into(), serde_json::json!(e.at));
                }
                v
            })
            .collect();
        return Ok(SessionView { lifecycle: Some(lifecycle), ..SessionView::from_row(row) });
    }
    snap.map(SessionView::from_snapshot).ok_or(ApiError::SessionNotFound(id))
}

/// The answer of `GET /api/sessions/{id}/events`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    pub events: Vec<EventView>,
}

/// A lifecycle step or an error.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    /// Order within the session, from 1.
    pub seq: u32,
    pub at: DateTime<Utc>,
    /// `lifecycle` or `error`.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: EventKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<SessionState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    /// The step's metadata (reason, close code, upstream, ...) or the error's message.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// `GET /api/sessions/{id}/events`.
#[utoipa::path(
    get,
    path = "/api/sessions/{id}/events",
    tag = "history",
    summary = "A session's lifecycle steps and errors",
    params(SessionPath),
    responses(
        (status = 200, description = "The events, in order", body = EventList),
        (status = 400, description = "The id is not a session id", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 503, description = "The history store failed", body = ErrorBody),
    ),
)]
pub async fn events(
    State(cp): State<ControlPlane>,
    id: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = parse_id(&id?.0)?;
    if let Some(store) = &cp.inner.cfg.store {
        let rows = store.events(id).await?;
        if !rows.is_empty() {
            let events = rows
                .into_iter()
                .map(|e| EventView {
                    seq: e.seq,
                    at: e.at,
                    kind: e.kind,
                    state: e.state,
                    error_kind: e.error_kind,
                    detail: e.detail,
                })
                .collect();
            return Ok(Json(EventList { events }));
        }
    }
    let snap = cp.inner.registry.get(id).ok_or(ApiError::SessionNotFound(id))?;
    // Each step is numbered by its place in the whole lifecycle, as the store numbers
    // it: the steps the registry left out (`lifecycle_omitted`) are a gap in `seq`
    // after the first LIFECYCLE_HEAD.
    let seq = |i: usize| {
        let omitted = if i >= LIFECYCLE_HEAD { snap.lifecycle_omitted } else { 0 };
        u32::try_from(i as u64 + 1 + omitted).unwrap_or(u32::MAX)
    };
    let events = snap
        .lifecycle
        .iter()
        .enumerate()
        .map(|(i, t)| EventView {
            seq: seq(i),
            at: t.at,
            kind: EventKind::Lifecycle,
            state: Some(t.state),
            error_kind: None,
            detail: serde_json::to_value(&t.detail).unwrap_or_default(),
        })
        .collect();
    Ok(Json(EventList { events }))
}

/// The query of `GET /api/sessions/{id}/messages`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessagesQuery {
    /// Only messages with a larger sequence number (the previous page's
    /// `next_after_seq`). Default 0.
    #[param(value_type = Option<u64>, minimum = 0)]
    pub after_seq: Option<String>,
    /// How many messages, 1‥1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
}

/// The answer of `GET /api/sessions/{id}/messages`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageList {
    #[schema(value_type = Vec<MessageDoc>)]
    pub messages: Vec<serde_json::Value>,
    /// Pass as `after_seq` for the next page; null when this page is the last.
    pub next_after_seq: Option<u64>,
}

/// A stored frame: the transcript's line (`docs/transcript.md`) plus its time.
#[derive(ToSchema)]
#[allow(dead_code)] // The documented shape of a message line; built as JSON.
pub struct MessageDoc {
    /// Seconds since the session opened.
    t: f64,
    at: DateTime<Utc>,
    seq: u64,
    /// client_to_upstream, upstream_to_client, client_to_gateway or gateway_to_client.
    dir: String,
    /// text, binary, continuation, close, ping or pong.
    #[schema(rename = "type")]
    kind: String,
    opcode: u8,
    fin: bool,
    /// Payload size in bytes, even when the stored payload was cut.
    size: u64,
    injected: Option<bool>,
    truncated: Option<bool>,
    /// What a rule or fault did to it on its way: rule, fault, dropped, delayed,
    /// duplicate, rewritten, answer (absent when nothing).
    marks: Option<Vec<String>>,
    /// The payload, when it is UTF-8 text.
    text: Option<String>,
    /// The payload in standard base64, otherwise.
    base64: Option<String>,
    /// Close frames: code and reason.
    code: Option<u16>,
    reason: Option<String>,
}

fn store(cp: &ControlPlane) -> Result<&Arc<dyn Store>, ApiError> {
    cp.inner.cfg.store.as_ref().ok_or(ApiError::NoHistory)
}

/// `GET /api/sessions/{id}/messages`.
#[utoipa::path(
    get,
    path = "/api/sessions/{id}/messages",
    tag = "history",
    summary = "A session's stored messages, a page at a time",
    params(SessionPath, MessagesQuery),
    responses(
        (status = 200, description = "Messages in order", body = MessageList),
        (status = 400, description = "Bad id or query", body = ErrorBody),
        (status = 404, description = "No such session, stored or live, or history is off (a live session not yet stored has no messages yet)", body = ErrorBody),
        (status = 503, description = "The history store failed", body = ErrorBody),
    ),
)]
pub async fn messages(
    State(cp): State<ControlPlane>,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<MessagesQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = parse_id(&id?.0)?;
    let Query(q) = query?;
    // The store keeps sequence numbers as signed 64-bit integers (the `int64` the
    // document declares).
    // An empty `?after_seq=` is an error like any other non-number: the document
    // declares an integer, and a client that sends nothing meant something.
    let after = q.after_seq.as_deref().map(|s| crate::api::parse_int("after_seq", s, 0, i64::MAX as usize));
    let after = after.transpose()?.unwrap_or(0) as u64;
    let limit = q.limit.as_deref().map(|s| crate::api::parse_int("limit", s, 1, MAX_MESSAGES));
    let limit = limit.transpose()?.unwrap_or(DEFAULT_MESSAGES);
    let store = store(&cp)?;
    let Some(session) = store.session(id).await? else {
        // A live session the recorder has not written yet (it writes every 100 ms):
        // nothing stored so far, rather than "no such session".
        return match cp.inner.registry.get(id) {
            Some(_) => Ok(Json(MessageList { messages: Vec::new(), next_after_seq: None })),
            None => Err(ApiError::SessionNotFound(id)),
        };
    };
    let rows = store.messages(id, after, limit).await?;
    let next_after_seq = (rows.len() == limit).then(|| rows.last().map(|m| m.seq)).flatten();
    let messages = rows
        .iter()
        .map(|m| {
            // The transcript's line (a JSON object: it always serializes) plus `at`.
            let mut v = serde_json::to_value(transcript::frame(&session, m)).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("at".into(), serde_json::json!(m.at));
            }
            v
        })
        .collect();
    Ok(Json(MessageList { messages, next_after_seq }))
}

/// Rows per store read while streaming an export.
const EXPORT_PAGE: usize = 5000;

/// `GET /api/sessions/{id}/export`.
#[utoipa::path(
    get,
    path = "/api/sessions/{id}/export",
    tag = "history",
    summary = "A session's JSONL transcript",
    description = "The first line describes the session; then one line per frame (time offset, direction, \
                   type, text or base64, close code and reason). Format: docs/transcript.md. \
                   `wsgate mock --replay` plays it back.",
    params(SessionPath),
    responses(
        (status = 200, description = "The transcript", content_type = "application/x-ndjson", body = String),
        (status = 400, description = "The id is not a session id", body = ErrorBody),
        (status = 404, description = "No such stored session (a live one is stored within about 100 ms), or history is off", body = ErrorBody),
        (status = 503, description = "The history store failed", body = ErrorBody),
    ),
)]
pub async fn export(
    State(cp): State<ControlPlane>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id?.0)?;
    let store = store(&cp)?.clone();
    let session = store.session(id).await?.ok_or(ApiError::SessionNotFound(id))?;
    let mut first = Vec::new();
    transcript::push_line(&mut first, &transcript::header(&session));
    // Streamed a page at a time, so a long session never sits in memory whole.
    let pages = futures_util::stream::unfold(Some(0u64), move |after| {
        let (store, session) = (store.clone(), session.clone());
        async move {
            let after = after?;
            match store.messages(session.id, after, EXPORT_PAGE).await {
                Ok(rows) if rows.is_empty() => None,
                Ok(rows) => {
                    let mut out = Vec::with_capacity(rows.len() * 96);
                    for m in &rows {
                        transcript::push_line(&mut out, &transcript::frame(&session, m));
                    }
                    let next = (rows.len() == EXPORT_PAGE).then(|| rows.last().map(|m| m.seq)).flatten();
                    Some((Ok::<_, std::io::Error>(Bytes::from(out)), next))
                }
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
            }
        }
    });
    let body = futures_util::stream::once(async move { Ok(Bytes::from(first)) }).chain(pages);
    let name = format!("attachment; filename=\"session-{id}.jsonl\"");
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson".to_owned()), (header::CONTENT_DISPOSITION, name)],
        Body::from_stream(body),
    )
        .into_response())
}
