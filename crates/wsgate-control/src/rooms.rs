//! The relay's rooms on the control plane:
//! - `GET /api/rooms` → every room with its member count, last offset and deliveries;
//! - `GET /api/rooms/{room}` → one room with its members (session ids, route,
//!   protocol, queue depth);
//! - `POST /api/rooms/{room}/publish` with `{"text"}`, `{"json"}` or `{"base64"}` →
//!   published from the server: raw members get a text (or binary) frame, envelope
//!   members an `event` with the JSON as its `data`.
//!
//! Room names usually start with `/` (the request path): in the URL they are
//! percent-encoded, `/chat/lobby` → `%2Fchat%2Flobby`.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use wsgate_relay::Payload;
use wsgate_relay::hub::{RoomDetail, RoomSummary};

use crate::ControlPlane;
use crate::body::JsonBody;
use crate::commands::InvalidCommand;
use crate::error::{ApiError, ErrorBody};

/// Every room, by name.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RoomList {
    pub rooms: Vec<RoomSummary>,
}

/// What a publication did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PublishResult {
    pub room: String,
    /// Its offset in the room; null when the room has no members (and so no offsets).
    pub offset: Option<u64>,
    /// Members it was queued for.
    pub delivered: usize,
}

/// A message to publish: exactly one of `text`, `json` and `base64`. Unknown fields
/// are rejected.
///
/// Documentation only: bodies are read as a JSON object and checked field by field
/// (`payload`), so `{"json": null}` publishes JSON null rather than counting as absent.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum PublishRequest {
    Text(PublishText),
    Json(PublishJson),
    Binary(PublishBinary),
}

/// A text publication.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"text": "hello room"}))]
pub struct PublishText {
    /// Sent as a text frame (an envelope's `data` string).
    pub text: String,
}

/// A JSON publication.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"json": {"price": 42}}))]
pub struct PublishJson {
    /// Any JSON value: a text frame of its JSON to raw members, the envelope's `data` as is.
    pub json: serde_json::Value,
}

/// A binary publication.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"base64": "AAEC/w=="}))]
pub struct PublishBinary {
    /// Standard, padded base64 (RFC 4648 §4): a binary frame (an envelope's `base64`).
    #[schema(
        content_encoding = "base64",
        pattern = "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$"
    )]
    pub base64: String,
}

/// The payload of a publish body: exactly one known field, of its type.
fn payload(body: serde_json::Map<String, serde_json::Value>) -> Result<Payload, ApiError> {
    use serde_json::Value;
    if body.len() != 1 {
        return Err(ApiError::PublishChoice);
    }
    let Some((key, value)) = body.into_iter().next() else { return Err(ApiError::PublishChoice) };
    match (key.as_str(), value) {
        ("text", Value::String(t)) => Ok(Payload::Text(Bytes::from(t))),
        ("json", v) => Ok(Payload::Json(Bytes::from(serde_json::to_vec(&v)?))),
        ("base64", Value::String(b)) => Ok(Payload::Binary(
            base64::engine::general_purpose::STANDARD.decode(b).map_err(InvalidCommand::Base64)?.into(),
        )),
        ("text" | "base64", _) => Err(ApiError::PublishType(if key == "text" { "text" } else { "base64" })),
        _ => Err(ApiError::PublishChoice),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct RoomPath {
    /// The room's name, percent-encoded (`%2Fchat%2Flobby` for `/chat/lobby`).
    pub room: String,
}

fn hub(cp: &ControlPlane) -> Option<&std::sync::Arc<wsgate_relay::Hub>> {
    cp.inner.cfg.relay.as_ref()
}

#[utoipa::path(
    get,
    path = "/api/rooms",
    tag = "relay",
    summary = "The relay's rooms",
    responses((status = 200, description = "Every room with members, by name", body = RoomList)),
)]
pub async fn list(State(cp): State<ControlPlane>) -> Json<RoomList> {
    let rooms = hub(&cp).map(|h| h.rooms()).unwrap_or_default();
    Json(RoomList { rooms })
}

#[utoipa::path(
    get,
    path = "/api/rooms/{room}",
    tag = "relay",
    summary = "One room and its members",
    params(RoomPath),
    responses(
        (status = 200, description = "The room", body = RoomDetail),
        (status = 404, description = "No room by that name (a room exists while it has members)", body = ErrorBody),
    ),
)]
pub async fn get(
    State(cp): State<ControlPlane>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<RoomDetail>, ApiError> {
    let name = name?.0;
    hub(&cp).and_then(|h| h.room(&name)).map(Json).ok_or(ApiError::RoomNotFound(name))
}

#[utoipa::path(
    post,
    path = "/api/rooms/{room}/publish",
    tag = "relay",
    summary = "Publish to a room from the server",
    description = "Queued for every member at once (each member's own queue and overflow policy apply). \
                   A room without members takes nothing: `offset` is null and `delivered` 0.",
    params(RoomPath),
    request_body(content = PublishRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Published", body = PublishResult),
        (status = 400, description = "Not exactly one of text, json and base64, or bad base64", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 415, description = "Content-Type is not JSON", body = ErrorBody),
    ),
)]
pub async fn publish(
    State(cp): State<ControlPlane>,
    name: Result<Path<String>, PathRejection>,
    body: JsonBody,
) -> Result<Json<PublishResult>, ApiError> {
    let name = name?.0;
    let payload = payload(body.parse()?)?;
    // Kept once in the room's log for its members' histories, like a member's
    // publication (with no session to wait in under `--record strict`: dropped and
    // counted if the recorder's queue is full).
    let bus = cp.inner.bus.clone();
    let mut keep = |e| bus.emit_shared(wsgate_core::SessionEvent::Logged(e), None);
    let keep: Option<&mut dyn FnMut(wsgate_core::LogEntry)> = if bus.wants_runs() { Some(&mut keep) } else { None };
    let p = hub(&cp).map(|h| h.publish(&name, &payload, None, None, None, keep)).unwrap_or(wsgate_relay::Published {
        offset: None,
        delivered: 0,
        congested: false,
    });
    Ok(Json(PublishResult { room: name, offset: p.offset, delivered: p.delivered }))
}
