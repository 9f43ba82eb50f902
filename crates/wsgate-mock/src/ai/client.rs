//! The one request a session makes: `POST` to the route's chat-completions URL with
//! `stream: true`, the narrative as the user's message, the key as
//! `Authorization: Bearer`; and the answer's chunks. Every wait — for the answer,
//! then for each next chunk — is bounded by the route's timeout, so a silent
//! endpoint ends the session instead of holding it.

use std::time::Duration;

use bytes::Bytes;

use crate::ai::error::AiError;
use crate::ai::events::system_prompt;
use crate::ai::settings::AiSettings;
use crate::ai::sse::error_message;

/// Most bytes of an error answer read for its message.
const MAX_ERROR_BODY: usize = 64 << 10;

/// Most bytes of a whole (not streamed) answer.
const MAX_WHOLE_BODY: usize = 16 << 20;

/// How the endpoint answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// `text/event-stream`: chunks of SSE (what `stream: true` asks for).
    Stream,
    /// `application/json`: the whole completion at once, from a server that does not
    /// stream; its `choices[0].message.content` is read the same way.
    Whole,
}

/// A 2xx answer whose body is being read.
#[derive(Debug)]
pub(crate) struct Answer {
    response: reqwest::Response,
    timeout: Duration,
    pub(crate) shape: Shape,
}

/// Sends the request and waits for the answer's status and headers.
pub(crate) async fn ask(s: &AiSettings) -> Result<Answer, AiError> {
    let body = serde_json::json!({
        "model": s.model,
        "stream": true,
        "messages": [
            {"role": "system", "content": system_prompt(s.count)},
            {"role": "user", "content": s.narrative},
        ],
    });
    let mut req = s
        .http
        .post(s.endpoint.clone())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "text/event-stream")
        .body(body.to_string());
    if let Some(auth) = &s.authorization {
        req = req.header(http::header::AUTHORIZATION, auth.clone());
    }
    let response = match tokio::time::timeout(s.timeout, req.send()).await {
        Err(_) => return Err(AiError::Timeout { waiting_for: "waiting for an answer", after: s.timeout }),
        Ok(Err(e)) if e.is_timeout() => {
            return Err(AiError::Timeout { waiting_for: "connecting", after: s.timeout });
        }
        Ok(Err(e)) => return Err(AiError::Unreachable { url: s.endpoint.to_string(), detail: cause(&e) }),
        Ok(Ok(r)) => r,
    };
    let status = response.status();
    if !status.is_success() {
        let mut answer = Answer { response, timeout: s.timeout, shape: Shape::Whole };
        // The server's reason, when it gives one as JSON (OpenAI: {"error":{"message":..}}).
        let message = answer.body(MAX_ERROR_BODY).await.ok().and_then(|b| {
            let v: serde_json::Value = serde_json::from_slice(&b).ok()?;
            v.get("error").or_else(|| v.get("message")).map(error_message)
        });
        return Err(AiError::Status { status: status.as_u16(), message });
    }
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let shape = if content_type.starts_with("application/json") { Shape::Whole } else { Shape::Stream };
    Ok(Answer { response, timeout: s.timeout, shape })
}

impl Answer {
    /// The next chunk of the body; `None` at its end.
    pub(crate) async fn chunk(&mut self) -> Result<Option<Bytes>, AiError> {
        match tokio::time::timeout(self.timeout, self.response.chunk()).await {
            Err(_) => Err(AiError::Timeout { waiting_for: "waiting for the next chunk", after: self.timeout }),
            Ok(Err(e)) => Err(AiError::Malformed(format!("the answer broke off: {}", cause(&e)))),
            Ok(Ok(c)) => Ok(c),
        }
    }

    /// The rest of the body, at most `max` bytes (more is malformed).
    pub(crate) async fn body(&mut self, max: usize) -> Result<Vec<u8>, AiError> {
        let mut body = Vec::new();
        while let Some(c) = self.chunk().await? {
            if body.len() + c.len() > max {
                return Err(AiError::Malformed(format!("the answer is longer than {max} bytes")));
            }
            body.extend_from_slice(&c);
        }
        Ok(body)
    }

    /// A whole (not streamed) completion's text.
    pub(crate) async fn whole_text(&mut self) -> Result<String, AiError> {
        let body = self.body(MAX_WHOLE_BODY).await?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| AiError::Malformed(format!("the answer is not JSON ({e})")))?;
        v.pointer("/choices/0/message/content")
            .and_then(|c| c.as_str())
            .map(str::to_owned)
            .ok_or_else(|| AiError::Malformed("the answer has no choices[0].message.content".into()))
    }
}

/// What went wrong, from the innermost causes (reqwest's own message only names the
/// URL: "error sending request for url").
fn cause(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    match parts.last() {
        Some(last) => last.clone(),
        None => e.to_string(),
    }
}
