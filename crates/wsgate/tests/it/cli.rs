//! The command line: help, version, `config default|check`, and bad configuration
//! exiting 64 with a message naming the source, the field and the fix.

use std::process::Command;

use crate::support::*;

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(bin()).args(args).envs(env.iter().copied()).env_remove("RUST_LOG").output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_and_version() {
    let (code, out, _) = run(&["--help"], &[]);
    assert_eq!(code, 0);
    for sub in ["proxy", "bench", "config"] {
        assert!(out.contains(sub), "{out}");
    }
    let (code, out, _) = run(&["--version"], &[]);
    assert_eq!(code, 0);
    assert!(out.starts_with("wsgate "), "{out}");
    let (code, out, _) = run(&["proxy", "--help"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("--accept-early") && out.contains("WSGATE_UPSTREAM"), "{out}");
}

#[test]
fn config_default_is_valid_documented_yaml() {
    let (code, out, _) = run(&["config", "default"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("listen: \"127.0.0.1:8080\""), "{out}");
    assert!(out.contains("# Upstream base URL"), "{out}");
    let dir = TempDir::new();
    let f = dir.0.join("wsgate.yaml");
    std::fs::write(&f, &out).unwrap();
    let (code, out, err) = run(&["config", "check", "--config", f.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("config ok"), "{out}");
}

#[test]
fn bad_configuration_exits_64_naming_source_field_and_fix() {
    let dir = TempDir::new();
    let f = dir.0.join("bad.yaml");

    std::fs::write(&f, "proxy:\n  upstrem: ws://x\n").unwrap();
    let (code, _, err) = run(&["proxy", "--config", f.to_str().unwrap()], &[]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("upstrem") && err.contains("bad.yaml") && err.contains("fix:"), "{err}");

    std::fs::write(&f, "limits:\n  max_connections: lots\n").unwrap();
    let (code, _, err) = run(&["proxy", "--config", f.to_str().unwrap(), "--upstream", "ws://127.0.0.1:1"], &[]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("limits.max_connections") && err.contains("bad.yaml"), "{err}");

    let (code, _, err) = run(&["proxy", "--upstream", "ws://127.0.0.1:1", "--idle-timeout", "soon"], &[]);
    assert_eq!(code, 64);
    assert!(err.contains("limits.idle_timeout") && err.contains("flag --idle-timeout"), "{err}");

    let (code, _, err) = run(&["proxy"], &[("WSGATE_UPSTREAM", "http://not-ws")]);
    assert_eq!(code, 64);
    assert!(err.contains("proxy.upstream") && err.contains("WSGATE_UPSTREAM"), "{err}");

    let (code, _, err) = run(&["proxy"], &[]);
    assert_eq!(code, 64);
    assert!(err.contains("needs an upstream") && err.contains("--upstream"), "{err}");

    let (code, _, err) = run(&["proxy", "--upstream", "ws://127.0.0.1:1", "--control", "0.0.0.0:0"], &[]);
    assert_eq!(code, 64);
    assert!(err.contains("admin") && err.contains("--admin-token"), "{err}");

    let (code, _, err) = run(
        &["proxy", "--upstream", "ws://127.0.0.1:1", "--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key"],
        &[],
    );
    assert_eq!(code, 64);
    assert!(err.contains("tls_cert") && err.contains("/nonexistent.pem"), "{err}");

    let (code, _, err) = run(&["proxy", "--no-such-flag"], &[]);
    assert_eq!(code, 64, "{err}");

    let (code, _, err) = run(&["proxy", "--config", "/nonexistent/wsgate.yaml"], &[]);
    assert_eq!(code, 64);
    assert!(err.contains("/nonexistent/wsgate.yaml"), "{err}");

    let (code, _, err) = run(&["proxy"], &[("UPSTREAM_URL", "ws://127.0.0.1:1"), ("MESSAGE_QUEUE_TIMEOUT", "abc")]);
    assert_eq!(code, 64);
    assert!(err.contains("MESSAGE_QUEUE_TIMEOUT"), "{err}");
}

#[test]
fn layering_precedence_flag_over_env_over_file() {
    let dir = TempDir::new();
    let f = dir.0.join("wsgate.yaml");
    std::fs::write(&f, "proxy:\n  upstream: ws://file:1\n  connect_timeout: 3s\nlimits:\n  max_connections: 7\n")
        .unwrap();
    let (code, out, err) = run(
        &["config", "check", "--config", f.to_str().unwrap(), "--max-connections", "9"],
        &[("WSGATE_UPSTREAM", "ws://env:2"), ("UPSTREAM_URL", "ws://compat:3")],
    );
    assert_eq!(code, 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(out.split_once('\n').unwrap().1).unwrap();
    assert_eq!(json["proxy"]["upstream"], "ws://env:2/");
    assert_eq!(json["proxy"]["connect_timeout"], "3s");
    assert_eq!(json["limits"]["max_connections"], 9);
}
