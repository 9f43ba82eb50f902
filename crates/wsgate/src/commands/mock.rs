//! `wsgate mock --echo` — sessions answered by wsgate itself.

use std::process::ExitCode;

use clap::ArgMatches;
use wsgate_listener::ListenerConfig;
use wsgate_mock::{Mock, MockConfig, MockMode};

use crate::cli::MockArgs;
use crate::config::load;

pub fn exec(args: MockArgs, m: &ArgMatches) -> ExitCode {
    let sources = crate::sources::collect(m, args.serve.config.clone());
    let (cfg, fig) = match load(&sources) {
        Ok(c) => c,
        Err(e) => return super::usage_error(&e),
    };
    if let Err(e) = cfg.validate_for_mock(&fig) {
        return super::usage_error(&e);
    }
    let tls = match super::proxy::listener_tls(&cfg, &fig) {
        Ok(t) => t,
        Err(e) => return super::usage_error(&e),
    };
    crate::logging::init(&cfg.log_level, cfg.log_format);
    let mock_cfg = MockConfig {
        route: "mock".into(),
        mode: MockMode::Echo,
        subprotocols: cfg.mock.subprotocols.clone(),
        max_message_size: cfg.limits.max_message_size,
        close_timeout: std::time::Duration::from_secs(5),
        deflate: cfg.deflate.policy(),
        listener: ListenerConfig {
            tls,
            max_connections: cfg.limits.max_connections,
            handshake_timeout: cfg.limits.handshake_timeout,
        },
    };
    let rt = match super::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wsgate mock: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let run = crate::gateway::run_server(&cfg, "mock", "mode=echo", |listener, gateway| {
        let mock = Mock::new(
            mock_cfg,
            gateway.bus.clone(),
            gateway.registry.clone(),
            gateway.shutdown.clone(),
            gateway.sessions.clone(),
        );
        tokio::spawn(wsgate_mock::serve(listener, mock))
    });
    match rt.block_on(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wsgate mock: {e:#}");
            ExitCode::FAILURE
        }
    }
}
