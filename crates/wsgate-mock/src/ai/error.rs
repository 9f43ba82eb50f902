//! Why a generated stream failed, and the close each failure ends its session with.

use std::time::Duration;

use wsgate_protocol::CloseCode;

/// A generated stream's failure. Each is reported on the session as an `error` event
/// of kind `generation` (the message) and ends it with [`AiError::close_code`] and
/// [`AiError::close_reason`].
#[derive(Debug, thiserror::Error)]
pub enum AiError {
    /// No HTTP answer at all: refused, DNS, TLS, reset.
    #[error("the chat-completions endpoint {url} is unreachable: {detail}")]
    Unreachable { url: String, detail: String },
    /// An HTTP status other than 2xx (401: the key; 404: the URL or model; 429: quota).
    #[error("the chat-completions endpoint answered HTTP {status}{}", message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    Status {
        status: u16,
        /// The server's own message, when its body is JSON that has one.
        message: Option<String>,
    },
    /// Nothing for longer than the timeout: no answer to the request, or no next chunk.
    #[error("the chat-completions endpoint sent nothing for {}s while {waiting_for}", after.as_secs_f64())]
    Timeout { waiting_for: &'static str, after: Duration },
    /// The answer is not a chat-completions stream (not SSE, a chunk that is not JSON,
    /// an error mid-stream, no end).
    #[error("the chat-completions answer is malformed: {0}")]
    Malformed(String),
    /// The model's text has a line that is not a JSON object.
    #[error("line {line} of the model's answer is not a JSON event: {message}")]
    BadEvent { line: u64, message: String },
    /// The recording (`--ai-record`) could not be written.
    #[error("cannot write the recording {path}: {detail}")]
    Record { path: String, detail: String },
    /// The generator task ended without saying how (it panicked): a bug.
    #[error("the event generator stopped unexpectedly")]
    Stopped,
}

impl AiError {
    /// 1014 (bad gateway) when the endpoint failed — unreachable, refused, silent or
    /// malformed —, 1011 (internal error) when wsgate itself did.
    pub fn close_code(&self) -> u16 {
        match self {
            Self::Record { .. } | Self::Stopped => CloseCode::INTERNAL,
            _ => CloseCode::BAD_GATEWAY,
        }
    }

    /// A short reason for the close frame (at most 123 bytes); the whole message is
    /// the error event's.
    pub fn close_reason(&self) -> String {
        match self {
            Self::Unreachable { .. } => "ai: endpoint unreachable".into(),
            Self::Status { status, .. } => format!("ai: endpoint answered HTTP {status}"),
            Self::Timeout { .. } => "ai: endpoint timed out".into(),
            Self::Malformed(_) => "ai: malformed answer".into(),
            Self::BadEvent { line, .. } => format!("ai: answer line {line} is not a JSON event"),
            Self::Record { .. } => "ai: cannot record".into(),
            Self::Stopped => "ai: generator stopped".into(),
        }
    }
}

/// A short excerpt of untrusted text for a message: the first 80 characters.
pub(crate) fn excerpt(s: &str) -> String {
    let mut out: String = s.chars().take(80).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}
