//! `wsgate mock --echo | --replay FILE | --replay-session ID | --rules FILE | --ai-narrative TEXT ...` — sessions answered by wsgate itself: the top-level `mock:`
//! section as a catch-all route, after any `routes:` the config declares.

use std::process::ExitCode;

use clap::ArgMatches;

use crate::cli::MockArgs;
use crate::gateway::{Routes, run_routes};
use crate::routing::{Mode, plan};

pub fn exec(args: MockArgs, m: &ArgMatches) -> ExitCode {
    let sources = crate::sources::collect(m, args.serve.config.clone());
    let planned = super::configure(m, args.serve.config.clone(), |cfg, fig| {
        Ok((plan(cfg, fig, Mode::Mock)?, super::listener_tls(cfg, fig)?))
    });
    let (cfg, (plans, tls)) = match planned {
        Ok(p) => p,
        Err(code) => return code,
    };
    let mode = match (&cfg.mock.replay, &cfg.mock.ai) {
        _ if cfg.mock.rules.is_some() => "mode=rules",
        (Some(_), _) => "mode=replay",
        _ if cfg.mock.replay_session.is_some() => "mode=replay",
        (None, Some(_)) => "mode=ai",
        (None, None) => "mode=echo",
    };
    let run = async move { run_routes(&cfg, "mock", mode, Routes { plans, tls, sources, mode: Mode::Mock }).await };
    super::serve("mock", run)
}
