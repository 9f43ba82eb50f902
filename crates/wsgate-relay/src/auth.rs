//! Who may connect to a relay route: a JWT (HS256 with a shared secret, or RS256 /
//! ES256 with a public key file) from `Authorization: Bearer` or `?token=`, checked
//! once at the upgrade. `exp` and `nbf` are enforced when present (with
//! [`LEEWAY_SECS`] for clock skew); a `rooms` claim (a list of room patterns,
//! [`RoomPatterns`]) limits which rooms the connection may join and publish to.
//!
//! Every refusal is typed ([`AuthError`]) and answered 401 (no or bad token) or 403
//! (a room the token does not allow) before the upgrade.

use jsonwebtoken::errors::ErrorKind as JwtKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::rooms::RoomPatterns;

/// Seconds of clock skew allowed on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 5;
/// Longest token accepted, in bytes (a header line's worth).
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Why a key could not be used (a config error).
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is neither an RSA nor an EC public key in PEM")]
    NotAKey { path: String },
    #[error("the secret is empty")]
    EmptySecret,
}

/// Why a connection was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("a token is required: Authorization: Bearer <JWT> or ?token=<JWT>")]
    Missing,
    #[error("the token is not a JWT this relay accepts: {0}")]
    Invalid(String),
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token does not allow room {0:?}")]
    RoomNotAllowed(String),
}

impl AuthError {
    pub fn status(&self) -> http::StatusCode {
        match self {
            Self::RoomNotAllowed(_) => http::StatusCode::FORBIDDEN,
            _ => http::StatusCode::UNAUTHORIZED,
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    rooms: Option<Vec<String>>,
}

/// A route's token check.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key may be a shared secret: never print it.
        f.debug_struct("Verifier").field("algorithms", &self.validation.algorithms).finish_non_exhaustive()
    }
}

impl Verifier {
    fn new(key: DecodingKey, alg: Algorithm) -> Self {
        let mut validation = Validation::new(alg);
        // exp and nbf are checked when present; neither is required, nor aud/iss.
        validation.required_spec_claims.clear();
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.leeway = LEEWAY_SECS;
        Self { key, validation }
    }

    /// HS256 with a shared secret.
    pub fn hs256(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.is_empty() {
            return Err(KeyError::EmptySecret);
        }
        Ok(Self::new(DecodingKey::from_secret(secret), Algorithm::HS256))
    }

    /// RS256 or ES256, by the kind of public key in the PEM file at `path`.
    pub fn public_key_file(path: &std::path::Path) -> Result<Self, KeyError> {
        let shown = path.display().to_string();
        let pem = std::fs::read(path).map_err(|source| KeyError::Read { path: shown.clone(), source })?;
        if let Ok(k) = DecodingKey::from_rsa_pem(&pem) {
            return Ok(Self::new(k, Algorithm::RS256));
        }
        if let Ok(k) = DecodingKey::from_ec_pem(&pem) {
            return Ok(Self::new(k, Algorithm::ES256));
        }
        Err(KeyError::NotAKey { path: shown })
    }

    /// Checks a token; the rooms it allows (`None`: every room).
    pub fn verify(&self, token: Option<&str>) -> Result<Option<RoomPatterns>, AuthError> {
        let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Invalid(format!("longer than {MAX_TOKEN_LEN} bytes")));
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| match e.kind() {
            JwtKind::InvalidSignature => AuthError::BadSignature,
            JwtKind::ExpiredSignature => AuthError::Expired,
            JwtKind::ImmatureSignature => AuthError::NotYetValid,
            other => AuthError::Invalid(format!("{other:?}")),
        })?;
        Ok(data.claims.rooms.map(RoomPatterns::new))
    }
}

/// The token of an upgrade request: `Authorization: Bearer`, else `?token=`.
pub fn token_of(headers: &http::HeaderMap, query: Option<&str>) -> Option<String> {
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|t| t.trim().to_owned());
    bearer.or_else(|| {
        url::form_urlencoded::parse(query?.as_bytes()).find(|(k, _)| k == "token").map(|(_, v)| v.into_owned())
    })
}

/// `query` without its `token` parameter (the session's recorded path must not keep
/// a credential); `None` when nothing is left.
pub fn without_token(query: &str) -> Option<String> {
    let kept: Vec<&str> = query.split('&').filter(|p| !(p.starts_with("token=") || *p == "token")).collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    use super::*;

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn hs(claims: serde_json::Value, secret: &[u8]) -> String {
        encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret)).unwrap_or_default()
    }

    #[test]
    fn valid_expired_not_yet_valid_wrong_signature_missing() {
        let v = Verifier::hs256(b"s3cret").unwrap_or_else(|e| panic!("{e}"));
        let ok = hs(json!({"sub": "a", "exp": now() + 60, "rooms": ["/chat/*"]}), b"s3cret");
        let rooms = v.verify(Some(&ok)).unwrap_or_else(|e| panic!("{e}"));
        assert!(rooms.is_some_and(|r| r.allows("/chat/x") && !r.allows("/admin")));
        assert_eq!(v.verify(Some(&hs(json!({"sub": "a"}), b"s3cret"))), Ok(None));
        assert_eq!(v.verify(Some(&hs(json!({"exp": now() - 3600}), b"s3cret"))), Err(AuthError::Expired));
        assert_eq!(v.verify(Some(&hs(json!({"nbf": now() + 3600}), b"s3cret"))), Err(AuthError::NotYetValid));
        assert_eq!(v.verify(Some(&hs(json!({}), b"other"))), Err(AuthError::BadSignature));
        assert_eq!(v.verify(None), Err(AuthError::Missing));
        assert!(matches!(v.verify(Some("not.a.jwt")), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn tokens_come_from_the_header_or_the_query_and_leave_the_path() {
        let mut h = http::HeaderMap::new();
        assert_eq!(token_of(&h, Some("a=1&token=abc")), Some("abc".into()));
        h.insert(http::header::AUTHORIZATION, "Bearer xyz".parse().unwrap_or_else(|_| unreachable!()));
        assert_eq!(token_of(&h, Some("token=abc")), Some("xyz".into()));
        assert_eq!(without_token("a=1&token=abc&b=2"), Some("a=1&b=2".into()));
        assert_eq!(without_token("token=abc"), None);
    }
}
