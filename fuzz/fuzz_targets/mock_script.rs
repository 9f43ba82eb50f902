//! A replay script as `wsgate mock --replay` reads it (`wsgate_mock::script::Script`):
//! any bytes, as MockForge's JSONL lines or a wsgate transcript (the first line
//! decides).
//!
//! Properties:
//! - parsing never panics and always ends;
//! - an accepted script has steps, each on a line that exists, in the order of the
//!   file's lines;
//! - a refusal names the file and a line that exists (0: the file as a whole).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsgate_mock::script::Script;

fuzz_target!(|data: &[u8]| {
    let lines = data.split(|b| *b == b'\n').count() as u64;
    let env = |name: &str| (name == "FUZZ").then(|| "value".to_owned());
    match Script::parse("fuzz.jsonl", data, &env) {
        Ok(script) => {
            assert!(!script.steps.is_empty());
            let mut last = 0;
            for step in &script.steps {
                assert!(step.line >= 1 && step.line <= lines, "step on line {} of {lines}", step.line);
                assert!(step.line > last, "steps out of the file's order");
                last = step.line;
            }
        }
        Err(e) => {
            assert_eq!(e.file, "fuzz.jsonl");
            assert!(e.line <= lines, "error on line {} of {lines}", e.line);
            assert!(e.to_string().starts_with("fuzz.jsonl:"));
        }
    }
});
