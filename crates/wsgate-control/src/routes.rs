//! The route table: every route the control plane serves, each registered together
//! with its OpenAPI operation.
//!
//! Adding a route is one line here (`.routes(routes!(module::handler))`) plus the
//! handler's `#[utoipa::path]`, which names the method and path for both axum and the
//! document: a route cannot be served without being documented, and the
//! `every_route_is_documented` test catches one added any other way.

use axum::Router;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::{
    ControlConfig, ControlPlane, api, auth, connections, dashboard, faults, health, history, index, intercepts,
    metrics, openapi, reload, rooms, taps, ticket, ws,
};

/// Routes open even with an admin token: probes, the index and the dashboard's
/// files hold no secret.
fn open() -> OpenApiRouter<ControlPlane> {
    OpenApiRouter::default()
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(index::index))
        .routes(routes!(dashboard::asset))
}

/// Routes that need the admin token when one is configured.
fn guarded() -> OpenApiRouter<ControlPlane> {
    OpenApiRouter::default()
        .routes(routes!(metrics::scrape))
        .routes(routes!(openapi::spec))
        .routes(routes!(api::list_sessions))
        .routes(routes!(api::get_session))
        .routes(routes!(api::inject))
        .routes(routes!(api::close))
        .routes(routes!(history::events))
        .routes(routes!(history::messages))
        .routes(routes!(history::export))
        .routes(routes!(connections::create))
        .routes(routes!(connections::send))
        .routes(routes!(connections::close))
        .routes(routes!(reload::list))
        .routes(routes!(reload::reload))
        .routes(routes!(rooms::list))
        .routes(routes!(rooms::get))
        .routes(routes!(rooms::publish))
        .routes(routes!(faults::get, faults::put, faults::delete))
        .routes(routes!(intercepts::list, intercepts::create))
        .routes(routes!(intercepts::remove))
        .routes(routes!(intercepts::forward))
        .routes(routes!(intercepts::drop_frame))
        .routes(routes!(ws::live))
        .routes(routes!(ticket::issue))
        .routes(routes!(taps::client))
        .routes(routes!(taps::client_root))
        .routes(routes!(taps::client_root_slash))
        .routes(routes!(taps::upstream))
        .routes(routes!(taps::upstream_root))
        .routes(routes!(taps::upstream_root_slash))
}

/// The routes (fallbacks and body handling are added by [`ControlPlane::router`]) and
/// the document describing them, for this configuration.
pub(crate) fn table(cfg: &ControlConfig, tickets: &std::sync::Arc<ticket::Tickets>) -> (Router<ControlPlane>, OpenApi) {
    let (open, mut doc) = open().split_for_parts();
    if cfg.admin_token.is_some() {
        openapi::root_upgrade_needs_token(&mut doc);
    }
    let (mut guarded, mut guarded_doc) = guarded().split_for_parts();
    if let Some(token) = &cfg.admin_token {
        // route_layer, not layer: unknown paths stay a plain 404 rather than revealing
        // which ones exist through a 401.
        let auth = auth::Auth { token: auth::AdminToken::new(token), tickets: tickets.clone() };
        guarded = guarded.route_layer(axum::middleware::from_fn_with_state(auth, auth::require_token));
        openapi::require_token(&mut guarded_doc);
    }
    doc.merge(guarded_doc);
    (open.merge(guarded), openapi::finish(doc))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use axum::body::Body;
    use http::{Method, Request, StatusCode};
    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;
    use tower::ServiceExt;
    use wsgate_core::{EventBus, Registry};

    use crate::api::SESSION_ID_PATTERN;
    use crate::openapi::openapi_path;
    use crate::{ControlConfig, ControlPlane, register_observers};

    fn control_plane(cfg: ControlConfig) -> ControlPlane {
        let mut builder = EventBus::builder();
        let observers = register_observers(&mut builder);
        let bus = builder.build();
        let shutdown = CancellationToken::new();
        ControlPlane::start(cfg, Arc::new(Registry::default()), bus, observers, shutdown, &TaskTracker::new())
    }

    /// The paths the router serves, read from its `Debug` output: axum offers no
    /// other way to list them. The test fails loudly if that output changes shape.
    fn served_paths(router: &axum::Router) -> BTreeSet<String> {
        let debug = format!("{router:?}");
        // Only the path router: the fallback router holds axum's own catch-all routes.
        let start = debug.find("path_router:").unwrap_or_else(|| panic!("no path_router in {debug}"));
        let end = debug.find("fallback_router:").unwrap_or_else(|| panic!("no fallback_router in {debug}"));
        let mut paths = BTreeSet::new();
        let mut rest = &debug[start..end];
        while let Some(i) = rest.find("RouteId(") {
            rest = &rest[i..];
            let Some(open) = rest.find(": \"") else { break };
            let after = &rest[open + 3..];
            let Some(close) = after.find('"') else { break };
            let path = &after[..close];
            if !path.contains("__private__axum") {
                paths.insert(path.to_owned());
            }
            rest = &after[close..];
        }
        assert!(paths.len() >= 10, "cannot read the routes from axum's Debug output: {debug}");
        paths
    }

    /// A concrete request path for a route path: parameters get a well-formed value.
    fn concrete(path: &str) -> String {
        path.replace("{id}", "0193a4b2-7c1e-7d3f-9a2b-1c2d3e4f5a6b").replace("{*path}", "chat")
    }

    const METHODS: [Method; 5] = [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE];

    /// Every (method, path) the router answers with something other than 405.
    async fn served(router: &axum::Router) -> BTreeSet<(String, String)> {
        let mut served = BTreeSet::new();
        for path in served_paths(router) {
            for method in METHODS {
                let req = Request::builder().method(method.clone()).uri(concrete(&path)).body(Body::empty());
                let res = router.clone().oneshot(req.expect("request")).await.expect("infallible");
                if res.status() != StatusCode::METHOD_NOT_ALLOWED {
                    served.insert((method.to_string(), openapi_path(&path)));
                }
            }
        }
        served
    }

    fn documented(doc: &utoipa::openapi::OpenApi) -> BTreeSet<(String, String)> {
        let json = serde_json::to_value(doc).expect("serializes");
        let mut ops = BTreeSet::new();
        for (path, item) in json["paths"].as_object().expect("paths") {
            for method in METHODS {
                if item.get(method.as_str().to_ascii_lowercase()).is_some() {
                    ops.insert((method.to_string(), path.clone()));
                }
            }
        }
        ops
    }

    #[tokio::test]
    async fn every_route_is_documented() {
        for cfg in [ControlConfig::default(), ControlConfig { admin_token: Some("t".into()), ..Default::default() }] {
            let cp = control_plane(cfg);
            let router = cp.router();
            assert_eq!(served(&router).await, documented(&cp.openapi()), "served vs documented operations");
        }
    }

    /// The document is OpenAPI 3.1 as an independent parser reads it, and every
    /// reference in it resolves.
    #[tokio::test]
    async fn document_is_valid_openapi_3_1() {
        for cfg in [ControlConfig::default(), ControlConfig { admin_token: Some("t".into()), ..Default::default() }] {
            let guarded = cfg.admin_token.is_some();
            let json = serde_json::to_string(&control_plane(cfg).openapi()).expect("serializes");
            let spec = oas3::from_json(&json).expect("parses as OpenAPI 3.1");
            assert_eq!(spec.validate_version().expect("a 3.1 version").minor, 1);
            let mut operations = 0;
            for (path, method, op) in spec.operations() {
                operations += 1;
                let what = format!("{method} {path}");
                let params = op.parameters(&spec).unwrap_or_else(|e| panic!("{what}: parameters: {e}"));
                // Every `{name}` in the path is a path parameter, and the other way round.
                let in_path: BTreeSet<_> =
                    path.split('{').skip(1).filter_map(|s| s.split_once('}')).map(|(n, _)| n.to_owned()).collect();
                let declared: BTreeSet<_> = params
                    .iter()
                    .filter(|p| p.location == oas3::spec::ParameterIn::Path)
                    .map(|p| p.name.clone())
                    .collect();
                assert_eq!(in_path, declared, "{what}: path parameters");
                op.request_body(&spec).unwrap_or_else(|e| panic!("{what}: request body: {e}"));
                let responses = op.responses(&spec);
                assert!(!responses.is_empty(), "{what}: no responses");
                let open = ["/healthz", "/readyz", "/ui/{file}"].contains(&path.as_str());
                // `/` is open, but its WebSocket (the master connection) is not.
                assert_eq!(responses.contains_key("401"), guarded && !open, "{what}: 401 documented iff guarded");
                for (status, response) in &responses {
                    for (media, content) in &response.content {
                        if let Some(schema) = &content.schema {
                            schema.resolve(&spec).unwrap_or_else(|e| panic!("{what} {status} {media}: {e}"));
                        }
                    }
                }
            }
            assert!(operations >= 15, "{operations} operations");
            // Every `$ref` in the document points at a component that exists.
            let value: serde_json::Value = serde_json::from_str(&json).expect("json");
            let mut refs = Vec::new();
            collect_refs(&value, &mut refs);
            for r in refs {
                let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("external ref {r}"));
                assert!(value.pointer(pointer).is_some(), "dangling $ref {r}");
            }
        }
    }

    fn collect_refs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("$ref", serde_json::Value::String(s)) => out.push(s.clone()),
                        _ => collect_refs(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }

    /// The browser guard is one layer over the whole router: every path it serves
    /// (and any unknown one) refuses a foreign `Host` and a foreign `Origin`, before
    /// authentication; preflights are answered for listed origins only.
    #[tokio::test]
    async fn the_browser_guard_covers_every_route() {
        use crate::guard::{AllowedHost, AllowedOrigin, HOST_EXEMPT};
        let cfg = ControlConfig {
            admin_token: Some("t".into()),
            origins: vec![AllowedOrigin::parse("http://localhost:5173").expect("origin")],
            hosts: vec![AllowedHost::parse("wsgate.example").expect("host")],
            ..Default::default()
        };
        let router = control_plane(cfg).router();
        let send = |path: String, method: Method, headers: Vec<(&'static str, &'static str)>| {
            let router = router.clone();
            async move {
                let mut req = Request::builder().method(method).uri(path);
                for (k, v) in headers {
                    req = req.header(k, v);
                }
                router.oneshot(req.body(Body::empty()).expect("request")).await.expect("infallible")
            }
        };
        let mut paths: Vec<String> = served_paths(&router).iter().map(|p| concrete(p)).collect();
        paths.push("/no/such/route".into());
        for path in paths {
            let host = send(path.clone(), Method::GET, vec![("host", "evil.example:8081")]).await;
            // The probes answer whatever the Host (`/readyz`: 503, this plane is not ready).
            let exempt = HOST_EXEMPT.contains(&path.as_str());
            assert_eq!(host.status() != StatusCode::MISDIRECTED_REQUEST, exempt, "{path} with a foreign Host");
            let upgrade = vec![("host", "127.0.0.1:1"), ("origin", "https://evil.example"), ("upgrade", "websocket")];
            assert_eq!(send(path.clone(), Method::GET, upgrade).await.status(), StatusCode::FORBIDDEN, "{path}");
            let named = send(path.clone(), Method::GET, vec![("host", "wsgate.example")]).await;
            assert!(![StatusCode::MISDIRECTED_REQUEST, StatusCode::FORBIDDEN].contains(&named.status()), "{path}");
        }
        let preflight = |origin: &'static str| {
            send(
                "/api/sessions".into(),
                Method::OPTIONS,
                vec![
                    ("host", "127.0.0.1:1"),
                    ("origin", origin),
                    ("access-control-request-method", "POST"),
                    ("access-control-request-headers", "authorization, content-type"),
                ],
            )
        };
        let listed = preflight("http://localhost:5173").await;
        assert!(listed.status().is_success(), "{:?}", listed.status());
        let h = listed.headers();
        assert_eq!(h.get("access-control-allow-origin").map(|v| v.as_bytes()), Some(&b"http://localhost:5173"[..]));
        let allowed = h.get("access-control-allow-headers").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(allowed.contains("authorization") && allowed.contains("content-type"), "{allowed}");
        assert!(h.get_all("vary").iter().any(|v| v.to_str().unwrap_or_default().contains("origin")), "{h:?}");
        let other = preflight("http://localhost:5174").await;
        assert_eq!(other.status(), StatusCode::FORBIDDEN);
        assert!(other.headers().get("access-control-allow-origin").is_none());
        // An actual request from the listed origin gets its CORS answer too.
        let get = send(
            "/api/sessions".into(),
            Method::GET,
            vec![("host", "127.0.0.1:1"), ("origin", "http://localhost:5173"), ("authorization", "Bearer t")],
        )
        .await;
        assert_eq!(get.status(), StatusCode::OK);
        assert_eq!(
            get.headers().get("access-control-allow-origin").map(|v| v.as_bytes()),
            Some(&b"http://localhost:5173"[..])
        );
    }

    /// A body that stops arriving half way is answered 408 after `BODY_TIMEOUT`, on
    /// any route, with the connection marked for closing.
    #[tokio::test(start_paused = true)]
    async fn stalled_bodies_get_408() {
        use futures_util::StreamExt;
        let router = control_plane(ControlConfig::default()).router();
        for (method, uri) in
            [(Method::POST, "/api/sessions/0193a4b2-7c1e-7d3f-9a2b-1c2d3e4f5a6b/inject"), (Method::GET, "/healthz")]
        {
            let started = tokio::time::Instant::now();
            let stalled = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"{\"to\""))])
                .chain(futures_util::stream::pending());
            let req = Request::builder().method(method).uri(uri).body(Body::from_stream(stalled)).expect("request");
            let res = router.clone().oneshot(req).await.expect("infallible");
            assert_eq!(res.status(), StatusCode::REQUEST_TIMEOUT, "{uri}");
            assert_eq!(res.headers().get(http::header::CONNECTION).map(|v| v.as_bytes()), Some(&b"close"[..]));
            assert!(started.elapsed() >= crate::body::BODY_TIMEOUT, "{uri}");
        }
    }

    /// Facts the document states that the code also holds as constants.
    #[tokio::test]
    async fn document_agrees_with_the_code() {
        let doc = serde_json::to_value(control_plane(ControlConfig::default()).openapi()).expect("json");
        let id = &doc["paths"]["/api/sessions/{id}"]["get"]["parameters"][0]["schema"]["pattern"];
        assert_eq!(id, SESSION_ID_PATTERN);
        let metrics = doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"].as_object().expect("content");
        assert!(metrics.contains_key(crate::metrics::CONTENT_TYPE), "{metrics:?}");
        let served = doc["paths"][crate::openapi::SPEC_PATH]["get"].is_object();
        assert!(served, "the document describes itself");
    }
}
