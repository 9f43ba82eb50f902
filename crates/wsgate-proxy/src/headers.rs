//! Which client request headers reach the upstream, and which are recorded.
//!
//! Forwarded by default (the allowlist): `Authorization`, `Cookie`, `Origin`,
//! `User-Agent`, `Accept-Language`, `X-Request-Id`, `X-Forwarded-Host`, `Traceparent`,
//! `Tracestate`, plus whatever `--forward-header` adds. `X-Forwarded-For` gets the
//! client address appended and `X-Forwarded-Proto` is set. Never forwarded: hop-by-hop
//! headers (`Connection`, `Keep-Alive`, `Proxy-*`, `TE`, `Trailer`,
//! `Transfer-Encoding`, `Upgrade`), `Host` (rewritten for the upstream) and the
//! handshake's own `Sec-WebSocket-Key/Version/Accept/Extensions` (each side negotiates
//! its own). `Sec-WebSocket-Protocol` is forwarded as the client offered it.

use std::net::SocketAddr;

use http::{HeaderMap, HeaderName, HeaderValue, header};

pub const DEFAULT_FORWARD: &[&str] = &[
    "authorization",
    "cookie",
    "origin",
    "user-agent",
    "accept-language",
    "x-request-id",
    "x-forwarded-host",
    "traceparent",
    "tracestate",
];

/// Headers recorded on a session (shown in the API) — values of the sensitive ones
/// replaced by `[redacted]`.
pub const RECORDED: &[&str] =
    &["user-agent", "origin", "authorization", "cookie", "sec-websocket-protocol", "x-forwarded-for", "x-request-id"];
const REDACTED: &[&str] = &["authorization", "cookie", "set-cookie", "proxy-authorization"];

/// Builds the header set sent to the upstream.
pub fn forwarded(client: &HeaderMap, extra: &[HeaderName], peer: Option<SocketAddr>, tls: bool) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in DEFAULT_FORWARD.iter().map(|n| HeaderName::from_static(n)).chain(extra.iter().cloned()) {
        for v in client.get_all(&name) {
            out.append(name.clone(), v.clone());
        }
    }
    if let Some(peer) = peer {
        let ip = peer.ip().to_string();
        let xff = match client.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prev) => format!("{prev}, {ip}"),
            None => ip,
        };
        if let Ok(v) = HeaderValue::from_str(&xff) {
            out.insert(HeaderName::from_static("x-forwarded-for"), v);
        }
    }
    out.insert(HeaderName::from_static("x-forwarded-proto"), HeaderValue::from_static(if tls { "wss" } else { "ws" }));
    if !out.contains_key("x-forwarded-host")
        && let Some(host) = client.get(header::HOST)
    {
        out.insert(HeaderName::from_static("x-forwarded-host"), host.clone());
    }
    out
}

/// The headers kept on the session record, credentials redacted.
pub fn recorded(client: &HeaderMap, extra: &[HeaderName]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for name in RECORDED.iter().map(|n| HeaderName::from_static(n)).chain(extra.iter().cloned()) {
        for v in client.get_all(&name) {
            let value = if REDACTED.contains(&name.as_str()) {
                "[redacted]".to_owned()
            } else {
                String::from_utf8_lossy(v.as_bytes()).into_owned()
            };
            out.push((name.as_str().to_owned(), value));
        }
    }
    out
}

/// Headers of a refused upstream upgrade that are relayed to the client with the same
/// status.
pub fn relayed_rejection(upstream: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in [header::CONTENT_TYPE, header::WWW_AUTHENTICATE, header::RETRY_AFTER, header::LOCATION] {
        for v in upstream.get_all(&name) {
            out.append(name.clone(), v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_hop_by_hop_and_redaction() {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer s3cret"));
        h.insert("connection", HeaderValue::from_static("Upgrade"));
        h.insert("keep-alive", HeaderValue::from_static("5"));
        h.insert("x-custom", HeaderValue::from_static("1"));
        h.insert("x-other", HeaderValue::from_static("2"));
        h.insert("host", HeaderValue::from_static("gw:8080"));
        let extra = [HeaderName::from_static("x-custom")];
        let f = forwarded(&h, &extra, Some("10.0.0.1:5000".parse().unwrap()), false);
        assert_eq!(f.get("authorization").unwrap(), "Bearer s3cret");
        assert_eq!(f.get("x-custom").unwrap(), "1");
        assert!(f.get("x-other").is_none() && f.get("connection").is_none() && f.get("keep-alive").is_none());
        assert_eq!(f.get("x-forwarded-for").unwrap(), "10.0.0.1");
        assert_eq!(f.get("x-forwarded-host").unwrap(), "gw:8080");
        let r = recorded(&h, &extra);
        assert!(r.contains(&("authorization".into(), "[redacted]".into())));
        assert!(r.contains(&("x-custom".into(), "1".into())));
    }
}
