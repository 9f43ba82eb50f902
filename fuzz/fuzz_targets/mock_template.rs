//! The mock's templates (`wsgate_mock::template::Template`, every text a replay script
//! sends: `{{uuid}}`, `{{now+1h}}`, `{{randInt A B}}`, `{{seq}}`, `{{$.path}}`,
//! `{{env NAME}}`): any text parsed, and what parses rendered against any JSON.
//!
//! Properties:
//! - parsing and rendering never panic, whatever the clock (up to chrono's limits),
//!   the counter or the last message;
//! - an error points into the text: its line exists, its column is within that line
//!   and the quoted template starts with `{{` there; with every variable set, no error
//!   says one is unset;
//! - rendering is reproducible: the same seed and context give the same text;
//! - a text without `{{` parses, is static and renders to itself; any static template
//!   renders to its `as_static` text.
//!
//! Input: `[flags]`, then the template text up to the first NUL byte, then the last
//! client message (JSON; anything else means no last message). Flags: bit 0 sets every
//! environment variable, bits 1-2 pick the clock (2025, the epoch, chrono's minimum
//! and maximum), bit 3 makes the counter `u64::MAX`.
#![no_main]

use chrono::{DateTime, TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use wsgate_mock::template::{RenderContext, Template, TemplateErrorKind};

const SEED: u64 = 0x5eed;

fuzz_target!(|data: &[u8]| {
    let mut input = wsgate_fuzz::Input::new(data);
    let flags = input.byte();
    let rest = input.rest();
    let (text, last) = match rest.iter().position(|&b| b == 0) {
        Some(nul) => (&rest[..nul], &rest[nul + 1..]),
        None => (rest, &[][..]),
    };
    let text = String::from_utf8_lossy(text);
    let last: Option<serde_json::Value> = serde_json::from_slice(last).ok();

    let all_set = flags & 1 != 0;
    let env = |name: &str| all_set.then(|| format!("<{name}>"));
    let now = match (flags >> 1) & 3 {
        0 => Utc.with_ymd_and_hms(2025, 3, 14, 15, 9, 26).single().expect("a valid date"),
        1 => DateTime::<Utc>::UNIX_EPOCH,
        2 => DateTime::<Utc>::MIN_UTC,
        _ => DateTime::<Utc>::MAX_UTC,
    };
    let seq = if flags & 8 != 0 { u64::MAX } else { 7 };

    let template = match Template::parse(&text, &env) {
        Ok(t) => t,
        Err(e) => {
            assert!(text.contains("{{"), "a text without {{{{ failed: {e}");
            assert!(!e.to_string().is_empty());
            assert!(!(all_set && matches!(e.kind, TemplateErrorKind::EnvUnset { .. })), "{e}");
            let line = text.split('\n').nth(e.line - 1).unwrap_or_else(|| panic!("no line {}: {e}", e.line));
            let at: String = line.chars().skip(e.column - 1).collect();
            assert!(e.column >= 1 && at.starts_with("{{"), "column {} of {line:?}: {e}", e.column);
            assert!(e.template.starts_with("{{"), "{e}");
            return;
        }
    };

    let render = |last_match: Option<&serde_json::Value>| {
        let mut rng = fastrand::Rng::with_seed(SEED);
        template.render(&mut RenderContext { rng: &mut rng, now, seq, last_match, state: &[], groups: None })
    };
    let first = render(last.as_ref());
    assert_eq!(first, render(last.as_ref()), "the same seed rendered differently");
    let without = render(None);

    if !text.contains("{{") {
        assert!(template.is_static());
        assert_eq!(first, *text);
    }
    if template.is_static() {
        let fixed = template.as_static().expect("a static template has a fixed text");
        assert_eq!(first, fixed);
        assert_eq!(without, fixed);
    } else {
        assert!(template.as_static().is_none());
    }
});
