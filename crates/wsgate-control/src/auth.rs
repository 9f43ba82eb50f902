//! The admin token check. The control plane can inject into and close live traffic,
//! so when a token is configured every route but the health probes, the `/` index
//! and the dashboard's files (which hold no data) requires it.
//!
//! The token comes as `Authorization: Bearer <token>` or, for clients that cannot set
//! headers on a WebSocket (browsers, websocket-multiplex scripts), as `?token=<token>`.
//! A WebSocket upgrade may instead carry `?ticket=<ticket>` ([`crate::ticket`]), which
//! keeps the long-lived token out of URLs. Neither ever reaches a log line: anything
//! that logs a request URI logs [`redacted`] instead.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::guard::is_websocket_upgrade;
use crate::ticket::Tickets;

/// Query parameters that carry a credential, replaced by [`REDACTED`] in logs.
pub const SECRET_PARAMS: [&str; 2] = ["token", "ticket"];
/// What a credential in a logged URI is replaced with.
pub const REDACTED: &str = "<redacted>";

/// The configured token, shared by every request.
#[derive(Clone)]
pub struct AdminToken(Arc<[u8]>);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl AdminToken {
    pub fn new(token: &str) -> Self {
        Self(Arc::from(token.as_bytes()))
    }

    /// Constant-time in the content (only the length can leak), so the token cannot be
    /// guessed byte by byte from response times.
    pub fn matches(&self, offered: &[u8]) -> bool {
        bool::from(self.0.as_ref().ct_eq(offered))
    }

    /// Whether the request carries the token in either place.
    pub fn authorizes(&self, req: &Request) -> bool {
        let from_header = req
            .headers()
            .get_all(header::AUTHORIZATION)
            .iter()
            .filter_map(|v| bearer(v.as_bytes()))
            .any(|t| self.matches(t));
        from_header
            || req.uri().query().is_some_and(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .filter(|(k, _)| k == "token")
                    .any(|(_, v)| self.matches(v.as_bytes()))
            })
    }
}

/// The credentials of an `Authorization: Bearer <token>` header value.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer ";
    // The scheme is case-insensitive (RFC 9110 §11.1).
    if value.len() < SCHEME.len() || !value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    Some(value[SCHEME.len()..].trim_ascii())
}

/// What [`require_token`] checks against: the token, and the tickets issued for it.
#[derive(Clone, Debug)]
pub struct Auth {
    pub token: AdminToken,
    pub tickets: Arc<Tickets>,
}

impl Auth {
    /// The token in either place, or — on a WebSocket upgrade only — a ticket, which
    /// is spent by this check whether the upgrade then succeeds or not.
    pub fn authorizes(&self, req: &Request) -> bool {
        self.token.authorizes(req)
            || (is_websocket_upgrade(req.headers())
                && req.uri().query().is_some_and(|q| {
                    url::form_urlencoded::parse(q.as_bytes())
                        .filter(|(k, _)| k == "ticket")
                        .any(|(_, v)| self.tickets.redeem(&v))
                }))
    }
}

/// Middleware: passes authorized requests on, answers 401 otherwise.
pub async fn require_token(State(auth): State<Auth>, req: Request, next: Next) -> Response {
    if auth.authorizes(&req) { next.run(req).await } else { ApiError::Unauthorized.into_response() }
}

/// `uri` as it may be logged: path and query, with the value of every credential
/// parameter (`token`, `ticket`) replaced by [`REDACTED`]. The rest of the query is
/// kept byte for byte, so a logged filter still reads as sent.
pub fn redacted(uri: &http::Uri) -> String {
    let Some(query) = uri.query() else { return uri.path().to_owned() };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| {
            let name = pair.split('=').next().unwrap_or_default();
            let decoded: String = url::form_urlencoded::parse(name.as_bytes()).map(|(k, _)| k).collect();
            if SECRET_PARAMS.contains(&decoded.as_str()) { format!("{name}={REDACTED}") } else { pair.to_owned() }
        })
        .collect();
    format!("{}?{}", uri.path(), pairs.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, auth: Option<&str>) -> Request {
        let mut b = http::Request::builder().uri(uri);
        if let Some(a) = auth {
            b = b.header(header::AUTHORIZATION, a);
        }
        b.body(axum::body::Body::empty()).unwrap_or_default()
    }

    #[test]
    fn credentials_are_redacted() {
        let uri: http::Uri = "/api/live?session=x&token=s3cr3t&ticket=abc&%74oken=enc&tok=keep".parse().unwrap();
        assert_eq!(
            redacted(&uri),
            "/api/live?session=x&token=<redacted>&ticket=<redacted>&%74oken=<redacted>&tok=keep"
        );
        assert_eq!(redacted(&"/api/live".parse().unwrap()), "/api/live");
    }

    #[tokio::test]
    async fn a_ticket_opens_an_upgrade_only() {
        let auth = Auth { token: AdminToken::new("t"), tickets: Arc::default() };
        let upgrade = |uri: &str| {
            http::Request::builder()
                .uri(uri)
                .header(header::UPGRADE, "websocket")
                .body(axum::body::Body::empty())
                .unwrap_or_default()
        };
        let a = auth.tickets.issue().expect("ticket");
        assert!(!auth.authorizes(&req(&format!("/api/sessions?ticket={a}"), None)), "not an upgrade");
        assert!(auth.authorizes(&upgrade(&format!("/api/live?ticket={a}"))));
        assert!(!auth.authorizes(&upgrade(&format!("/api/live?ticket={a}"))), "spent");
        assert!(auth.authorizes(&upgrade("/api/live?token=t")));
    }

    #[test]
    fn header_or_query_token() {
        let t = AdminToken::new("s3cr3t+/");
        assert!(t.authorizes(&req("/api/sessions", Some("Bearer s3cr3t+/"))));
        assert!(t.authorizes(&req("/api/sessions", Some("bearer  s3cr3t+/ "))));
        assert!(t.authorizes(&req("/api/live?session=x&token=s3cr3t%2B%2F", None)));
        assert!(!t.authorizes(&req("/api/sessions", None)));
        assert!(!t.authorizes(&req("/api/sessions", Some("Basic s3cr3t+/"))));
        assert!(!t.authorizes(&req("/api/sessions", Some("Bearer s3cr3t"))));
        assert!(!t.authorizes(&req("/api/sessions?token=s3cr3t%2B", None)));
        assert!(!t.authorizes(&req("/api/sessions?token=", None)));
    }
}
