//! Request bodies: the [`buffer`] middleware every request goes through (size limit,
//! read deadline, and a polite answer to an oversized body), and the [`JsonBody`]
//! extractor (content-type checked, failing with an [`ApiError`] rather than axum's
//! plain-text rejections).
//!
//! Unknown fields in a JSON body are rejected (400), not ignored: these bodies steer
//! live traffic, and a misspelt `"reason"` silently dropped is worse than an error.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequest, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http::header;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use tokio::time::timeout;

use crate::error::ApiError;
use crate::{ControlPlane, MAX_BODY_BYTES, MAX_MESSAGE_BODY_BYTES};

/// How long a whole request body may take to arrive (408 after that), so a client
/// that stops sending half way cannot hold a request open forever.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// After a 413, at most this much more of the refused body is read and thrown away.
pub const DRAIN_MAX_BYTES: usize = 64 << 20;
/// After a 413, reading the refused body stops after this long.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The body limit of a request path: [`MAX_MESSAGE_BODY_BYTES`] for the routes whose
/// body is a message to send (`POST /api/connections/{id}/send`,
/// `POST /api/sessions/{id}/inject`), so a 1 MiB binary message fits once
/// base64-encoded; [`MAX_BODY_BYTES`] for every other.
pub fn limit_for(path: &str) -> usize {
    let carries_message = path.starts_with("/api/")
        && (path.ends_with("/send") || path.ends_with("/inject") || path.ends_with("/publish"));
    if carries_message { MAX_MESSAGE_BODY_BYTES } else { MAX_BODY_BYTES }
}

/// Middleware: reads the request body into memory (at most [`limit_for`] the path, within
/// [`BODY_TIMEOUT`]) before routing goes on, so no handler ever sees a stream.
///
/// An oversized body is answered with 413 at once — without reading it when
/// `Content-Length` already says so — and `Connection: close`. The rest of the body
/// is then read and discarded in the background (up to [`DRAIN_MAX_BYTES`] /
/// [`DRAIN_TIMEOUT`]) before the connection closes: closing a socket with unread
/// data makes the kernel send a reset, and a client still writing its body would
/// lose the 413 to it.
pub async fn buffer(State(cp): State<ControlPlane>, req: Request, next: Next) -> Response {
    let (parts, mut body) = req.into_parts();
    let limit = limit_for(parts.uri.path());
    let declared =
        parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large(&cp, &parts.headers, body, limit);
    }
    let mut buf = BytesMut::new();
    let read = timeout(BODY_TIMEOUT, async {
        while let Some(frame) = body.frame().await {
            // Trailers (the only non-data frames) carry nothing the API reads.
            let Ok(data) = frame?.into_data() else { continue };
            if buf.len() + data.len() > limit {
                return Ok(false);
            }
            buf.extend_from_slice(&data);
        }
        Ok::<_, axum::Error>(true)
    })
    .await;
    match read {
        Ok(Ok(true)) => next.run(Request::from_parts(parts, Body::from(buf.freeze()))).await,
        Ok(Ok(false)) => too_large(&cp, &parts.headers, body, limit),
        Ok(Err(e)) => ApiError::BodyRead(e.to_string()).into_response(),
        Err(_) => ApiError::BodyTimeout(BODY_TIMEOUT).into_response(),
    }
}

/// 413, and the rest of `body` drained in the background.
fn too_large(cp: &ControlPlane, headers: &http::HeaderMap, mut body: Body, limit: usize) -> Response {
    // A client that asked `Expect: 100-continue` has not sent the body and will not:
    // reading it would make hyper invite it to.
    let expects_continue =
        headers.get(header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if !expects_continue {
        let shutdown = cp.inner.shutdown.clone();
        cp.inner.tracker.spawn(async move {
            let mut left = DRAIN_MAX_BYTES;
            let drain = async {
                while let Some(Ok(frame)) = body.frame().await {
                    let n = frame.data_ref().map_or(0, Bytes::len);
                    let Some(rest) = left.checked_sub(n) else { return };
                    left = rest;
                }
            };
            tokio::select! {
                _ = timeout(DRAIN_TIMEOUT, drain) => {}
                _ = shutdown.cancelled() => {}
            }
        });
    }
    ApiError::BodyTooLarge { limit }.into_response()
}

/// A request body that is JSON, or empty.
#[derive(Debug)]
pub struct JsonBody(Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // A declared non-JSON type is an error (curl's `-d` declares a form: use
        // `--json`); no Content-Type at all is read as JSON, for hand-written requests.
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE)
            && !is_json(ct.as_bytes())
        {
            return Err(ApiError::NotJson);
        }
        Ok(Self(Bytes::from_request(req, state).await?))
    }
}

impl JsonBody {
    /// The body as `T`, which must come as a JSON object: serde would also build a
    /// struct from an array of its fields (`[1000, "bye"]`), which no client means.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        match self.0.trim_ascii_start().first() {
            None => Err(ApiError::EmptyBody),
            Some(b'{') => Ok(serde_json::from_slice(&self.0)?),
            Some(_) => {
                // Not an object; say what it is, or why it is not JSON at all.
                let value: serde_json::Value = serde_json::from_slice(&self.0)?;
                Err(ApiError::NotAnObject(json_type(&value)))
            }
        }
    }

    /// Like [`JsonBody::parse`], with no body or `null` meaning "all defaults". A body
    /// of whitespace alone is not JSON, and is refused like any other.
    pub fn parse_or_default<T: DeserializeOwned + Default>(&self) -> Result<T, ApiError> {
        if self.0.is_empty() || self.0.trim_ascii() == b"null" {
            return Ok(T::default());
        }
        self.parse()
    }
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// `application/json`, or any `+json` type, with optional parameters.
fn is_json(content_type: &[u8]) -> bool {
    let Ok(ct) = std::str::from_utf8(content_type) else { return false };
    let essence = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        code: Option<u16>,
    }

    fn parse(body: impl AsRef<[u8]>) -> Result<Body, String> {
        JsonBody(Bytes::copy_from_slice(body.as_ref())).parse().map_err(|e| e.to_string())
    }

    fn parse_or_default(body: impl AsRef<[u8]>) -> Result<Body, String> {
        JsonBody(Bytes::copy_from_slice(body.as_ref())).parse_or_default().map_err(|e| e.to_string())
    }

    #[test]
    fn bodies_are_json_objects() {
        assert_eq!(parse(r#" {"code":1000}"#), Ok(Body { code: Some(1000) }));
        assert_eq!(parse(r#"[1000]"#), Err("request body must be a JSON object, not an array".to_owned()));
        assert_eq!(parse("null"), Err("request body must be a JSON object, not null".to_owned()));
        assert_eq!(parse("\"7\""), Err("request body must be a JSON object, not a string".to_owned()));
        assert!(parse("[1000").unwrap_err().starts_with("invalid JSON body"));
        assert!(parse(r#"{"code":1000,"extra":1}"#).unwrap_err().contains("unknown field"));
        assert!(parse(b"{\"code\":\xff}").is_err());
        assert_eq!(parse("  "), Err("request body is empty: expected a JSON object".to_owned()));
        assert_eq!(parse_or_default(""), Ok(Body::default()));
        assert_eq!(parse_or_default(" null "), Ok(Body::default()));
        assert!(parse_or_default("[null, null]").is_err());
        // Whitespace alone is not a JSON document (Schemathesis sent "\n" to close).
        assert_eq!(parse_or_default("\n"), Err("request body is empty: expected a JSON object".to_owned()));
    }

    #[test]
    fn json_content_types() {
        assert!(is_json(b"application/json"));
        assert!(is_json(b"Application/JSON; charset=utf-8"));
        assert!(is_json(b"application/merge-patch+json"));
        assert!(!is_json(b"text/plain"));
        assert!(!is_json(b"application/x-www-form-urlencoded"));
        assert!(!is_json(b"\xff"));
    }
}
