//! `mock: {ai: {...}}`: a mock mode whose sessions get a stream of JSON events an
//! OpenAI-compatible chat-completions endpoint generates (`wsgate_mock::ai`). Its own
//! file, so the mock section's other modes change without touching it.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;
use wsgate_mock::ai::{AiOptions, DEFAULT_KEY_ENV, DEFAULT_TIMEOUT, MAX_COUNT, MAX_RATE};

/// A generated event stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AiSection {
    /// The chat-completions API's base URL (`https://api.openai.com/v1`);
    /// `/chat/completions` is appended unless the URL already ends with it.
    pub url: Option<Url>,
    /// The model name sent with the request.
    pub model: Option<String>,
    /// The environment variable holding the API key (sent as `Authorization: Bearer`).
    /// Unset: `OPENAI_API_KEY`, sent only when set; a variable named here must be set.
    pub api_key_env: Option<String>,
    /// What the events tell ("five minutes of live stock trading").
    pub narrative: Option<String>,
    /// Events per session; after the last, the session closes with 1000.
    pub count: u32,
    /// Events per second.
    pub rate: f64,
    /// Write each session's generated stream here, as a transcript `--replay` plays.
    pub record: Option<PathBuf>,
    /// How long the endpoint may take to answer, and between two chunks of its answer.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for AiSection {
    fn default() -> Self {
        Self {
            url: None,
            model: None,
            api_key_env: None,
            narrative: None,
            count: 10,
            rate: 1.0,
            record: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// A longest timeout: a wait longer than a day is a typo, and would look like a hang.
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

impl AiSection {
    /// Settings that can work: `(field under mock, message, fix)` otherwise.
    ///
    /// Reads the environment: a key variable the config names but the environment
    /// lacks is a setting that cannot work, and is better refused at start (exit 64)
    /// than answered with a 401 on every session.
    pub fn check(&self) -> Result<(), (&'static str, String, &'static str)> {
        let Some(url) = &self.url else {
            return Err((
                "ai.url",
                "a generated stream needs its chat-completions endpoint".into(),
                "--ai-url https://api.openai.com/v1 (any OpenAI-compatible base URL)",
            ));
        };
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err((
                "ai.url",
                format!("{url} is not an http:// or https:// URL"),
                "the API's base URL, e.g. https://api.openai.com/v1 or http://127.0.0.1:11434/v1",
            ));
        }
        if self.model.as_deref().is_none_or(|m| m.trim().is_empty()) {
            return Err((
                "ai.model",
                "a generated stream needs a model".into(),
                "--ai-model gpt-4o-mini (the endpoint's model name)",
            ));
        }
        if self.narrative.as_deref().is_none_or(|n| n.trim().is_empty()) {
            return Err((
                "ai.narrative",
                "a generated stream needs a narrative".into(),
                "--ai-narrative \"five minutes of live stock trading\"",
            ));
        }
        if self.count == 0 || self.count > MAX_COUNT {
            return Err((
                "ai.count",
                format!("{} is not an event count", self.count),
                "1 to 100000 events per session",
            ));
        }
        if !(self.rate.is_finite() && self.rate > 0.0 && self.rate <= MAX_RATE) {
            return Err((
                "ai.rate",
                format!("{} is not a rate", self.rate),
                "events per second: more than 0, at most 1000",
            ));
        }
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            return Err((
                "ai.timeout",
                format!("{}s is not a timeout", self.timeout.as_secs_f64()),
                "more than 0s and at most a day, e.g. 30s",
            ));
        }
        if let Some(var) = &self.api_key_env {
            if var.is_empty() || var.contains('=') || var.contains('\0') {
                return Err(("ai.api_key_env", format!("{var:?} is not a variable name"), "e.g. OPENAI_API_KEY"));
            }
            if std::env::var(var).map_or(true, |v| v.is_empty()) {
                return Err((
                    "ai.api_key_env",
                    format!("the API key variable {var} is not set"),
                    "export it, or drop --ai-key-env (api_key_env) for an endpoint that takes no key",
                ));
            }
        }
        if let Some(file) = &self.record {
            let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            if !dir.is_dir() {
                return Err((
                    "ai.record",
                    format!("{} is not a directory, so {} cannot be written", dir.display(), file.display()),
                    "record into an existing directory",
                ));
            }
        }
        Ok(())
    }

    /// The mock's options, the key read from its variable. Call after [`Self::check`].
    pub fn options(&self) -> AiOptions {
        let var = self.api_key_env.as_deref().unwrap_or(DEFAULT_KEY_ENV);
        AiOptions {
            url: self.url.as_ref().map(Url::to_string).unwrap_or_default(),
            model: self.model.clone().unwrap_or_default(),
            api_key: std::env::var(var).ok().filter(|k| !k.is_empty()),
            narrative: self.narrative.clone().unwrap_or_default(),
            count: self.count,
            rate: self.rate,
            timeout: self.timeout,
            record: self.record.clone(),
        }
    }
}

/// `config default` and `--help` show an unset `mock.ai`'s fields with their defaults
/// (the section itself stays unset: setting it chooses the mode).
pub(super) fn show_defaults(defaults: &mut serde_json::Value) {
    defaults["mock"]["ai"] = serde_json::to_value(AiSection::default()).unwrap_or_default();
}
