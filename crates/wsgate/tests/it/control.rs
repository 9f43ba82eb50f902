//! The control plane against the real proxy: inject, admin close, the live stream,
//! the websocket-multiplex commands and taps, the admin token.

use bytes::Bytes;
use serde_json::{Value, json};
use wsgate_protocol::{ConnectRequest, Message};

use crate::support::*;

async fn session_id(gw: &Gateway, path: &str) -> String {
    let s = gw.wait_sessions(|s| s.iter().any(|x| x["path"] == path && x["state"] == "CONNECTED")).await;
    s.iter().find(|x| x["path"] == path).unwrap()["id"].as_str().unwrap().to_owned()
}

async fn next_json(ws: &mut wsgate_protocol::WsStream<wsgate_protocol::Transport>) -> Value {
    serde_json::from_str(&text(&recv(ws).await)).unwrap()
}

/// Reads live events until one matches.
async fn until(ws: &mut wsgate_protocol::WsStream<wsgate_protocol::Transport>, pred: impl Fn(&Value) -> bool) -> Value {
    within(async {
        loop {
            let v = next_json(ws).await;
            if pred(&v) {
                return v;
            }
        }
    })
    .await
}

#[tokio::test]
async fn inject_both_ways_and_admin_close() {
    let mut up = Upstream::echo().await;
    let gw = Gateway::proxy(&["--upstream", &up.url()]).await;
    let mut ws = ws_connect(&gw.ws("/chat")).await;
    let id = session_id(&gw, "/chat").await;
    let http = client();

    let r = http
        .post(gw.api(&format!("/api/sessions/{id}/inject")))
        .json(&json!({"to":"client","text":"from admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(text(&recv(&mut ws).await), "from admin");

    let r = http
        .post(gw.api(&format!("/api/sessions/{id}/inject")))
        .json(&json!({"to":"upstream","base64":"AAEC/w=="}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(up.next_message().await, Message::Binary(Bytes::from_static(&[0, 1, 2, 255])));
    // The upstream echoes the injected frame back to the client.
    assert_eq!(recv(&mut ws).await, Message::Binary(Bytes::from_static(&[0, 1, 2, 255])));

    let r = http
        .post(gw.api(&format!("/api/sessions/{id}/close")))
        .json(&json!({"code":4100,"reason":"admin says bye"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let c = close_of(&recv(&mut ws).await).unwrap();
    assert_eq!((c.code, c.reason.as_str()), (4100, "admin says bye"));
    loop {
        if let Message::Close(Some(c)) = up.next_message().await {
            assert_eq!(c.code, 4100);
            break;
        }
    }
    let s = gw.wait_sessions(|s| s.iter().any(|x| x["id"] == id.as_str() && x["state"] == "DISCONNECTED")).await;
    let me = s.iter().find(|x| x["id"] == id.as_str()).unwrap();
    assert_eq!(me["close"]["initiator"], "admin");

    let r = http
        .post(gw.api("/api/sessions/not-an-id/inject"))
        .json(&json!({"to":"client","text":"x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(gw.api("/api/sessions/0190c0de-0000-7000-8000-000000000000/inject"))
        .json(&json!({"to":"client","text":"x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn live_stream_reports_lifecycle_and_messages() {
    let up = Upstream::echo().await;
    let gw = Gateway::proxy(&["--upstream", &up.url(), "--payload-cap", "8"]).await;
    let mut live = ws_connect(&format!("ws://{}/api/live", gw.control)).await;
    let status = next_json(&mut live).await;
    assert_eq!(status["type"], "status");

    let mut ws = ws_connect(&gw.ws("/watch")).await;
    let connected = until(&mut live, |v| v["type"] == "lifecycle" && v["state"] == "CONNECTED").await;
    assert_eq!(connected["path"], "/watch");
    assert!(connected["connect_ms"].as_f64().is_some());
    ws.send(Message::text("a long text message")).await.unwrap();
    let m = until(&mut live, |v| v["type"] == "message" && v["direction"] == "client_to_upstream").await;
    assert_eq!(m["opcode"], "text");
    assert_eq!(m["size"], 19);
    assert_eq!(m["text"], "a long t");
    assert_eq!(m["truncated"], true);
    assert_eq!(m["injected"], false);
    let back = until(&mut live, |v| v["type"] == "message" && v["direction"] == "upstream_to_client").await;
    assert_eq!(back["seq"].as_u64().unwrap(), m["seq"].as_u64().unwrap() + 1);
    ws.send(Message::Binary(Bytes::from_static(&[9, 8, 7]))).await.unwrap();
    let b = until(&mut live, |v| v["type"] == "message" && v["opcode"] == "binary").await;
    assert_eq!(b["base64"], "CQgH");
    ws.send(Message::Close(Some(wsgate_protocol::CloseFrame::new(4001, "bye")))).await.unwrap();
    let d = until(&mut live, |v| v["type"] == "lifecycle" && v["state"] == "DISCONNECTED").await;
    assert_eq!(d["close_code"], 4001);
    assert_eq!(d["initiator"], "client");
}

#[tokio::test]
async fn multiplex_master_commands_and_taps() {
    let mut up = Upstream::echo().await;
    let gw = Gateway::proxy(&["--upstream", &up.url()]).await;
    let mut chat = ws_connect(&gw.ws("/chat")).await;
    let mut other = ws_connect(&gw.ws("/other")).await;
    session_id(&gw, "/chat").await;
    session_id(&gw, "/other").await;
    let mut master = ws_connect(&format!("ws://{}/api/live", gw.control)).await;
    let _ = next_json(&mut master).await;

    master
        .send(Message::text(json!({"type":"inject","target":"client:/chat","message":"to chat"}).to_string()))
        .await
        .unwrap();
    let ack = until(&mut master, |v| v["type"] == "ack").await;
    assert_eq!(ack["ok"], true);
    assert_eq!(ack["sessions"], 1);
    assert_eq!(text(&recv(&mut chat).await), "to chat");

    master
        .send(Message::text(json!({"type":"inject","target":"all-clients","message":{"hello":"all"}}).to_string()))
        .await
        .unwrap();
    assert_eq!(until(&mut master, |v| v["type"] == "ack").await["sessions"], 2);
    assert_eq!(text(&recv(&mut chat).await), r#"{"hello":"all"}"#);
    assert_eq!(text(&recv(&mut other).await), r#"{"hello":"all"}"#);

    master
        .send(Message::text(json!({"type":"inject","target":"upstream:/other","message":"to upstream"}).to_string()))
        .await
        .unwrap();
    until(&mut master, |v| v["type"] == "ack").await;
    loop {
        if let Message::Text(t) = up.next_message().await
            && t == "to upstream"
        {
            break;
        }
    }

    // Taps: raw frames of the clients on /chat, unwrapped.
    let mut tap = ws_connect(&format!("ws://{}/client/chat", gw.control)).await;
    // The tap is subscribed once the control plane has seen it: probe with a frame
    // until one arrives, instead of sleeping.
    let got = within(async {
        loop {
            chat.send(Message::text("probe")).await.unwrap();
            let _echo = recv(&mut chat).await;
            if let Ok(Ok(m)) = tokio::time::timeout(std::time::Duration::from_millis(200), tap.recv()).await {
                return m;
            }
        }
    })
    .await;
    assert_eq!(got, Message::Text(Bytes::from("probe")));
    // Writing into the client tap injects to the clients on that path.
    tap.send(Message::Binary(Bytes::from_static(b"\x00raw"))).await.unwrap();
    loop {
        let m = recv(&mut chat).await;
        if m == Message::Binary(Bytes::from_static(b"\x00raw")) {
            break;
        }
    }

    master.send(Message::text(json!({"type":"close","connectionId":"/chat"}).to_string())).await.unwrap();
    assert_eq!(until(&mut master, |v| v["type"] == "ack").await["sessions"], 1);
    loop {
        if let Message::Close(_) = recv(&mut chat).await {
            break;
        }
    }
    master.send(Message::text("{not json")).await.unwrap();
    assert_eq!(until(&mut master, |v| v["type"] == "ack").await["ok"], false);
}

#[tokio::test]
async fn admin_token_is_enforced() {
    let up = Upstream::echo().await;
    let gw = Gateway::proxy(&["--upstream", &up.url(), "--admin-token", "s3cret"]).await;
    let http = client();
    assert_eq!(http.get(gw.api("/api/sessions")).send().await.unwrap().status(), 401);
    assert_eq!(http.get(gw.api("/api/sessions")).bearer_auth("wrong").send().await.unwrap().status(), 401);
    assert_eq!(http.get(gw.api("/api/sessions")).bearer_auth("s3cret").send().await.unwrap().status(), 200);
    assert_eq!(http.get(gw.api("/api/sessions?token=s3cret")).send().await.unwrap().status(), 200);
    assert_eq!(http.get(gw.api("/metrics")).send().await.unwrap().status(), 401);
    assert_eq!(http.get(gw.api("/healthz")).send().await.unwrap().status(), 200);
    let err =
        within(wsgate_protocol::connect(ConnectRequest::new(format!("ws://{}/api/live", gw.control).parse().unwrap())))
            .await
            .unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(401));
    let _ok = ws_connect(&format!("ws://{}/api/live?token=s3cret", gw.control)).await;
}

#[tokio::test]
async fn metrics_count_sessions_messages_and_latency() {
    let up = Upstream::echo().await;
    let gw = Gateway::proxy(&["--upstream", &up.url()]).await;
    let mut ws = ws_connect(&gw.ws("/m")).await;
    for _ in 0..3 {
        ws.send(Message::text("12345")).await.unwrap();
        recv(&mut ws).await;
    }
    ws.send(Message::Close(None)).await.unwrap();
    let _ = recv(&mut ws).await;
    let body = eventually(|| async {
        let t = reqwest::get(gw.api("/metrics")).await.ok()?.text().await.ok()?;
        t.lines()
            .any(|l| l.starts_with("wsgate_sessions_total") && l.contains("disconnected") && l.ends_with(" 1"))
            .then_some(t)
    })
    .await;
    let has = |prefix: &str, needle: &str, value: &str| {
        body.lines().any(|l| l.starts_with(prefix) && l.contains(needle) && l.ends_with(value))
    };
    assert!(has("wsgate_messages_total", "client_to_upstream", " 4"), "{body}");
    assert!(has("wsgate_message_bytes_total", "client_to_upstream", " 15"), "{body}");
    assert!(body.contains("wsgate_upstream_connect_seconds_count 1"), "{body}");
    assert!(has("wsgate_sessions_active", "proxy", " 0"), "{body}");
    assert!(body.contains("wsgate_observer_dropped_total"), "{body}");
    assert_eq!(reqwest::get(gw.api("/readyz")).await.unwrap().status(), 200);
}
