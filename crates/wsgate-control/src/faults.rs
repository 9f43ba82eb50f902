//! `/api/routes/{name}/faults`: a route's faults (`wsgate-faults`, docs/faults.md)
//! read, set and cleared while it runs — toxiproxy's toxics, for WebSocket routes.
//! Sessions pick a change up at their next message; new connections at once
//! (refusals). The body is the same shape as a route's `faults:` in the config.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use wsgate_faults::FaultSpec;

use crate::ControlPlane;
use crate::body::JsonBody;
use crate::error::{ApiError, ErrorBody};

#[derive(Debug, Deserialize, IntoParams)]
pub struct RoutePath {
    /// The route's name (`GET /api/routes`; `default` for `wsgate proxy`, `mock` for
    /// `wsgate mock`).
    pub name: String,
}

/// A route's faults in force.
#[derive(Debug, Serialize, ToSchema)]
pub struct RouteFaults {
    pub route: String,
    /// `null` when none are set.
    pub faults: Option<FaultSpec>,
}

/// The route's switch, if it is a route faults apply to.
fn switch(cp: &ControlPlane, name: &str) -> Result<std::sync::Arc<wsgate_faults::FaultSwitch>, ApiError> {
    let board = cp.inner.cfg.faults.as_ref().ok_or_else(|| ApiError::RouteNotFound(name.to_owned()))?;
    if let Some(kind) = cp.route_kind(name)?
        && kind != "proxy"
        && kind != "mock"
    {
        return Err(ApiError::NoFaults { route: name.to_owned(), kind });
    }
    board.get(name).ok_or_else(|| ApiError::RouteNotFound(name.to_owned()))
}

#[utoipa::path(
    get,
    operation_id = "get_faults",
    path = "/api/routes/{name}/faults",
    tag = "faults",
    summary = "A route's faults in force",
    params(RoutePath),
    responses(
        (status = 200, description = "The faults (`null`: none)", body = RouteFaults),
        (status = 404, description = "No such route", body = ErrorBody),
        (status = 409, description = "A relay route: faults apply to proxy and mock routes", body = ErrorBody),
    ),
)]
pub async fn get(
    State(cp): State<ControlPlane>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<RouteFaults>, ApiError> {
    let route = name?.0;
    let faults = switch(&cp, &route)?.spec();
    Ok(Json(RouteFaults { route, faults }))
}

#[utoipa::path(
    put,
    operation_id = "set_faults",
    path = "/api/routes/{name}/faults",
    tag = "faults",
    summary = "Set a route's faults",
    description = "Replaces the route's faults (an empty object clears them). Live sessions apply them from \
                   their next message; `disconnect.after` counts from then. Every message a fault touches is \
                   marked (`marks`: `fault` and what it did) in the live stream and history. A reload keeps \
                   them unless the config's `faults:` for the route changed.",
    params(RoutePath),
    request_body(content = FaultSpec, content_type = "application/json"),
    responses(
        (status = 200, description = "Set", body = RouteFaults),
        (status = 400, description = "Not a fault spec, or a value out of range (the message names the field)", body = ErrorBody),
        (status = 404, description = "No such route", body = ErrorBody),
        (status = 409, description = "A relay route: faults apply to proxy and mock routes", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 415, description = "Content-Type is not JSON", body = ErrorBody),
    ),
)]
pub async fn put(
    State(cp): State<ControlPlane>,
    name: Result<Path<String>, PathRejection>,
    body: JsonBody,
) -> Result<Json<RouteFaults>, ApiError> {
    let route = name?.0;
    // The body first, as every route with one does: junk is a 400 wherever it is sent.
    let spec: FaultSpec = body.parse()?;
    let switch = switch(&cp, &route)?;
    switch.set(Some(spec)).map_err(ApiError::BadFaults)?;
    tracing::info!(route, faults = ?switch.spec(), "faults set through the API");
    Ok(Json(RouteFaults { route, faults: switch.spec() }))
}

#[utoipa::path(
    delete,
    operation_id = "clear_faults",
    path = "/api/routes/{name}/faults",
    tag = "faults",
    summary = "Clear a route's faults",
    params(RoutePath),
    responses(
        (status = 200, description = "Cleared", body = RouteFaults),
        (status = 404, description = "No such route", body = ErrorBody),
        (status = 409, description = "A relay route: faults apply to proxy and mock routes", body = ErrorBody),
    ),
)]
pub async fn delete(
    State(cp): State<ControlPlane>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<RouteFaults>, ApiError> {
    let route = name?.0;
    let switch = switch(&cp, &route)?;
    switch.set(None).map_err(ApiError::BadFaults)?;
    tracing::info!(route, "faults cleared through the API");
    Ok(Json(RouteFaults { route, faults: None }))
}
