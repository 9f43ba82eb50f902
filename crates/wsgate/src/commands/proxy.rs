//! `wsgate proxy --upstream URL` — the inspecting proxy: the top-level `proxy:` section
//! as a catch-all route, after any `routes:` the config declares.

use std::process::ExitCode;

use clap::ArgMatches;

use crate::cli::ProxyArgs;
use crate::gateway::{Routes, run_routes};
use crate::routing::{Mode, plan};

pub fn exec(args: ProxyArgs, m: &ArgMatches) -> ExitCode {
    let sources = crate::sources::collect(m, args.serve.config.clone());
    let planned = super::configure(m, args.serve.config.clone(), |cfg, fig| {
        Ok((plan(cfg, fig, Mode::Proxy)?, super::listener_tls(cfg, fig)?))
    });
    let (cfg, (plans, tls)) = match planned {
        Ok(p) => p,
        Err(code) => return code,
    };
    let target = match (&cfg.proxy.resolver_url, &cfg.proxy.upstream) {
        (Some(r), _) => format!("resolver {r}"),
        (None, Some(u)) => u.to_string(),
        (None, None) => String::new(),
    };
    let run = async move {
        let routes = Routes { plans, tls, sources, mode: Mode::Proxy };
        run_routes(&cfg, "proxy", &format!("upstream={target}"), routes).await
    };
    super::serve("proxy", run)
}
