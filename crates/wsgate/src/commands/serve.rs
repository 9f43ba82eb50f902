//! `wsgate serve` — everything the config declares. Today that is the control plane
//! with the store: outbound connections and history, at once, with no config. Later
//! handlers (the relay) join here.

use std::process::ExitCode;

use clap::ArgMatches;

use crate::cli::ServeArgs;
use crate::gateway::Gateway;

pub fn exec(args: ServeArgs, m: &ArgMatches) -> ExitCode {
    let planned = super::configure(m, args.config.clone(), |cfg, fig| cfg.validate_common(fig));
    let (cfg, ()) = match planned {
        Ok(p) => p,
        Err(code) => return code,
    };
    let run = async move {
        let gateway = Gateway::start(&cfg).await?;
        gateway.control.set_ready(true);
        let store =
            if cfg.store.enabled { cfg.store.url.parse::<wsgate_store::StoreUrl>()?.to_string() } else { "off".into() };
        println!("wsgate serve: control={} store={store}", gateway.control_addr);
        tracing::info!(control = %gateway.control_addr, %store, "serve ready");
        gateway.run_until_signal(cfg.shutdown_timeout).await
    };
    super::serve("serve", run)
}
