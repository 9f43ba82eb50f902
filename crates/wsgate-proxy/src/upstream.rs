//! Where a connection goes: the static upstream with the client's path and query
//! appended, or the URL an HTTP resolver returns for that path.

use std::time::Duration;

use url::Url;

use crate::config::{ProxyConfig, ResolverConfig};

/// Why no upstream could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("resolver {url} failed after {attempts} attempt(s): {last}")]
    Resolver { url: String, attempts: u32, last: String },
    #[error("cannot build an upstream URL from {base} and {path}: {reason}")]
    BadUrl { base: String, path: String, reason: String },
}

/// How the upstream was chosen, for the session's record.
#[derive(Debug)]
pub struct Resolved {
    pub url: Url,
    /// Set when the resolver failed and the static upstream was used instead.
    pub fallback_reason: Option<String>,
}

/// `base` + the client's `path_and_query`. The upstream's own path is a prefix:
/// `ws://up/api` + `/chat?x=1` → `ws://up/api/chat?x=1`.
pub fn join(base: &Url, path_and_query: &str) -> Result<Url, ResolveError> {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let mut url = base.clone();
    let prefix = base.path().trim_end_matches('/');
    let joined = if path.is_empty() || path == "/" {
        if prefix.is_empty() { "/".to_owned() } else { base.path().to_owned() }
    } else {
        format!("{prefix}{path}")
    };
    url.set_path(&joined);
    let q = match (base.query(), query) {
        (Some(a), Some(b)) if !a.is_empty() => Some(format!("{a}&{b}")),
        (Some(a), _) if !a.is_empty() => Some(a.to_owned()),
        (_, Some(b)) => Some(b.to_owned()),
        _ => None,
    };
    url.set_query(q.as_deref());
    if !matches!(url.scheme(), "ws" | "wss") {
        return Err(ResolveError::BadUrl {
            base: base.to_string(),
            path: path_and_query.to_owned(),
            reason: "scheme must be ws or wss".into(),
        });
    }
    Ok(url)
}

/// The client's path and query without the route's `strip_prefix`: `/api` turns
/// `/api/orders?x=1` into `/orders?x=1` and `/api?x=1` into `/?x=1`. Only whole
/// segments are stripped (`/apix` keeps its path).
pub fn strip<'a>(path_and_query: &'a str, prefix: Option<&str>) -> std::borrow::Cow<'a, str> {
    let Some(prefix) = prefix.map(|p| p.trim_end_matches('/')).filter(|p| !p.is_empty()) else {
        return path_and_query.into();
    };
    match path_and_query.strip_prefix(prefix) {
        Some("") => "/".into(),
        Some(rest) if rest.starts_with('?') => format!("/{rest}").into(),
        Some(rest) if rest.starts_with('/') => rest.into(),
        _ => path_and_query.into(),
    }
}

/// Chooses the upstream for one connection.
pub async fn resolve(
    cfg: &ProxyConfig,
    http: &reqwest::Client,
    path_and_query: &str,
) -> Result<Resolved, ResolveError> {
    let stripped = strip(path_and_query, cfg.strip_prefix.as_deref());
    let path_and_query = stripped.as_ref();
    if let Some(resolver) = &cfg.resolver {
        match ask_resolver(resolver, http, path_and_query).await {
            Ok(url) => return Ok(Resolved { url, fallback_reason: None }),
            Err(e) => match &cfg.upstream {
                Some(base) => {
                    return Ok(Resolved { url: join(base, path_and_query)?, fallback_reason: Some(e.to_string()) });
                }
                None => return Err(e),
            },
        }
    }
    let base = cfg.upstream.as_ref().ok_or_else(|| ResolveError::BadUrl {
        base: String::new(),
        path: path_and_query.to_owned(),
        reason: "no upstream configured".into(),
    })?;
    Ok(Resolved { url: join(base, path_and_query)?, fallback_reason: None })
}

/// `GET <resolver><path>`; the body is the upstream URL, as plain text or JSON
/// `{"url": "..."}` (also `upstream`/`upstreamUrl`).
async fn ask_resolver(r: &ResolverConfig, http: &reqwest::Client, path_and_query: &str) -> Result<Url, ResolveError> {
    let target = format!("{}{}", r.url.as_str().trim_end_matches('/'), path_and_query);
    let mut last = String::new();
    let attempts = r.retries + 1;
    for attempt in 0..attempts {
        if attempt > 0 {
            // Short linear backoff: the client is waiting on this.
            tokio::time::sleep(Duration::from_millis(50 * attempt as u64)).await;
        }
        match once(http, &target, r.timeout).await {
            Ok(url) => return Ok(url),
            Err(e) => last = e,
        }
    }
    Err(ResolveError::Resolver { url: target, attempts, last })
}

async fn once(http: &reqwest::Client, target: &str, timeout: Duration) -> Result<Url, String> {
    let res = http.get(target).timeout(timeout).send().await.map_err(|e| e.to_string())?;
    let status = res.status();
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    let body = res.text().await.map_err(|e| e.to_string())?;
    let body = body.trim();
    let text = if body.starts_with('{') {
        url_field(body).ok_or("JSON has no `url`, `upstream` or `upstreamUrl` string field")?
    } else {
        body.trim_matches('"').to_owned()
    };
    let url = Url::parse(&text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "ws" | "wss") {
        return Err(format!("{text:?} is not a ws:// or wss:// URL"));
    }
    Ok(url)
}

/// The upstream URL in a resolver's JSON answer.
fn url_field(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    ["url", "upstream", "upstreamUrl"].iter().find_map(|k| v.get(k)?.as_str().map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_keeps_prefix_path_and_query() {
        let base = Url::parse("ws://up:9000").unwrap();
        assert_eq!(join(&base, "/chat?room=1").unwrap().as_str(), "ws://up:9000/chat?room=1");
        assert_eq!(join(&base, "/").unwrap().as_str(), "ws://up:9000/");
        let base = Url::parse("wss://up/api/").unwrap();
        assert_eq!(join(&base, "/v1/x").unwrap().as_str(), "wss://up/api/v1/x");
        let base = Url::parse("ws://up/api?k=1").unwrap();
        assert_eq!(join(&base, "/x?y=2").unwrap().as_str(), "ws://up/api/x?k=1&y=2");
    }

    #[test]
    fn strip_prefix_removes_whole_segments_only() {
        assert_eq!(strip("/api/orders?x=1", Some("/api")), "/orders?x=1");
        assert_eq!(strip("/api?x=1", Some("/api/")), "/?x=1");
        assert_eq!(strip("/api", Some("/api")), "/");
        assert_eq!(strip("/apix/1", Some("/api")), "/apix/1");
        assert_eq!(strip("/feed", None), "/feed");
    }

    #[test]
    fn resolver_json_fields() {
        assert_eq!(url_field(r#"{"url": "ws://a/b"}"#), Some("ws://a/b".into()));
        assert_eq!(url_field(r#"{"upstreamUrl":"ws:\/\/a"}"#), Some("ws://a".into()));
        assert_eq!(url_field(r#"{"x": 1}"#), None);
    }
}
