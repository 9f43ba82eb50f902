//! The `wsgate` binary as a library, so the real CLI runs in tests: [`run`] takes the
//! arguments and returns the exit code.
//!
//! Exit codes: 0 success; 64 invalid configuration or flags (EX_USAGE), with a
//! message naming the source, the field and the fix; 1 runtime failure (a port in
//! use, say).

mod cli;
mod commands;
mod compare;
/// Public so the config fuzz target (`fuzz/`) drives the real loader and validation.
pub mod config;
mod gateway;
mod help;
mod logging;
mod routing;
mod sources;

use std::ffi::OsString;
use std::process::ExitCode;

/// Exit code for invalid configuration or usage (BSD `EX_USAGE`).
pub const EXIT_USAGE: u8 = 64;

pub fn run(args: Vec<OsString>) -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    let matches = match help::with_defaults(cli::Cli::command()).try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp
                | clap::error::ErrorKind::DisplayVersion
                | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
                _ => EXIT_USAGE,
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let parsed = match cli::Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(EXIT_USAGE);
        }
    };
    commands::exec(parsed, &matches)
}
