//! `wsgate mock --echo` — sessions answered by wsgate itself.

use std::process::ExitCode;

use clap::ArgMatches;
use wsgate_listener::ListenerConfig;
use wsgate_mock::{Mock, MockConfig, MockMode};

use crate::cli::MockArgs;

pub fn exec(args: MockArgs, m: &ArgMatches) -> ExitCode {
    let planned = super::configure(m, args.serve.config.clone(), |cfg, fig| {
        cfg.validate_for_mock(fig)?;
        super::listener_tls(cfg, fig)
    });
    let (cfg, tls) = match planned {
        Ok(p) => p,
        Err(code) => return code,
    };
    let mock_cfg = MockConfig {
        route: "mock".into(),
        mode: MockMode::Echo,
        subprotocols: cfg.mock.subprotocols.clone(),
        max_message_size: cfg.limits.max_message_size,
        close_timeout: std::time::Duration::from_secs(5),
        deflate: cfg.deflate.policy(),
        // 0s means never, as for the proxy.
        idle_timeout: (!cfg.limits.idle_timeout.is_zero()).then_some(cfg.limits.idle_timeout),
        listener: ListenerConfig {
            tls,
            max_connections: cfg.limits.max_connections,
            handshake_timeout: cfg.limits.handshake_timeout,
        },
    };
    let run = async move {
        crate::gateway::run_server(&cfg, "mock", "mode=echo", |listener, gateway| {
            let mock = Mock::new(
                mock_cfg,
                gateway.bus.clone(),
                gateway.registry.clone(),
                gateway.shutdown.clone(),
                gateway.sessions.clone(),
            );
            tokio::spawn(wsgate_mock::serve(listener, mock))
        })
        .await
    };
    super::serve("mock", run)
}
