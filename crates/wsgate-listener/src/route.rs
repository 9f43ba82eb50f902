//! Routes: one listener, many handlers. A request is matched against the routes in
//! order (path, then host); the first match answers it, after its origin allowlist
//! and its own connection limit. No match is a 404.
//!
//! The table is swapped whole on reload ([`Router::swap`]): a request sees the table
//! that was current when it arrived, and sessions already running keep the handler
//! that answered them (they hold it), so a reload never touches live traffic.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use http::{HeaderValue, Response, StatusCode, header};
use hyper::body::Incoming;
use tokio::sync::Semaphore;

use crate::{Body, Conn, Handler, plain};

/// A handler behind a route: [`Handler`] with its future boxed, so routes of different
/// kinds (proxy, mock, later relay) sit in one table.
pub trait DynHandler: Send + Sync + 'static {
    fn call(
        self: Arc<Self>,
        req: hyper::Request<Incoming>,
        conn: Conn,
    ) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>>;
}

impl<H: Handler> DynHandler for H {
    fn call(
        self: Arc<Self>,
        req: hyper::Request<Incoming>,
        conn: Conn,
    ) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> {
        Box::pin(self.handle(req, conn))
    }
}

/// Which request paths a route takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    /// This path exactly (the query does not count).
    Exact(String),
    /// `/api/*`: `/api` itself and everything below it (`/api/x`, `/api/x/y`), never
    /// `/apix`. Stored without the `/*`; `/*` alone is every path.
    Prefix(String),
}

impl PathPattern {
    /// Parses the config form: `/feed` or `/api/*`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if !s.starts_with('/') {
            return Err(format!("{s:?} does not start with `/`"));
        }
        let (base, prefix) = match s.strip_suffix("/*") {
            Some(base) => (base, true),
            None => (s, false),
        };
        if base.contains('*') {
            return Err(format!("{s:?} has a `*` before its end; only a trailing `/*` is a wildcard"));
        }
        if base.contains('?') || base.contains('#') {
            return Err(format!("{s:?} has a query or fragment; a route matches the path only"));
        }
        Ok(if prefix { Self::Prefix(base.to_owned()) } else { Self::Exact(base.to_owned()) })
    }

    pub fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(p) => p == path,
            Self::Prefix(p) => {
                path.strip_prefix(p.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            }
        }
    }

    /// Every path `other` matches, this one matches too (so, placed first, it leaves
    /// `other` nothing).
    pub fn covers(&self, other: &PathPattern) -> bool {
        match (self, other) {
            (Self::Exact(a), Self::Exact(b)) => a == b,
            (Self::Exact(_), Self::Prefix(_)) => false,
            (Self::Prefix(_), Self::Exact(b)) => self.matches(b),
            (Self::Prefix(_), Self::Prefix(b)) => self.matches(b),
        }
    }
}

impl std::fmt::Display for PathPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exact(p) => f.write_str(p),
            Self::Prefix(p) => write!(f, "{p}/*"),
        }
    }
}

/// One entry of the table.
pub struct Route {
    pub name: Arc<str>,
    pub path: PathPattern,
    /// Only requests for this host (the `Host` header without its port, any case).
    pub host: Option<String>,
    /// Browser origins allowed to connect (`Origin` header, exact, any case); other
    /// origins get 403. A request without `Origin` is not from a browser page, so the
    /// list does not apply to it. `None`: every origin.
    pub origins: Option<Vec<String>>,
    /// This route's own connection limit, within the listener's.
    pub limit: Option<Arc<Semaphore>>,
    pub handler: Arc<dyn DynHandler>,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route").field("name", &self.name).field("path", &self.path).field("host", &self.host).finish()
    }
}

impl Route {
    fn matches(&self, path: &str, host: Option<&str>) -> bool {
        self.path.matches(path) && self.host.as_deref().is_none_or(|h| host.is_some_and(|x| x.eq_ignore_ascii_case(h)))
    }

    fn origin_allowed(&self, origin: Option<&HeaderValue>) -> bool {
        match (&self.origins, origin) {
            (None, _) | (Some(_), None) => true,
            (Some(list), Some(o)) => {
                let o = o.to_str().unwrap_or_default().trim_end_matches('/');
                list.iter().any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(o))
            }
        }
    }
}

/// The routes in force; cheap to read (one uncontended lock to clone an `Arc`).
#[derive(Debug, Default)]
pub struct Router {
    table: RwLock<Arc<Vec<Route>>>,
}

impl Router {
    pub fn new(routes: Vec<Route>) -> Arc<Self> {
        Arc::new(Self { table: RwLock::new(Arc::new(routes)) })
    }

    /// Replaces the whole table at once; requests already being answered finish with
    /// the old one.
    pub fn swap(&self, routes: Vec<Route>) {
        let new = Arc::new(routes);
        match self.table.write() {
            Ok(mut t) => *t = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }

    pub fn routes(&self) -> Arc<Vec<Route>> {
        match self.table.read() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// The host a request is for, without its port: the `Host` header, or the URI's
/// authority (absolute-form requests).
fn request_host(headers: &http::HeaderMap, uri: &http::Uri) -> Option<String> {
    let raw = headers.get(header::HOST).and_then(|h| h.to_str().ok()).or(uri.host())?;
    let host = match raw.strip_prefix('[') {
        // IPv6 literal: `[::1]:8080`.
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => raw.rsplit_once(':').map_or(raw, |(h, _)| h),
    };
    Some(host.to_owned())
}

fn no_route(path: &str) -> Response<Body> {
    plain(StatusCode::NOT_FOUND, &format!("wsgate: no route for {path}"))
}

impl Handler for Router {
    async fn handle(self: Arc<Self>, req: hyper::Request<Incoming>, mut conn: Conn) -> Response<Body> {
        let table = self.routes();
        let host = request_host(req.headers(), req.uri());
        let Some(route) = table.iter().find(|r| r.matches(req.uri().path(), host.as_deref())) else {
            return no_route(req.uri().path());
        };
        if !route.origin_allowed(req.headers().get(header::ORIGIN)) {
            let origin = req.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok()).unwrap_or("?");
            tracing::info!(route = %route.name, origin, "origin refused");
            return plain(StatusCode::FORBIDDEN, &format!("wsgate: origin {origin} is not allowed on this route"));
        }
        if let Some(limit) = &route.limit {
            match limit.clone().try_acquire_owned() {
                Ok(p) => conn.permit.route = Some(p),
                Err(_) => return crate::over_limit(),
            }
        }
        route.handler.clone().call(req, conn).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_stop_at_segment_boundaries() {
        let api = PathPattern::parse("/api/*").unwrap();
        assert!(api.matches("/api") && api.matches("/api/") && api.matches("/api/orders/1"));
        assert!(!api.matches("/apix") && !api.matches("/"));
        let all = PathPattern::parse("/*").unwrap();
        assert!(all.matches("/") && all.matches("/anything/at/all"));
        let feed = PathPattern::parse("/feed").unwrap();
        assert!(feed.matches("/feed") && !feed.matches("/feed/x"));
    }

    #[test]
    fn covering_finds_shadowed_routes() {
        let p = |s| PathPattern::parse(s).unwrap();
        assert!(p("/api/*").covers(&p("/api/orders")));
        assert!(p("/api/*").covers(&p("/api/v2/*")));
        assert!(p("/*").covers(&p("/feed")));
        assert!(p("/feed").covers(&p("/feed")));
        assert!(!p("/api/orders").covers(&p("/api/*")));
        assert!(!p("/api/*").covers(&p("/apix")));
    }

    #[test]
    fn hosts_match_without_port_in_any_case() {
        let host = |h: &str, uri: &str| {
            let mut headers = http::HeaderMap::new();
            if !h.is_empty() {
                headers.insert(header::HOST, h.parse().unwrap());
            }
            request_host(&headers, &uri.parse().unwrap())
        };
        assert_eq!(host("API.example.com:8080", "/x").as_deref(), Some("API.example.com"));
        assert_eq!(host("[::1]:8080", "/x").as_deref(), Some("::1"));
        assert_eq!(host("", "ws://feed.example.com/x").as_deref(), Some("feed.example.com"));
        assert_eq!(host("", "/x"), None);
        struct Nobody;
        impl Handler for Nobody {
            async fn handle(self: Arc<Self>, _: hyper::Request<Incoming>, _: Conn) -> Response<Body> {
                plain(StatusCode::OK, "")
            }
        }
        let route = Route {
            name: "api".into(),
            path: PathPattern::parse("/*").unwrap(),
            host: Some("api.example.com".into()),
            origins: Some(vec!["https://app.example.com".into()]),
            limit: None,
            handler: Arc::new(Nobody),
        };
        assert!(route.matches("/x", Some("API.Example.com")));
        assert!(!route.matches("/x", Some("other.example.com")) && !route.matches("/x", None));
        assert!(route.origin_allowed(None), "no Origin: not a browser page");
        assert!(route.origin_allowed(Some(&HeaderValue::from_static("https://APP.example.com"))));
        assert!(!route.origin_allowed(Some(&HeaderValue::from_static("https://app.example.com.evil"))));
    }

    #[test]
    fn bad_patterns_say_why() {
        for bad in ["feed", "/a*/b", "/x?y=1", "/a/*/b"] {
            assert!(PathPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
