//! The admin token check. The control plane can inject into and close live traffic,
//! so when a token is configured every route but the health probes and the `/` index
//! (which lists paths, no data) requires it.
//!
//! The token comes as `Authorization: Bearer <token>` or, for clients that cannot set
//! headers on a WebSocket (browsers, websocket-multiplex scripts), as `?token=<token>`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header;
use subtle::ConstantTimeEq;

use crate::error::ApiError;

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

/// Middleware: passes authorized requests on, answers 401 otherwise.
pub async fn require_token(State(token): State<AdminToken>, req: Request, next: Next) -> Response {
    if token.authorizes(&req) { next.run(req).await } else { ApiError::Unauthorized.into_response() }
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
