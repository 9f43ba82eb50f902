//! Liveness and readiness probes. Always open, even with an admin token: an
//! orchestrator probing them holds no secret, and they reveal nothing.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::ControlPlane;

/// The answer of `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Liveness {
    pub status: Alive,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Alive {
    Ok,
}

/// The answer of `GET /readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    pub status: Ready,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Ready {
    /// Serving.
    Ready,
    /// Still starting.
    NotReady,
    /// Draining: stop sending new work.
    ShuttingDown,
}

/// `GET /healthz`: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    summary = "Liveness probe",
    description = "Always open, even with an admin token.",
    security(()),
    responses((status = 200, description = "The process answers", body = Liveness)),
)]
pub async fn healthz() -> impl IntoResponse {
    Json(Liveness { status: Alive::Ok })
}

/// `GET /readyz`: 200 once the binary says it is ready, 503 before that and from the
/// moment shutdown starts (so a load balancer stops sending new work).
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    summary = "Readiness probe",
    description = "Always open, even with an admin token.",
    security(()),
    responses(
        (status = 200, description = "Ready for traffic", body = Readiness),
        (status = 503, description = "Starting (`not_ready`) or shutting down (`shutting_down`)", body = Readiness),
    ),
)]
pub async fn readyz(State(cp): State<ControlPlane>) -> impl IntoResponse {
    let status = if cp.inner.shutdown.is_cancelled() {
        Ready::ShuttingDown
    } else if cp.is_ready() {
        Ready::Ready
    } else {
        Ready::NotReady
    };
    let code = if status == Ready::Ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(Readiness { status }))
}
