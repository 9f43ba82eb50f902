//! One file per subcommand: each turns parsed flags into a plan and runs it.

mod bench;
mod config;
mod connect;
mod history;
mod mock;
mod proxy;
mod relay;
mod replay;
mod serve;

use std::process::ExitCode;

use clap::ArgMatches;

use crate::cli::{Cli, Command, ConfigCommand, HistoryCommand};
use crate::config::{Config, ConfigError, load};

pub fn exec(cli: Cli, matches: &ArgMatches) -> ExitCode {
    let sub = matches.subcommand().map(|(_, m)| m);
    match cli.command {
        Command::Proxy(args) => proxy::exec(*args, sub.unwrap_or(matches)),
        Command::Mock(args) => mock::exec(*args, sub.unwrap_or(matches)),
        Command::Relay(args) => relay::exec(*args, sub.unwrap_or(matches)),
        Command::Serve(args) => serve::exec(*args, sub.unwrap_or(matches)),
        Command::Connect(args) => connect::exec(*args),
        Command::Replay(args) => replay::exec(*args),
        Command::History { command } => {
            let sub = sub.and_then(|m| m.subcommand()).map(|(_, m)| m).unwrap_or(matches);
            match command {
                HistoryCommand::List(args) => history::list(*args, sub),
                HistoryCommand::Show(args) => history::show(*args, sub),
                HistoryCommand::Export(args) => history::export(*args, sub),
            }
        }
        Command::Bench { command } => bench::exec(*command),
        Command::Config { command } => match command {
            ConfigCommand::Default => config::default(),
            ConfigCommand::Check(args) => {
                let sub = sub.and_then(|m| m.subcommand()).map(|(_, m)| m).unwrap_or(matches);
                config::check(*args, sub)
            }
        },
    }
}

/// Prints a configuration error and returns exit code 64.
pub fn usage_error(e: &ConfigError) -> ExitCode {
    eprintln!("wsgate: {e}");
    ExitCode::from(crate::EXIT_USAGE)
}

/// A multi-threaded runtime sized to the CPUs this process may use (so `taskset`
/// pinning is honoured).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()
}

/// The shared start of every serving command: load the layered config, validate and
/// plan it with `plan` (any error: message and exit 64), then start logging.
pub fn configure<T>(
    m: &ArgMatches,
    file: Option<std::path::PathBuf>,
    plan: impl FnOnce(&Config, &figment::Figment) -> Result<T, ConfigError>,
) -> Result<(Config, T), ExitCode> {
    configure_with(&crate::sources::collect(m, file), plan)
}

/// [`configure`] from sources already collected (a command that adds its own, such as
/// websocket-relay's config file).
pub fn configure_with<T>(
    sources: &crate::config::Sources,
    plan: impl FnOnce(&Config, &figment::Figment) -> Result<T, ConfigError>,
) -> Result<(Config, T), ExitCode> {
    let (cfg, fig) = load(sources).map_err(|e| usage_error(&e))?;
    // Every serving command hosts the control plane and so outbound connections: a
    // CA file they cannot use is a config error now, not a surprise at start.
    if let Some(ca) = cfg.outbound.ca.as_deref() {
        wsgate_protocol::tls::client_config(Some(ca))
            .map_err(|e| usage_error(&crate::config::load_invalid(&fig, "outbound.ca", e.to_string(), None)))?;
    }
    let planned = plan(&cfg, &fig).map_err(|e| usage_error(&e))?;
    crate::logging::init(&cfg.log_level, cfg.log_format);
    Ok((cfg, planned))
}

/// Runs a serving command's future to completion on a fresh runtime.
pub fn serve(name: &str, run: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wsgate {name}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wsgate {name}: {e:#}");
            // The instance name held by another gateway is fixed by a flag, like a bad config.
            if e.downcast_ref::<crate::gateway::InstanceInUse>().is_some() {
                return ExitCode::from(crate::EXIT_USAGE);
            }
            ExitCode::FAILURE
        }
    }
}

/// The listener's TLS config from `tls_cert`/`tls_key` (errors name the field).
pub fn listener_tls(
    cfg: &Config,
    fig: &figment::Figment,
) -> Result<Option<std::sync::Arc<wsgate_protocol::tls::ServerConfig>>, ConfigError> {
    match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => wsgate_protocol::tls::server_config(cert, key).map(Some).map_err(|e| {
            let field = if e.to_string().contains("private key") { "tls_key" } else { "tls_cert" };
            crate::config::load_invalid(fig, field, e.to_string(), None)
        }),
        _ => Ok(None),
    }
}
