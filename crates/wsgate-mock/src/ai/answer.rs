//! The endpoint's answer as events, one chunk at a time: its server-sent events
//! (`sse`) down to the model's text, the text cut into JSON-line events (`events`).
//! Public for the fuzz target (`fuzz/fuzz_targets/mock_ai_answer.rs`), which checks
//! that any bytes, cut anywhere, give the same events and the same verdict.

use bytes::Bytes;

use crate::ai::error::AiError;
use crate::ai::events::EventLines;
use crate::ai::sse::Sse;

/// Reads one answer.
#[derive(Debug, Default)]
pub struct AnswerReader {
    sse: Sse,
    lines: EventLines,
    /// Text the last chunk completed, not yet cut into lines.
    text: String,
    over: bool,
}

/// What a read gave: the events it completed (in order, all before any fault), and
/// whether the answer is over (`Ok(true)`), goes on (`Ok(false)`), or is malformed.
#[derive(Debug)]
pub struct Read {
    pub events: Vec<Bytes>,
    pub outcome: Result<bool, AiError>,
}

impl AnswerReader {
    /// A chunk of a streamed (`text/event-stream`) answer.
    pub fn push(&mut self, chunk: &[u8]) -> Read {
        if self.over {
            return Read { events: Vec::new(), outcome: Ok(true) };
        }
        let read = self.sse.push(chunk, &mut self.text).map(|()| self.sse.done());
        self.cut(read)
    }

    /// The streamed answer's end: it must have said so (`[DONE]`, or a
    /// `finish_reason`) — one cut short is malformed.
    pub fn finish(&mut self) -> Read {
        if self.over {
            return Read { events: Vec::new(), outcome: Ok(true) };
        }
        let read = self.sse.finish(&mut self.text).and_then(|complete| {
            if complete { Ok(true) } else { Err(AiError::Malformed("the stream ended before `data: [DONE]`".into())) }
        });
        self.cut(read)
    }

    /// A whole (not streamed) answer's text.
    pub fn whole(&mut self, text: &str) -> Read {
        self.text.push_str(text);
        self.cut(Ok(true))
    }

    /// Cuts the text read so far into events; `read` is what the stream said.
    fn cut(&mut self, read: Result<bool, AiError>) -> Read {
        let mut events = Vec::new();
        // The text came before whatever fault the stream has after it: a bad line in
        // it is the earlier fault.
        let cut = self.lines.push(&std::mem::take(&mut self.text), &mut events);
        let outcome = match (read, cut) {
            (_, Err(e)) | (Err(e), Ok(())) => Err(e),
            (Ok(true), Ok(())) => self.lines.finish(&mut events).map(|()| true),
            (Ok(false), Ok(())) => Ok(false),
        };
        self.over = !matches!(outcome, Ok(false));
        Read { events, outcome }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(chunks: &[&[u8]]) -> (Vec<Bytes>, Result<bool, String>) {
        let mut r = AnswerReader::default();
        let mut events = Vec::new();
        for c in chunks {
            let read = r.push(c);
            events.extend(read.events);
            if !matches!(read.outcome, Ok(false)) {
                return (events, read.outcome.map_err(|e| e.to_string()));
            }
        }
        let read = r.finish();
        events.extend(read.events);
        (events, read.outcome.map_err(|e| e.to_string()))
    }

    /// The fuzz target's main property (`fuzz/fuzz_targets/mock_ai_answer.rs`) on a
    /// few answers, whole and damaged, cut at random places (seeded): what is read
    /// does not depend on the cuts, and every event is one JSON object on one line.
    #[test]
    fn cutting_never_changes_what_is_read() {
        let delta = |s: &str| format!("data: {}\n\n", serde_json::json!({"choices": [{"delta": {"content": s}}]}));
        let text = "```json\n{\"type\":\"a\",\"x\":\"é\"}\n\n{\"type\":\"b\"}\n```\n";
        let stream: String =
            text.chars().collect::<Vec<_>>().chunks(3).map(|c| delta(&c.iter().collect::<String>())).collect();
        let answers = [
            format!(": hi\n\n{stream}data: [DONE]\n\n"),
            stream.replace("\n\n", "\r\n\r\n"),
            format!("{}{}data: [DONE]\n\n", delta("{\"a\":1}\nSure! "), delta("more\n")),
            "data: {\"error\":{\"message\":\"overloaded\"}}\n\n".to_owned(),
            format!("{stream}data: {{\"choices\": [{{\"delta\": {{}}, \"finish_reason\": \"stop\"}}]}}\n\n"),
        ];
        let first = read_all(&[answers[0].as_bytes()]);
        assert_eq!((first.0.len(), first.1), (2, Ok(true)));
        assert!(read_all(&[answers[2].as_bytes()]).1.is_err_and(|e| e.contains("line 2")));
        let mut rng = fastrand::Rng::with_seed(7);
        for answer in &answers {
            for round in 0..300 {
                let mut bytes = answer.as_bytes().to_vec();
                if round % 2 == 1 {
                    for _ in 0..rng.usize(1..4) {
                        let i = rng.usize(..bytes.len());
                        bytes[i] = rng.u8(..);
                    }
                }
                let whole = read_all(&[&bytes]);
                let mut cuts = vec![0, bytes.len()];
                cuts.extend((0..rng.usize(1..8)).map(|_| rng.usize(..=bytes.len())));
                cuts.sort_unstable();
                let pieces: Vec<&[u8]> = cuts.windows(2).map(|w| &bytes[w[0]..w[1]]).collect();
                assert_eq!(read_all(&pieces), whole, "{:?} cut at {cuts:?}", String::from_utf8_lossy(&bytes));
                for e in &whole.0 {
                    assert!(!e.contains(&b'\n'));
                    assert!(serde_json::from_slice::<serde_json::Value>(e).is_ok_and(|v| v.is_object()));
                }
            }
        }
    }

    #[test]
    fn a_long_line_is_refused_however_it_is_cut() {
        let delta = |s: &str| format!("data: {}\n\n", serde_json::json!({"choices": [{"delta": {"content": s}}]}));
        let long = format!("{{\"a\":\"{}\"}}", "x".repeat(crate::ai::events::MAX_EVENT));
        // The long line in deltas of 64 KiB: each event-stream line is short.
        let pieces: String = long.as_bytes().chunks(64 << 10).map(|c| delta(std::str::from_utf8(c).unwrap())).collect();
        let stream = format!("{}{pieces}{}data: [DONE]\n\n", delta("{\"first\":1}\n"), delta("\n"));
        let whole = read_all(&[stream.as_bytes()]);
        assert_eq!(whole.0.len(), 1);
        assert!(whole.1.as_ref().is_err_and(|e| e.contains("line 2") && e.contains("longer than")), "{:?}", whole.1);
        let (a, b) = stream.as_bytes().split_at(stream.len() / 2);
        let cut = read_all(&[a, b]);
        assert_eq!((cut.0, cut.1), (whole.0, whole.1));
    }
}
