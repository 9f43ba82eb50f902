//! Faults (docs/faults.md) through the real binary, on mock and proxy routes, driven
//! by tokio-tungstenite (a client wsgate did not write): each fault with a fixed seed
//! gives the same outcome twice, switched at run time through
//! `/api/routes/{name}/faults`, and every faulted message is marked in history.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as TMessage;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::*;
use crate::tt::*;

async fn set_faults(gw: &Gateway, route: &str, spec: Value) -> reqwest::Response {
    let url = gw.api(&format!("/api/routes/{route}/faults"));
    within(crate::support::client().put(url).json(&spec).send()).await.unwrap()
}

async fn put(gw: &Gateway, route: &str, spec: Value) {
    let res = set_faults(gw, route, spec).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
}

async fn clear(gw: &Gateway, route: &str) {
    let url = gw.api(&format!("/api/routes/{route}/faults"));
    let res = within(crate::support::client().delete(url).send()).await.unwrap();
    assert_eq!(res.status(), 200);
}

/// Texts received until `end` (inclusive), or the close frame / end of stream.
async fn texts_until(ws: &mut Client, end: &str) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        match within(ws.next()).await {
            Some(Ok(TMessage::Text(t))) => {
                let t = t.to_string();
                let done = t == end;
                got.push(t);
                if done {
                    return got;
                }
            }
            Some(Ok(TMessage::Close(_))) | None | Some(Err(_)) => return got,
            Some(Ok(_)) => {}
        }
    }
}

/// Sends `n` numbered messages, waits until the gateway has decided each one's fate
/// (the session's `counter` reaches `n`: faulted messages are counted too), clears
/// the faults, and sends `end`: what came back before it is what the faults let
/// through, in order.
async fn run_numbered(gw: &Gateway, route: &str, path: &str, n: usize, counter: &str) -> Vec<String> {
    let mut ws = connect(gw, path).await;
    for i in 0..n {
        ws.send(TMessage::text(format!("m{i}"))).await.unwrap();
    }
    eventually(|| async {
        let list = http_json(&gw.api("/api/sessions?state=CONNECTED")).await;
        let s = list["sessions"].as_array()?.iter().find(|s| s["path"] == path)?.clone();
        (s[counter].as_u64()? >= n as u64).then_some(())
    })
    .await;
    clear(gw, route).await;
    ws.send(TMessage::text("end")).await.unwrap();
    texts_until(&mut ws, "end").await
}

/// A session's stored messages (the recorder commits within about 100 ms).
async fn stored(gw: &Gateway, id: &str, want: usize) -> Vec<Value> {
    eventually(|| async {
        let v = http_json(&gw.api(&format!("/api/sessions/{id}/messages?limit=1000"))).await;
        let list = v["messages"].as_array().cloned().unwrap_or_default();
        (list.len() >= want).then_some(list)
    })
    .await
}

async fn only_session(gw: &Gateway) -> String {
    let list = gw.wait_sessions(|s| !s.is_empty()).await;
    list[0]["id"].as_str().unwrap().to_owned()
}

fn marks(m: &Value) -> Vec<&str> {
    m["marks"].as_array().map(|a| a.iter().filter_map(|v| v.as_str()).collect()).unwrap_or_default()
}

#[tokio::test]
async fn a_mock_drops_with_a_seed_the_same_way_twice_and_another_seed_differs() {
    let gw = Gateway::mock(&["--echo", "--no-store"]).await;
    let spec = |seed: u64| json!({"seed": seed, "drop": {"rate": 0.5, "direction": "to_client"}});
    let mut runs = Vec::new();
    for (i, seed) in [7, 7, 8].into_iter().enumerate() {
        put(&gw, "mock", spec(seed)).await;
        runs.push(run_numbered(&gw, "mock", &format!("/a{i}"), 40, "messages_out").await);
    }
    assert_eq!(runs[0], runs[1], "the same seed, the same messages: the same drops");
    assert_ne!(runs[0], runs[2], "another seed drops others");
    let kept = runs[0].len() - 1;
    assert!((8..=32).contains(&kept), "about half of 40 kept at rate 0.5, got {kept}: {:?}", runs[0]);
    // What got through is in order.
    let numbers: Vec<usize> = runs[0].iter().filter_map(|t| t.strip_prefix('m')?.parse().ok()).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
}

#[tokio::test]
async fn mock_latency_duplicate_and_truncate_act_and_are_marked_in_history() {
    let gw = Gateway::mock(&["--echo"]).await;
    put(&gw, "mock", json!({"latency": {"fixed": "250ms", "direction": "to_client"}})).await;
    let mut ws = connect(&gw, "/lat").await;
    let sent = Instant::now();
    ws.send(TMessage::text("slow")).await.unwrap();
    assert_eq!(texts(&mut ws, 1).await, ["slow"]);
    let took = sent.elapsed();
    assert!(took >= Duration::from_millis(250), "delivered after {took:?}, before the 250 ms latency");
    assert!(took < Duration::from_secs(3), "{took:?}");

    put(&gw, "mock", json!({"duplicate": {"rate": 1.0}, "truncate": {"bytes": 3, "direction": "to_client"}})).await;
    ws.send(TMessage::text("hello")).await.unwrap();
    // from_client duplicates: the echo sees "hello" twice, and each echo is cut and
    // doubled on its way back.
    assert_eq!(texts(&mut ws, 4).await, ["hel", "hel", "hel", "hel"]);
    clear(&gw, "mock").await;
    ws.send(TMessage::text("plain")).await.unwrap();
    assert_eq!(texts(&mut ws, 1).await, ["plain"]);

    let id = only_session(&gw).await;
    let msgs = stored(&gw, &id, 9).await;
    let shown: Vec<(String, Vec<&str>)> = msgs
        .iter()
        .filter(|m| m["type"] == "text")
        .map(|m| (m["text"].as_str().unwrap_or_default().to_owned(), marks(m)))
        .collect();
    assert_eq!(shown[0], ("slow".to_owned(), vec![]));
    assert_eq!(shown[1], ("slow".to_owned(), vec!["fault", "delayed"]));
    assert_eq!(shown[2], ("hello".to_owned(), vec!["fault"]), "{shown:?}");
    assert!(shown.iter().any(|(t, m)| t == "hel" && m == &["fault", "duplicate", "rewritten"]), "{shown:?}");
    assert_eq!(shown.last().unwrap(), &("plain".to_owned(), vec![]), "cleared: nothing marked");
}

#[tokio::test]
async fn disconnects_close_with_the_code_or_drop_the_connection_and_refusals_answer_the_status() {
    let gw = Gateway::mock(&["--echo"]).await;
    put(&gw, "mock", json!({"disconnect": {"after_messages": 3, "code": 4001, "reason": "chaos"}})).await;
    let mut ws = connect(&gw, "/d").await;
    // 1: m0 in, 2: its echo, 3: m1 in → closed once m1 is handled.
    ws.send(TMessage::text("m0")).await.unwrap();
    ws.send(TMessage::text("m1")).await.unwrap();
    let close = loop {
        match within(ws.next()).await {
            Some(Ok(TMessage::Close(Some(c)))) => break c,
            Some(Ok(_)) => {}
            other => panic!("expected the fault's close, got {other:?}"),
        }
    };
    assert_eq!((close.code, close.reason.as_str()), (CloseCode::from(4001), "chaos"));
    drop(ws);
    let ended = eventually(|| async {
        let v = http_json(&gw.api("/api/sessions?state=DISCONNECTED")).await;
        v["sessions"].as_array().and_then(|l| l.first().cloned())
    })
    .await;
    let last = ended["lifecycle"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((last["close_code"].as_u64(), last["reason_kind"].as_str()), (Some(4001), Some("fault")), "{ended}");

    put(&gw, "mock", json!({"disconnect": {"after": "300ms", "abrupt": true}})).await;
    let mut ws = connect(&gw, "/abrupt").await;
    let start = Instant::now();
    match within(ws.next()).await {
        Some(Err(_)) | None => {}
        other => panic!("expected the connection dropped without a close frame, got {other:?}"),
    }
    assert!(start.elapsed() >= Duration::from_millis(300), "{:?}", start.elapsed());

    put(&gw, "mock", json!({"refuse": {"status": 503}})).await;
    match within(tokio_tungstenite::connect_async(gw.ws("/refused"))).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 503),
        other => panic!("expected HTTP 503, got {other:?}"),
    }
    let failed = eventually(|| async {
        let v = http_json(&gw.api("/api/sessions?state=FAILED")).await;
        v["sessions"].as_array().and_then(|l| l.first().cloned())
    })
    .await;
    let refusal = match failed["lifecycle"].as_array().and_then(|l| l.last()) {
        Some(last) => (last["http_status"].as_u64(), last["reason_kind"].as_str()),
        // Already gone from the live registry (a refused session ends at once): the
        // stored row says the same at its top level.
        None => (failed["http_status"].as_u64(), failed["failure_kind"].as_str()),
    };
    assert_eq!(refusal, (Some(503), Some("fault")), "{failed}");
    clear(&gw, "mock").await;
    let mut ws = connect(&gw, "/fine").await;
    ws.send(TMessage::text("ok")).await.unwrap();
    assert_eq!(texts(&mut ws, 1).await, ["ok"]);
}

#[tokio::test]
async fn refusals_with_a_seed_repeat() {
    let gw = Gateway::mock(&["--echo", "--no-store"]).await;
    let mut runs = Vec::new();
    for _ in 0..2 {
        put(&gw, "mock", json!({"seed": 11, "refuse": {"status": 502, "rate": 0.5}})).await;
        let mut outcomes = Vec::new();
        for _ in 0..16 {
            outcomes.push(within(tokio_tungstenite::connect_async(gw.ws("/r"))).await.is_ok());
        }
        runs.push(outcomes);
    }
    assert_eq!(runs[0], runs[1]);
    assert!(runs[0].contains(&true) && runs[0].contains(&false), "{:?}", runs[0]);
}

#[tokio::test]
async fn proxy_route_faults_from_the_config_and_switched_at_run_time() {
    let mut upstream = Upstream::echo().await;
    let (_dir, file) = config_file(&format!(
        "routes:\n  - name: chaos\n    path: /*\n    proxy: {{ upstream: \"{}\" }}\n    faults:\n      seed: 5\n      drop: {{ rate: 0.5, direction: from_client }}\n",
        upstream.url()
    ));
    let gw = Gateway::spawn("serve", &["--config", &file, "--no-store"], &[]).await;
    let got = run_numbered(&gw, "chaos", "/p1", 30, "messages_in").await;
    // What the upstream saw is what the client got back: drops happened on the way in.
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("end") {
        if let TMessage::Text(t) = upstream_text(&mut upstream).await {
            seen.push(t.to_string());
        }
    }
    assert_eq!(seen, got, "the upstream never saw the dropped messages");
    let kept = got.len() - 1;
    assert!((5..=25).contains(&kept), "{got:?}");
    // The same seed again (set at run time, as the config had it): the same outcome.
    put(&gw, "chaos", json!({"seed": 5, "drop": {"rate": 0.5, "direction": "from_client"}})).await;
    assert_eq!(run_numbered(&gw, "chaos", "/p2", 30, "messages_in").await, got);

    // Latency towards the client, with the upstream's own close passing behind it.
    put(&gw, "chaos", json!({"latency": {"uniform": {"min": "150ms", "max": "200ms"}, "direction": "to_client"}}))
        .await;
    let mut ws = connect(&gw, "/p3").await;
    let sent = Instant::now();
    ws.send(TMessage::text("late")).await.unwrap();
    ws.send(TMessage::text("close:4000:bye")).await.unwrap();
    assert_eq!(texts(&mut ws, 1).await, ["late"]);
    assert!(sent.elapsed() >= Duration::from_millis(150), "{:?}", sent.elapsed());
    match within(ws.next()).await {
        Some(Ok(TMessage::Close(Some(c)))) => assert_eq!(c.code, CloseCode::from(4000)),
        other => panic!("expected the upstream's close after the held echo, got {other:?}"),
    }

    // A disconnect closes both sides with the code.
    put(&gw, "chaos", json!({"disconnect": {"after_messages": 1, "code": 1013, "reason": "try later"}})).await;
    let mut ws = connect(&gw, "/p4").await;
    ws.send(TMessage::text("one")).await.unwrap();
    let close = loop {
        match within(ws.next()).await {
            Some(Ok(TMessage::Close(Some(c)))) => break c,
            Some(Ok(_)) => {}
            other => panic!("expected close, got {other:?}"),
        }
    };
    assert_eq!((close.code, close.reason.as_str()), (CloseCode::from(1013), "try later"));

    // Refused before the upstream is dialled.
    put(&gw, "chaos", json!({"refuse": {"status": 429}})).await;
    match within(tokio_tungstenite::connect_async(gw.ws("/p5"))).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 429),
        other => panic!("expected HTTP 429, got {other:?}"),
    }
}

async fn upstream_text(up: &mut Upstream) -> TMessage {
    match up.next_message().await {
        wsgate_protocol::Message::Text(b) => TMessage::text(String::from_utf8_lossy(&b).into_owned()),
        other => panic!("expected text at the upstream, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_faults_are_refused_with_the_field_by_the_api_and_the_config() {
    let gw = Gateway::mock(&["--echo", "--no-store"]).await;
    for (body, status, want) in [
        (json!({"drop": {"rate": 2}}), 400, "faults.drop.rate: 2 is not a probability"),
        (json!({"latency": {"fixed": "soon"}}), 400, "invalid JSON body"),
        (json!({"dropp": {"rate": 0.1}}), 400, "unknown field `dropp`"),
        (json!({"refuse": {"status": 200}}), 400, "faults.refuse.status"),
    ] {
        let res = set_faults(&gw, "mock", body.clone()).await;
        assert_eq!(res.status(), status, "{body}");
        let text = res.text().await.unwrap();
        assert!(text.contains(want), "{body}: {text}");
    }
    let res = set_faults(&gw, "nope", json!({})).await;
    assert_eq!(res.status(), 404);
    let got: Value = within(crate::support::client().get(gw.api("/api/routes/mock/faults")).send())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got, json!({"route": "mock", "faults": null}));

    let (_dir, file) = config_file("mock:\n  echo: true\nfaults:\n  drop: { rate: 1.5 }\n");
    let out = within(tokio::process::Command::new(bin()).args(["mock", "--config", &file]).output()).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("1.5 is not a probability") && stderr.contains(&format!("{file}:4")), "{stderr}");

    let (_dir, file) =
        config_file("routes:\n  - name: r\n    path: /r\n    relay: {}\n    faults:\n      drop: { rate: 0.5 }\n");
    let out = within(tokio::process::Command::new(bin()).args(["serve", "--config", &file]).output()).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("relay route has no faults"), "{stderr}");
}

/// Sends `n` numbered messages (`message-0007-padding`), waits until history holds the
/// last one as the client sent it (every message is recorded, dropped ones too, so
/// every fate is decided by then), clears the faults, sends `end`, and returns what
/// came back before it.
async fn run_recorded(gw: &Gateway, route: &str, path: &str, n: usize) -> Vec<String> {
    let mut ws = connect(gw, path).await;
    for i in 0..n {
        ws.send(TMessage::text(format!("message-{i:04}-padding"))).await.unwrap();
    }
    let last = format!("message-{:04}", n - 1);
    eventually(|| async {
        let list = http_json(&gw.api("/api/sessions")).await;
        let id = list["sessions"].as_array()?.iter().find(|s| s["path"] == path)?["id"].as_str()?.to_owned();
        let v = http_json(&gw.api(&format!("/api/sessions/{id}/messages?limit=1000"))).await;
        let msgs = v["messages"].as_array()?;
        let sent = |m: &Value| {
            let from_client = m["dir"].as_str().is_some_and(|d| d.starts_with("client_to"));
            from_client && m["text"].as_str().is_some_and(|t| t.starts_with(&last))
        };
        msgs.iter().any(sent).then_some(())
    })
    .await;
    clear(gw, route).await;
    ws.send(TMessage::text("end")).await.unwrap();
    texts_until(&mut ws, "end").await
}

#[tokio::test]
async fn drops_duplicates_and_truncation_together_repeat_with_a_seed_on_a_mock_and_a_proxy() {
    let spec = |seed: u64| {
        json!({
            "seed": seed,
            "drop": {"rate": 0.2, "direction": "from_client"},
            "duplicate": {"rate": 0.3, "direction": "from_client"},
            "truncate": {"rate": 0.5, "bytes": 12, "direction": "from_client"},
        })
    };
    let upstream = Upstream::echo().await;
    let mock = Gateway::mock(&["--echo"]).await;
    let proxy = Gateway::proxy(&["--upstream", &upstream.url()]).await;
    for (gw, route) in [(&mock, "mock"), (&proxy, "default")] {
        let mut runs = Vec::new();
        for (i, seed) in [21, 21, 22].into_iter().enumerate() {
            put(gw, route, spec(seed)).await;
            runs.push(run_recorded(gw, route, &format!("/s{i}"), 30).await);
        }
        assert_eq!(runs[0], runs[1], "{route}: the same seed, the same outcome");
        assert_ne!(runs[0], runs[2], "{route}: another seed, another outcome");
        let got = &runs[0];
        assert!(got.iter().any(|t| t.len() == 12), "{route}: some cut to 12 bytes: {got:?}");
        assert!(got.windows(2).any(|w| w[0] == w[1]), "{route}: some doubled: {got:?}");
        assert!(got.len() - 1 < 30 * 13 / 10 && got.len() > 10, "{route}: {got:?}");
    }
}

#[tokio::test]
async fn throttle_spaces_messages_at_the_rate_on_a_proxy() {
    let upstream = Upstream::echo().await;
    let gw = Gateway::proxy(&["--upstream", &upstream.url(), "--no-store"]).await;
    put(&gw, "default", json!({"throttle": {"bytes_per_sec": 2000, "direction": "to_client"}})).await;
    let mut ws = connect(&gw, "/slow").await;
    let start = Instant::now();
    for i in 0..5 {
        ws.send(TMessage::text(format!("{i}{}", "x".repeat(199)))).await.unwrap();
    }
    let got = texts(&mut ws, 5).await;
    let took = start.elapsed();
    assert_eq!(got.iter().map(|t| &t[..1]).collect::<Vec<_>>(), ["0", "1", "2", "3", "4"]);
    // 1000 bytes at 2000 B/s: the last one is delivered 500 ms after the first arrives.
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test]
async fn faulted_messages_show_their_marks_on_the_live_stream() {
    let gw = Gateway::mock(&["--echo", "--no-store"]).await;
    let (mut live, _) =
        within(tokio_tungstenite::connect_async(format!("ws://{}/api/live", gw.control))).await.unwrap();
    put(&gw, "mock", json!({"drop": {"rate": 1.0, "direction": "to_client"}})).await;
    let mut ws = connect(&gw, "/watched").await;
    ws.send(TMessage::text("lost")).await.unwrap();
    // The client's message as it came, then its echo, dropped on the way back.
    let marked = loop {
        let Some(Ok(TMessage::Text(t))) = within(live.next()).await else { continue };
        let v: Value = serde_json::from_str(&t).unwrap();
        if v["type"] == "message" && v["direction"] == "gateway_to_client" {
            break v;
        }
    };
    assert_eq!(marked["text"], "lost");
    assert_eq!(marked["marks"], json!(["fault", "dropped"]), "{marked}");
}

#[tokio::test]
async fn the_routes_own_seed_seeds_faults_without_one_and_a_proxys_rules() {
    // A mock's --seed: a spec without a seed takes it, so it repeats like seed 21.
    let dir = TempDir::new();
    let script = dir.0.join("s.jsonl");
    std::fs::write(&script, "{\"ts\":0,\"text\":\"hello\"}\n").unwrap();
    let seeded = Gateway::mock(&["--replay", script.to_str().unwrap(), "--seed", "21", "--no-store"]).await;
    put(&seeded, "mock", json!({"drop": {"rate": 0.5, "direction": "from_client"}})).await;
    let got = http_json(&seeded.api("/api/routes/mock/faults")).await;
    assert_eq!(got["faults"]["seed"], 21, "{got}");

    // A proxy's --proxy-seed seeds its rules' random answers: every session, every run.
    let upstream = Upstream::echo().await;
    let rules = dir.0.join("dice.yaml");
    std::fs::write(
        &rules,
        "rules:\n  - match: { regex: \"^roll$\" }\n    drop: true\n    respond: '{{randInt 1 1000000}}'\n",
    )
    .unwrap();
    let mut rolls = Vec::new();
    for _ in 0..2 {
        let gw = Gateway::proxy(&[
            "--upstream",
            &upstream.url(),
            "--proxy-rules",
            rules.to_str().unwrap(),
            "--proxy-seed",
            "5",
            "--no-store",
        ])
        .await;
        for path in ["/a", "/b"] {
            let mut ws = connect(&gw, path).await;
            ws.send(TMessage::text("roll")).await.unwrap();
            rolls.push(next_text(&mut ws).await);
        }
    }
    assert!(rolls.iter().all(|r| r == &rolls[0]), "{rolls:?}");
}
