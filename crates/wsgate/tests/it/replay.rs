//! `wsgate mock --replay` through the real binary, driven by tokio-tungstenite (a
//! client wsgate did not write): MockForge's documented example plays as its
//! documentation says, schedules keep time, waits match by regex and JSONPath and
//! their timeouts act, a proxied session's export replays byte for byte with its
//! close code, and a bad script stops the start with its file and line.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as TMessage;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::*;
use crate::tt::*;

fn script(dir: &TempDir, name: &str, lines: &str) -> String {
    let path = dir.0.join(name);
    std::fs::write(&path, lines).unwrap();
    path.display().to_string()
}

async fn mock_replay(file: &str, extra: &[&str]) -> Gateway {
    let mut args = vec!["--replay", file, "--no-store"];
    args.extend_from_slice(extra);
    Gateway::mock(&args).await
}

/// `xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`, lowercase hex.
fn is_uuid_v4(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        && groups[2].starts_with('4')
}

/// MockForge's README example, as written there.
const MOCKFORGE_EXAMPLE: &str = r#"{"ts":0,"dir":"out","text":"HELLO {{uuid}}","waitFor":"^CLIENT_READY$"}
{"ts":10,"dir":"out","text":"{\"type\":\"welcome\",\"sessionId\":\"{{uuid}}\"}"}
{"ts":20,"dir":"out","text":"{\"data\":{{randInt 1 100}}}","waitFor":"^ACK$"}
"#;

/// What one client gets from the documented example.
async fn play_documented_example(gw: &Gateway) -> (String, String, String) {
    let mut ws = connect(gw, "/demo").await;
    // Nothing before the client says it is ready.
    quiet_for(&mut ws, Duration::from_millis(150)).await;
    ws.send(TMessage::text("not yet")).await.unwrap();
    quiet_for(&mut ws, Duration::from_millis(100)).await;
    ws.send(TMessage::text("CLIENT_READY")).await.unwrap();
    let hello = next_text(&mut ws).await;
    let welcome = next_text(&mut ws).await;
    quiet_for(&mut ws, Duration::from_millis(100)).await;
    ws.send(TMessage::text("ACK")).await.unwrap();
    let data = next_text(&mut ws).await;
    (hello, welcome, data)
}

#[tokio::test]
async fn replay_plays_mockforges_documented_example_as_documented() {
    let dir = TempDir::new();
    let file = script(&dir, "demo.jsonl", MOCKFORGE_EXAMPLE);
    let gw = mock_replay(&file, &["--seed", "42"]).await;
    let (hello, welcome, data) = play_documented_example(&gw).await;
    let uuid = hello.strip_prefix("HELLO ").expect("HELLO {{uuid}}");
    assert!(is_uuid_v4(uuid), "{hello}");
    let welcome: serde_json::Value = serde_json::from_str(&welcome).unwrap();
    assert_eq!(welcome["type"], "welcome");
    assert!(is_uuid_v4(welcome["sessionId"].as_str().unwrap()), "{welcome}");
    let data: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert!((1..=100).contains(&data["data"].as_i64().unwrap()), "{data}");
    // The same seed, the same values, session after session.
    assert_eq!(play_documented_example(&gw).await.0, hello);
}

#[tokio::test]
async fn replay_keeps_its_schedule_and_speed() {
    let dir = TempDir::new();
    let file = script(
        &dir,
        "timed.jsonl",
        "{\"ts\":0,\"text\":\"a\"}\n{\"ts\":200,\"text\":\"b\"}\n{\"ts\":400,\"base64\":\"AAEC/w==\"}\n{\"ts\":500,\"close\":{\"code\":4000,\"reason\":\"done\"}}\n",
    );
    for (speed, scale) in [("1.0", 1.0), ("2.0", 0.5)] {
        let gw = mock_replay(&file, &["--speed", speed]).await;
        let mut ws = connect(&gw, "/").await;
        let t0 = Instant::now();
        assert_eq!(next_text(&mut ws).await, "a");
        assert_eq!(next_text(&mut ws).await, "b");
        let b_at = t0.elapsed();
        assert_eq!(next(&mut ws).await, TMessage::Binary(vec![0u8, 1, 2, 255].into()));
        let bin_at = t0.elapsed();
        let TMessage::Close(Some(close)) = next(&mut ws).await else { panic!("expected a close") };
        assert_eq!((close.code, close.reason.as_str()), (CloseCode::Library(4000), "done"));
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        // On schedule: never early; late by at most a loaded machine's scheduling.
        assert!(ms(b_at) >= 200.0 * scale - 5.0 && ms(b_at) < 200.0 * scale + 150.0, "b at {b_at:?}, speed {speed}");
        assert!(ms(bin_at) >= 400.0 * scale - 5.0 && ms(bin_at) < 400.0 * scale + 150.0, "binary at {bin_at:?}");
    }
}

#[tokio::test]
async fn replay_waits_by_jsonpath_and_acts_on_timeouts() {
    let dir = TempDir::new();
    let file = script(
        &dir,
        "login.jsonl",
        concat!(
            r#"{"ts":0,"text":"who are you?"}"#,
            "\n",
            r#"{"ts":0,"waitFor":"$.type","equals":"login","timeout":400,"onTimeout":{"close":4408,"reason":"no login"},"text":"welcome {{$.user.name}}"}"#,
            "\n",
            r#"{"ts":0,"dir":"in","waitFor":"ping","timeout":200,"onTimeout":"continue"}"#,
            "\n",
            r#"{"ts":0,"text":"bye {{seq}}"}"#,
            "\n",
        ),
    );
    let gw = mock_replay(&file, &[]).await;

    // Logs in: the JSONPath matches with the expected value, the template reads
    // the matched message; the `in` line times out and continues.
    let mut ws = connect(&gw, "/").await;
    assert_eq!(next_text(&mut ws).await, "who are you?");
    ws.send(TMessage::text(r#"{"type":"hello"}"#)).await.unwrap();
    ws.send(TMessage::text("not json")).await.unwrap();
    ws.send(TMessage::text(r#"{"type":"login","user":{"name":"ann"}}"#)).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "welcome ann");
    let t = Instant::now();
    assert_eq!(next_text(&mut ws).await, "bye 3");
    assert!(t.elapsed() >= Duration::from_millis(190), "the `in` wait lasted {:?}", t.elapsed());

    // Never logs in: closed with the timeout's code.
    let mut ws = connect(&gw, "/").await;
    assert_eq!(next_text(&mut ws).await, "who are you?");
    ws.send(TMessage::text(r#"{"type":"login!"}"#)).await.unwrap();
    let TMessage::Close(Some(close)) = next(&mut ws).await else { panic!("expected a close") };
    assert_eq!((close.code, close.reason.as_str()), (CloseCode::Library(4408), "no login"));
}

/// The conversation the record → replay tests record: "héllo", then 256 bytes of
/// binary, each echoed, then the client closes with 4001 "bye".
const BINARY: std::ops::RangeInclusive<u8> = 0..=255;

/// A real client has the conversation through `proxy` (recording, to an echo
/// upstream); the session's id and its export once every frame, both closes
/// included, is stored.
async fn record_conversation(proxy: &Gateway) -> (String, String) {
    let binary: Vec<u8> = BINARY.collect();
    let mut ws = connect(proxy, "/rec").await;
    ws.send(TMessage::text("héllo")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "héllo");
    ws.send(TMessage::Binary(binary.clone().into())).await.unwrap();
    assert_eq!(next(&mut ws).await, TMessage::Binary(binary.into()));
    ws.close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: CloseCode::Library(4001),
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    while let Some(Ok(_)) = within(ws.next()).await {}
    let list = proxy.wait_sessions(|s| s.iter().any(|x| x["state"] == "DISCONNECTED")).await;
    let id = list[0]["id"].as_str().unwrap().to_owned();
    let export = eventually(|| async {
        let body = reqwest::get(proxy.api(&format!("/api/sessions/{id}/export"))).await.ok()?.text().await.ok()?;
        (body.matches("\"type\":\"close\"").count() == 2).then_some(body)
    })
    .await;
    (id, export)
}

/// The client's side of the conversation against a replay of it on `gw`: it says
/// what it said and gets what it got, byte for byte; the close is left to the caller.
async fn replay_conversation(gw: &Gateway) -> Client {
    let binary: Vec<u8> = BINARY.collect();
    let mut ws = connect(gw, "/rec").await;
    quiet_for(&mut ws, Duration::from_millis(100)).await;
    ws.send(TMessage::text("héllo")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "héllo");
    ws.send(TMessage::Binary(binary.clone().into())).await.unwrap();
    assert_eq!(next(&mut ws).await, TMessage::Binary(binary.into()));
    ws
}

#[tokio::test]
async fn replay_of_a_proxied_sessions_export_gives_the_client_the_same_frames() {
    // Record: a real client through a recording proxy to an echo upstream.
    let up = Upstream::echo().await;
    let dir = TempDir::new();
    let store = format!("sqlite://{}", dir.0.join("h.db").display());
    let url = up.url();
    let proxy = Gateway::proxy(&["--upstream", &url, "--store", &store]).await;
    let (_, export) = record_conversation(&proxy).await;
    let file = script(&dir, "export.jsonl", &export);

    // Replay: the client says what it said, and gets what it got, byte for byte,
    // then the close code.
    let gw = mock_replay(&file, &[]).await;
    let mut ws = replay_conversation(&gw).await;
    // The close the upstream sent, as recorded.
    let recorded = export
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|f| f["dir"] == "upstream_to_client" && f["type"] == "close")
        .expect("the upstream's close is recorded");
    assert_eq!(recorded["code"], 4001, "{recorded}");
    let TMessage::Close(Some(close)) = next(&mut ws).await else { panic!("expected a close") };
    assert_eq!(close.code, CloseCode::Library(4001));
    assert_eq!(close.reason.as_str(), recorded["reason"].as_str().unwrap_or(""));
}

#[tokio::test]
async fn replay_session_plays_a_stored_session_straight_from_the_store() {
    // Record: a real client through a recording proxy to an echo upstream, then the
    // proxy stopped (its instance's lease released, the store file left).
    let up = Upstream::echo().await;
    let dir = TempDir::new();
    let store = format!("sqlite://{}", dir.0.join("h.db").display());
    let mut proxy = Gateway::proxy(&["--upstream", &up.url(), "--store", &store]).await;
    // Every frame stored (both closes) before the proxy goes.
    let (id, _) = record_conversation(&proxy).await;
    assert_eq!(proxy.terminate().await, 0);

    // Replay it by id from the same store: the client says what it said, and gets
    // what it got, byte for byte, then the close.
    let gw = Gateway::mock(&["--replay-session", &id, "--store", &store]).await;
    let mut ws = replay_conversation(&gw).await;
    // The close the upstream sent, as recorded: its answer to the client's 4001
    // "bye", with the code and no reason.
    let TMessage::Close(Some(close)) = next(&mut ws).await else { panic!("expected a close") };
    assert_eq!((close.code, close.reason.as_str()), (CloseCode::Library(4001), ""));
    let routes = http_json(&gw.api("/api/routes")).await;
    assert!(routes.to_string().contains(&format!("replay session {id}")), "{routes}");

    // An id the store does not hold stops the start, naming the id and the store.
    let unknown = "01a206cd-6717-76b2-92ae-5845a280f692";
    let out = std::process::Command::new(bin())
        .args(["mock", "--replay-session", unknown, "--store", &store])
        .args(["--listen", "127.0.0.1:0", "--control", "127.0.0.1:0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains(&format!("no session {unknown} in {store}")), "{stderr}");
    assert!(stderr.contains("mock.replay_session"), "{stderr}");
}

#[tokio::test]
async fn replay_refuses_a_bad_script_with_its_file_and_line() {
    let dir = TempDir::new();
    for (name, lines, says) in [
        ("template.jsonl", "{\"ts\":0,\"text\":\"ok\"}\n{\"ts\":1,\"text\":\"{{nope}}\"}\n", ":2: `text`"),
        ("regex.jsonl", "\n{\"ts\":0,\"text\":\"x\",\"waitFor\":\"(\"}\n", ":2: `waitFor`"),
        ("field.jsonl", "{\"ts\":0,\"text\":\"x\",\"waitfor\":\"a\"}\n", ":1: not a script line"),
        ("close.jsonl", "{\"ts\":0,\"close\":1005}\n", ":1: a close code"),
        ("empty.jsonl", "\n\n", ":0: the script is empty"),
    ] {
        let file = script(&dir, name, lines);
        let out = std::process::Command::new(bin())
            .args(["mock", "--replay", &file, "--no-store", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{name}: {stderr}");
        assert!(stderr.contains(&format!("{file}{says}")), "{name}: {stderr}");
    }
}

#[tokio::test]
async fn replay_routes_serve_beside_others_with_their_own_settings() {
    let dir = TempDir::new();
    let file = script(&dir, "greet.jsonl", "{\"ts\":0,\"text\":\"hi {{randInt 1 1000000}}\"}\n");
    let yaml = format!(
        "store: {{enabled: false}}\nroutes:\n  - name: greet\n    path: /greet\n    mock: {{replay: {file:?}, seed: 7, speed: 2.0}}\n  - name: echo\n    path: /echo\n    mock: {{echo: true}}\n"
    );
    let (_cfg_dir, cfg) = config_file(&yaml);
    let gw = Gateway::spawn("serve", &["--config", &cfg], &[]).await;
    let mut a = connect(&gw, "/greet").await;
    let mut b = connect(&gw, "/greet").await;
    let (ta, tb) = (next_text(&mut a).await, next_text(&mut b).await);
    assert!(ta.starts_with("hi "), "{ta}");
    assert_eq!(ta, tb, "one seed, the same value in every session");
    let mut e = connect(&gw, "/echo").await;
    e.send(TMessage::text("x")).await.unwrap();
    assert_eq!(next_text(&mut e).await, "x");
    let routes = http_json(&gw.api("/api/routes")).await;
    assert!(routes.to_string().contains("replay "), "{routes}");
}

/// A recorded conversation: two requests, two JSON replies with a timestamp that
/// changes from run to run.
const RECORDED: &str = r#"{"type":"session","version":1,"id":"01a206cd-6717-76b2-92ae-5845a280f692","kind":"proxy","route":"default","path":"/api","opened_at":"2026-12-01T10:00:00Z"}
{"t":0.001,"seq":1,"dir":"client_to_upstream","type":"text","text":"get"}
{"t":0.002,"seq":2,"dir":"upstream_to_client","type":"text","text":"{\"price\":10,\"ts\":111}"}
{"t":0.010,"seq":3,"dir":"client_to_upstream","type":"text","text":"get"}
{"t":0.011,"seq":4,"dir":"upstream_to_client","type":"text","text":"{\"price\":10,\"ts\":222}"}
"#;

/// A server answering each `get` with `price` and a fresh `ts`.
async fn price_server(dir: &TempDir, price: u32) -> Gateway {
    let line = format!(
        "{{\"waitFor\":\"^get$\",\"text\":\"{{\\\"price\\\":{price},\\\"ts\\\":{{{{randInt 1000 999999}}}}}}\"}}\n"
    );
    let file = script(dir, &format!("price{price}.jsonl"), &line.repeat(2));
    mock_replay(&file, &[]).await
}

async fn replay_against(file: &str, url: &str, extra: &[&str]) -> std::process::Output {
    within(tokio::process::Command::new(bin()).args(["replay", file, "--against", url]).args(extra).output())
        .await
        .unwrap()
}

#[tokio::test]
async fn replay_against_passes_on_an_unchanged_server_and_names_a_changed_reply() {
    let dir = TempDir::new();
    let file = script(&dir, "recorded.jsonl", RECORDED);
    let same = price_server(&dir, 10).await;
    let changed = price_server(&dir, 11).await;

    let out = replay_against(&file, &same.ws("/api"), &["--ignore", "$.ts"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("2 sent, 2 replies matched"), "{stdout}");

    // Without the mask, the timestamp is the difference, and it is named.
    let out = replay_against(&file, &same.ws("/api"), &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("diverged at {file}:3")) && stderr.contains("at $['ts']"), "{stderr}");

    // A changed field: a readable report, and the same as JSON for CI.
    let out = replay_against(&file, &changed.ws("/api"), &["--ignore", "$.ts"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("at $['price']") && stderr.contains("expected: 10") && stderr.contains("got:      11"),
        "{stderr}"
    );
    let out = replay_against(&file, &changed.ws("/api"), &["--ignore", "$.ts", "--json"]).await;
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["ok"].as_bool(), v["line"].as_u64(), v["at"].as_str()),
        (Some(false), Some(3), Some("$['price']")),
        "{v}"
    );
    assert_eq!((v["expected"].as_str(), v["got"].as_str()), (Some("10"), Some("11")));

    // Bad flags are usage errors.
    let out = replay_against(&file, &same.ws("/api"), &["--ignore", "$["]).await;
    assert_eq!(out.status.code(), Some(64));
}

#[tokio::test]
async fn replay_loops_when_asked_and_otherwise_stays_open_and_silent() {
    let dir = TempDir::new();
    let file =
        script(&dir, "tick.jsonl", "{\"ts\":0,\"text\":\"tick {{seq}}\"}\n{\"ts\":50,\"text\":\"tock {{seq}}\"}\n");
    let looped = mock_replay(&file, &["--loop"]).await;
    let mut ws = connect(&looped, "/").await;
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(next_text(&mut ws).await);
    }
    assert_eq!(seen, ["tick 1", "tock 2", "tick 3", "tock 4", "tick 5"]);

    let once = mock_replay(&file, &[]).await;
    let mut ws = connect(&once, "/").await;
    assert_eq!(next_text(&mut ws).await, "tick 1");
    assert_eq!(next_text(&mut ws).await, "tock 2");
    quiet_for(&mut ws, Duration::from_millis(200)).await;
    // Still a session: it echoes nothing, but answers a close.
    ws.close(None).await.unwrap();
    assert!(matches!(next(&mut ws).await, TMessage::Close(_)));
}
