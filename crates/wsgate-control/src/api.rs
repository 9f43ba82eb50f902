//! The sessions REST API.
//!
//! - `GET /api/sessions?state=&kind=&route=&limit=&before=` → `{"sessions":[..]}`, live
//!   and recently ended sessions, newest first. `state` is a lifecycle state
//!   (`CONNECTED`, any case), `kind` a session kind, `route` a route name, `before` a
//!   session id (only older sessions: the next page), `limit` 1‥1000 (default 100).
//!   An empty `state`, `kind`, `route` or `before` is no filter (HTML forms send empty
//!   fields); unknown query parameters are ignored (`token` is one).
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
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::{IntoParams, ToSchema};
use wsgate_core::{SessionId, SessionKind, State as SessionState, Target};
use wsgate_store::SessionQuery;

use crate::ControlPlane;
use crate::body::JsonBody;
use crate::commands::{InjectPayload, close_command, deliver};
use crate::error::{ApiError, ErrorBody};
use crate::history::{self, SessionView};

/// Sessions returned when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// Most sessions one request returns.
pub const MAX_LIMIT: usize = 1000;

/// A session id as the API takes it: a hyphenated UUID (the form the API prints).
pub const SESSION_ID_PATTERN: &str = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

/// The query of `GET /api/sessions`. Every field is text here and parsed by hand, so
/// a bad value gets an error naming the field and what it takes.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only sessions whose current state is this one (any case).
    #[param(schema_with = state_filter_schema)]
    pub state: Option<String>,
    /// Only sessions of this kind (any case).
    #[param(schema_with = kind_filter_schema)]
    pub kind: Option<String>,
    /// Only sessions of this route.
    pub route: Option<String>,
    /// Only sessions whose request path starts with this (literally).
    pub path: Option<String>,
    /// Only sessions opened at or after this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<String>,
    /// Only sessions opened before this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<String>,
    /// How many sessions to return, 1‥1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// Only sessions older than this session id: the next page after it.
    #[param(schema_with = before_schema)]
    pub before: Option<String>,
}

/// The path of the per-session routes.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SessionPath {
    /// A session id, as listed by `GET /api/sessions`.
    #[param(pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]
    pub id: String,
}

/// The answer of `GET /api/sessions`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    /// Newest first.
    pub sessions: Vec<SessionView>,
    /// Pass as `before` for the next page; null when this page is the last.
    #[schema(value_type = Option<String>)]
    pub next_before: Option<SessionId>,
}

/// The answer to an accepted command.
#[derive(Debug, Serialize, ToSchema)]
pub struct Queued {
    pub status: QueuedStatus,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QueuedStatus {
    /// The command is in the session's queue.
    Queued,
}

/// `^(|<value>|<value>…)$` with every letter matching either case, for filters that
/// take any case and treat an empty value as absent. JSON Schema patterns (ECMA-262)
/// have no case-insensitive flag.
fn any_case_pattern<'a>(values: impl IntoIterator<Item = &'a str>) -> String {
    let alternatives: Vec<String> = values
        .into_iter()
        .map(|v| {
            v.chars()
                .map(|c| {
                    if c.is_ascii_alphabetic() {
                        format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase())
                    } else {
                        c.to_string()
                    }
                })
                .collect()
        })
        .collect();
    format!("^(|{})$", alternatives.join("|"))
}

fn filter_schema(pattern: String, description: String) -> RefOr<Schema> {
    ObjectBuilder::new().schema_type(Type::String).pattern(Some(pattern)).description(Some(description)).build().into()
}

fn state_filter_schema() -> RefOr<Schema> {
    let names: Vec<&str> = SessionState::ALL.iter().map(|s| s.as_str()).collect();
    filter_schema(any_case_pattern(names.iter().copied()), format!("One of {}, any case", names.join(", ")))
}

fn kind_filter_schema() -> RefOr<Schema> {
    let names: Vec<&str> = SessionKind::ALL.iter().map(|k| k.as_str()).collect();
    filter_schema(any_case_pattern(names.iter().copied()), format!("One of {}, any case", names.join(", ")))
}

fn before_schema() -> RefOr<Schema> {
    // The id pattern, or empty (no filter).
    let id = SESSION_ID_PATTERN.trim_start_matches('^').trim_end_matches('$');
    filter_schema(format!("^({id})?$"), "A session id".to_owned())
}

fn parse_state(s: &str) -> Result<SessionState, ApiError> {
    SessionState::from_name(s).ok_or_else(|| ApiError::BadFilter {
        field: "state",
        value: s.to_owned(),
        expected: "REQUESTED, CONNECTING, CONNECTED, DISCONNECTED, FAILED",
    })
}

fn parse_kind(s: &str) -> Result<SessionKind, ApiError> {
    SessionKind::from_name(s).ok_or_else(|| ApiError::BadFilter {
        field: "kind",
        value: s.to_owned(),
        expected: "proxy, relay, mock, outbound",
    })
}

fn parse_limit(s: &str) -> Result<usize, ApiError> {
    parse_int("limit", s, 1, MAX_LIMIT)
}

/// A query integer within `min..=max`. `5.0` is one too (JSON Schema's `integer` is
/// the mathematical one); empty, signed, fractional or out-of-range values are 400s
/// naming the field.
pub(crate) fn parse_int(field: &'static str, s: &str, min: usize, max: usize) -> Result<usize, ApiError> {
    let digits = s.split_once('.').filter(|(_, frac)| frac.bytes().all(|b| b == b'0')).map_or(s, |(int, _)| int);
    digits.parse::<usize>().ok().filter(|n| (min..=max).contains(n)).ok_or_else(|| ApiError::OutOfRange {
        field,
        value: s.to_owned(),
        min,
        max,
    })
}

/// A session id in the hyphenated form the API prints. The UUID parser also takes
/// braced, URN and bare-hex forms; refusing them keeps one spelling per session, the
/// one the OpenAPI document declares.
pub(crate) fn parse_id(s: &str) -> Result<SessionId, ApiError> {
    let hyphenated = s.len() == 36 && s.bytes().enumerate().all(|(i, b)| (b == b'-') == matches!(i, 8 | 13 | 18 | 23));
    hyphenated.then(|| s.parse().ok()).flatten().ok_or_else(|| ApiError::BadSessionId(s.to_owned()))
}

/// Treats `?state=` like an absent filter, as HTML forms send empty fields.
fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// `GET /api/sessions`.
#[utoipa::path(
    get,
    path = "/api/sessions",
    tag = "sessions",
    summary = "List sessions",
    description = "Live and stored sessions, newest first (without a store: live and recently ended ones). \
                   Pages: pass the answer's `next_before` as `before`.",
    params(ListQuery),
    responses(
        (status = 200, description = "The sessions that match", body = SessionList),
        (status = 400, description = "A query parameter is invalid", body = ErrorBody),
        (status = 503, description = "The history store failed", body = ErrorBody),
    ),
)]
pub async fn list_sessions(
    State(cp): State<ControlPlane>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(q) = query?;
    let time = |field: &'static str, v: Option<&str>| {
        v.map(|s| {
            chrono::DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&chrono::Utc)).map_err(|_| {
                ApiError::BadFilter {
                    field,
                    value: s.to_owned(),
                    expected: "an RFC 3339 time, e.g. 2026-11-23T10:00:00Z",
                }
            })
        })
        .transpose()
    };
    let query = SessionQuery {
        states: non_empty(&q.state).map(parse_state).transpose()?.into_iter().collect(),
        kind: non_empty(&q.kind).map(parse_kind).transpose()?,
        route: non_empty(&q.route).map(str::to_owned),
        path_prefix: non_empty(&q.path).map(str::to_owned),
        // Unlike the other filters an empty time is an error, not "no filter": the
        // document declares these as RFC 3339 date-times.
        since: time("since", q.since.as_deref())?,
        until: time("until", q.until.as_deref())?,
        before: non_empty(&q.before).map(parse_id).transpose()?,
        limit: q.limit.as_deref().map(parse_limit).transpose()?.unwrap_or(DEFAULT_LIMIT),
    };
    let sessions = history::list(&cp, &query).await?;
    let next_before = (sessions.len() == query.limit).then(|| sessions.last().map(|s| s.id)).flatten();
    Ok(Json(SessionList { sessions, next_before }))
}

/// `GET /api/sessions/{id}`.
#[utoipa::path(
    get,
    path = "/api/sessions/{id}",
    tag = "sessions",
    summary = "One session",
    description = "A live session or a recently ended one, with its lifecycle (a live session with a long one, such as an outbound session that keeps reconnecting, shows its first 8 and latest 64 steps and counts the rest in `lifecycle_omitted`; a stored one shows every step).",
    params(SessionPath),
    responses(
        (status = 200, description = "The session", body = SessionView),
        (status = 400, description = "The id is not a session id", body = ErrorBody),
        (status = 404, description = "No such session (never existed, or ended too long ago)", body = ErrorBody),
        (status = 503, description = "The history store failed", body = ErrorBody),
    ),
)]
pub async fn get_session(
    State(cp): State<ControlPlane>,
    id: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = parse_id(&id?.0)?;
    history::get(&cp, id).await.map(Json)
}

/// The body of `POST /api/sessions/{id}/inject`, as parsed: every field optional here
/// so that a missing or doubled payload gets its own error message rather than
/// serde's "data did not match any variant". [`InjectRequest`] is its documented shape.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InjectBody {
    to: Target,
    text: Option<String>,
    base64: Option<String>,
}

/// A message to send into a live session: `to` and exactly one of `text` and `base64`.
/// Unknown fields are rejected.
///
/// Documentation only: requests are parsed through `InjectBody`, whose errors say
/// what is wrong; Schemathesis (`scripts/schemathesis.sh`) checks that the two agree.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum InjectRequest {
    Text(InjectText),
    Binary(InjectBinary),
}

/// A text message to send into a live session.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"to": "client", "text": "hello from the operator"}))]
pub struct InjectText {
    /// Which peer receives it.
    pub to: Target,
    /// The message, sent as a text frame.
    pub text: String,
}

/// A binary message to send into a live session.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"to": "upstream", "base64": "AAEC/w=="}))]
pub struct InjectBinary {
    /// Which peer receives it.
    pub to: Target,
    /// The message in standard, padded base64 (RFC 4648 §4), sent as a binary frame.
    #[schema(
        content_encoding = "base64",
        pattern = "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$"
    )]
    pub base64: String,
}

/// The body of `POST /api/sessions/{id}/close`. Both fields are optional, and so is
/// the body. Unknown fields are rejected.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"code": 4000, "reason": "closed by the operator"}))]
pub struct CloseRequest {
    /// The close code: one a close frame may carry (1000–1003, 1007–1014, 3000–4999).
    /// Default 1000.
    #[schema(schema_with = close_code_schema)]
    #[serde(default, deserialize_with = "crate::commands::close_code")]
    pub code: Option<u16>,
    /// The close reason, at most 123 bytes of UTF-8. Default empty.
    #[schema(max_length = 123)]
    pub reason: Option<String>,
}

/// The sendable close codes (`CloseCode::is_sendable`) as JSON Schema ranges.
pub(crate) fn close_code_schema() -> RefOr<Schema> {
    let mut codes = OneOfBuilder::new().description(Some("A close code a close frame may carry"));
    for (min, max) in [(1000, 1003), (1007, 1014), (3000, 4999)] {
        codes = codes
            .item(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(min as f64)).maximum(Some(max as f64)));
    }
    codes = codes.item(ObjectBuilder::new().schema_type(Type::Null));
    Schema::OneOf(codes.build()).into()
}

fn queued() -> impl IntoResponse {
    (StatusCode::ACCEPTED, Json(Queued { status: QueuedStatus::Queued }))
}

/// `POST /api/sessions/{id}/inject`.
#[utoipa::path(
    post,
    path = "/api/sessions/{id}/inject",
    tag = "sessions",
    summary = "Send a message into a live session",
    description = "Sends a text or binary message to the session's client or upstream. \
                   The message shows up on the live stream flagged `injected`. Answered once the \
                   session has taken it (or refused it: 503 `busy` when that peer is not reading).",
    params(SessionPath),
    request_body(content = InjectRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Queued", body = Queued),
        (status = 400, description = "Bad id, or a body that is empty, not JSON, or not an inject", body = ErrorBody),
        (status = 404, description = "No live session with this id", body = ErrorBody),
        (status = 409, description = "The session has no such side (a mock has no upstream), or that side is closing", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "Content-Type is not JSON", body = ErrorBody),
        (status = 503, description = "`busy`: the addressed peer is not reading (its output is at the high-water mark), \
                                      or the session's command queue is full; retry", body = ErrorBody,
         headers(("Retry-After" = u32, description = "Seconds to wait"))),
    ),
)]
pub async fn inject(
    State(cp): State<ControlPlane>,
    id: Result<Path<String>, PathRejection>,
    body: JsonBody,
) -> Result<impl IntoResponse, ApiError> {
    let id = parse_id(&id?.0)?;
    let InjectBody { to, text, base64 } = body.parse()?;
    let inject = InjectPayload { text, base64 }.into_inject(to)?;
    deliver(&cp.inner.registry, id, &inject).await?;
    Ok(queued())
}

/// `POST /api/sessions/{id}/close`.
#[utoipa::path(
    post,
    path = "/api/sessions/{id}/close",
    tag = "sessions",
    summary = "Close a live session",
    description = "Closes both sides of the session with the code and reason (default 1000, \
                   empty). The body may be omitted.",
    params(SessionPath),
    request_body(content = Option<CloseRequest>, content_type = "application/json"),
    responses(
        (status = 202, description = "Queued", body = Queued),
        (status = 400, description = "Bad id, or a body that is not JSON or not a close", body = ErrorBody),
        (status = 404, description = "No live session with this id", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "Content-Type is not JSON", body = ErrorBody),
        (status = 503, description = "The session's command queue is full; retry", body = ErrorBody,
         headers(("Retry-After" = u32, description = "Seconds to wait"))),
    ),
)]
pub async fn close(
    State(cp): State<ControlPlane>,
    id: Result<Path<String>, PathRejection>,
    body: JsonBody,
) -> Result<impl IntoResponse, ApiError> {
    let id = parse_id(&id?.0)?;
    let CloseRequest { code, reason } = body.parse_or_default()?;
    let command = close_command(code, reason)?;
    cp.inner.registry.command(id, command)?;
    Ok(queued())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_take_one_spelling() {
        let id = SessionId::new().to_string();
        assert!(parse_id(&id).is_ok());
        assert!(parse_id(&id.to_uppercase()).is_ok());
        for bad in [id.replace('-', ""), format!("{{{id}}}"), format!("urn:uuid:{id}"), String::new(), "x".repeat(36)] {
            assert!(parse_id(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits() {
        assert_eq!(parse_limit("1").ok(), Some(1));
        assert_eq!(parse_limit("1000").ok(), Some(1000));
        assert_eq!(parse_limit("5.00").ok(), Some(5));
        for bad in ["0", "1001", "-1", "99999999999", "99999999999999999999999", "", "ten", "1.5", " 5", ".0"] {
            assert!(parse_limit(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_any_case() {
        assert_eq!(parse_state("connected").ok(), Some(SessionState::Connected));
        assert_eq!(parse_kind("MOCK").ok(), Some(SessionKind::Mock));
        assert!(parse_state("gone").is_err());
        assert_eq!(any_case_pattern(["ab", "c_d"]), "^(|[Aa][Bb]|[Cc]_[Dd])$");
    }

    #[test]
    fn reason_limit_matches_the_command() {
        // `#[schema(max_length = 123)]` on `CloseRequest::reason` needs a literal.
        assert_eq!(crate::commands::MAX_CLOSE_REASON, 123);
    }
}
