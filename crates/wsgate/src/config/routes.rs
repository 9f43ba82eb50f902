//! `routes:` — many handlers on one listener (`wsgate serve`). Each route has a name,
//! a path (`/feed`, or `/api/*` for a prefix), an optional host, and exactly one
//! handler section: `proxy:` (the keys of the top-level `proxy:` section, plus
//! `strip_prefix`), `mock:` (those of `mock:`) or `relay:` (those of `relay:`). First match wins; no match is 404.
//!
//! Errors here name the file, line and column of the offending key (`locate`),
//! the field, and the fix.

use std::path::PathBuf;
use std::time::Duration;

use figment::Figment;
use serde::{Deserialize, Serialize};
use wsgate_listener::PathPattern;

use super::{Config, ConfigError, MockSection, ProxySection, RelaySection, locate};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    /// Shown on every session of the route, in the API, history and metrics.
    pub name: String,
    /// `/feed` exactly, or `/api/*`: `/api` and everything below it.
    pub path: String,
    /// Only requests for this host (`Host` header, without the port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxySection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mock: Option<MockSection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<RelaySection>,
    /// Browser origins allowed (`https://app.example.com`); others get 403.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origins: Option<Vec<String>>,
    /// This route's own limits; unset ones are the top-level `limits:`.
    #[serde(default)]
    pub limits: RouteLimits,
    /// What history keeps of this route's payloads (`full`, `headers`, `sample:N`);
    /// unset: the store's `payloads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_payloads: Option<wsgate_core::PayloadPolicy>,
    /// This route's faults (proxy and mock routes; `docs/faults.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults: Option<wsgate_faults::FaultSpec>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteLimits {
    /// Concurrent sessions on this route (within the listener's `max_connections`).
    pub max_connections: Option<usize>,
    pub max_message_size: Option<usize>,
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
}

/// What a route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    Proxy,
    Mock,
    Relay,
}

impl RouteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Proxy => "proxy",
            Self::Mock => "mock",
            Self::Relay => "relay",
        }
    }
}

impl RouteSection {
    /// The handler, once validated (exactly one is set).
    pub fn kind(&self) -> RouteKind {
        match (&self.proxy, &self.relay) {
            (Some(_), _) => RouteKind::Proxy,
            (None, Some(_)) => RouteKind::Relay,
            (None, None) => RouteKind::Mock,
        }
    }
}

/// The config file `routes` came from, for positions in errors.
pub fn routes_file(fig: &Figment) -> Option<PathBuf> {
    match fig.find_metadata("routes")?.source.as_ref()? {
        figment::Source::File(p) => Some(p.clone()),
        _ => None,
    }
}

/// An error about `routes.<i>.<rest>`: the field as a user reads it, and where it is.
pub fn route_error(
    file: Option<&PathBuf>,
    i: usize,
    rest: &str,
    message: impl Into<String>,
    fix: impl Into<String>,
) -> ConfigError {
    let dotted = if rest.is_empty() { format!("routes.{i}") } else { format!("routes.{i}.{rest}") };
    let field = if rest.is_empty() { format!("routes[{i}]") } else { format!("routes[{i}].{rest}") };
    let origin = match file {
        Some(f) => match locate::in_file(f, &dotted) {
            Some(at) => format!("config file {}:{at}", f.display()),
            None => format!("config file {}", f.display()),
        },
        None => "the configuration".into(),
    };
    ConfigError::Invalid { field, origin, message: message.into(), fix: fix.into() }
}

impl Config {
    /// Checks the route table: names, paths, one handler each, nothing unreachable,
    /// and each handler's own settings.
    pub fn validate_routes(&self, fig: &Figment) -> Result<(), ConfigError> {
        let file = routes_file(fig);
        let err = |i: usize, rest: &str, msg: String, fix: &str| route_error(file.as_ref(), i, rest, msg, fix);
        let mut seen: Vec<(PathPattern, Option<String>)> = Vec::new();
        for (i, r) in self.routes.iter().enumerate() {
            let name = &r.name;
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(err(
                    i,
                    "name",
                    format!("{name:?} is not a route name"),
                    "use letters, digits, `-` and `_` (the name labels metrics and history)",
                ));
            }
            if let Some(j) = self.routes[..i].iter().position(|o| &o.name == name) {
                return Err(err(
                    i,
                    "name",
                    format!("route name {name:?} is already used by routes[{j}]"),
                    "give every route its own name",
                ));
            }
            let path = PathPattern::parse(&r.path)
                .map_err(|m| err(i, "path", m, "a path is `/exact` or a prefix `/prefix/*` (`/*` is every path)"))?;
            let host = r.host.as_ref().map(|h| h.to_ascii_lowercase());
            if let Some(h) = &host
                && (h.is_empty() || h.contains(['/', ':', ' ']))
            {
                return Err(err(
                    i,
                    "host",
                    format!("{h:?} is not a host name"),
                    "a bare host name such as api.example.com (no scheme, no port)",
                ));
            }
            for (j, (earlier, earlier_host)) in seen.iter().enumerate() {
                let same_hosts = earlier_host.is_none() || *earlier_host == host;
                if same_hosts && earlier.covers(&path) {
                    let other = &self.routes[j].name;
                    return Err(err(
                        i,
                        "path",
                        format!(
                            "route {name:?} ({path}) can never match: route {other:?} (routes[{j}], {earlier}) comes first and takes every request it would"
                        ),
                        &format!("move {name:?} above {other:?}, or change one of the paths (first match wins)"),
                    ));
                }
            }
            seen.push((path.clone(), host));
            let handlers: Vec<&str> =
                [("proxy", r.proxy.is_some()), ("mock", r.mock.is_some()), ("relay", r.relay.is_some())]
                    .into_iter()
                    .filter_map(|(n, set)| set.then_some(n))
                    .collect();
            if handlers.len() > 1 {
                return Err(err(
                    i,
                    handlers[1],
                    format!("route {name:?} has both `{}` and `{}`", handlers[0], handlers[1]),
                    "keep one handler per route; split it into two routes",
                ));
            }
            match (&r.proxy, &r.mock, &r.relay) {
                (None, None, None) => {
                    return Err(err(
                        i,
                        "",
                        format!("route {name:?} has no handler"),
                        "add `proxy: {upstream: ws://...}`, `mock: {echo: true}` or `relay: {}`",
                    ));
                }
                (_, _, Some(relay)) => {
                    relay.check().map_err(|(field, msg, fix)| err(i, &format!("relay.{field}"), msg, fix))?
                }
                (Some(p), _, None) => self.validate_route_proxy(p, &path, |rest, msg, fix| err(i, rest, msg, fix))?,
                (None, Some(m), None) => {
                    m.check().map_err(|(field, msg, fix)| {
                        err(i, &format!("mock.{field}"), format!("route {name:?}: {msg}"), fix)
                    })?;
                }
            }
            if let Some(origins) = &r.origins {
                for (k, o) in origins.iter().enumerate() {
                    if o != "*" && !is_origin(o) {
                        return Err(err(
                            i,
                            &format!("origins.{k}"),
                            format!("{o:?} is not an origin"),
                            "an origin is scheme://host[:port], e.g. https://app.example.com (no path), or \"*\"",
                        ));
                    }
                }
            }
            let l = &r.limits;
            for (field, v) in
                [("limits.max_connections", l.max_connections), ("limits.max_message_size", l.max_message_size)]
            {
                if v == Some(0) {
                    return Err(err(
                        i,
                        field,
                        "must be greater than 0".into(),
                        "leave it out to use the top-level limit",
                    ));
                }
            }
            if let Some(d) = l.idle_timeout
                && d > super::load::MAX_DURATION
            {
                return Err(err(
                    i,
                    "limits.idle_timeout",
                    format!("{d:?} is longer than the 100 years allowed"),
                    "use 0s for never",
                ));
            }
        }
        Ok(())
    }

    fn validate_route_proxy(
        &self,
        p: &ProxySection,
        path: &PathPattern,
        err: impl Fn(&str, String, &str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if p.upstream.is_none() && p.resolver_url.is_none() {
            return Err(err(
                "proxy.upstream",
                "the proxy needs an upstream".into(),
                "set `upstream: ws://host:port` (or `resolver_url`)",
            ));
        }
        p.check().map_err(|(field, message)| {
            let fix = match field {
                "upstream" => "use ws://host:port or wss://host",
                "resolver_url" => "use http://host:port/path",
                "forward_headers" => "a header name such as X-Request-Id",
                _ => "leave it out for the default",
            };
            err(&format!("proxy.{field}"), message, fix)
        })?;
        if let Some(strip) = &p.strip_prefix {
            let base = match path {
                PathPattern::Prefix(b) | PathPattern::Exact(b) => b,
            };
            let s = strip.trim_end_matches('/');
            let ok = strip.starts_with('/') && (s.is_empty() || base == s || base.starts_with(&format!("{s}/")));
            if !ok {
                return Err(err(
                    "proxy.strip_prefix",
                    format!("{strip:?} is not a prefix of the route's path {path}"),
                    "strip a leading part of the route's own path, e.g. path `/api/*` with strip_prefix `/api`",
                ));
            }
        }
        Ok(())
    }
}

/// `scheme://host[:port]`, nothing more.
pub(super) fn is_origin(s: &str) -> bool {
    match url::Url::parse(s) {
        Ok(u) => u.host_str().is_some() && matches!(u.path(), "" | "/") && u.query().is_none() && !s.ends_with("/"),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Sources, load_yaml};
    use super::*;

    fn check(yaml: &str) -> Result<(), ConfigError> {
        let (cfg, fig) = load_yaml(yaml, &Sources::default())?;
        cfg.validate_routes(&fig)
    }

    fn message(yaml: &str) -> String {
        match check(yaml) {
            Err(e) => e.to_string(),
            Ok(()) => panic!("{yaml} validated"),
        }
    }

    #[test]
    fn the_issue_example_validates() {
        let yaml = r#"
listen: "127.0.0.1:8080"
routes:
  - name: api
    path: /api/*
    proxy: { upstream: "ws://127.0.0.1:9000", strip_prefix: /api }
  - name: feed
    path: /feed
    proxy: { upstream: "wss://feed.example.com" }
    origins: ["https://app.example.com"]
    limits: { max_connections: 500 }
  - name: echo
    path: /echo
    mock: { echo: true }
"#;
        check(yaml).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn each_mistake_is_named() {
        let cases = [
            ("routes: [{name: a, path: /a}]", "has no handler"),
            ("routes: [{name: a, path: /a, proxy: {upstream: 'ws://x'}, mock: {echo: true}}]", "both"),
            ("routes: [{name: a, path: /a, proxy: {upstream: 'http://x'}}]", "not a ws://"),
            ("routes: [{name: a, path: a, mock: {echo: true}}]", "does not start with"),
            (
                "routes: [{name: a, path: '/*', mock: {echo: true}}, {name: b, path: /b, mock: {echo: true}}]",
                "can never match",
            ),
            (
                "routes: [{name: a, path: /a, mock: {echo: true}}, {name: a, path: /b, mock: {echo: true}}]",
                "already used",
            ),
            ("routes: [{name: a, path: /a/*, proxy: {upstream: 'ws://x', strip_prefix: /b}}]", "not a prefix"),
            ("routes: [{name: a, path: /a, mock: {echo: true}, origins: ['https://x/y']}]", "not an origin"),
            ("routes: [{name: a, path: /a, mock: {echo: true}, limits: {max_connections: 0}}]", "greater than 0"),
        ];
        for (yaml, want) in cases {
            let m = message(yaml);
            assert!(m.contains(want), "{yaml}: {m}");
            assert!(m.contains("fix:"), "{m}");
        }
        // Different hosts never shadow each other.
        check("routes: [{name: a, path: '/*', host: a.example, mock: {echo: true}}, {name: b, path: /b, mock: {echo: true}}]")
            .unwrap_or_else(|e| panic!("{e}"));
    }
}
