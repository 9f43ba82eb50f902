//! Liveness and readiness probes. Always open, even with an admin token: an
//! orchestrator probing them holds no secret, and they reveal nothing.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use http::StatusCode;
use serde_json::json;

use crate::ControlPlane;

/// `GET /healthz`: the process answers.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 once the binary says it is ready, 503 before that and from the
/// moment shutdown starts (so a load balancer stops sending new work).
pub async fn readyz(State(cp): State<ControlPlane>) -> impl IntoResponse {
    if cp.inner.shutdown.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "shutting_down" })))
    } else if cp.is_ready() {
        (StatusCode::OK, Json(json!({ "status": "ready" })))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "not_ready" })))
    }
}
