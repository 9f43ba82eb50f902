//! `wsgate serve` — everything the config declares: its `routes:` (proxy and mock
//! handlers on one listener; a top-level `proxy:` or `mock:` section becomes a
//! catch-all route after them), the control plane, and the store. With no routes and
//! no config file, the control plane runs alone: outbound connections and history.

use std::process::ExitCode;

use clap::ArgMatches;

use crate::cli::ServeArgs;
use crate::gateway::{Routes, run_routes};
use crate::routing::{Mode, plan};

pub fn exec(args: ServeArgs, m: &ArgMatches) -> ExitCode {
    let sources = crate::sources::collect(m, args.config.clone());
    let planned = super::configure(m, args.config.clone(), |cfg, fig| {
        Ok((plan(cfg, fig, Mode::Serve)?, super::listener_tls(cfg, fig)?))
    });
    let (cfg, (plans, tls)) = match planned {
        Ok(p) => p,
        Err(code) => return code,
    };
    let run = async move {
        let store =
            if cfg.store.enabled { cfg.store.url.parse::<wsgate_store::StoreUrl>()?.to_string() } else { "off".into() };
        run_routes(&cfg, "serve", &format!("store={store}"), Routes { plans, tls, sources, mode: Mode::Serve }).await
    };
    super::serve("serve", run)
}
