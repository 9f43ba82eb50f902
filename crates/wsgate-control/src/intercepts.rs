//! `/api/intercepts`: breakpoints on proxy routes (`wsgate-intercept`) and the frames
//! they hold. An operator arms a breakpoint (route, direction, optional regex or
//! JSONPath), then forwards, edits then forwards, or drops each frame it holds; a
//! frame nobody decides on is forwarded unchanged when its timeout runs out. The
//! decision goes to the frame's session as `Command::Release`, and the session's
//! answer says whether it still held it.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use utoipa::ToSchema;
use wsgate_core::{Command, CommandError, Direction, Verdict};
use wsgate_intercept::{Breakpoint, HeldFrame, InterceptBoard, InterceptError, Way};

use crate::ControlPlane;
use crate::body::JsonBody;
use crate::commands::{INJECT_ACK_TIMEOUT, InjectPayload};
use crate::connections::{SendBinary, SendText};
use crate::error::{ApiError, ErrorBody};

/// The directions a breakpoint holds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Ways {
    #[default]
    Both,
    ClientToUpstream,
    UpstreamToClient,
}

impl From<Ways> for Way {
    fn from(w: Ways) -> Way {
        match w {
            Ways::Both => Way::Both,
            Ways::ClientToUpstream => Way::ClientToUpstream,
            Ways::UpstreamToClient => Way::UpstreamToClient,
        }
    }
}

impl From<Way> for Ways {
    fn from(w: Way) -> Ways {
        match w {
            Way::Both => Ways::Both,
            Way::ClientToUpstream => Ways::ClientToUpstream,
            Way::UpstreamToClient => Ways::UpstreamToClient,
        }
    }
}

/// The body of `POST /api/intercepts`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"route": "default", "direction": "client_to_upstream", "match": "$.type", "equals": "order"}))]
pub struct BreakpointRequest {
    /// A proxy route's name (`GET /api/routes`; `default` for `wsgate proxy`).
    pub route: String,
    #[serde(default)]
    pub direction: Ways,
    /// A regex (unanchored unless it says `^…$`), or an RFC 9535 JSONPath starting
    /// with `$` that must select something in the message. Absent or empty: every
    /// whole data message of the direction.
    #[serde(default, rename = "match")]
    pub pattern: Option<String>,
    /// With a JSONPath: one selected node must equal this.
    #[serde(default)]
    pub equals: Option<serde_json::Value>,
    /// How long a held frame waits for an operator before it is forwarded unchanged
    /// (default 60 000).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 3_600_000)]
    pub timeout_ms: Option<u64>,
}

/// A breakpoint as armed.
#[derive(Debug, Serialize, ToSchema)]
pub struct BreakpointView {
    pub id: u64,
    pub route: String,
    pub direction: Ways,
    #[serde(rename = "match", skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub equals: Option<serde_json::Value>,
    pub timeout_ms: u64,
    pub created_at: DateTime<Utc>,
    /// Messages it has held.
    pub hits: u64,
}

impl From<&Breakpoint> for BreakpointView {
    fn from(b: &Breakpoint) -> Self {
        Self {
            id: b.id,
            route: b.route.clone(),
            direction: b.way.into(),
            pattern: b.pattern.clone(),
            equals: b.equals.clone(),
            timeout_ms: u64::try_from(b.timeout.as_millis()).unwrap_or(u64::MAX),
            created_at: b.created_at,
            hits: b.hits(),
        }
    }
}

/// Which way a held frame was going.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HeldDirection {
    ClientToUpstream,
    UpstreamToClient,
}

/// A frame held now.
#[derive(Debug, Serialize, ToSchema)]
pub struct HeldView {
    pub id: u64,
    pub breakpoint: u64,
    pub session: String,
    pub route: String,
    pub direction: HeldDirection,
    /// A text frame's payload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// A binary frame's payload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base64: Option<String>,
    pub size: usize,
    pub held_at: DateTime<Utc>,
    /// When it is forwarded unchanged unless an operator decides first.
    pub expires_at: DateTime<Utc>,
}

impl From<HeldFrame> for HeldView {
    fn from(f: HeldFrame) -> Self {
        let (text, base64) = match (f.binary, std::str::from_utf8(&f.payload)) {
            (false, Ok(t)) => (Some(t.to_owned()), None),
            // A text frame that is not UTF-8 is forwarded as it came (the endpoints
            // judge it); shown as base64 so no byte is lost.
            _ => (None, Some(base64::engine::general_purpose::STANDARD.encode(&f.payload))),
        };
        Self {
            id: f.id,
            breakpoint: f.breakpoint,
            session: f.session.to_string(),
            route: f.route,
            direction: match f.direction {
                Direction::UpstreamToClient => HeldDirection::UpstreamToClient,
                _ => HeldDirection::ClientToUpstream,
            },
            text,
            base64,
            size: f.payload.len(),
            held_at: f.held_at,
            expires_at: f.expires_at,
        }
    }
}

/// Every breakpoint and every frame held now.
#[derive(Debug, Serialize, ToSchema)]
pub struct Intercepts {
    pub breakpoints: Vec<BreakpointView>,
    /// Oldest first.
    pub held: Vec<HeldView>,
}

/// The body of `POST /api/intercepts/held/{id}/forward`, as parsed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ForwardBody {
    text: Option<String>,
    base64: Option<String>,
}

/// The body of `POST /api/intercepts/held/{id}/forward`: none (or `{}`) to forward the
/// frame as it came, or exactly one of `text` and `base64` to forward instead.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // The documented shape of `ForwardBody`; never built.
pub enum ForwardRequest {
    Unchanged(Unchanged),
    Text(SendText),
    Binary(SendBinary),
}

/// Forward the frame as it came.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Unchanged {}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Forwarded,
    Edited,
    Dropped,
}

/// What became of a held frame.
#[derive(Debug, Serialize, ToSchema)]
pub struct Released {
    pub id: u64,
    pub outcome: Outcome,
}

fn board(cp: &ControlPlane) -> Option<&Arc<InterceptBoard>> {
    cp.inner.cfg.intercepts.as_ref()
}

/// A positive integer id from the path, spelt one way only (digits, no sign, no
/// leading zero), as the API writes it.
fn path_id(id: Result<Path<String>, PathRejection>, what: &str) -> Result<u64, ApiError> {
    let s = id?.0;
    let canonical = s.bytes().all(|b| b.is_ascii_digit()) && !s.starts_with('0');
    canonical
        .then(|| s.parse::<u64>().ok())
        .flatten()
        .ok_or_else(|| ApiError::BadPath(format!("{what} id {s:?} is not a positive integer")))
}

#[utoipa::path(
    get,
    path = "/api/intercepts",
    tag = "intercepts",
    summary = "Breakpoints and held frames",
    responses((status = 200, description = "Every breakpoint, and every frame held now (oldest first)", body = Intercepts)),
)]
pub async fn list(State(cp): State<ControlPlane>) -> Json<Intercepts> {
    let Some(board) = board(&cp) else { return Json(Intercepts { breakpoints: Vec::new(), held: Vec::new() }) };
    Json(Intercepts {
        breakpoints: board.breakpoints().iter().map(|b| BreakpointView::from(&**b)).collect(),
        held: board.held().into_iter().map(HeldView::from).collect(),
    })
}

#[utoipa::path(
    post,
    path = "/api/intercepts",
    tag = "intercepts",
    summary = "Arm a breakpoint",
    description = "Holds every whole data message of the proxy route's sessions that goes the given direction and \
                   matches, before it is forwarded: until an operator forwards, edits or drops it \
                   (`/api/intercepts/held/{id}/…`), or until `timeout_ms` forwards it unchanged. A held frame holds \
                   only its own session's direction: later frames of that direction queue behind it, in order. \
                   Fragmented messages are not held. Live sessions apply it from their next message.",
    request_body(content = BreakpointRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Armed", body = BreakpointView),
        (status = 400, description = "Not a breakpoint: a bad regex, JSONPath, `equals` or `timeout_ms` (the message says which)", body = ErrorBody),
        (status = 404, description = "No such route", body = ErrorBody),
        (status = 409, description = "Not a proxy route, or already 256 breakpoints", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 415, description = "Content-Type is not JSON", body = ErrorBody),
    ),
)]
pub async fn create(State(cp): State<ControlPlane>, body: JsonBody) -> Result<impl IntoResponse, ApiError> {
    let req: BreakpointRequest = body.parse()?;
    let bp = Breakpoint::new(req.route, req.direction.into(), req.pattern, req.equals, req.timeout_ms)
        .map_err(ApiError::BadBreakpoint)?;
    let board = board(&cp).ok_or_else(|| ApiError::RouteNotFound(bp.route.clone()))?;
    if let Some(kind) = cp.route_kind(&bp.route)?
        && kind != "proxy"
    {
        return Err(ApiError::NotProxy { route: bp.route.clone(), kind });
    }
    let bp = board.add(bp)?;
    tracing::info!(id = bp.id, route = %bp.route, "breakpoint armed through the API");
    Ok((StatusCode::CREATED, Json(BreakpointView::from(&*bp))))
}

#[utoipa::path(
    delete,
    path = "/api/intercepts/{id}",
    tag = "intercepts",
    summary = "Remove a breakpoint",
    description = "Disarms it; the frames it holds are forwarded unchanged.",
    params(("id" = u64, Path, description = "The breakpoint's id (digits, no leading zero)", minimum = 1)),
    responses(
        (status = 200, description = "Removed", body = BreakpointView),
        (status = 400, description = "Not an id", body = ErrorBody),
        (status = 404, description = "No such breakpoint", body = ErrorBody),
    ),
)]
pub async fn remove(
    State(cp): State<ControlPlane>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<BreakpointView>, ApiError> {
    let id = path_id(id, "breakpoint")?;
    let board = board(&cp).ok_or(ApiError::Intercept(InterceptError::NoBreakpoint(id)))?;
    let bp = board.remove(id)?;
    for frame in board.held().into_iter().filter(|f| f.breakpoint == id) {
        // Nobody waits for these answers: a frame that left meanwhile is simply gone.
        let (ack, _) = oneshot::channel();
        let _ = cp
            .inner
            .registry
            .command(frame.session, Command::Release { hold: frame.id, verdict: Verdict::Forward, ack });
    }
    tracing::info!(id, "breakpoint removed through the API");
    Ok(Json(BreakpointView::from(&*bp)))
}

#[utoipa::path(
    post,
    path = "/api/intercepts/held/{id}/forward",
    tag = "intercepts",
    summary = "Forward a held frame, as it came or edited",
    description = "An empty body (or `{}`) forwards the frame unchanged; `text` or `base64` forwards that message \
                   instead (a text or a binary message). History marks it `held`, and `rewritten` when edited.",
    params(("id" = u64, Path, description = "The held frame's id", minimum = 1)),
    request_body(content = Option<ForwardRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "Forwarded", body = Released),
        (status = 400, description = "Not an id, or a body with both or bad base64", body = ErrorBody),
        (status = 404, description = "Not held (any more): forwarded, dropped or expired, or its session ended", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 415, description = "Content-Type is not JSON", body = ErrorBody),
        (status = 503, description = "The session's command queue is full; retry", body = ErrorBody,
         headers(("Retry-After" = u32, description = "Seconds to wait"))),
    ),
)]
pub async fn forward(
    State(cp): State<ControlPlane>,
    id: Result<Path<String>, PathRejection>,
    body: JsonBody,
) -> Result<Json<Released>, ApiError> {
    let id = path_id(id, "held frame")?;
    let ForwardBody { text, base64 } = body.parse_or_default()?;
    let (verdict, outcome) = if text.is_none() && base64.is_none() {
        (Verdict::Forward, Outcome::Forwarded)
    } else {
        // The target is only how an inject is addressed; here it is the frame's own way.
        let edit = InjectPayload { text, base64 }.into_inject(wsgate_core::Target::Upstream)?;
        (Verdict::Edit { payload: edit.payload, binary: edit.binary }, Outcome::Edited)
    };
    release(&cp, id, verdict).await?;
    Ok(Json(Released { id, outcome }))
}

#[utoipa::path(
    post,
    path = "/api/intercepts/held/{id}/drop",
    tag = "intercepts",
    summary = "Drop a held frame",
    description = "The frame is never forwarded; history keeps it marked `held` and `dropped`.",
    params(("id" = u64, Path, description = "The held frame's id", minimum = 1)),
    responses(
        (status = 200, description = "Dropped", body = Released),
        (status = 400, description = "Not an id", body = ErrorBody),
        (status = 404, description = "Not held (any more): forwarded, dropped or expired, or its session ended", body = ErrorBody),
        (status = 503, description = "The session's command queue is full; retry", body = ErrorBody,
         headers(("Retry-After" = u32, description = "Seconds to wait"))),
    ),
)]
pub async fn drop_frame(
    State(cp): State<ControlPlane>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Released>, ApiError> {
    let id = path_id(id, "held frame")?;
    release(&cp, id, Verdict::Drop).await?;
    Ok(Json(Released { id, outcome: Outcome::Dropped }))
}

/// Hands the verdict to the frame's session and waits for it to say it still held it.
async fn release(cp: &ControlPlane, id: u64, verdict: Verdict) -> Result<(), ApiError> {
    let frame = board(cp).and_then(|b| b.held_frame(id)).ok_or(ApiError::NotHeld(id))?;
    let (ack, answer) = oneshot::channel();
    cp.inner.registry.command(frame.session, Command::Release { hold: id, verdict, ack }).map_err(|e| match e {
        CommandError::NotFound => ApiError::NotHeld(id),
        e => ApiError::Command(e),
    })?;
    match tokio::time::timeout(INJECT_ACK_TIMEOUT, answer).await {
        Ok(Ok(true)) => Ok(()),
        // It left meanwhile (timeout, session over), or the session ended first.
        Ok(Ok(false) | Err(_)) => Err(ApiError::NotHeld(id)),
        // A session answers within microseconds; one that does not is stuck behind
        // its peer: the command is still queued and may yet apply.
        Err(_) => Err(ApiError::Command(CommandError::Busy)),
    }
}

impl From<InterceptError> for ApiError {
    fn from(e: InterceptError) -> Self {
        ApiError::Intercept(e)
    }
}

/// `wsgate_intercept_breakpoints` and `wsgate_intercept_held_frames` (gauges), read
/// from the board at scrape time: a frame held for long shows on a dashboard.
#[derive(Debug)]
pub(crate) struct InterceptCollector {
    pub(crate) board: Arc<InterceptBoard>,
}

impl prometheus_client::collector::Collector for InterceptCollector {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric as _;
        use prometheus_client::metrics::MetricType;
        use prometheus_client::metrics::gauge::ConstGauge;
        let (armed, held) = self.board.counts();
        for (name, help, n) in [
            ("wsgate_intercept_breakpoints", "Intercept breakpoints armed", armed),
            ("wsgate_intercept_held_frames", "Frames held at intercept breakpoints now", held),
        ] {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX)).encode(metric)?;
        }
        Ok(())
    }
}
