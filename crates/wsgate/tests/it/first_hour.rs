//! What a new user meets in the first hour, each once a bug: a typo in the log level,
//! a secret printed by `config check`, a bench run that passed with wrong echoes,
//! colour codes in log files, an internal URL shown to a refused client, a session
//! missing from the list just after it ended, two path-filter rules, a bare 404 at
//! the control plane's root, `--help` without defaults or naming commands that do
//! not exist.

use std::process::Stdio;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use wsgate_protocol::{CloseFrame, ConnectError, ConnectRequest, Message};

use crate::support::*;

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out =
        std::process::Command::new(bin()).args(args).envs(env.iter().copied()).env_remove("RUST_LOG").output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_log_level_that_is_not_one_is_a_config_error() {
    // tracing reads `blah` as "everything from target blah", which silenced every log.
    for (args, env) in [
        (vec!["proxy", "--upstream", "ws://127.0.0.1:1", "--log-level", "blah"], vec![]),
        (vec!["mock", "--echo"], vec![("WSGATE_LOG_LEVEL", "verbose")]),
        (vec!["proxy", "--upstream", "ws://127.0.0.1:1"], vec![("LOG_LEVEL", "chatty")]),
    ] {
        let (code, _, err) = run(&args, &env);
        assert_eq!(code, 64, "{args:?} {env:?}: {err}");
        assert!(err.contains("log_level") && err.contains("not a log level") && err.contains("fix:"), "{err}");
    }
    let (code, _, err) = run(&["config", "check", "--log-level", "info,wsgate_proxy=debug"], &[]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn config_check_never_prints_a_secret() {
    let (code, out, err) = run(
        &[
            "config",
            "check",
            "--admin-token",
            "tok-s3cret",
            "--store",
            "postgres://app:hunter2@db.internal/wsgate",
            "--upstream",
            "wss://bot:upstream-pw@api.example/ws",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    for secret in ["tok-s3cret", "hunter2", "upstream-pw"] {
        assert!(!out.contains(secret) && !err.contains(secret), "{secret} printed:\n{out}{err}");
    }
    assert!(out.contains("\"admin_token\": \"***\""), "{out}");
    assert!(out.contains("postgres://app:***@db.internal/wsgate"), "{out}");
}

/// A third-party server (tokio-tungstenite) that answers every message with its
/// first half: a broken echo.
async fn halving_echo() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else { return };
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_text() || m.is_binary() {
                        let data = m.into_data();
                        let half = data.slice(..data.len() / 2);
                        if ws.send(tokio_tungstenite::tungstenite::Message::Binary(half)).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    format!("ws://{addr}/")
}

#[tokio::test]
async fn bench_exits_non_zero_when_any_echo_is_wrong() {
    let bad = halving_echo().await;
    let out = within(
        tokio::process::Command::new(bin())
            .args(["bench", "echo", &bad, "-c", "1", "-n", "5", "-s", "64", "--no-progress"])
            .output(),
    )
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}{err}", String::from_utf8_lossy(&out.stdout));
    assert!(err.contains("FAILED") && err.contains("5 messages were not what was sent"), "{err}");

    let gw = Gateway::mock(&["--echo", "--no-store"]).await;
    let out = within(
        tokio::process::Command::new(bin())
            .args(["bench", "echo", &gw.ws("/"), "-c", "2", "-n", "20", "-s", "64", "--no-progress"])
            .output(),
    )
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Starts `wsgate mock --echo` under `script`, which gives it a terminal, and returns
/// what the terminal showed up to the ready line.
async fn on_a_terminal(env: &[(&str, &str)]) -> String {
    let dir = TempDir::new();
    let cmd = format!("{} mock --echo --listen 127.0.0.1:0 --control 127.0.0.1:0 --log-level info", bin());
    let mut child = tokio::process::Command::new("script")
        .args(["-qefc", &cmd, "/dev/null"])
        .current_dir(&dir.0)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("script (util-linux) runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    within(async {
        while let Ok(Some(line)) = lines.next_line().await {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("listen=") {
                return;
            }
        }
        panic!("no ready line on the terminal:\n{seen}");
    })
    .await;
    let _ = child.kill().await;
    seen
}

#[tokio::test]
async fn logs_are_coloured_only_on_a_terminal_without_no_color() {
    let gw = Gateway::mock(&["--echo"]).await;
    let logs = eventually(|| async {
        let l = gw.logs();
        l.contains("INFO").then_some(l)
    })
    .await;
    assert!(!logs.contains('\u{1b}'), "escape codes in a log file:\n{logs:?}");

    let tty = on_a_terminal(&[]).await;
    assert!(tty.contains("INFO") && tty.contains('\u{1b}'), "no colour on a terminal:\n{tty:?}");
    let no_color = on_a_terminal(&[("NO_COLOR", "1")]).await;
    assert!(no_color.contains("INFO") && !no_color.contains('\u{1b}'), "NO_COLOR ignored:\n{no_color:?}");
}

#[tokio::test]
async fn a_refused_client_sees_a_generic_reason_and_the_session_keeps_the_detail() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let upstream = format!("ws://127.0.0.1:{port}");
    let refusal = |gw: &Gateway| {
        let url = gw.ws("/secret-path").parse().unwrap();
        async move {
            match within(wsgate_protocol::connect(ConnectRequest::new(url))).await {
                Err(ConnectError::Rejected { status, body, .. }) => {
                    (status.as_u16(), String::from_utf8_lossy(&body).into_owned())
                }
                other => panic!("expected a refusal, got {:?}", other.map(|_| "a connection")),
            }
        }
    };

    let gw = Gateway::proxy(&["--upstream", &upstream]).await;
    let (status, body) = refusal(&gw).await;
    assert_eq!(status, 502, "{body}");
    assert!(!body.contains(&port.to_string()) && !body.contains("refused"), "internal detail shown: {body}");
    let sessions = gw.wait_sessions(|s| s.iter().any(|s| s["state"] == "FAILED")).await;
    let id = sessions[0]["id"].as_str().unwrap();
    assert!(body.contains(id), "the body names the session to look up: {body}");
    assert!(sessions[0]["failure"].as_str().unwrap_or_default().contains("refused"), "{:?}", sessions[0]);
    assert!(gw.logs().contains(&port.to_string()), "the detail is in the logs");

    let gw = Gateway::proxy(&["--upstream", &upstream, "--expose-upstream-errors"]).await;
    let (status, body) = refusal(&gw).await;
    assert_eq!(status, 502);
    assert!(body.contains(&format!("127.0.0.1:{port}")) && body.contains("refused"), "{body}");
}

#[tokio::test]
async fn a_session_is_listed_at_every_moment_from_requested_on() {
    let gw = Gateway::mock(&["--echo"]).await;
    // One client for every poll: a new one loads the system's roots, ~100 ms each.
    let http = client();
    let url = gw.api("/api/sessions");
    let list = || async {
        let v: serde_json::Value = http.get(&url).send().await.unwrap().json().await.unwrap();
        v["sessions"].as_array().cloned().unwrap_or_default()
    };
    let mut ws = ws_connect(&gw.ws("/blink")).await;
    let id = gw.wait_sessions(|s| s.len() == 1).await[0]["id"].as_str().unwrap().to_owned();
    ws.send(Message::Close(Some(CloseFrame::new(1000, "bye")))).await.unwrap();
    // The recorder commits every ~100 ms: poll through that window and beyond, and the
    // session must be in every answer (it was missing between leaving the live set
    // and its row being committed).
    let started = Instant::now();
    let mut polls = 0;
    let mut ended = false;
    while started.elapsed() < Duration::from_millis(400) || !ended {
        let sessions = list().await;
        let this = sessions.iter().find(|s| s["id"] == id.as_str());
        let this = this.unwrap_or_else(|| panic!("poll {polls}: session {id} missing from {sessions:?}"));
        // Once ended, never shown live again: the stored row lags the registry by a
        // batch, and the list and the session's own route must not show that lag.
        let one: serde_json::Value = http.get(format!("{url}/{id}")).send().await.unwrap().json().await.unwrap();
        for (what, state) in [("list", &this["state"]), ("GET /{id}", &one["state"])] {
            assert!(!ended || state == "DISCONNECTED", "poll {polls}: {what} shows {state} after the end");
        }
        ended |= this["state"] == "DISCONNECTED" || one["state"] == "DISCONNECTED";
        polls += 1;
        assert!(started.elapsed() < WAIT, "the session never ended: {this}");
    }
    assert!(polls > 20, "only {polls} polls");
}

#[tokio::test]
async fn live_and_sessions_filter_paths_by_the_same_rule() {
    let gw = Gateway::mock(&["--echo"]).await;
    let _ws = ws_connect(&gw.ws("/chat/room?x=1")).await;
    gw.wait_sessions(|s| s.len() == 1).await;
    for (filter, expected) in [("/chat", 1), ("/chat/room?x=1", 1), ("/chat/room?x=2", 0), ("/feed", 0)] {
        let listed =
            http_json(&gw.api(&format!("/api/sessions?path={}", filter.replace('?', "%3F").replace('=', "%3D")))).await
                ["sessions"]
                .as_array()
                .map_or(0, Vec::len);
        assert_eq!(listed, expected, "/api/sessions?path={filter}");
        let q = filter.replace('?', "%3F").replace('=', "%3D");
        let mut live = ws_connect(&format!("ws://{}/api/live?path={q}", gw.control)).await;
        let status: serde_json::Value = serde_json::from_str(&text(&recv(&mut live).await)).unwrap();
        assert_eq!(status["sessions"].as_array().map_or(0, Vec::len), expected, "/api/live?path={filter}: {status}");
    }
}

#[tokio::test]
async fn the_control_plane_root_says_what_it_serves() {
    let gw = Gateway::mock(&["--echo", "--no-store", "--admin-token", "t0k"]).await;
    let res = client().get(gw.api("/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let index: serde_json::Value = res.json().await.unwrap();
    let hrefs: Vec<&str> = index["links"].as_array().unwrap().iter().filter_map(|l| l["href"].as_str()).collect();
    for path in ["/api/openapi.json", "/api/sessions", "/api/live", "/metrics", "/healthz"] {
        assert!(hrefs.contains(&path), "{path} not in {index}");
    }
    // A browser gets the dashboard, and its files, without the token (they hold no
    // data; the page asks for the token when the API wants it).
    let html = client().get(gw.api("/")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(html.status(), 200);
    assert!(html.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let csp = html.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(html.text().await.unwrap().contains("/ui/app.js"));
    let js = client().get(gw.api("/ui/app.js")).send().await.unwrap();
    assert_eq!(js.status(), 200);
    assert!(js.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
    let missing = client().get(gw.api("/ui/nope.js")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("nope.js"), "{body}");
    // The API itself still wants it.
    assert_eq!(client().get(gw.api("/api/sessions")).send().await.unwrap().status(), 401);
}

#[test]
fn help_shows_defaults_and_names_only_commands_that_exist() {
    let (code, out, _) = run(&["proxy", "--help"], &[]);
    assert_eq!(code, 0);
    for default in ["[default: 127.0.0.1:8080]", "[default: 127.0.0.1:8081]", "[default: sqlite://wsgate.db]"] {
        assert!(out.contains(default), "{default} missing from proxy --help:\n{out}");
    }
    let (_, top, _) = run(&["--help"], &[]);
    let (_, long, _) = run(&["help", "proxy"], &[]);
    let commands: Vec<&str> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for present in ["proxy", "mock", "relay", "replay"] {
        assert!(commands.contains(&present), "{present} not listed:\n{top}");
    }
    // The dashboard is not a command: it is where the control plane is, and help
    // says so there.
    assert!(!commands.contains(&"dashboard"), "dashboard listed as a command:\n{top}");
    assert!(long.contains("(dashboard, API"), "help proxy does not say where the dashboard is:\n{long}");
}
