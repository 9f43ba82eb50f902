//! The HTTP/1.1 upgrade (RFC 6455 §4), server side. The client side is in
//! [`crate::connect`].

use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Method, header};
use sha1::{Digest, Sha1};

const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(key);
    h.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// A fresh `Sec-WebSocket-Key`.
pub fn generate_key() -> String {
    let mut k = [0u8; 16];
    fastrand::fill(&mut k);
    base64::engine::general_purpose::STANDARD.encode(k)
}

/// Why an HTTP request is not a WebSocket upgrade. Each maps to an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeError {
    #[error("method must be GET")]
    Method,
    #[error("not a WebSocket upgrade: missing `Upgrade: websocket`")]
    NotUpgrade,
    #[error("unsupported Sec-WebSocket-Version (only 13)")]
    Version,
    #[error("missing Sec-WebSocket-Key")]
    MissingKey,
}

impl UpgradeError {
    pub fn status(&self) -> http::StatusCode {
        match self {
            Self::Method => http::StatusCode::METHOD_NOT_ALLOWED,
            Self::NotUpgrade | Self::Version => http::StatusCode::UPGRADE_REQUIRED,
            Self::MissingKey => http::StatusCode::BAD_REQUEST,
        }
    }
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Checks an upgrade request and returns its `Sec-WebSocket-Key`.
pub fn validate_upgrade(method: &Method, headers: &HeaderMap) -> Result<HeaderValue, UpgradeError> {
    if method != Method::GET {
        return Err(UpgradeError::Method);
    }
    if !header_has_token(headers, header::UPGRADE, "websocket")
        || !header_has_token(headers, header::CONNECTION, "upgrade")
    {
        return Err(UpgradeError::NotUpgrade);
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        return Err(UpgradeError::Version);
    }
    headers.get(header::SEC_WEBSOCKET_KEY).cloned().ok_or(UpgradeError::MissingKey)
}

/// Whether a request asks for a WebSocket upgrade at all (used to tell a plain HTTP
/// request apart before full validation).
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    header_has_token(headers, header::UPGRADE, "websocket")
}

/// The subprotocols a client offers, in its order of preference.
pub fn offered_subprotocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Builds the `101 Switching Protocols` answer.
pub fn switching_protocols(
    key: &HeaderValue,
    subprotocol: Option<&str>,
) -> http::Response<http_body_util::Empty<bytes::Bytes>> {
    let mut res = http::Response::new(http_body_util::Empty::new());
    *res.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(p) = subprotocol.and_then(|p| HeaderValue::from_str(p).ok()) {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, p);
    }
    res
}

/// Takes the transport back out of a hyper upgrade, with any bytes hyper read past
/// the handshake. Generic over the IO hyper was given so it works for both the
/// server (`TokioIo<Transport>`) and client side.
pub fn into_transport(
    upgraded: hyper::upgrade::Upgraded,
) -> Result<(crate::Transport, bytes::Bytes), hyper::upgrade::Upgraded> {
    match upgraded.downcast::<hyper_util::rt::TokioIo<crate::Transport>>() {
        Ok(parts) => Ok((parts.io.into_inner(), parts.read_buf)),
        Err(upgraded) => Err(upgraded),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_example_accept_key() {
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn subprotocol_list_parsing() {
        let mut h = HeaderMap::new();
        h.append(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("chat, superchat"));
        h.append(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("v3"));
        assert_eq!(offered_subprotocols(&h), vec!["chat", "superchat", "v3"]);
    }
}
