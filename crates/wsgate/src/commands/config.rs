//! `wsgate config check|default`, both from the one `Config` struct.

use std::process::ExitCode;

use clap::ArgMatches;

use crate::cli::CheckArgs;
use crate::config::{documented_defaults, documented_keys, load};
use crate::routing::Mode;

/// `routes:` is a list of maps with no flag: documented by example.
const ROUTES: &str = "
# Routes: proxy and mock handlers on one listener (wsgate serve). First match wins;
# no match is 404. Reload with SIGHUP or POST /api/reload. For example:
# routes:
#   - name: api                     # labels sessions, history and metrics
#     path: /api/*                  # a prefix (/api and below), or an exact path: /feed
#     host: api.example.com         # optional: only this Host
#     proxy: { upstream: \"ws://127.0.0.1:9000\", strip_prefix: /api }   # the proxy: keys, plus strip_prefix
#     origins: [\"https://app.example.com\"]                              # optional: other browser origins get 403
#     limits: { max_connections: 500, max_message_size: 1048576, idle_timeout: 5m }   # optional
#     record_payloads: headers      # optional: full, headers or sample:N (default: store.payloads)
#   - name: echo
#     path: /echo
#     mock: { echo: true }          # the mock: keys
routes: []
";

/// Prints every field with its documentation and default, as YAML a user can edit.
pub fn default() -> ExitCode {
    let defaults = documented_defaults();
    let mut out = String::from(
        "# wsgate configuration (YAML). Every field is optional; shown here with its default.\n\
         # Each can also be set by flag (--name) or environment variable (WSGATE_NAME).\n\
         # Precedence: flag > WSGATE_* > websocket-multiplex variables (PORT, UPSTREAM_URL, ...) > this file.\n",
    );
    let mut section = "";
    let mut subsection = "";
    for key in documented_keys() {
        let (sec, field) = key.path.split_once('.').unwrap_or(("", key.path));
        if sec != section {
            out.push_str(&format!("\n{sec}:\n"));
            section = sec;
            subsection = "";
        }
        let mut indent = if sec.is_empty() { "" } else { "  " };
        // A section within a section (`mock.ai`) is a mode, unset by default: shown
        // commented out, to be uncommented as a whole.
        let (sub, field) = field.split_once('.').unwrap_or(("", field));
        if !sub.is_empty() {
            if sub != subsection {
                out.push_str(&format!("  # {sub}:\n"));
                subsection = sub;
            }
            indent = "  #   ";
        }
        let value = key.path.split('.').fold(&defaults, |v, p| &v[p]);
        let rendered = match value {
            serde_json::Value::Null => "null".to_owned(),
            serde_json::Value::String(s) => format!("{s:?}"),
            other => other.to_string(),
        };
        out.push_str(&format!("{indent}# {} (--{}, {})\n{indent}{field}: {rendered}\n", key.help, key.flag, key.env()));
    }
    out.push_str(ROUTES);
    emit(&out);
    ExitCode::SUCCESS
}

/// Validates the layered config; prints the effective values, secrets redacted, or
/// the error (exit 64).
pub fn check(args: CheckArgs, m: &ArgMatches) -> ExitCode {
    let sources = crate::sources::collect(m, args.serve.config.clone());
    let (cfg, fig) = match load(&sources) {
        Ok(c) => c,
        Err(e) => return super::usage_error(&e),
    };
    // Checked as `wsgate serve` runs it: every route, and a top-level proxy or mock as
    // the catch-all after them; with a top-level proxy, as `wsgate proxy` checks it.
    let mode = if cfg.proxy.upstream.is_some() || cfg.proxy.resolver_url.is_some() { Mode::Proxy } else { Mode::Serve };
    let result = crate::routing::plan(&cfg, &fig, mode).and_then(|_| super::listener_tls(&cfg, &fig).map(|_| ()));
    if let Err(e) = result {
        return super::usage_error(&e);
    }
    let shown = sources.file.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "defaults".into());
    emit(&format!("config ok ({shown})\n"));
    match serde_json::to_string_pretty(&cfg.redacted()) {
        Ok(s) => emit(&format!("{s}\n")),
        Err(e) => eprintln!("cannot print the effective config: {e}"),
    }
    ExitCode::SUCCESS
}

/// Writes to stdout; a reader that went away (`| head`) is not an error worth a panic,
/// which is what `print!` does on a closed pipe.
fn emit(text: &str) {
    use std::io::Write as _;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}
