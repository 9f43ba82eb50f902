//! The model's text as events: JSON Lines, one JSON object a line, as the system
//! prompt asks. Models wrap answers in code fences and leave blank lines whatever
//! they are told, so both are skipped; any other line that is not a JSON object is a
//! malformed answer (the session is closed rather than sent prose as an event).

use bytes::Bytes;

use crate::ai::error::{AiError, excerpt};

/// Longest event line (bounds what an endless line can hold).
pub(crate) const MAX_EVENT: usize = 1 << 20;

/// The system prompt: what the answer must look like.
pub(crate) fn system_prompt(count: u32) -> String {
    format!(
        "You generate the messages a WebSocket server sends to a client, as a realistic stream of events. \
         Answer with exactly {count} events in the order they happen, in JSON Lines: one compact JSON object \
         per line, nothing else — no prose, no numbering, no code fences, no blank lines. Give each event a \
         \"type\" field and the fields such an event would have, with plausible, varied values."
    )
}

/// Text not yet cut into lines, and how many lines there were.
#[derive(Debug, Default)]
pub(crate) struct EventLines {
    partial: String,
    line: u64,
}

impl EventLines {
    /// Appends streamed text; every event its whole lines hold goes to `events`.
    pub(crate) fn push(&mut self, text: &str, events: &mut Vec<Bytes>) -> Result<(), AiError> {
        self.partial.push_str(text);
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            self.line(&line, events)?;
        }
        if self.partial.len() > MAX_EVENT {
            return Err(too_long(self.line + 1));
        }
        Ok(())
    }

    /// The text ended: its last line, if it had no line end.
    pub(crate) fn finish(&mut self, events: &mut Vec<Bytes>) -> Result<(), AiError> {
        let rest = std::mem::take(&mut self.partial);
        if !rest.trim().is_empty() { self.line(&rest, events) } else { Ok(()) }
    }

    fn line(&mut self, line: &str, events: &mut Vec<Bytes>) -> Result<(), AiError> {
        self.line += 1;
        // Checked on whole lines too, so the verdict does not depend on where the
        // deltas were cut.
        if line.strip_suffix('\n').unwrap_or(line).len() > MAX_EVENT {
            return Err(too_long(self.line));
        }
        let line = line.trim();
        if line.is_empty() || line.starts_with("```") {
            return Ok(());
        }
        match serde_json::from_str::<serde_json::Value>(line) {
            // Sent as the model wrote it: a replay of the recording is byte for byte.
            Ok(v) if v.is_object() => {
                events.push(Bytes::copy_from_slice(line.as_bytes()));
                Ok(())
            }
            Ok(_) => Err(AiError::BadEvent { line: self.line, message: format!("not an object: {}", excerpt(line)) }),
            Err(e) => Err(AiError::BadEvent { line: self.line, message: format!("{e}: {}", excerpt(line)) }),
        }
    }
}

fn too_long(line: u64) -> AiError {
    AiError::BadEvent { line, message: format!("longer than {MAX_EVENT} bytes") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(parts: &[&str]) -> Result<Vec<String>, AiError> {
        let mut lines = EventLines::default();
        let mut out = Vec::new();
        for p in parts {
            lines.push(p, &mut out)?;
        }
        lines.finish(&mut out)?;
        Ok(out.into_iter().map(|b| String::from_utf8(b.to_vec()).unwrap()).collect())
    }

    #[test]
    fn fences_and_blank_lines_are_skipped_and_lines_join_across_deltas() {
        let got = events(&["```json\n{\"ty", "pe\":\"a\"}\n\n  {\"type\":\"b\"}  \r\n", "```\n{\"type\":\"c\"}"]);
        assert_eq!(got.unwrap(), [r#"{"type":"a"}"#, r#"{"type":"b"}"#, r#"{"type":"c"}"#]);
    }

    #[test]
    fn prose_or_a_non_object_is_a_bad_event_naming_its_line() {
        let err = events(&["{\"a\":1}\nHere are more events:\n"]).unwrap_err();
        assert!(matches!(err, AiError::BadEvent { line: 2, .. }), "{err}");
        let err = events(&["{\"a\":1}\n[1,2]\n"]).unwrap_err();
        assert!(err.to_string().contains("not an object"), "{err}");
        let err = events(&["{\"a\":"]).unwrap_err();
        assert!(matches!(err, AiError::BadEvent { line: 1, .. }), "{err}");
    }
}
