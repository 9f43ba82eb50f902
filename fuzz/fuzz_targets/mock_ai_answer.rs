//! A chat-completions endpoint's answer as a generated stream reads it
//! (`wsgate_mock::ai::AnswerReader`, `wsgate mock --ai-*`): any bytes as a streamed
//! (`text/event-stream`) answer cut into any chunks, or as a whole answer's text.
//!
//! Properties:
//! - reading never panics and always ends;
//! - the events and the verdict (over, malformed with which message) do not depend on
//!   where the chunks were cut: the same as reading the answer in one piece;
//! - every event is one line holding one JSON object;
//! - after the answer is over (or refused), nothing more comes of it.
//!
//! Input: the chunk sizes (`Input::cuts`), then the answer as the endpoint sends it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsgate_mock::ai::AnswerReader;

/// Reads `pieces` as one answer: its events, and its verdict as text.
fn read(pieces: &[&[u8]]) -> (Vec<bytes::Bytes>, Result<bool, String>) {
    let mut reader = AnswerReader::default();
    let mut events = Vec::new();
    for piece in pieces {
        let read = reader.push(piece);
        events.extend(read.events);
        if !matches!(read.outcome, Ok(false)) {
            let verdict = read.outcome.map_err(|e| e.to_string());
            let after = reader.push(b"data: [DONE]\n\n");
            assert!(after.events.is_empty() && matches!(after.outcome, Ok(true)), "read after the end");
            return (events, verdict);
        }
    }
    let read = reader.finish();
    events.extend(read.events);
    (events, read.outcome.map_err(|e| e.to_string()))
}

fuzz_target!(|data: &[u8]| {
    let mut input = wsgate_fuzz::Input::new(data);
    let cuts = input.cuts(16);
    let answer = input.rest();

    let whole = read(&[answer]);
    let pieces = read(&wsgate_fuzz::chunks(answer, cuts));
    assert_eq!(whole, pieces, "chunking changed what was read");
    for event in &whole.0 {
        assert!(!event.contains(&b'\n'), "an event spans lines");
        let v: serde_json::Value = serde_json::from_slice(event).expect("an event is JSON");
        assert!(v.is_object(), "an event is an object");
    }

    // The same bytes as a whole (not streamed) answer's text.
    if let Ok(text) = std::str::from_utf8(answer) {
        let read = AnswerReader::default().whole(text);
        assert!(!matches!(read.outcome, Ok(false)), "a whole answer is over");
        for event in &read.events {
            assert!(serde_json::from_slice::<serde_json::Value>(event).is_ok_and(|v| v.is_object()));
        }
    }
});
