//! What a mock's replay script waits for (`wsgate_mock::matcher::Matcher`, MockForge's
//! `waitFor`): any spec, with or without an expected value, against any client text.
//!
//! Properties:
//! - parsing and matching never panic;
//! - the spec's first character decides its kind: `$` is a JSONPath (never a regex
//!   error), anything else a regex (never a JSONPath error), and only a regex refuses
//!   an expected value;
//! - a regex matches exactly where the regex crate finds a match;
//! - a match carries the text parsed as JSON exactly when it is JSON, and a JSONPath
//!   matches only JSON;
//! - an expected value only narrows: what matches with it matches without it.
//!
//! Input: `[flags]`, the spec up to the first NUL byte; if flags bit 0 is set, the
//! expected value (JSON) up to the next NUL; then the client's text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsgate_mock::matcher::{Matcher, MatcherError};

fn until_nul(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (data, &[]),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = wsgate_fuzz::Input::new(data);
    let flags = input.byte();
    let (spec, rest) = until_nul(input.rest());
    let (expected, text) = if flags & 1 != 0 {
        let (expected, text) = until_nul(rest);
        (serde_json::from_slice::<serde_json::Value>(expected).ok(), text)
    } else {
        (None, rest)
    };
    let spec = String::from_utf8_lossy(spec);
    let text = String::from_utf8_lossy(text);
    let is_path = spec.starts_with('$');

    let matcher = match Matcher::parse(&spec, expected.clone()) {
        Ok(m) => m,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            match e {
                MatcherError::JsonPath { .. } => assert!(is_path),
                MatcherError::Regex { .. } => assert!(!is_path && regex::Regex::new(&spec).is_err()),
                MatcherError::ExpectedWithRegex { .. } => assert!(!is_path && expected.is_some()),
            }
            return;
        }
    };

    let matched = matcher.matches(&text);
    let json: Option<serde_json::Value> = serde_json::from_str(&text).ok();
    if let Some(parsed) = &matched {
        assert_eq!(*parsed, json, "the match's JSON is not the text's");
    }
    if is_path {
        assert!(matched.is_none() || json.is_some(), "a JSONPath matched a text that is not JSON");
        if matched.is_some() && expected.is_some() {
            let plain = Matcher::parse(&spec, None).expect("parsed with an expected value");
            assert!(plain.matches(&text).is_some(), "matched with an expected value but not without");
        }
    } else {
        let reference = regex::Regex::new(&spec).expect("the matcher compiled it");
        assert_eq!(matched.is_some(), reference.is_match(&text));
    }
});
