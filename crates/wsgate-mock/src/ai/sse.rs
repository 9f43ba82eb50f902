//! The answer's server-sent events (the WHATWG event-stream format), down to what a
//! chat-completions stream says: `data: {"choices":[{"delta":{"content":"..."}}]}`
//! events carrying the text, `data: [DONE]` at the end.
//!
//! Chunks arrive cut anywhere — mid-line, mid-JSON, mid-character —, so bytes are
//! kept until a line is whole; a line longer than [`MAX_LINE`] is a malformed answer
//! rather than memory the endpoint may fill.

use crate::ai::error::{AiError, excerpt};

/// Longest line of the event stream (a delta is a few hundred bytes).
pub(crate) const MAX_LINE: usize = 1 << 20;

/// What the stream has said so far.
#[derive(Debug, Default)]
pub(crate) struct Sse {
    /// Bytes of the line not yet ended.
    line: Vec<u8>,
    /// The `data` of the event being read (its lines joined by `\n`).
    data: Option<String>,
    /// `data: [DONE]` came.
    done: bool,
    /// A choice said why it stopped (`finish_reason`): a server that then closes
    /// without `[DONE]` has still ended its answer.
    finished: bool,
}

impl Sse {
    /// Reads a chunk; the text it completes is appended to `text`.
    pub(crate) fn push(&mut self, chunk: &[u8], text: &mut String) -> Result<(), AiError> {
        let mut rest = chunk;
        while !self.done {
            let Some(end) = rest.iter().position(|b| *b == b'\n') else {
                self.line.extend_from_slice(rest);
                if self.line.len() > MAX_LINE {
                    return Err(too_long());
                }
                return Ok(());
            };
            self.line.extend_from_slice(&rest[..end]);
            rest = &rest[end + 1..];
            let line = std::mem::take(&mut self.line);
            self.line(&line, text)?;
        }
        Ok(())
    }

    /// The stream ended: whatever event it left open is read (the format would drop
    /// it; a server that forgets the last blank line has still said it). `Ok(true)`
    /// when the answer was complete.
    pub(crate) fn finish(&mut self, text: &mut String) -> Result<bool, AiError> {
        if !self.done {
            let line = std::mem::take(&mut self.line);
            if !line.is_empty() {
                self.line(&line, text)?;
            }
            self.dispatch(text)?;
        }
        Ok(self.done || self.finished)
    }

    /// `[DONE]` came: nothing after it is read.
    pub(crate) fn done(&self) -> bool {
        self.done
    }

    fn line(&mut self, line: &[u8], text: &mut String) -> Result<(), AiError> {
        // Checked on whole lines too, so the verdict does not depend on the chunking.
        if line.len() > MAX_LINE {
            return Err(too_long());
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return self.dispatch(text);
        }
        if line.starts_with(b":") {
            // A comment (keep-alives).
            return Ok(());
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, &b""[..]),
        };
        if field != b"data" {
            // `event`, `id`, `retry`: nothing a chat-completions stream needs.
            return Ok(());
        }
        let value = value.strip_prefix(b" ").unwrap_or(value);
        let value =
            std::str::from_utf8(value).map_err(|_| AiError::Malformed("an event-stream line is not UTF-8".into()))?;
        match &mut self.data {
            Some(d) => {
                d.push('\n');
                d.push_str(value);
            }
            None => self.data = Some(value.to_owned()),
        }
        Ok(())
    }

    /// One whole event: its text delta appended, or the end noted.
    fn dispatch(&mut self, text: &mut String) -> Result<(), AiError> {
        let Some(data) = self.data.take() else { return Ok(()) };
        if data.trim() == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        let chunk: serde_json::Value = serde_json::from_str(&data)
            .map_err(|e| AiError::Malformed(format!("a streamed chunk is not JSON ({e}): {}", excerpt(&data))))?;
        if let Some(error) = chunk.get("error") {
            return Err(AiError::Malformed(format!(
                "the endpoint reported an error mid-stream: {}",
                error_message(error)
            )));
        }
        let Some(choice) = chunk.get("choices").and_then(|c| c.get(0)) else {
            // A usage chunk (`"choices": []`), or another server's extra.
            return Ok(());
        };
        if let Some(content) = choice.get("delta").and_then(|d| d.get("content")).and_then(|c| c.as_str()) {
            text.push_str(content);
        }
        if choice.get("finish_reason").is_some_and(|r| !r.is_null()) {
            self.finished = true;
        }
        Ok(())
    }
}

fn too_long() -> AiError {
    AiError::Malformed(format!("an event-stream line is longer than {MAX_LINE} bytes"))
}

/// The message of an OpenAI-style error value: `{"message": ..}`, or a string.
pub(crate) fn error_message(error: &serde_json::Value) -> String {
    match error {
        serde_json::Value::String(s) => excerpt(s),
        other => match other.get("message").and_then(|m| m.as_str()) {
            Some(m) => excerpt(m),
            None => excerpt(&other.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = concat!(
        ": keep-alive\n\n",
        "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"{\\\"a\\\":1}\\n{\\\"b\\\"\"}}]}\r\n\r\n",
        "event: x\nid: 7\ndata: {\"choices\":[{\"delta\":{\"content\":\":\\\"é\\\"}\"},\"finish_reason\":\"stop\"}]}\n\n",
        "data: [DONE]\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"after the end\"}}]}\n\n",
    );

    fn read(chunks: &[&[u8]]) -> Result<(String, bool), AiError> {
        let mut sse = Sse::default();
        let mut text = String::new();
        for c in chunks {
            sse.push(c, &mut text)?;
        }
        let complete = sse.finish(&mut text)?;
        Ok((text, complete))
    }

    #[test]
    fn deltas_are_joined_whatever_the_chunking() {
        let bytes = STREAM.as_bytes();
        let want = ("{\"a\":1}\n{\"b\":\"é\"}".to_owned(), true);
        assert_eq!(read(&[bytes]).unwrap(), want);
        // Every cut, one byte at a time included (mid-character too).
        for cut in 1..bytes.len() {
            assert_eq!(read(&[&bytes[..cut], &bytes[cut..]]).unwrap(), want, "cut at {cut}");
        }
        let ones: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(read(&ones).unwrap(), want);
    }

    #[test]
    fn an_unfinished_stream_says_so_and_bad_chunks_are_errors() {
        let (_, complete) = read(&[b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n"]).unwrap();
        assert!(!complete);
        // No last blank line, but [DONE]: complete.
        assert!(read(&[b"data: [DONE]"]).unwrap().1);
        let err = read(&[b"data: {\"choices\":[{\"delta\":\n\n"]).unwrap_err().to_string();
        assert!(err.contains("not JSON"), "{err}");
        let err = read(&[b"data: {\"error\":{\"message\":\"overloaded\"}}\n\n"]).unwrap_err().to_string();
        assert!(err.contains("overloaded"), "{err}");
        let long = vec![b'a'; MAX_LINE + 1];
        assert!(read(&[&long]).is_err());
    }
}
