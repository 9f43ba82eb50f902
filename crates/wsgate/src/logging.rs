//! Logs go to stderr through `tracing`; `RUST_LOG` wins over `--log-level`.
//! Colours only when stderr is a terminal and `NO_COLOR` is unset (no-color.org):
//! a log file or a pipe gets plain text.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Level names a directive may be on its own.
const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

/// Why a `--log-level` value was refused.
#[derive(Debug, thiserror::Error)]
pub enum LogLevelError {
    /// A bare word that is not a level: tracing would read `blah` as "everything from
    /// target blah" and silence every other log, which is never what was meant.
    #[error("{0:?} is not a log level (error, warn, info, debug, trace or off)")]
    NotALevel(String),
    #[error("{directive:?} is not a log filter: {reason}")]
    BadDirective { directive: String, reason: String },
}

/// Parses a `--log-level` value: a level, or comma-separated `target=level`
/// directives (`info,wsgate_proxy=debug`), as `RUST_LOG` takes them.
pub fn parse_level(value: &str) -> Result<EnvFilter, LogLevelError> {
    let directives: Vec<&str> = value.split(',').map(str::trim).filter(|d| !d.is_empty()).collect();
    for directive in &directives {
        let is_level = LEVELS.iter().any(|l| l.eq_ignore_ascii_case(directive));
        if !is_level && !directive.contains('=') && !directive.contains('[') {
            return Err(LogLevelError::NotALevel((*directive).to_owned()));
        }
    }
    // Rejoined without the spaces a user may put after commas, which tracing's
    // parser does not skip.
    EnvFilter::try_new(directives.join(","))
        .map_err(|e| LogLevelError::BadDirective { directive: value.to_owned(), reason: e.to_string() })
}

pub fn init(level: &str, format: LogFormat) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| parse_level(level).unwrap_or_else(|_| EnvFilter::new("info")));
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_directives_pass_and_bare_words_do_not() {
        for ok in ["info", "WARN", "off", "info,wsgate_proxy=debug", "wsgate=trace", "warn, hyper=off"] {
            assert!(parse_level(ok).is_ok(), "{ok}");
        }
        for bad in ["blah", "info,blah", "verbose"] {
            assert!(matches!(parse_level(bad), Err(LogLevelError::NotALevel(_))), "{bad}");
        }
        assert!(matches!(parse_level("wsgate=loud"), Err(LogLevelError::BadDirective { .. })));
    }
}
