//! The route table, and reloading it without a restart:
//! - `GET /api/routes` → `{"generation":n,"routes":[..]}`: the routes in force, in
//!   match order;
//! - `POST /api/reload` → the same after re-reading the config (200), or 422 with the
//!   config's error while the old routes keep serving; 409 when this gateway has no
//!   route table to reload (the control plane runs alone).
//!
//! SIGHUP does the same as the POST (the binary calls [`ControlPlane::reload`]). Each
//! attempt is counted in `wsgate_config_reloads_total{outcome}`. New sessions take
//! the new routes; live sessions keep the handler that answered them.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::ControlPlane;
use crate::error::{ApiError, ErrorBody};

/// One route as configured.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RouteInfo {
    pub name: String,
    /// `/feed` exactly, or `/api/*` (a prefix).
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `proxy` or `mock`.
    pub kind: String,
    /// The upstream (or resolver) of a proxy route; the mode of a mock route.
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origins: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
}

/// The table in force.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RouteTable {
    /// 1 at start, one more for every reload applied.
    pub generation: u64,
    pub routes: Vec<RouteInfo>,
    /// Settings that changed in the file but only take effect after a restart
    /// (`listen`, `control`, `store`, TLS): empty unless a reload saw such a change.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub restart_needed: Vec<String>,
}

/// What can re-read the configuration and swap the routes: the binary.
pub trait Reload: Send + Sync + 'static {
    /// Re-reads and validates the configuration and swaps the routes; on an error the
    /// old routes stay and the error says what is wrong with the config.
    fn reload(&self) -> Result<RouteTable, String>;
    fn table(&self) -> RouteTable;
}

impl ControlPlane {
    /// The kind (`proxy`, `relay`, `mock`) of route `name`, for the APIs that act on
    /// one route; `Ok(None)` when this plane has no route table to look in (it then
    /// trusts its boards), and 404 when the table has no such route.
    pub(crate) fn route_kind(&self, name: &str) -> Result<Option<String>, ApiError> {
        let Some(routes) = self.inner.routes.get() else { return Ok(None) };
        let table = routes.table();
        let route = table.routes.into_iter().find(|r| r.name == name);
        route.map(|r| Some(r.kind)).ok_or_else(|| ApiError::RouteNotFound(name.to_owned()))
    }

    /// Gives the control plane the gateway's route table (once, at start).
    pub fn set_routes(&self, routes: std::sync::Arc<dyn Reload>) {
        self.inner.metrics.set_routes(metric_routes(&routes.table()));
        let _ = self.inner.routes.set(routes);
    }

    /// Reloads the routes (SIGHUP, `POST /api/reload`), counting and logging the
    /// outcome. `None` when there is no route table.
    pub fn reload(&self) -> Option<Result<RouteTable, String>> {
        let routes = self.inner.routes.get()?;
        let result = routes.reload();
        match &result {
            Ok(t) => {
                self.inner.metrics.set_routes(metric_routes(t));
                self.inner.metrics.reloads.get_or_create(&crate::metrics::OutcomeLabel { outcome: "applied" }).inc();
                let names: Vec<&str> = t.routes.iter().map(|r| r.name.as_str()).collect();
                tracing::info!(generation = t.generation, routes = ?names, "routes reloaded");
                if !t.restart_needed.is_empty() {
                    tracing::warn!(settings = ?t.restart_needed, "changed settings that apply only after a restart");
                }
            }
            Err(e) => {
                self.inner.metrics.reloads.get_or_create(&crate::metrics::OutcomeLabel { outcome: "refused" }).inc();
                tracing::error!(error = %e, "reload refused; the routes in force keep serving");
            }
        }
        Some(result)
    }
}

/// `(route, kind)` of each route, for the per-route series.
fn metric_routes(t: &RouteTable) -> Vec<(String, &'static str)> {
    let kind = |k: &str| wsgate_core::SessionKind::ALL.into_iter().find(|x| x.as_str() == k).map(|x| x.as_str());
    t.routes.iter().filter_map(|r| Some((r.name.clone(), kind(&r.kind)?))).collect()
}

#[utoipa::path(
    get,
    path = "/api/routes",
    tag = "routes",
    summary = "The routes in force",
    responses(
        (status = 200, description = "In match order (first match wins)", body = RouteTable),
        (status = 409, description = "This gateway has no route table", body = ErrorBody),
    ),
)]
pub async fn list(State(cp): State<ControlPlane>) -> Result<Json<RouteTable>, ApiError> {
    cp.inner.routes.get().map(|r| Json(r.table())).ok_or(ApiError::NoRoutes)
}

#[utoipa::path(
    post,
    path = "/api/reload",
    tag = "routes",
    summary = "Re-read the config and swap the routes",
    description = "Like SIGHUP. New sessions take the new routes; live sessions keep theirs. A config that \
                   does not validate is refused (422) and the routes in force keep serving.",
    responses(
        (status = 200, description = "Applied", body = RouteTable),
        (status = 409, description = "This gateway has no route table", body = ErrorBody),
        (status = 422, description = "The config does not validate; nothing changed", body = ErrorBody),
    ),
)]
pub async fn reload(State(cp): State<ControlPlane>) -> Result<Json<RouteTable>, ApiError> {
    // Reading and checking the file (and a CA file) blocks briefly: off the runtime's
    // worker threads.
    let result = tokio::task::spawn_blocking(move || cp.reload())
        .await
        .unwrap_or_else(|e| Some(Err(format!("the reload did not finish: {e}"))));
    match result {
        None => Err(ApiError::NoRoutes),
        Some(Ok(t)) => Ok(Json(t)),
        Some(Err(e)) => Err(ApiError::ReloadRefused(e)),
    }
}
