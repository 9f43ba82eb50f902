//! Turns parsed command-line matches into config [`Sources`], keeping track of
//! whether each value came from a flag or a `WSGATE_*` variable.

use clap::ArgMatches;
use clap::parser::ValueSource;

use crate::config::{KEYS, Sources};

/// Boolean switches: their value is whether the flag is set, not a raw string.
const FLAGS: &[&str] = &[
    "proxy.accept_early",
    "proxy.replace_same_path",
    "proxy.expose_errors",
    "mock.echo",
    "mock.loop",
    "deflate.enabled",
    "deflate.no_context_takeover",
    "outbound.allow_private_targets",
];

/// Switches that turn a setting off (`--no-store` sets `store.enabled: false`).
const NEGATED: &[&str] = &["store.enabled", "relay.echo_sender", "relay.join_path_room"];

/// Collects the sources for a serving command from its (sub)command matches.
pub fn collect(m: &ArgMatches, file: Option<std::path::PathBuf>) -> Sources {
    let mut s = Sources { file, ..Default::default() };
    for key in KEYS {
        let id = key.arg_id();
        let Ok(Some(raw)) = m.try_get_raw(&id) else { continue };
        let values: Vec<String> = if FLAGS.contains(&key.path) {
            vec![m.get_flag(&id).to_string()]
        } else if NEGATED.contains(&key.path) {
            if !m.get_flag(&id) {
                continue;
            }
            vec!["false".to_owned()]
        } else {
            raw.map(|v| v.to_string_lossy().into_owned()).collect()
        };
        match m.value_source(&id) {
            Some(ValueSource::CommandLine) => s.flags.push((key.path, format!("flag --{}", key.flag), values)),
            Some(ValueSource::EnvVariable) => {
                s.env.push((key.path, format!("environment variable {}", key.env()), values))
            }
            _ => {}
        }
    }
    for name in crate::config::COMPAT_ENV {
        if let Ok(v) = std::env::var(name) {
            s.compat_env.push(((*name).to_owned(), v));
        }
    }
    s
}
