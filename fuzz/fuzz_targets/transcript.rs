//! Session transcripts (`wsgate_transcript::Reader`, what `wsgate mock --replay` reads;
//! docs/transcript.md): any bytes as a JSONL file, read with any buffer size and line
//! limit.
//!
//! Properties:
//! - the reader never panics and always ends; every error names a line that exists;
//! - what it yields does not depend on how its input is buffered (the same lines and
//!   the same errors with a 1-byte buffer as with the whole input at once);
//! - every line it accepts re-encodes (`to_line`) to one line of JSON that reads back
//!   (`parse_line`) to the same value;
//! - when every line is accepted, writing them all (`write`) and reading that back
//!   gives the same lines: the writer only writes what the reader reads.
//!
//! Input: `[buffer size][line limit]` (a limit byte of 0 means the default limit,
//! otherwise that many times 16 bytes) then the transcript as a file holds it.
#![no_main]

use std::io::BufReader;

use libfuzzer_sys::fuzz_target;
use wsgate_transcript::{Line, Reader, TranscriptError, parse_line, to_line, write};

fuzz_target!(|data: &[u8]| {
    let mut input = wsgate_fuzz::Input::new(data);
    let capacity = usize::from(input.byte()).max(1);
    let max_line = match input.byte() {
        0 => wsgate_transcript::DEFAULT_MAX_LINE,
        n => usize::from(n) * 16,
    };
    let text = input.rest();

    let whole: Vec<_> = Reader::new(text).with_max_line(max_line).collect();
    let pieces: Vec<_> = Reader::new(BufReader::with_capacity(capacity, text)).with_max_line(max_line).collect();
    assert_eq!(outcomes(&whole), outcomes(&pieces), "buffering changed what was read");

    let lines = text.split(|&b| b == b'\n').count() as u64;
    for e in whole.iter().filter_map(|r| r.as_ref().err()) {
        assert!((1..=lines).contains(&e.line), "error on line {} of {lines}: {e}", e.line);
    }

    let mut rewritten = Vec::new();
    for line in whole.iter().filter_map(|r| r.as_ref().ok()) {
        let encoded = to_line(line);
        assert!(!encoded.contains('\n'), "one line: {encoded}");
        let again = parse_line(encoded.as_bytes()).unwrap_or_else(|e| panic!("{encoded} does not re-read: {e}"));
        assert_eq!(&again, line, "{encoded} re-reads differently");
        write(&mut rewritten, line).expect("writing to a Vec");
    }
    if whole.iter().all(Result::is_ok) {
        let back: Vec<_> = Reader::new(&rewritten[..]).map(|r| r.expect("a rewritten transcript reads")).collect();
        let original: Vec<_> = whole.into_iter().map(|r| r.expect("all accepted")).collect();
        assert_eq!(back, original);
    }
});

/// Results in a comparable form (an error as its message, which names line and fault).
fn outcomes(results: &[Result<Line, TranscriptError>]) -> Vec<Result<&Line, String>> {
    results.iter().map(|r| r.as_ref().map_err(|e| e.to_string())).collect()
}
