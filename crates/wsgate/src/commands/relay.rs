//! `wsgate relay` — clients in rooms, messages fanned out: the top-level `relay:`
//! section as a catch-all route, after any `routes:` the config declares.
//! `--config-file` reads websocket-relay's own config file as is.

use std::process::ExitCode;

use clap::ArgMatches;

use crate::cli::RelayArgs;
use crate::gateway::{Routes, run_routes};
use crate::routing::{Mode, plan};

pub fn exec(args: RelayArgs, m: &ArgMatches) -> ExitCode {
    let mut sources = crate::sources::collect(m, args.serve.config.clone());
    if let Some(file) = &args.config_file {
        match crate::config::websocket_relay::read(file) {
            Ok(values) => sources.compat_file = values,
            Err(e) => return super::usage_error(&e),
        }
    }
    let planned =
        super::configure_with(&sources, |cfg, fig| Ok((plan(cfg, fig, Mode::Relay)?, super::listener_tls(cfg, fig)?)));
    let (cfg, (plans, tls)) = match planned {
        Ok(p) => p,
        Err(code) => return code,
    };
    let detail = format!("protocol={}", cfg.relay.protocol.as_str());
    let run =
        async move { run_routes(&cfg, "relay", &detail, Routes { plans, tls, sources, mode: Mode::Relay }).await };
    super::serve("relay", run)
}
