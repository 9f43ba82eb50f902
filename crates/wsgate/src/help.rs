//! `--help` shows each setting's default. The flags themselves carry no clap default
//! (a flag must stay "not given" so the file and the environment can set the value;
//! see `sources`), so the default is written into the help text instead, read from
//! the same `Config::default()` that `wsgate config default` prints.

use clap::Command;

use crate::config::{KEYS, documented_defaults};

/// `cmd` and all its subcommands, each config-bearing flag's help ending in
/// `[default: …]`.
pub fn with_defaults(cmd: Command) -> Command {
    let defaults = documented_defaults();
    annotate(cmd, &defaults)
}

fn annotate(mut cmd: Command, defaults: &serde_json::Value) -> Command {
    for key in KEYS {
        let id = key.arg_id();
        if !cmd.get_arguments().any(|a| a.get_id() == id.as_str()) {
            continue;
        }
        let Some(shown) = shown(key.path.split('.').fold(defaults, |v, p| &v[p])) else { continue };
        cmd = cmd.mut_arg(&id, |a| {
            let help = a.get_help().map(ToString::to_string).unwrap_or_default();
            a.help(format!("{help} [default: {shown}]"))
        });
    }
    let subcommands: Vec<String> = cmd.get_subcommands().map(|s| s.get_name().to_owned()).collect();
    for name in subcommands {
        cmd = cmd.mut_subcommand(&name, |s| annotate(s, defaults));
    }
    cmd
}

/// A default worth showing: switches (off unless given), unset options and empty
/// lists have none.
fn shown(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn proxy_help_shows_the_default_ports_and_timeouts() {
        let mut cmd = with_defaults(crate::cli::Cli::command());
        let proxy = cmd.find_subcommand_mut("proxy").map(|p| p.render_long_help().to_string()).unwrap_or_default();
        for default in ["[default: 127.0.0.1:8080]", "[default: 127.0.0.1:8081]", "[default: sqlite://wsgate.db]"] {
            assert!(proxy.contains(default), "{default} missing from:\n{proxy}");
        }
    }
}
