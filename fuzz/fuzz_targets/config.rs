//! The config loader (`wsgate::config`): arbitrary YAML as the config file, plus
//! arbitrary raw values for websocket-multiplex variables, `WSGATE_*` variables and
//! flags, through the real layering (`load_yaml` shares it with `load`) and every
//! validation a serving command runs.
//!
//! Properties:
//! - loading and validating (routes too) give `Ok` or a `ConfigError`, never a panic;
//! - finding a field's line and column in the text (`config::locate`, used in error
//!   messages) never panics, and any position it gives is inside the text (or
//!   just past its end);
//! - a config that passes validation can run: every duration in it can be added to
//!   `Instant::now()` (the proxy turns them into deadlines), its deflate policy is
//!   within zlib's range, and it serialises (`config check` prints it);
//! - every payload policy it loaded prints as text that parses back to itself (what
//!   `config check` shows is what runs).
//!
//! Input: the config file's text (invalid UTF-8 replaced). Comment lines of the form
//! `#@env <key> <value>`, `#@flag <key> <value>` (key: a dotted config path such as
//! `proxy.upstream`) and `#@compat <VARIABLE> <value>` (a websocket-multiplex
//! variable such as `UPSTREAM_URL`) also set that value in that layer; YAML ignores
//! them.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use wsgate::config::{COMPAT_ENV, KEYS, Sources, load_yaml};

/// The layers' values named in `#@` comment lines.
fn sources(text: &str) -> Sources {
    let mut s = Sources::default();
    for line in text.lines() {
        let Some(directive) = line.strip_prefix("#@") else { continue };
        let mut words = directive.splitn(3, ' ');
        let (Some(layer), Some(name), value) = (words.next(), words.next(), words.next().unwrap_or_default()) else {
            continue;
        };
        let key = KEYS.iter().find(|k| k.path == name).map(|k| k.path);
        match (layer, key) {
            ("env", Some(path)) => s.env.push((path, format!("environment variable for {path}"), vec![value.into()])),
            ("flag", Some(path)) => s.flags.push((path, format!("flag for {path}"), vec![value.into()])),
            ("compat", _) if COMPAT_ENV.contains(&name) => s.compat_env.push((name.into(), value.into())),
            _ => {}
        }
    }
    s
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // YAML breaks lines at `\n`, `\r\n` and a lone `\r` alike (`str::lines` only at the first two).
    let lines = text.replace("\r\n", "\n").matches(['\n', '\r']).count() + 1;
    for path in ["routes.0.path", "routes.1.proxy.upstream", "listen", ""] {
        if let Some(at) = wsgate::config::locate::in_text(&text, path) {
            // One past the last line: the end of the input (a document of only comments).
            assert!(at.line >= 1 && at.line <= lines + 1, "{path} at {at} in {lines} lines");
        }
    }
    let sources = sources(&text);
    let Ok((cfg, fig)) = load_yaml(&text, &sources) else { return };
    let _ = serde_json::to_string(&cfg).expect("a loaded config serialises");
    let common = cfg.validate_common(&fig);
    let proxy = cfg.validate_for_proxy(&fig);
    let mock = cfg.validate_for_mock(&fig);
    if common.is_err() {
        assert!(proxy.is_err() && mock.is_err(), "the commands' checks include the common ones");
        return;
    }
    let now = Instant::now();
    for (name, d) in cfg.durations() {
        assert!(now.checked_add(d).is_some(), "{name} = {d:?} passed validation but cannot be a deadline");
    }
    if cfg.validate_routes(&fig).is_ok() {
        for r in &cfg.routes {
            if let Some(d) = r.limits.idle_timeout {
                assert!(now.checked_add(d).is_some(), "route {} idle_timeout {d:?} cannot be a deadline", r.name);
            }
        }
    }
    let policies = cfg.routes.iter().filter_map(|r| r.record_payloads).chain([cfg.store.payloads]);
    for p in policies {
        assert_eq!(p.to_string().parse::<wsgate_core::PayloadPolicy>(), Ok(p), "payload policy {p} round-trips");
    }
    if let Some(p) = cfg.deflate.policy() {
        assert!((9..=15).contains(&p.max_window_bits) && p.level <= 9, "deflate policy {p:?} passed validation");
    }
});
