//! One file per subcommand: each turns parsed flags into a plan and runs it.

mod bench;
mod config;
mod mock;
mod proxy;

use std::process::ExitCode;

use clap::ArgMatches;

use crate::cli::{Cli, Command, ConfigCommand};
use crate::config::ConfigError;

pub fn exec(cli: Cli, matches: &ArgMatches) -> ExitCode {
    let sub = matches.subcommand().map(|(_, m)| m);
    match cli.command {
        Command::Proxy(args) => proxy::exec(*args, sub.unwrap_or(matches)),
        Command::Mock(args) => mock::exec(*args, sub.unwrap_or(matches)),
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
