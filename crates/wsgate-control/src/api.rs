//! The sessions REST API.
//!
//! - `GET /api/sessions?state=&kind=&route=&limit=&before=` → `{"sessions":[..]}`, live
//!   and recently ended sessions, newest first. `state` is a lifecycle state
//!   (`CONNECTED`, any case), `kind` a session kind, `route` a route name, `before` a
//!   session id (only older sessions: the next page), `limit` 1‥1000 (default 100).
//! - `GET /api/sessions/{id}` → the session, or 404.
//! - `POST /api/sessions/{id}/inject` `{"to":"client"|"upstream","text":".."}` or
//!   `"base64":".."` → 202 `{"status":"queued"}`.
//! - `POST /api/sessions/{id}/close` `{"code":1000,"reason":".."}` (body optional) →
//!   202 `{"status":"queued"}`.
//!
//! 202, not 200: the command is in the session's queue; its effect shows up on the
//! live stream and in the session's lifecycle.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use wsgate_core::{SessionId, SessionKind, SessionSnapshot, State as SessionState, Target};

use crate::ControlPlane;
use crate::body::JsonBody;
use crate::commands::{InjectPayload, close_command};
use crate::error::ApiError;

/// Sessions returned when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// Most sessions one request returns.
pub const MAX_LIMIT: usize = 1000;

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    pub state: Option<String>,
    pub kind: Option<String>,
    pub route: Option<String>,
    pub limit: Option<usize>,
    pub before: Option<String>,
}

#[derive(Serialize)]
struct SessionList {
    sessions: Vec<SessionSnapshot>,
}

fn parse_state(s: &str) -> Result<SessionState, ApiError> {
    Ok(match s.to_ascii_uppercase().as_str() {
        "REQUESTED" => SessionState::Requested,
        "CONNECTING" => SessionState::Connecting,
        "CONNECTED" => SessionState::Connected,
        "DISCONNECTED" => SessionState::Disconnected,
        "FAILED" => SessionState::Failed,
        _ => {
            return Err(ApiError::BadFilter {
                field: "state",
                value: s.to_owned(),
                expected: "REQUESTED, CONNECTING, CONNECTED, DISCONNECTED, FAILED",
            });
        }
    })
}

fn parse_kind(s: &str) -> Result<SessionKind, ApiError> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "proxy" => SessionKind::Proxy,
        "relay" => SessionKind::Relay,
        "mock" => SessionKind::Mock,
        "outbound" => SessionKind::Outbound,
        _ => {
            return Err(ApiError::BadFilter {
                field: "kind",
                value: s.to_owned(),
                expected: "proxy, relay, mock, outbound",
            });
        }
    })
}

pub(crate) fn parse_id(s: &str) -> Result<SessionId, ApiError> {
    s.parse().map_err(|_| ApiError::BadSessionId(s.to_owned()))
}

/// Treats `?state=` like an absent filter, as HTML forms send empty fields.
fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// `GET /api/sessions`.
pub async fn list_sessions(
    State(cp): State<ControlPlane>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(q) = query?;
    let state = non_empty(&q.state).map(parse_state).transpose()?;
    let kind = non_empty(&q.kind).map(parse_kind).transpose()?;
    let before = non_empty(&q.before).map(parse_id).transpose()?;
    let route = non_empty(&q.route);
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let sessions = cp
        .inner
        .registry
        .all()
        .into_iter()
        .filter(|s| state.is_none_or(|st| s.state == st))
        .filter(|s| kind.is_none_or(|k| s.info.kind == k))
        .filter(|s| route.is_none_or(|r| r == &*s.info.route))
        .filter(|s| before.is_none_or(|b| s.info.id < b))
        .take(limit)
        .collect();
    Ok(Json(SessionList { sessions }))
}

/// `GET /api/sessions/{id}`.
pub async fn get_session(
    State(cp): State<ControlPlane>,
    id: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = parse_id(&id?.0)?;
    cp.inner.registry.get(id).map(Json).ok_or(ApiError::SessionNotFound(id))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InjectBody {
    to: Target,
    text: Option<String>,
    base64: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseBody {
    code: Option<u16>,
    reason: Option<String>,
}

fn queued() -> impl IntoResponse {
    (StatusCode::ACCEPTED, Json(json!({ "status": "queued" })))
}

/// `POST /api/sessions/{id}/inject`.
pub async fn inject(
    State(cp): State<ControlPlane>,
    id: Result<Path<String>, PathRejection>,
    body: JsonBody,
) -> Result<impl IntoResponse, ApiError> {
    let id = parse_id(&id?.0)?;
    let InjectBody { to, text, base64 } = body.parse()?;
    let command = InjectPayload { text, base64 }.into_command(to)?;
    cp.inner.registry.command(id, command)?;
    Ok(queued())
}

/// `POST /api/sessions/{id}/close`.
pub async fn close(
    State(cp): State<ControlPlane>,
    id: Result<Path<String>, PathRejection>,
    body: JsonBody,
) -> Result<impl IntoResponse, ApiError> {
    let id = parse_id(&id?.0)?;
    let CloseBody { code, reason } = body.parse_or_default()?;
    let command = close_command(code, reason)?;
    cp.inner.registry.command(id, command)?;
    Ok(queued())
}
