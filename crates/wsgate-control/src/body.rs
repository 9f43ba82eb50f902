//! The JSON request body extractor: size-limited (the router's `DefaultBodyLimit`),
//! content-type checked, and failing with an [`ApiError`] rather than axum's plain-text
//! rejections.

use axum::extract::{FromRequest, Request};
use bytes::Bytes;
use http::header;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A request body that is JSON, or empty.
#[derive(Debug)]
pub struct JsonBody(Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // A declared non-JSON type is an error; no Content-Type at all is tolerated, so
        // `curl --data-binary` without `-H` still works.
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE)
            && !is_json(ct.as_bytes())
        {
            return Err(ApiError::NotJson);
        }
        Ok(Self(Bytes::from_request(req, state).await?))
    }
}

impl JsonBody {
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        Ok(serde_json::from_slice(&self.0)?)
    }

    /// Like [`JsonBody::parse`], with an empty body meaning "all defaults".
    pub fn parse_or_default<T: DeserializeOwned + Default>(&self) -> Result<T, ApiError> {
        if self.0.trim_ascii().is_empty() { Ok(T::default()) } else { self.parse() }
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
    use super::is_json;

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
