//! `wsgate connect` in a pipe, `wsgate history` from the shell, and `wsgate serve`.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::support::*;

/// Runs `wsgate ARGS` with `stdin` piped in; returns (exit code, stdout, stderr).
async fn wsgate(args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let mut child = Command::new(bin())
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).await.unwrap();
    drop(input);
    let out = within(child.wait_with_output()).await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn connect_in_a_pipe_then_history_reads_it_back() {
    let gw = Gateway::mock(&["--echo"]).await;
    let url = gw.ws("/pipe?x=1");
    let (code, out, err) = wsgate(&["connect", &url, "--wait", "2", "-H", "X-Trace: 7"], b"a\nb\n").await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "a\nb\n");
    assert!(err.contains("CONNECTED") && err.contains("close 1000"), "{err}");

    // --json: one event per line, messages included.
    let (code, out, _) = wsgate(&["connect", &url, "--wait", "2", "--json"], b"hi\n").await;
    assert_eq!(code, 0);
    let events: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let states: Vec<_> = events.iter().filter_map(|e| e["state"].as_str()).collect();
    assert_eq!(states, ["CONNECTING", "CONNECTED", "DISCONNECTED"]);
    assert!(events.iter().any(|e| e["type"] == "message" && e["text"] == "hi"));

    // --binary: stdin bytes go as one binary message and come back unchanged.
    let bytes = [0u8, 1, 2, 255, b'\n', 7];
    let (code, out, _) = wsgate(&["connect", &url, "--wait", "2", "--binary", "--json"], &bytes).await;
    assert_eq!(code, 0);
    assert!(out.contains("\"base64\":\"AAEC/woH\""), "{out}");

    // A refused port: FAILED with its class, exit 1.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (code, _, err) = wsgate(&["connect", &format!("ws://127.0.0.1:{port}/")], b"").await;
    assert_eq!(code, 1);
    assert!(err.contains("FAILED (refused)"), "{err}");
    let (code, _, err) = wsgate(&["connect", "http://x/"], b"").await;
    assert_eq!(code, 64, "{err}");

    // The history CLI reads the gateway's store.
    let store = format!("sqlite://{}", gw.dir().join("wsgate.db").display());
    let sessions = gw.wait_sessions(|s| s.iter().filter(|x| x["state"] == "DISCONNECTED").count() == 3).await;
    // Newest first: the oldest is the text session.
    let id = sessions.iter().rev().find(|s| s["path"] == "/pipe?x=1").unwrap()["id"].as_str().unwrap().to_owned();
    let rows = eventually(|| async {
        let (code, out, _) = wsgate(&["history", "list", "--store", &store, "--json"], b"").await;
        let rows: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        (code == 0 && rows.len() == 3 && rows.iter().all(|r| r["state"] == "DISCONNECTED")).then_some(rows)
    })
    .await;
    assert!(rows.iter().any(|r| r["id"] == id));
    let (code, out, _) = wsgate(&["history", "list", "--store", &store], b"").await;
    assert_eq!(code, 0);
    assert!(out.starts_with("ID ") && out.contains("/pipe?x=1"), "{out}");
    let (code, out, _) = wsgate(&["history", "show", &id, "--store", &store], b"").await;
    assert_eq!(code, 0);
    assert!(out.contains("DISCONNECTED") && out.contains("events"), "{out}");
    let (code, out, _) = wsgate(&["history", "export", &id, "--store", &store], b"").await;
    assert_eq!(code, 0);
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0]["type"], "session");
    let texts: Vec<_> = lines.iter().filter_map(|l| l["text"].as_str()).collect();
    assert_eq!(texts, ["a", "a", "b", "b"]);
    let (code, _, err) = wsgate(&["history", "list", "--store", "sqlite:///nonexistent/dir/h.db"], b"").await;
    assert_eq!(code, 1);
    assert!(err.contains("does not exist"), "{err}");
}

#[tokio::test]
async fn serve_runs_the_control_plane_with_the_store() {
    let mut gw = Gateway::spawn("serve", &[], &[]).await;
    let health = reqwest::get(gw.api("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    let list = http_json(&gw.api("/api/sessions")).await;
    assert_eq!(list["sessions"], serde_json::json!([]));
    assert!(gw.dir().join("wsgate.db").exists(), "the default store is created in the working directory");
    assert_eq!(gw.terminate().await, 0);
}

#[tokio::test]
async fn connect_closes_with_the_code_asked_and_reports_the_servers_answer() {
    let gw = Gateway::mock(&["--echo"]).await;
    let url = gw.ws("/bye");
    let (code, out, err) =
        wsgate(&["connect", &url, "--wait", "2", "--close-code", "4001", "--close-reason", "done here"], b"x\n").await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "x\n");
    // The mock answers with the same code and no reason: what is reported is its answer.
    assert!(err.contains("close 4001 \"\" (by client)"), "{err}");
    let sessions = gw.wait_sessions(|s| s.iter().any(|s| s["state"] == "DISCONNECTED")).await;
    assert_eq!(
        (sessions[0]["close"]["code"].as_u64(), sessions[0]["close"]["reason"].as_str()),
        (Some(4001), Some("done here"))
    );

    for bad in [["--close-code", "1005"], ["--close-reason", &"r".repeat(124)]] {
        let (code, _, err) = wsgate(&["connect", &url, bad[0], bad[1]], b"").await;
        assert_eq!(code, 64, "{bad:?}: {err}");
        assert!(err.contains(bad[0]), "{err}");
    }
}

#[tokio::test]
async fn ctrl_c_closes_with_a_close_frame() {
    use tokio::io::AsyncBufReadExt as _;
    let gw = Gateway::mock(&["--echo"]).await;
    let mut child = Command::new(bin())
        .args(["connect", &gw.ws("/interrupted"), "--close-reason", "leaving"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    within(async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("CONNECTED") {
                return;
            }
        }
        panic!("wsgate connect never connected");
    })
    .await;
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap();
    let status = within(child.wait()).await.unwrap();
    assert_eq!(status.code(), Some(0));
    // stdin is still open: only the interrupt ended it, and with a close frame.
    let sessions = gw.wait_sessions(|s| s.iter().any(|s| s["state"] == "DISCONNECTED")).await;
    assert_eq!(sessions[0]["close"], serde_json::json!({"code": 1000, "reason": "leaving", "initiator": "client"}));
}
