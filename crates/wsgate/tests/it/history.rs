//! Session history through the real binary: what the API and the CLI read back from
//! a real SQLite file and a real PostgreSQL (`WSGATE_TEST_POSTGRES`, started by
//! `scripts/test`).

use base64::Engine as _;
use bytes::Bytes;
use serde_json::Value;
use wsgate_protocol::{CloseFrame, Message};

use crate::support::*;

fn api_list(v: &Value) -> Vec<Value> {
    v["sessions"].as_array().cloned().unwrap_or_default()
}

/// Waits until the stored session `id` is DISCONNECTED with `n` messages stored.
async fn stored(gw: &Gateway, id: &str, n: usize) -> Vec<Value> {
    eventually(|| async {
        let s = http_json(&gw.api(&format!("/api/sessions/{id}"))).await;
        let m = http_json(&gw.api(&format!("/api/sessions/{id}/messages?limit=1000"))).await;
        let msgs = m["messages"].as_array().cloned().unwrap_or_default();
        (s["state"] == "DISCONNECTED" && s["live"] == false && msgs.len() == n).then_some(msgs)
    })
    .await
}

/// A proxied session with text, binary and a 4001 close, read back as events,
/// messages (paged) and a transcript that round-trips the bytes and the close code.
async fn proxied_session_is_stored_and_exported(store: Option<String>) {
    let up = Upstream::echo().await;
    let mut args = vec!["--upstream".to_owned(), up.url()];
    if let Some(s) = store {
        args.extend(["--store".to_owned(), s]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let gw = Gateway::proxy(&args).await;
    let mut req = wsgate_protocol::ConnectRequest::new(gw.ws("/chat?room=1").parse().unwrap());
    req.headers.insert("authorization", "Bearer secret".parse().unwrap());
    let mut ws = ws_connect_with(req).await;
    let binary = Bytes::from_static(&[0, 1, 2, 0xfe, 0xff]);
    ws.send(Message::text("héllo")).await.unwrap();
    assert_eq!(text(&recv(&mut ws).await), "héllo");
    ws.send(Message::Binary(binary.clone())).await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::Binary(binary.clone()));
    ws.send(Message::Close(Some(CloseFrame::new(4001, "bye")))).await.unwrap();
    assert_eq!(close_of(&recv(&mut ws).await).unwrap().code, 4001);

    let list = gw.wait_sessions(|s| s.iter().any(|x| x["state"] == "DISCONNECTED")).await;
    let id = list[0]["id"].as_str().unwrap().to_owned();
    // text ×2, binary ×2, close ×2
    let msgs = stored(&gw, &id, 6).await;
    let s = http_json(&gw.api(&format!("/api/sessions/{id}"))).await;
    assert_eq!(s["close"]["code"], 4001);
    assert_eq!(s["close"]["initiator"], "client");
    assert_eq!((s["messages_in"].as_u64(), s["messages_out"].as_u64()), (Some(3), Some(3)));
    assert_eq!(s["messages_dropped"], 0);
    let auth = s["headers"].as_array().unwrap().iter().find(|h| h[0] == "authorization").unwrap();
    assert_eq!(auth[1], "[redacted]");
    let states: Vec<_> = s["lifecycle"].as_array().unwrap().iter().map(|t| t["state"].clone()).collect();
    assert_eq!(states, ["REQUESTED", "CONNECTING", "CONNECTED", "DISCONNECTED"]);

    let ev = http_json(&gw.api(&format!("/api/sessions/{id}/events"))).await;
    let kinds: Vec<_> = ev["events"].as_array().unwrap().iter().map(|e| e["state"].clone()).collect();
    assert_eq!(kinds, ["REQUESTED", "CONNECTING", "CONNECTED", "DISCONNECTED"]);

    assert_eq!(msgs[0]["dir"], "client_to_upstream");
    assert_eq!(msgs[0]["text"], "héllo");
    assert_eq!(msgs[2]["type"], "binary");
    assert_eq!(msgs[2]["base64"], base64::engine::general_purpose::STANDARD.encode(&binary));
    // Pages: two at a time, following next_after_seq.
    let mut seqs = Vec::new();
    let mut after = 0;
    loop {
        let page = http_json(&gw.api(&format!("/api/sessions/{id}/messages?after_seq={after}&limit=2"))).await;
        seqs.extend(page["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()));
        match page["next_after_seq"].as_u64() {
            Some(n) => after = n,
            None => break,
        }
    }
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);

    let res = reqwest::get(gw.api(&format!("/api/sessions/{id}/export"))).await.unwrap();
    assert_eq!(res.headers()["content-type"], "application/x-ndjson");
    let body = res.text().await.unwrap();
    let lines: Vec<Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 7);
    assert_eq!(lines[0]["type"], "session");
    assert_eq!(lines[0]["path"], "/chat?room=1");
    let b = base64::engine::general_purpose::STANDARD.decode(lines[3]["base64"].as_str().unwrap()).unwrap();
    assert_eq!(b, &binary[..], "binary round-trips");
    assert_eq!((lines[5]["type"].as_str(), lines[5]["code"].as_u64()), (Some("close"), Some(4001)));
    assert_eq!(lines[5]["reason"], "bye");
    assert!(lines.windows(2).skip(1).all(|w| w[0]["t"].as_f64() <= w[1]["t"].as_f64()), "time offsets ascend");
}

#[tokio::test]
async fn history_sqlite_stores_and_exports_a_proxied_session() {
    proxied_session_is_stored_and_exported(None).await;
}

#[tokio::test]
async fn history_postgres_stores_and_exports_a_proxied_session() {
    let Some(url) = fresh_postgres_db().await else { return };
    proxied_session_is_stored_and_exported(Some(url)).await;
}

#[tokio::test]
async fn history_filters_and_pages_sessions() {
    let gw = Gateway::mock(&["--echo"]).await;
    for path in ["/a/1", "/a/2", "/b/1", "/a/3"] {
        let mut ws = ws_connect(&gw.ws(path)).await;
        ws.send(Message::text("x")).await.unwrap();
        recv(&mut ws).await;
        ws.close(1000, "").await.unwrap();
        let _ = within(ws.recv()).await;
    }
    let list = gw.wait_sessions(|s| s.iter().filter(|x| x["state"] == "DISCONNECTED").count() == 4).await;
    assert_eq!(list.len(), 4);
    let all: Vec<_> = list.iter().map(|s| s["path"].as_str().unwrap().to_owned()).collect();
    assert_eq!(all, ["/a/3", "/b/1", "/a/2", "/a/1"], "newest first");
    let q = |query: &str| {
        let url = gw.api(&format!("/api/sessions?{query}"));
        async move { http_json(&url).await }
    };
    let a: Vec<_> = api_list(&q("path=/a/").await).iter().map(|s| s["path"].clone()).collect();
    assert_eq!(a, ["/a/3", "/a/2", "/a/1"]);
    let page1 = q("limit=3").await;
    assert_eq!(api_list(&page1).len(), 3);
    let next = page1["next_before"].as_str().unwrap();
    let page2 = q(&format!("limit=3&before={next}")).await;
    assert_eq!(api_list(&page2).iter().map(|s| s["path"].clone()).collect::<Vec<_>>(), ["/a/1"]);
    assert!(page2["next_before"].is_null());
    let opened = list[1]["opened_at"].as_str().unwrap().to_owned(); // "/b/1"
    let since: Vec<_> = api_list(&q(&format!("since={}", opened.replace('+', "%2B"))).await)
        .iter()
        .map(|s| s["path"].clone())
        .collect();
    assert_eq!(since, ["/a/3", "/b/1"]);
    let until = api_list(&q(&format!("until={}", opened.replace('+', "%2B"))).await);
    assert_eq!(until.len(), 2);
    assert_eq!(api_list(&q("kind=mock&state=disconnected").await).len(), 4);
    assert!(api_list(&q("kind=proxy").await).is_empty());
    let bad = reqwest::get(gw.api("/api/sessions?since=yesterday")).await.unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("RFC 3339"));
}

#[tokio::test]
async fn history_survives_kill_9_and_the_restart_closes_the_session() {
    let dir = TempDir::new();
    let store = format!("sqlite://{}", dir.0.join("h.db").display());
    let mut gw = Gateway::mock(&["--echo", "--store", &store]).await;
    let mut ws = ws_connect(&gw.ws("/crash")).await;
    for i in 0..20 {
        ws.send(Message::text(format!("m{i}"))).await.unwrap();
        recv(&mut ws).await;
    }
    let id = gw.wait_sessions(|s| s.len() == 1).await[0]["id"].as_str().unwrap().to_owned();
    // Committed: all 40 frames are readable from the store.
    eventually(|| async {
        let m = http_json(&gw.api(&format!("/api/sessions/{id}/messages?limit=1000"))).await;
        (m["messages"].as_array().map(Vec::len) == Some(40)).then_some(())
    })
    .await;
    gw.kill9().await;
    drop(ws);

    let gw = Gateway::mock(&["--echo", "--store", &store]).await;
    let s = http_json(&gw.api(&format!("/api/sessions/{id}"))).await;
    assert_eq!(s["state"], "DISCONNECTED", "{s}");
    assert_eq!(s["close"]["initiator"], "gateway");
    assert_eq!(s["close"]["reason"], "gateway stopped");
    assert_eq!((s["messages_in"].as_u64(), s["messages_out"].as_u64()), (Some(20), Some(20)));
    let m = http_json(&gw.api(&format!("/api/sessions/{id}/messages?limit=1000"))).await;
    assert_eq!(m["messages"].as_array().unwrap().len(), 40, "nothing committed is lost");
}

#[tokio::test]
async fn history_strict_recording_stores_every_message_of_a_burst() {
    let gw = Gateway::mock(&["--echo", "--record", "strict"]).await;
    let mut ws = ws_connect(&gw.ws("/burst")).await;
    const N: usize = 20_000;
    for i in 0..N {
        ws.feed(&Message::text(format!("burst {i}"))).unwrap();
    }
    ws.flush().await.unwrap();
    for _ in 0..N {
        recv(&mut ws).await;
    }
    ws.close(1000, "done").await.unwrap();
    let _ = within(ws.recv()).await;
    let id = gw.wait_sessions(|s| s.iter().any(|x| x["state"] == "DISCONNECTED")).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let s = eventually(|| async {
        let s = http_json(&gw.api(&format!("/api/sessions/{id}"))).await;
        (s["live"] == false).then_some(s)
    })
    .await;
    assert_eq!(s["messages_dropped"], 0);
    let mut after = 0;
    let mut count = 0;
    loop {
        let page = http_json(&gw.api(&format!("/api/sessions/{id}/messages?after_seq={after}&limit=1000"))).await;
        let msgs = page["messages"].as_array().unwrap();
        for m in msgs {
            count += 1;
            assert_eq!(m["seq"].as_u64(), Some(after + 1), "no gaps");
            after += 1;
        }
        if page["next_after_seq"].is_null() {
            break;
        }
    }
    assert_eq!(count, 2 * N + 2, "every message and both close frames stored");
}

#[tokio::test]
async fn history_retention_and_no_store() {
    let dir = TempDir::new();
    let store = format!("sqlite://{}", dir.0.join("r.db").display());
    let mut gw = Gateway::mock(&["--echo", "--store", &store]).await;
    let mut ws = ws_connect(&gw.ws("/r")).await;
    for i in 0..10 {
        ws.send(Message::text(format!("m{i}"))).await.unwrap();
        recv(&mut ws).await;
    }
    ws.close(1000, "").await.unwrap();
    let _ = within(ws.recv()).await;
    let id = gw.wait_sessions(|s| s.iter().any(|x| x["state"] == "DISCONNECTED")).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    stored(&gw, &id, 22).await;
    assert_eq!(gw.terminate().await, 0);
    // Retention runs at start: keep the newest 5 messages.
    let mut gw = Gateway::mock(&["--echo", "--store", &store, "--retention-messages", "5"]).await;
    let msgs = eventually(|| async {
        let m = http_json(&gw.api(&format!("/api/sessions/{id}/messages?limit=1000"))).await;
        let n = m["messages"].as_array().map(Vec::len).unwrap_or(0);
        (n == 5).then_some(m)
    })
    .await;
    assert_eq!(msgs["messages"][0]["seq"], 18);
    assert_eq!(gw.terminate().await, 0);
    // By age: everything that ended is older than 0s... use 1ms so the value is valid.
    let gw = Gateway::mock(&["--echo", "--store", &store, "--retention", "1ms"]).await;
    eventually(|| async {
        let r = reqwest::get(gw.api(&format!("/api/sessions/{id}"))).await.unwrap();
        (r.status() == 404).then_some(())
    })
    .await;

    // --no-store: the API still lists sessions, but has no messages to show.
    let off = Gateway::mock(&["--echo", "--no-store"]).await;
    let mut ws = ws_connect(&off.ws("/x")).await;
    ws.send(Message::text("x")).await.unwrap();
    recv(&mut ws).await;
    let id = off.wait_sessions(|s| s.len() == 1).await[0]["id"].as_str().unwrap().to_owned();
    let r = reqwest::get(off.api(&format!("/api/sessions/{id}/messages"))).await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("--no-store"));
    assert!(!off.dir().join("wsgate.db").exists(), "no file when the store is off");
}

/// Payload policies per route: `headers` keeps every message's size and time but no
/// payload, `sample:3` keeps the first message and every third whole, a route
/// without its own policy takes the store's (`--store-payloads`); the live stream
/// still shows every payload. A policy that does not parse is refused at start,
/// naming the field.
#[tokio::test]
async fn payload_policies_per_route() {
    let (_dir, file) = config_file(
        r#"
routes:
  - name: timing
    path: /timing
    mock: { echo: true }
    record_payloads: headers
  - name: sampled
    path: /sampled
    mock: { echo: true }
    record_payloads: sample:3
  - name: rest
    path: /*
    mock: { echo: true }
"#,
    );
    let gw = Gateway::spawn("serve", &["--config", &file, "--store-payloads", "full"], &[]).await;
    let mut ids = Vec::new();
    for path in ["/timing", "/sampled", "/rest"] {
        let mut ws = ws_connect(&gw.ws(path)).await;
        for i in 0..3 {
            ws.send(Message::text(format!("{path} {i}"))).await.unwrap();
            assert_eq!(recv(&mut ws).await, Message::text(format!("{path} {i}")));
        }
        ws.close(1000, "").await.unwrap();
        let _ = within(ws.recv()).await;
        let sessions = gw.wait_sessions(|s| s.iter().any(|x| x["path"] == path && x["state"] == "DISCONNECTED")).await;
        let id = sessions.iter().find(|x| x["path"] == path).unwrap()["id"].as_str().unwrap().to_owned();
        ids.push(id);
    }
    // 3 messages, 3 echoes, the two close frames.
    let kept = |m: &Value| m["text"].as_str().is_some_and(|t| !t.is_empty());
    let timing = stored(&gw, &ids[0], 8).await;
    for m in timing.iter().filter(|m| m["type"] == "text") {
        assert!(!kept(m) && m["truncated"] == true && m["size"] == 9, "{m}");
    }
    let sampled = stored(&gw, &ids[1], 8).await;
    let whole: Vec<_> = sampled.iter().filter(|m| kept(m)).map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(whole, [1, 4], "{sampled:?}");
    let rest = stored(&gw, &ids[2], 8).await;
    assert_eq!(rest.iter().filter(|m| m["type"] == "text" && kept(m)).count(), 6, "{rest:?}");

    let out = std::process::Command::new(bin())
        .args(["mock", "--echo", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--no-store"])
        .args(["--store-payloads", "some"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("store.payloads") && stderr.contains("sample:N"), "{stderr}");
}
