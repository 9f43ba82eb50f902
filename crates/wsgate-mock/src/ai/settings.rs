//! A generated-stream route's settings, checked once when the mock starts: a route
//! that cannot work stops the start instead of failing every client later.

use std::path::PathBuf;
use std::time::Duration;

use http::HeaderValue;

use crate::ai::record::RecordTarget;

/// The variable the API key is read from when the config names none. Unlike a
/// variable the config names, it may be unset: local servers (llama.cpp, Ollama,
/// vLLM) take no key, and then none is sent.
pub const DEFAULT_KEY_ENV: &str = "OPENAI_API_KEY";

/// How long each wait on the endpoint may last when the config says nothing: for the
/// connection and the answer's first bytes, then between two chunks of the answer.
/// Long enough for a large model's first token under load, short enough that a dead
/// endpoint is a close rather than an apparent hang.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Most events a session asks for.
pub const MAX_COUNT: u32 = 100_000;

/// Most events per second (a model streams a few dozen at best; beyond this the rate
/// is a typo, and ticks would be busy work).
pub const MAX_RATE: f64 = 1000.0;

/// What a route is told (from the config), before it is checked.
#[derive(Clone)]
pub struct AiOptions {
    /// The API's base URL (`https://api.openai.com/v1`), or the chat-completions URL
    /// itself (ending in `/chat/completions`).
    pub url: String,
    pub model: String,
    /// Sent as `Authorization: Bearer`; read from the environment by the caller.
    pub api_key: Option<String>,
    /// What the events tell, in the user's words.
    pub narrative: String,
    /// Events per session.
    pub count: u32,
    /// Events per second.
    pub rate: f64,
    /// Each wait on the endpoint (see [`DEFAULT_TIMEOUT`]).
    pub timeout: Duration,
    /// Write each session's generated stream here as a transcript (`record.rs`).
    pub record: Option<PathBuf>,
}

impl std::fmt::Debug for AiOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself: this is printed in logs and the route table.
        f.debug_struct("AiOptions")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("count", &self.count)
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

/// Settings that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum AiSettingsError {
    #[error("{url:?} is not an http:// or https:// URL")]
    Url { url: String },
    #[error("{0} is not an event count: 1 to {MAX_COUNT}")]
    Count(u32),
    #[error("{0} is not a rate: more than 0 and at most {MAX_RATE} events per second")]
    Rate(f64),
    #[error("a timeout is more than 0s and at most a day, not {0:?}")]
    Timeout(Duration),
    #[error("the model name is empty")]
    Model,
    #[error("the narrative is empty")]
    Narrative,
    #[error("the API key cannot be an HTTP header value (control characters or non-ASCII)")]
    Key,
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// A generated-stream route's checked settings, shared by its sessions.
pub struct AiSettings {
    /// Where the request goes: the URL as given when it ends in `/chat/completions`,
    /// else the URL with `/chat/completions` appended to its path.
    pub(crate) endpoint: reqwest::Url,
    pub(crate) model: String,
    /// `Bearer KEY`, marked sensitive (hidden from reqwest's and hyper's debug output).
    pub(crate) authorization: Option<HeaderValue>,
    pub(crate) narrative: String,
    pub(crate) count: u32,
    /// The time between two events (1 / rate).
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) record: Option<RecordTarget>,
    /// One client for the route: connections to the endpoint are reused across
    /// sessions.
    pub(crate) http: reqwest::Client,
}

impl std::fmt::Debug for AiSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AiSettings")
            .field("endpoint", &self.endpoint.as_str())
            .field("model", &self.model)
            .field("api_key", &self.authorization.as_ref().map(|_| "<redacted>"))
            .field("count", &self.count)
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

impl AiSettings {
    pub fn new(o: AiOptions) -> Result<Self, AiSettingsError> {
        let endpoint = endpoint_of(&o.url)?;
        if o.count == 0 || o.count > MAX_COUNT {
            return Err(AiSettingsError::Count(o.count));
        }
        if !(o.rate.is_finite() && o.rate > 0.0 && o.rate <= MAX_RATE) {
            return Err(AiSettingsError::Rate(o.rate));
        }
        if o.timeout.is_zero() || o.timeout > Duration::from_secs(24 * 3600) {
            return Err(AiSettingsError::Timeout(o.timeout));
        }
        if o.model.trim().is_empty() {
            return Err(AiSettingsError::Model);
        }
        if o.narrative.trim().is_empty() {
            return Err(AiSettingsError::Narrative);
        }
        let authorization = match &o.api_key {
            None => None,
            Some(key) => {
                let mut v = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| AiSettingsError::Key)?;
                v.set_sensitive(true);
                Some(v)
            }
        };
        let http = reqwest::Client::builder().connect_timeout(o.timeout).build().map_err(AiSettingsError::Client)?;
        Ok(Self {
            endpoint,
            model: o.model,
            authorization,
            narrative: o.narrative,
            count: o.count,
            interval: Duration::from_secs_f64(1.0 / o.rate),
            timeout: o.timeout,
            record: o.record.map(RecordTarget::new),
            http,
        })
    }

    /// The URL requests go to.
    pub fn endpoint(&self) -> &str {
        self.endpoint.as_str()
    }

    /// One line for the route table and logs (no key).
    pub fn describe(&self) -> String {
        let rate = 1.0 / self.interval.as_secs_f64();
        format!("ai {} at {}: {} events at {rate}/s", self.model, self.endpoint, self.count)
    }
}

/// The chat-completions URL for `url`: as given when its path already ends in
/// `/chat/completions`, else with that appended to its path (the query, such as
/// Azure's `api-version`, kept).
pub(crate) fn endpoint_of(url: &str) -> Result<reqwest::Url, AiSettingsError> {
    let bad = || AiSettingsError::Url { url: url.to_owned() };
    let mut u = reqwest::Url::parse(url).map_err(|_| bad())?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(bad());
    }
    let path = u.path().trim_end_matches('/').to_owned();
    if !path.ends_with("/chat/completions") {
        u.set_path(&format!("{path}/chat/completions"));
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_the_base_url_with_chat_completions_unless_given() {
        let e = |u: &str| endpoint_of(u).map(|u| u.to_string()).map_err(|e| e.to_string());
        assert_eq!(e("https://api.openai.com/v1").as_deref(), Ok("https://api.openai.com/v1/chat/completions"));
        assert_eq!(e("http://127.0.0.1:8000/v1/").as_deref(), Ok("http://127.0.0.1:8000/v1/chat/completions"));
        assert_eq!(e("http://h/v1/chat/completions").as_deref(), Ok("http://h/v1/chat/completions"));
        assert_eq!(e("http://h").as_deref(), Ok("http://h/chat/completions"));
        assert_eq!(
            e("https://x.openai.azure.com/openai/deployments/d?api-version=2024-06-01").as_deref(),
            Ok("https://x.openai.azure.com/openai/deployments/d/chat/completions?api-version=2024-06-01")
        );
        for bad in ["ws://h/v1", "api.openai.com/v1", "", "file:///etc/passwd"] {
            assert!(e(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_key_is_never_printed() {
        let o = AiOptions {
            url: "http://127.0.0.1:1/v1".into(),
            model: "m".into(),
            api_key: Some("sk-secret".into()),
            narrative: "n".into(),
            count: 1,
            rate: 1.0,
            timeout: DEFAULT_TIMEOUT,
            record: None,
        };
        assert!(!format!("{o:?}").contains("sk-secret"));
        let s = AiSettings::new(o).unwrap();
        assert!(!format!("{s:?}").contains("sk-secret"));
        assert!(!s.describe().contains("sk-secret"));
    }
}
