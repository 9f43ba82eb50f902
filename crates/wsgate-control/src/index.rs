//! `GET /`: the dashboard for a browser ([`crate::dashboard`]); for anything else,
//! JSON saying where the API, its description, the live stream and the metrics are,
//! instead of a bare 404. Open like the probes: it lists paths, nothing more.
//!
//! A WebSocket upgrade on `/` is not the page but websocket-multiplex's master
//! connection ([`crate::master`]), which needs the admin token when one is set.

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::header::ACCEPT;
use serde::Serialize;
use utoipa::ToSchema;

/// The answer of `GET /` as JSON.
#[derive(Debug, Serialize, ToSchema)]
pub struct Index {
    pub name: &'static str,
    pub version: &'static str,
    /// What is served at `/` itself.
    pub dashboard: &'static str,
    /// Where everything else is: `(what, path)`.
    pub links: Vec<Link>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Link {
    pub rel: &'static str,
    pub href: &'static str,
    pub title: &'static str,
}

const LINKS: &[Link] = &[
    Link { rel: "openapi", href: "/api/openapi.json", title: "The API's OpenAPI 3.1 description" },
    Link { rel: "sessions", href: "/api/sessions", title: "Live and stored sessions" },
    Link { rel: "live", href: "/api/live", title: "Live events and commands (WebSocket)" },
    Link { rel: "connections", href: "/api/connections", title: "Open outbound connections (POST)" },
    Link { rel: "metrics", href: "/metrics", title: "Prometheus metrics" },
    Link { rel: "health", href: "/healthz", title: "Liveness probe" },
    Link { rel: "ready", href: "/readyz", title: "Readiness probe" },
];

const DASHBOARD: &str = "served here to browsers (a request with Accept: text/html); its files under /ui/";

/// `GET /`: JSON, or the dashboard for a browser (`Accept: text/html`); a
/// WebSocket upgrade is the master connection.
#[utoipa::path(
    get,
    path = "/",
    tag = "meta",
    summary = "The dashboard (to a browser), what this control plane serves (JSON), or the websocket-multiplex master connection",
    description = "Without an upgrade: always open, even with an admin token; it lists paths and the \
                   version, nothing else. With a WebSocket upgrade: websocket-multiplex's master-control \
                   connection (a `status` message, then `connection`, `message` and `error` events; takes \
                   its `inject` and `close` commands), which needs the admin token when one is set. See \
                   docs/migrating-from-websocket-multiplex.md.",
    security(()),
    responses(
        (status = 200, description = "The dashboard's page (Accept: text/html), else where the API, live stream and metrics are", content(
            (Index = "application/json"),
            (String = "text/html"),
        )),
        (status = 101, description = "Upgraded to the master-control WebSocket"),
        (status = 400, description = "A WebSocket upgrade without Sec-WebSocket-Key", body = crate::error::ErrorBody),
    ),
)]
pub async fn index(State(cp): State<crate::ControlPlane>, req: Request) -> Response {
    if crate::master::wants_upgrade(&req) {
        return crate::master::root(cp, req);
    }
    let wants_html = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"));
    if wants_html {
        return crate::dashboard::page();
    }
    let links = LINKS.iter().map(|l| Link { rel: l.rel, href: l.href, title: l.title }).collect();
    Json(Index { name: "wsgate", version: env!("CARGO_PKG_VERSION"), dashboard: DASHBOARD, links }).into_response()
}
