//! The browser guard: one layer over the whole control plane that keeps web pages out.
//!
//! The control plane reads every proxied frame and injects into live traffic, and on
//! loopback it needs no token. Any web page the operator has open can reach loopback,
//! so two browser attacks have to be stopped here rather than by the token:
//!
//! - **cross-site requests** (and cross-site WebSocket hijacking, which CORS does not
//!   cover): a request carrying an `Origin` that is neither the control plane's own nor
//!   listed with `--control-origin` is refused with 403 — every request, not only
//!   upgrades, so a route added later (a WebSocket on `/`, say) is covered without
//!   thinking about it. No `Origin` at all is a non-browser client and passes.
//! - **DNS rebinding**: a page whose name re-resolves to 127.0.0.1 becomes same-origin
//!   with us, but its requests still carry its own name in `Host`. A `Host` that is not
//!   an IP literal, `localhost` (or a `*.localhost` name, which resolvers keep on
//!   loopback) or a name listed with `--control-host` is refused with 421. IP literals
//!   are fine: rebinding needs a name. The port is not checked — port forwarding
//!   (`docker -p`, `ssh -L`) changes it legitimately, and the name is what an attacker
//!   controls. The health probes skip this check: orchestrators probe with whatever
//!   `Host` they like, and the probes reveal nothing.
//!
//! The parsers here are the only ones: config validation uses [`AllowedOrigin::parse`]
//! and [`AllowedHost::parse`], the CORS layer asks [`BrowserGuard::listed`], and the
//! control-API fuzz target drives [`BrowserGuard::decide`].

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, header};
use url::Host;

use crate::error::ApiError;

/// Paths answered whatever the `Host`: probes carry an orchestrator's idea of it.
pub const HOST_EXEMPT: [&str; 2] = ["/healthz", "/readyz"];
/// A refused `Host` or `Origin` is echoed in the error at most this long.
const ECHO_MAX: usize = 100;

/// An origin allowed to use the control plane from a browser (`--control-origin`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedOrigin(url::Origin);

/// Why a configured origin is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    #[error("{0:?} is not an origin: expected scheme://host[:port], e.g. http://localhost:5173")]
    Malformed(String),
    #[error("{0:?} is not an origin: only http:// and https:// pages have one that can be listed")]
    Scheme(String),
    #[error("{0:?} is not an origin: an origin has no user, path, query or fragment; use {1}")]
    NotBare(String, String),
    #[error("{0:?} cannot be listed: it would let in every sandboxed or file:// page")]
    Opaque(String),
}

impl AllowedOrigin {
    /// Parses `scheme://host[:port]` (a trailing `/` is tolerated); the host is
    /// normalised as browsers do (lower case, IDN to punycode, default port dropped).
    pub fn parse(text: &str) -> Result<Self, OriginError> {
        let t = text.trim();
        if t == "null" || t == "*" {
            return Err(OriginError::Opaque(text.into()));
        }
        let url = url::Url::parse(t).map_err(|_| OriginError::Malformed(text.into()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(OriginError::Scheme(text.into()));
        }
        let origin = url.origin();
        if !url.username().is_empty()
            || url.password().is_some()
            || url.path() != "/"
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(OriginError::NotBare(text.into(), origin.ascii_serialization()));
        }
        Ok(Self(origin))
    }

    /// As a browser sends it in `Origin`.
    pub fn serialization(&self) -> String {
        self.0.ascii_serialization()
    }
}

/// A host name allowed in `Host` besides IP literals and `localhost` (`--control-host`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost(String);

/// Why a configured host name is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostNameError {
    #[error("{0:?} is not a host name: give the name alone (no scheme, port or path), e.g. wsgate.example.com")]
    NotBare(String),
    #[error("{0:?} is not a valid host name")]
    Malformed(String),
}

impl AllowedHost {
    /// Parses a bare host name (IDN allowed, compared in punycode); any port is
    /// accepted with it, as with `localhost`.
    pub fn parse(text: &str) -> Result<Self, HostNameError> {
        let t = text.trim();
        if t.is_empty() || t.contains(['/', ':', '@', '?', '#']) && !t.starts_with('[') {
            return Err(HostNameError::NotBare(text.into()));
        }
        match Host::parse(t) {
            // Only what a browser's `Host` can carry ([`parse_host`]), so a listed name
            // can always match.
            // Only a name a browser's `Host` can carry, read back the same way by
            // [`parse_host`], so a listed name always matches (the control-API fuzz target
            // found names of dots alone, and ones that turn into an IPv4 number once their
            // trailing dots go).
            Ok(Host::Domain(d)) => {
                let name = normalise(&d);
                match parse_host(name.as_bytes()) {
                    Some(RequestHost { host: Host::Domain(back), port: None }) if normalise(&back) == name => {
                        Ok(Self(name.to_owned()))
                    }
                    _ => Err(HostNameError::Malformed(text.into())),
                }
            }
            // An address is always accepted; listing one is harmless.
            Ok(h @ (Host::Ipv4(_) | Host::Ipv6(_))) => Ok(Self(h.to_string())),
            _ => Err(HostNameError::Malformed(text.into())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A name compared without its root dot: `localhost.` is `localhost`. All trailing
/// dots go, so that a listed `a..` and a `Host: a.` compare the same way both ways
/// (found by the control-API fuzz target).
fn normalise(domain: &str) -> &str {
    domain.trim_end_matches('.')
}

/// What the guard makes of a request's `Host` (missing, or parsed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHost {
    pub host: Host<String>,
    pub port: Option<u16>,
}

/// Parses a `Host` header value: `name[:port]`, `a.b.c.d[:port]`, `[v6][:port]`.
/// Strict on purpose: browsers send exactly this shape (ASCII, punycode, no percent
/// signs), so anything else is not a browser's and is refused as malformed.
pub fn parse_host(value: &[u8]) -> Option<RequestHost> {
    let s = std::str::from_utf8(value).ok()?;
    let (host, port) = if s.starts_with('[') {
        let end = s.find(']')?;
        if !s[1..end].bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return None;
        }
        let port = match &s[end + 1..] {
            "" => None,
            after => Some(after.strip_prefix(':')?),
        };
        (&s[..=end], parse_port(port)?)
    } else {
        let (h, p) = match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        if h.is_empty() || !h.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')) {
            return None;
        }
        (h, parse_port(p)?)
    };
    let host = Host::parse(host).ok()?;
    Some(RequestHost { host, port })
}

/// `Some(None)` for no port (or an empty one, which RFC 3986 allows), `None` when
/// malformed.
fn parse_port(p: Option<&str>) -> Option<Option<u16>> {
    match p {
        None | Some("") => Some(None),
        Some(p) if p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok().map(Some),
        Some(_) => None,
    }
}

/// Parses an `Origin` header value into a tuple origin; `None` for `null` (an opaque
/// origin: sandboxed frames, `file://`) and anything that is not a bare origin.
pub fn parse_origin(value: &[u8]) -> Option<url::Origin> {
    let s = std::str::from_utf8(value).ok()?;
    if !s.is_ascii() {
        return None;
    }
    AllowedOrigin::parse(s).ok().map(|o| o.0)
}

/// The guard's verdict on one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// 400: a `Host` no browser would send.
    BadHost,
    /// 421: a name this control plane is not known by.
    HostNotAllowed,
    /// 403: a page on another origin.
    OriginNotAllowed,
}

/// The configured allowances; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct BrowserGuard {
    origins: Arc<[url::Origin]>,
    hosts: Arc<[String]>,
}

impl BrowserGuard {
    pub fn new(origins: &[AllowedOrigin], hosts: &[AllowedHost]) -> Self {
        Self {
            origins: origins.iter().map(|o| o.0.clone()).collect(),
            hosts: hosts.iter().map(|h| h.0.clone()).collect(),
        }
    }

    /// Whether any origin is listed: without one, CORS stays closed (no layer at all).
    pub fn has_origins(&self) -> bool {
        !self.origins.is_empty()
    }

    /// Whether an `Origin` header value names a listed origin.
    pub fn listed(&self, origin: &[u8]) -> bool {
        parse_origin(origin).is_some_and(|o| self.origins.contains(&o))
    }

    /// Whether `host` is a name this control plane answers to.
    pub fn host_allowed(&self, host: &RequestHost) -> bool {
        match &host.host {
            Host::Ipv4(_) | Host::Ipv6(_) => true,
            Host::Domain(d) => {
                let d = normalise(d);
                d == "localhost" || d.ends_with(".localhost") || self.hosts.iter().any(|h| h == d)
            }
        }
    }

    /// The decision for a request, from its path and headers alone (no I/O).
    pub fn decide(&self, path: &str, headers: &HeaderMap) -> Verdict {
        let mut hosts = headers.get_all(header::HOST).iter();
        let host = match (hosts.next(), hosts.next()) {
            // No Host: HTTP/1.0, a non-browser client (browsers always send one).
            (None, _) => None,
            (Some(v), None) => match parse_host(v.as_bytes()) {
                Some(h) => Some(h),
                None => return Verdict::BadHost,
            },
            (Some(_), Some(_)) => return Verdict::BadHost,
        };
        if let Some(h) = &host
            && !HOST_EXEMPT.contains(&path)
            && !self.host_allowed(h)
        {
            return Verdict::HostNotAllowed;
        }
        let mut origins = headers.get_all(header::ORIGIN).iter();
        match (origins.next(), origins.next()) {
            (None, _) => Verdict::Pass,
            (Some(v), None) => match parse_origin(v.as_bytes()) {
                Some(o) if self.origins.contains(&o) || host.as_ref().is_some_and(|h| same_origin(&o, h)) => {
                    Verdict::Pass
                }
                _ => Verdict::OriginNotAllowed,
            },
            (Some(_), Some(_)) => Verdict::OriginNotAllowed,
        }
    }
}

/// Whether `origin` is the control plane itself, as reached through `host`. The
/// scheme is not compared: the control plane speaks plain HTTP, and behind a TLS
/// proxy that keeps `Host` the page's origin is `https://` with the same name. A
/// `Host` without a port means the default port of the origin's scheme.
pub fn same_origin(origin: &url::Origin, host: &RequestHost) -> bool {
    let url::Origin::Tuple(scheme, o_host, o_port) = origin else { return false };
    let default = if scheme == "https" { 443 } else { 80 };
    let strip = |h: &Host<String>| match h {
        Host::Domain(d) => Host::Domain(normalise(d).to_owned()),
        other => other.clone(),
    };
    strip(o_host) == strip(&host.host) && *o_port == host.port.unwrap_or(default)
}

/// Whether the request asks for a WebSocket (`Upgrade: websocket`, any case).
pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::UPGRADE)
        .iter()
        .any(|v| v.as_bytes().split(|b| *b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"websocket")))
}

fn echo(v: Option<&http::HeaderValue>) -> String {
    let s = v.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).unwrap_or_default();
    s.chars().take(ECHO_MAX).collect()
}

/// Middleware over the whole router: refuses what [`BrowserGuard::decide`] refuses,
/// before CORS, authentication or routing see the request.
pub async fn check(State(guard): State<BrowserGuard>, req: Request, next: Next) -> Response {
    let verdict = guard.decide(req.uri().path(), req.headers());
    let err = match verdict {
        Verdict::Pass => return next.run(req).await,
        Verdict::BadHost => ApiError::BadHost(echo(req.headers().get(header::HOST))),
        Verdict::HostNotAllowed => ApiError::HostNotAllowed(echo(req.headers().get(header::HOST))),
        Verdict::OriginNotAllowed => ApiError::OriginNotAllowed(echo(req.headers().get(header::ORIGIN))),
    };
    tracing::debug!(
        method = %req.method(),
        uri = %crate::auth::redacted(req.uri()),
        upgrade = is_websocket_upgrade(req.headers()),
        preflight = req.method() == Method::OPTIONS,
        refused = %err,
        "control-plane request refused"
    );
    err.into_response()
}

/// The CORS answers for listed origins (`None` when none is listed: CORS stays
/// closed). Preflights from a listed origin are answered here; unlisted ones never get
/// this far ([`check`] refuses them). No credentials mode: the API authenticates with
/// `Authorization`, which the page sets itself, never with cookies.
pub fn cors(guard: &BrowserGuard) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if !guard.has_origins() {
        return None;
    }
    let g = guard.clone();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::predicate(move |origin, _| g.listed(origin.as_bytes())))
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .expose_headers([header::RETRY_AFTER, header::WWW_AUTHENTICATE])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(host: Option<&str>, origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = host {
            h.insert(header::HOST, HeaderValue::from_str(v).expect("header"));
        }
        if let Some(v) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    fn guard() -> BrowserGuard {
        BrowserGuard::new(
            &[AllowedOrigin::parse("http://localhost:5173").expect("origin")],
            &[AllowedHost::parse("wsgate.example.com").expect("host")],
        )
    }

    #[test]
    fn hosts() {
        let g = guard();
        for ok in [
            "127.0.0.1:8081",
            "127.0.0.1",
            "localhost:8081",
            "LOCALHOST",
            "localhost.:1",
            "app.localhost:3000",
            "[::1]:8081",
            "[::1]",
            "10.1.2.3:80",
            "wsgate.example.com",
            "WSGATE.example.com.:443",
            "localhost:",
        ] {
            let v = g.decide("/api/sessions", &headers(Some(ok), None));
            assert_eq!(v, Verdict::Pass, "{ok}");
        }
        for refused in ["evil.example:8081", "localhost.evil.example", "example.com", "xn--bcher-kva.example"] {
            assert_eq!(g.decide("/api/live", &headers(Some(refused), None)), Verdict::HostNotAllowed, "{refused}");
            assert_eq!(g.decide("/healthz", &headers(Some(refused), None)), Verdict::Pass, "{refused}");
        }
        for bad in ["", "::1", "[::1", "[::1]x", "a:b:c", "host:99999", "host:-1", "lo%63alhost", "a@b", "[zz]", "a b"]
        {
            assert_eq!(g.decide("/api/live", &headers(Some(bad), None)), Verdict::BadHost, "{bad:?}");
        }
        assert_eq!(g.decide("/api/live", &headers(None, None)), Verdict::Pass);
    }

    #[test]
    fn origins() {
        let g = guard();
        let at = |host, origin| g.decide("/api/live", &headers(Some(host), origin));
        assert_eq!(at("127.0.0.1:8081", None), Verdict::Pass);
        assert_eq!(at("127.0.0.1:8081", Some("http://127.0.0.1:8081")), Verdict::Pass);
        assert_eq!(at("localhost:8081", Some("http://localhost:8081")), Verdict::Pass);
        assert_eq!(at("[::1]:8081", Some("http://[::1]:8081")), Verdict::Pass);
        assert_eq!(at("wsgate.example.com", Some("https://wsgate.example.com")), Verdict::Pass);
        assert_eq!(at("127.0.0.1:8081", Some("http://localhost:5173")), Verdict::Pass);
        for foreign in [
            "https://evil.example",
            "http://127.0.0.1:8082",
            "http://localhost:8081",
            "null",
            "http://localhost:5174",
            "file://",
            "http://127.0.0.1:8081/path",
            "garbage",
        ] {
            assert_eq!(at("127.0.0.1:8081", Some(foreign)), Verdict::OriginNotAllowed, "{foreign}");
        }
        assert_eq!(at("wsgate.example.com", Some("http://wsgate.example.com:8080")), Verdict::OriginNotAllowed);
    }

    #[test]
    fn configured_values() {
        assert_eq!(
            AllowedOrigin::parse("HTTP://LocalHost:80/").map(|o| o.serialization()),
            Ok("http://localhost".into())
        );
        assert_eq!(
            AllowedOrigin::parse("https://bücher.example").map(|o| o.serialization()),
            Ok("https://xn--bcher-kva.example".into())
        );
        assert!(matches!(AllowedOrigin::parse("localhost:5173"), Err(OriginError::Scheme(_))));
        assert!(matches!(AllowedOrigin::parse("http://a/b"), Err(OriginError::NotBare(_, _))));
        assert!(matches!(AllowedOrigin::parse("null"), Err(OriginError::Opaque(_))));
        assert!(matches!(AllowedOrigin::parse("nope"), Err(OriginError::Malformed(_))));
        assert_eq!(AllowedHost::parse("Bücher.Example.").map(|h| h.0), Ok("xn--bcher-kva.example".into()));
        assert!(matches!(AllowedHost::parse("host:80"), Err(HostNameError::NotBare(_))));
        assert!(matches!(AllowedHost::parse("http://host"), Err(HostNameError::NotBare(_))));
        assert!(AllowedHost::parse("a b").is_err());
        assert!(AllowedHost::parse("a!b").is_err());
        // Fuzz finds: a name of dots alone is no name; trailing dots all go.
        assert!(AllowedHost::parse(".").is_err());
        assert_eq!(AllowedHost::parse("a..").map(|h| h.0), Ok("a".into()));
        assert!(AllowedHost::parse("a.0x..").is_err());
    }

    #[test]
    fn upgrade_detection() {
        let mut h = HeaderMap::new();
        assert!(!is_websocket_upgrade(&h));
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c, WebSocket"));
        assert!(is_websocket_upgrade(&h));
    }
}
