//! What the reader refuses, and that it says which line and why.

use wsgate_transcript::{ErrorKind, Line, Reader, TranscriptError};

const HEADER: &str = r#"{"type":"session","version":1,"id":"x","kind":"proxy","route":"r","path":"/","opened_at":"2026-01-01T00:00:00Z"}"#;

fn frame(rest: &str) -> String {
    format!(r#"{{"t":0.5,"seq":1,"dir":"client_to_upstream",{rest}}}"#)
}

/// The outcome of each non-blank line of `header` then `lines`.
fn read(header: &str, lines: &[&str]) -> Vec<Result<Line, TranscriptError>> {
    let text = std::iter::once(header).chain(lines.iter().copied()).collect::<Vec<_>>().join("\n");
    Reader::new(text.as_bytes()).collect()
}

/// The error of the one frame line `line` (the header is fine).
fn frame_error(line: &str) -> TranscriptError {
    let mut out = read(HEADER, &[line]);
    assert!(out[0].is_ok(), "{:?}", out[0]);
    out.pop().expect("two lines").expect_err("refused")
}

#[test]
fn errors_name_the_line_and_the_fault() {
    let out = read(HEADER, &["", &frame(r#""type":"text","text":"a""#), "{not json"]);
    assert_eq!(out.len(), 3, "blank lines are skipped");
    let e = out[2].as_ref().expect_err("refused");
    assert_eq!(e.line, 4, "blank lines still count");
    assert!(matches!(e.kind, ErrorKind::Json(_)));
    assert!(e.to_string().starts_with("transcript line 4: "), "{e}");
}

#[test]
fn a_newer_version_is_a_clear_error() {
    let newer = HEADER.replace(r#""version":1"#, r#""version":2"#);
    let e = read(&newer, &[]).pop().expect("a line").expect_err("refused");
    assert!(matches!(e.kind, ErrorKind::NewerVersion { found: 2, supported: 1 }), "{e}");
    assert_eq!(
        e.to_string(),
        "transcript line 1: format version 2 is newer than this wsgate reads (up to 1); upgrade wsgate"
    );
    let zero = HEADER.replace(r#""version":1"#, r#""version":0"#);
    assert!(matches!(read(&zero, &[])[0].as_ref().expect_err("refused").kind, ErrorKind::VersionZero));
    let none = HEADER.replace(r#""version":1,"#, "");
    assert!(matches!(read(&none, &[])[0].as_ref().expect_err("refused").kind, ErrorKind::Missing("version")));
}

#[test]
fn only_the_first_line_is_the_session() {
    let text_frame = frame(r#""type":"text","text":"a""#);
    let out = read(&text_frame, &[&text_frame, HEADER]);
    assert!(matches!(out[0].as_ref().expect_err("refused").kind, ErrorKind::HeaderNotFirst));
    assert!(out[1].is_ok(), "the reader goes on after a refused line");
    assert!(matches!(out[2].as_ref().expect_err("refused").kind, ErrorKind::HeaderAgain));
}

#[test]
fn frame_faults() {
    type Want = fn(&ErrorKind) -> bool;
    let cases: &[(&str, Want)] = &[
        (r#""type":"text""#, |k| matches!(k, ErrorKind::NoPayload(_))),
        (r#""type":"binary","text":"a","base64":"YQ==""#, |k| matches!(k, ErrorKind::TwoPayloads(_))),
        (r#""type":"binary","base64":"YQ""#, |k| matches!(k, ErrorKind::Base64(_))),
        (r#""type":"text","opcode":2,"text":"a""#, |k| matches!(k, ErrorKind::OpcodeMismatch { found: 2, .. })),
        (r#""type":"close","reason":"x""#, |k| matches!(k, ErrorKind::ReasonWithoutCode)),
        (r#""type":"close","code":1000,"base64":"""#, |k| matches!(k, ErrorKind::PayloadOnClose("base64"))),
        (r#""type":"ping","text":"","code":1000"#, |k| matches!(k, ErrorKind::CloseFieldOnData { field: "code", .. })),
        (r#""type":"pong","text":"","code":70000"#, |k| matches!(k, ErrorKind::Json(_))),
        (r#""type":"frob","text":"""#, |k| matches!(k, ErrorKind::Json(_))),
        (r#""text":"""#, |k| matches!(k, ErrorKind::Missing("type"))),
    ];
    for (rest, want) in cases {
        let e = frame_error(&frame(rest));
        assert!(want(&e.kind), "{rest}: {e}");
    }
    let e = frame_error(r#"{"t":1e300,"seq":1,"dir":"client_to_upstream","type":"text","text":""}"#);
    assert!(matches!(e.kind, ErrorKind::TimeOutOfRange), "{e}");
    let e = frame_error(r#"{"seq":1,"dir":"client_to_upstream","type":"text","text":""}"#);
    assert!(matches!(e.kind, ErrorKind::Missing("t")), "{e}");
    let e = frame_error(r#"["text"]"#);
    assert!(matches!(e.kind, ErrorKind::NotAnObject), "{e}");
    let mut bytes = format!("{HEADER}\n").into_bytes();
    bytes.extend_from_slice(b"{\"t\":1,\"seq\":1,\"dir\":\"client_to_upstream\",\"type\":\"text\",\"text\":\"\xff\"}");
    let e = Reader::new(&bytes[..]).nth(1).expect("two lines").expect_err("refused");
    assert!(matches!(e.kind, ErrorKind::Json(_)), "not UTF-8: {e}");
}

#[test]
fn dates_the_writer_cannot_spell_are_refused() {
    let late = HEADER.replace("2026-01-01T00:00:00Z", "9999-12-31T23:00:00-05:00");
    let e = read(&late, &[]).pop().expect("a line").expect_err("refused");
    assert!(matches!(e.kind, ErrorKind::DateOutOfRange { field: "opened_at" }), "{e}");
}

#[test]
fn a_line_over_the_limit_stops_the_reader() {
    let long = frame(&format!(r#""type":"text","text":"{}""#, "a".repeat(100)));
    let text = format!("{HEADER}\n{long}\n{long}\n");
    let limit = long.len();
    let exact: Vec<_> = Reader::new(text.as_bytes()).with_max_line(limit).collect();
    assert!(exact.len() == 3 && exact.iter().all(Result::is_ok), "a line of exactly the limit is fine");
    let out: Vec<_> = Reader::new(text.as_bytes()).with_max_line(limit - 1).collect();
    assert_eq!(out.len(), 2, "nothing after the long line");
    let e = out[1].as_ref().expect_err("refused");
    assert_eq!(e.line, 2);
    assert!(matches!(e.kind, ErrorKind::TooLong { .. }), "{e}");
}

#[test]
fn a_read_error_stops_the_reader() {
    struct Broken;
    impl std::io::Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk on fire"))
        }
    }
    let mut r = Reader::new(std::io::BufReader::new(Broken));
    let e = r.next().expect("an item").expect_err("fails");
    assert_eq!(e.to_string(), "transcript line 1: cannot read: disk on fire");
    assert!(r.next().is_none());
}
