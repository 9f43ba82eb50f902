//! `wsgate relay` and `relay:` routes, driven by clients no one here wrote
//! (tokio-tungstenite here; Python `websockets` and Node `ws` in the third-party
//! tests at the end): raw rooms with and without sender echo, envelope commands,
//! WarpSocket's frames, server-side publish, slow consumers under each policy,
//! heartbeats, limits, metrics and history.

use std::time::{Duration, Instant};

use ::tokio_tungstenite::tungstenite::Message as TMsg;
use ::tokio_tungstenite::tungstenite::client::IntoClientRequest;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::support::*;

type Tt = ::tokio_tungstenite::WebSocketStream<::tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn relay(args: &[&str]) -> Gateway {
    Gateway::spawn("relay", args, &[]).await
}

async fn tt(url: &str) -> Tt {
    within(::tokio_tungstenite::connect_async(url)).await.unwrap_or_else(|e| panic!("{url}: {e}")).0
}

/// The next data message (pings are answered by tungstenite itself).
async fn next(ws: &mut Tt) -> TMsg {
    within(async {
        loop {
            match ws.next().await {
                Some(Ok(TMsg::Ping(_) | TMsg::Pong(_))) => continue,
                Some(Ok(m)) => return m,
                other => panic!("connection ended: {other:?}"),
            }
        }
    })
    .await
}

async fn next_json(ws: &mut Tt) -> Value {
    match next(ws).await {
        TMsg::Text(t) => serde_json::from_str(&t).unwrap_or_else(|e| panic!("{t}: {e}")),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

async fn send_json(ws: &mut Tt, v: Value) {
    ws.send(TMsg::text(v.to_string())).await.unwrap();
}

/// Nothing arrives for a while (for isolation: a message that was wrongly delivered
/// would be queued already, since the same connection's later frame came first).
async fn quiet(ws: &mut Tt, then_marker: &str) {
    // The marker is sent to the same room after the message under test: if the next
    // message is the marker, nothing came in between.
    match next(ws).await {
        TMsg::Text(t) => assert_eq!(t.as_str(), then_marker, "an unexpected message arrived first"),
        other => panic!("expected the marker, got {other:?}"),
    }
}

/// The close code a connection ends with.
async fn closed_with(ws: &mut Tt) -> (u16, String) {
    within(async {
        loop {
            match ws.next().await {
                Some(Ok(TMsg::Close(Some(f)))) => return (u16::from(f.code), f.reason.to_string()),
                Some(Ok(TMsg::Close(None))) | None => return (1005, String::new()),
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("ended without a close frame: {e}"),
            }
        }
    })
    .await
}

#[tokio::test]
async fn raw_rooms_broadcast_to_everyone_in_the_room_sender_included() {
    let gw = relay(&["--no-store"]).await;
    let mut a = tt(&gw.ws("/chat/lobby")).await;
    let mut b = tt(&gw.ws("/chat/lobby")).await;
    let mut other = tt(&gw.ws("/chat/other")).await;
    gw.wait_sessions(|s| s.iter().filter(|s| s["state"] == "CONNECTED").count() == 3).await;
    a.send(TMsg::text("hello")).await.unwrap();
    assert_eq!(next(&mut a).await, TMsg::text("hello"));
    assert_eq!(next(&mut b).await, TMsg::text("hello"));
    // Binary stays binary.
    b.send(TMsg::binary(vec![0u8, 1, 2, 255])).await.unwrap();
    assert_eq!(next(&mut a).await, TMsg::binary(vec![0u8, 1, 2, 255]));
    assert_eq!(next(&mut b).await, TMsg::binary(vec![0u8, 1, 2, 255]));
    // The other room heard nothing: its first message is its own.
    other.send(TMsg::text("marker")).await.unwrap();
    quiet(&mut other, "marker").await;
}

#[tokio::test]
async fn without_sender_echo_the_sender_hears_only_the_others() {
    let gw = relay(&["--no-store", "--no-echo-sender"]).await;
    let mut a = tt(&gw.ws("/r")).await;
    let mut b = tt(&gw.ws("/r")).await;
    gw.wait_sessions(|s| s.iter().filter(|s| s["state"] == "CONNECTED").count() == 2).await;
    a.send(TMsg::text("from a")).await.unwrap();
    assert_eq!(next(&mut b).await, TMsg::text("from a"));
    b.send(TMsg::text("from b")).await.unwrap();
    // a's first message is b's: its own never came back.
    assert_eq!(next(&mut a).await, TMsg::text("from b"));
}

#[tokio::test]
async fn envelope_join_leave_publish_unicast_group_and_acks() {
    let gw = relay(&["--no-store", "--protocol", "envelope", "--no-echo-sender"]).await;
    let mut a = tt(&gw.ws("/home")).await;
    let mut b = tt(&gw.ws("/home")).await;
    let mut c = tt(&gw.ws("/elsewhere")).await;
    let welcome = |v: Value| {
        assert_eq!(v["type"], "welcome", "{v}");
        v["connection"].as_str().unwrap().to_owned()
    };
    let (ida, idb, idc) =
        (welcome(next_json(&mut a).await), welcome(next_json(&mut b).await), welcome(next_json(&mut c).await));

    // Both a and b start in /home (the path's room); a joins /news too.
    send_json(&mut a, json!({"type": "join", "room": "/news", "id": "j1"})).await;
    let ack = next_json(&mut a).await;
    assert_eq!(
        (ack["type"].as_str(), ack["id"].as_str(), ack["room"].as_str()),
        (Some("ack"), Some("j1"), Some("/news"))
    );
    send_json(&mut c, json!({"type": "join", "room": "/news", "id": 2})).await;
    assert_eq!(next_json(&mut c).await["id"], 2);

    // A publication carries its room and offset; the publisher gets an ack with both.
    send_json(&mut b, json!({"type": "publish", "room": "/news", "id": "p1", "data": {"headline": "hi"}})).await;
    let ack = next_json(&mut b).await;
    assert_eq!(
        (ack["type"].as_str(), ack["offset"].as_u64(), ack["delivered"].as_u64()),
        (Some("ack"), Some(1), Some(2))
    );
    for ws in [&mut a, &mut c] {
        let ev = next_json(ws).await;
        assert_eq!(ev["type"], "event", "{ev}");
        assert_eq!((ev["room"].as_str(), ev["offset"].as_u64()), (Some("/news"), Some(1)));
        assert_eq!((ev["from"].as_str(), ev["data"]["headline"].as_str()), (Some(idb.as_str()), Some("hi")));
    }
    // The next one in the room is offset 2.
    send_json(&mut b, json!({"type": "publish", "room": "/news", "data": "second"})).await;
    assert_eq!(next_json(&mut a).await["offset"], 2);
    assert_eq!(next_json(&mut c).await["offset"], 2);

    // Unicast to c, then a group of a and c.
    send_json(&mut b, json!({"type": "send", "to": idc, "data": "psst", "id": "s1"})).await;
    assert_eq!(next_json(&mut b).await["delivered"], 1);
    let dm = next_json(&mut c).await;
    assert_eq!((dm["data"].as_str(), dm["from"].as_str()), (Some("psst"), Some(idb.as_str())));
    send_json(&mut b, json!({"type": "send", "to": [ida, idc], "base64": "AAEC"})).await;
    assert_eq!(next_json(&mut a).await["base64"], "AAEC");
    assert_eq!(next_json(&mut c).await["base64"], "AAEC");

    // After leaving, c hears nothing more from /news.
    send_json(&mut c, json!({"type": "leave", "room": "/news", "id": "l1"})).await;
    assert_eq!(next_json(&mut c).await["id"], "l1");
    send_json(&mut b, json!({"type": "publish", "room": "/news", "data": "third"})).await;
    assert_eq!(next_json(&mut a).await["data"], "third");
    send_json(&mut c, json!({"type": "heartbeat", "id": "marker"})).await;
    let hb = next_json(&mut c).await;
    assert_eq!((hb["type"].as_str(), hb["id"].as_str()), (Some("heartbeat"), Some("marker")), "c got {hb}");
    // Leaving a room one is not in is an error frame, not a disconnect.
    send_json(&mut c, json!({"type": "leave", "room": "/news", "id": "l2"})).await;
    let err = next_json(&mut c).await;
    assert_eq!(
        (err["type"].as_str(), err["code"].as_str(), err["id"].as_str()),
        (Some("error"), Some("not_member"), Some("l2"))
    );
}

#[tokio::test]
async fn malformed_envelopes_get_error_frames_then_a_disconnect_at_the_limit() {
    let gw = relay(&["--no-store", "--protocol", "envelope", "--max-bad-frames", "3"]).await;
    let mut ws = tt(&gw.ws("/x")).await;
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    ws.send(TMsg::text("not json")).await.unwrap();
    assert_eq!(next_json(&mut ws).await["code"], "not_json");
    send_json(&mut ws, json!({"type": "dance", "id": 9})).await;
    let e = next_json(&mut ws).await;
    assert_eq!((e["code"].as_str(), e["id"].as_i64()), (Some("unknown_type"), Some(9)));
    ws.send(TMsg::binary(vec![1u8, 2])).await.unwrap();
    assert_eq!(next_json(&mut ws).await["code"], "binary_frame");
    let (code, reason) = closed_with(&mut ws).await;
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("3 malformed"), "{reason}");
}

#[tokio::test]
async fn warpsocket_event_and_heartbeat_frames_work_unchanged() {
    let gw = relay(&["--no-store", "--protocol", "envelope"]).await;
    // Two WarpSocket clients on one path: they share its room without joining.
    let mut a = tt(&gw.ws("/ws")).await;
    let mut b = tt(&gw.ws("/ws")).await;
    next_json(&mut a).await;
    next_json(&mut b).await;
    // WarpSocket's message shape: {"type", "id", "data", "timestamp"}.
    send_json(&mut a, json!({"type": "heartbeat", "id": "hb-1", "timestamp": 1700000000000i64})).await;
    let hb = next_json(&mut a).await;
    assert_eq!((hb["type"].as_str(), hb["id"].as_str()), (Some("heartbeat"), Some("hb-1")));
    assert!(hb["timestamp"].as_i64().unwrap_or(0) > 1_700_000_000_000);
    send_json(&mut a, json!({"type": "event", "id": "e-1", "data": {"msg": "hi"}, "timestamp": 1700000000123i64}))
        .await;
    // Echo to the sender is on (the default): a sees the ack and its own event, b the event.
    let mut got = [next_json(&mut a).await, next_json(&mut a).await];
    got.sort_by_key(|v| v["type"].as_str().unwrap_or_default().to_owned());
    assert_eq!((got[0]["type"].as_str(), got[0]["id"].as_str()), (Some("ack"), Some("e-1")));
    let ev = next_json(&mut b).await;
    assert_eq!(ev["type"], "event");
    assert_eq!((ev["data"]["msg"].as_str(), ev["timestamp"].as_i64()), (Some("hi"), Some(1_700_000_000_123)));
    assert_eq!(got[1]["data"], ev["data"]);
}

#[tokio::test]
async fn http_publish_and_room_inspection() {
    let gw = relay(&["--no-store"]).await;
    let mut raw = tt(&gw.ws("/prices")).await;
    gw.wait_sessions(|s| s.iter().any(|s| s["state"] == "CONNECTED")).await;
    let url = gw.api("/api/rooms/%2Fprices/publish");
    let r = client().post(&url).json(&json!({"json": {"price": 42}})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!((v["offset"].as_u64(), v["delivered"].as_u64()), (Some(1), Some(1)));
    assert_eq!(next(&mut raw).await, TMsg::text(r#"{"price":42}"#));
    let r = client().post(&url).json(&json!({"base64": "AAE="})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(next(&mut raw).await, TMsg::binary(vec![0u8, 1]));
    let r = client().post(&url).json(&json!({"text": "a", "base64": "AAE="})).send().await.unwrap();
    assert_eq!(r.status(), 400);

    let rooms = http_json(&gw.api("/api/rooms")).await;
    assert_eq!(rooms["rooms"][0]["room"], "/prices", "{rooms}");
    assert_eq!((rooms["rooms"][0]["members"].as_u64(), rooms["rooms"][0]["offset"].as_u64()), (Some(1), Some(2)));
    let room = http_json(&gw.api("/api/rooms/%2Fprices")).await;
    let member = &room["member_list"][0];
    let sessions = http_json(&gw.api("/api/sessions")).await;
    assert_eq!(member["session_id"], sessions["sessions"][0]["id"]);
    assert_eq!(member["queued"], 0);
    let r = client().get(gw.api("/api/rooms/%2Fnone")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    // Inject reaches that one client; close works on a relay session.
    let id = member["session_id"].as_str().unwrap().to_owned();
    let r = client()
        .post(gw.api(&format!("/api/sessions/{id}/inject")))
        .json(&json!({"to": "client", "text": "just you"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(next(&mut raw).await, TMsg::text("just you"));
    let r = client()
        .post(gw.api(&format!("/api/sessions/{id}/close")))
        .json(&json!({"code": 4000, "reason": "bye"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(closed_with(&mut raw).await, (4000, "bye".into()));
}

/// A raw TCP client that upgrades and then never reads: its socket buffers fill, and
/// it never answers a ping.
async fn stalled_client(gw: &Gateway, path: &str) -> tokio::net::TcpStream {
    let mut tcp = tokio::net::TcpStream::connect(gw.listen).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        gw.listen
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    // Shrink its receive window so the gateway's side backs up quickly.
    let sock = socket2::SockRef::from(&tcp);
    let _ = sock.set_recv_buffer_size(4096);
    tcp
}

/// Publishes `n` 1 KiB messages from a fast member while one member stalls, in
/// windows of 100 (the fast receiver never lags by more, so its own queue never
/// fills); returns how long the fast receiver took to get all of them.
async fn flood_past_a_stalled_member(gw: &Gateway, n: usize) -> Duration {
    let _stalled = stalled_client(gw, "/flood").await;
    let mut sender = tt(&gw.ws("/flood")).await;
    let mut fast = tt(&gw.ws("/flood")).await;
    gw.wait_sessions(|s| s.iter().filter(|s| s["state"] == "CONNECTED").count() == 3).await;
    let payload = "x".repeat(1024);
    let start = Instant::now();
    for window in 0..n / 100 {
        for _ in 0..100 {
            sender.feed(TMsg::text(payload.clone())).await.unwrap();
        }
        sender.flush().await.unwrap();
        for i in 0..100 {
            match next(&mut fast).await {
                TMsg::Text(t) => assert_eq!(t.len(), 1024, "message {}", window * 100 + i),
                other => panic!("{other:?}"),
            }
        }
    }
    start.elapsed()
}

#[tokio::test]
async fn a_stalled_member_does_not_slow_the_others_and_drops_are_counted_and_recorded() {
    // Echo off so the sender's own queue does not fill with the flood.
    let gw = relay(&["--no-echo-sender", "--member-queue-messages", "1000", "--overflow", "drop_oldest"]).await;
    let n = 20_000;
    let took = flood_past_a_stalled_member(&gw, n).await;
    // Measured, not assumed: 20 000 × 1 KiB (far more than the stalled member's
    // socket buffers, high-water mark and queue hold) pass it by in well under this;
    // a fan-out that waited for the stalled socket would never finish.
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let m = eventually(|| async {
        let m = metrics(&gw).await;
        (metric(&m, r#"wsgate_relay_dropped_total{route="relay",policy="drop_oldest"}"#)? > 0.0).then_some(m)
    })
    .await;
    assert_eq!(metric(&m, r#"wsgate_relay_dropped_total{route="relay",policy="drop_newest"}"#), Some(0.0));
    // The stalled member's history says so.
    let sessions = gw.wait_sessions(|s| s.len() == 3).await;
    let slow = eventually(|| async {
        for s in &sessions {
            let id = s["id"].as_str()?;
            let ev = http_json(&gw.api(&format!("/api/sessions/{id}/events"))).await;
            if ev.to_string().contains("slow_consumer") {
                return Some(ev);
            }
        }
        None
    })
    .await;
    assert!(slow.to_string().contains("queue full (drop_oldest)"), "{slow}");
}

#[tokio::test]
async fn the_disconnect_policy_closes_a_stalled_member_with_1013_and_the_others_go_on() {
    let gw =
        relay(&["--no-store", "--no-echo-sender", "--member-queue-messages", "1000", "--overflow", "disconnect"]).await;
    let took = flood_past_a_stalled_member(&gw, 20_000).await;
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let sessions = gw.wait_sessions(|s| s.iter().any(|s| s["close"]["code"] == 1013)).await;
    let gone = sessions.iter().find(|s| s["close"]["code"] == 1013).unwrap();
    assert!(gone["close"]["reason"].as_str().unwrap_or_default().contains("slow consumer"), "{gone}");
    let m = metrics(&gw).await;
    assert_eq!(metric(&m, r#"wsgate_relay_dropped_total{route="relay",policy="disconnect"}"#), Some(1.0), "{m}");
}

#[tokio::test]
async fn a_client_that_never_answers_pings_is_closed_and_one_that_does_stays() {
    let gw = relay(&["--no-store", "--heartbeat-interval", "100ms", "--heartbeat-misses", "2"]).await;
    let _stalled = stalled_client(&gw, "/hb").await;
    // tungstenite answers pings while it reads: this one reads all along, and stays.
    let (mut tx, mut rx) = tt(&gw.ws("/hb")).await.split();
    let reader = tokio::spawn(async move {
        while let Some(Ok(m)) = rx.next().await {
            match m {
                TMsg::Text(t) => return t.to_string(),
                TMsg::Close(c) => return format!("closed: {c:?}"),
                _ => {}
            }
        }
        String::new()
    });
    let sessions = gw.wait_sessions(|s| s.iter().any(|s| s["state"] == "DISCONNECTED")).await;
    let gone = sessions.iter().find(|s| s["state"] == "DISCONNECTED").unwrap();
    assert_eq!(gone["close"]["code"], 1001, "{gone}");
    assert!(gone["close"]["reason"].as_str().unwrap_or_default().contains("heartbeat timeout"), "{gone}");
    // Several heartbeat intervals later, the reading client is still there.
    let alive = sessions.iter().find(|s| s["state"] == "CONNECTED").unwrap()["id"].clone();
    let sent = tx.send(TMsg::text("still here")).await;
    assert_eq!(within(reader).await.unwrap(), "still here", "{sent:?}");
    let again = http_json(&gw.api(&format!("/api/sessions/{}", alive.as_str().unwrap()))).await;
    assert_eq!(again["state"], "CONNECTED", "{again}");
}

#[tokio::test]
async fn rate_limit_closes_with_1008_and_oversized_messages_with_1009() {
    let gw = relay(&["--no-store", "--rate-limit", "5", "--rate-burst", "5", "--max-message-size", "1024"]).await;
    let mut flood = tt(&gw.ws("/r")).await;
    for i in 0..20 {
        if flood.send(TMsg::text(format!("{i}"))).await.is_err() {
            break;
        }
    }
    let (code, reason) = closed_with(&mut flood).await;
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("rate limit"), "{reason}");
    let mut big = tt(&gw.ws("/r")).await;
    big.send(TMsg::text("x".repeat(2000))).await.unwrap();
    assert_eq!(closed_with(&mut big).await.0, 1009);
    let m = metrics(&gw).await;
    assert_eq!(metric(&m, r#"wsgate_relay_rate_limited_total{route="relay"}"#), Some(1.0), "{m}");
}

#[tokio::test]
async fn connections_per_address_are_capped_with_429() {
    let gw = relay(&["--no-store", "--max-connections-per-ip", "2"]).await;
    let _a = tt(&gw.ws("/r")).await;
    let b = tt(&gw.ws("/r")).await;
    let refused = within(::tokio_tungstenite::connect_async(gw.ws("/r"))).await;
    match refused {
        Err(::tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 429),
        other => panic!("expected 429, got {:?}", other.map(|_| ())),
    }
    // A slot is freed when a member leaves.
    drop(b);
    eventually(|| async { ::tokio_tungstenite::connect_async(gw.ws("/r")).await.ok().map(|_| ()) }).await;
}

#[tokio::test]
async fn metrics_after_a_known_workload() {
    let gw = relay(&["--no-store"]).await;
    let mut members = Vec::new();
    for _ in 0..3 {
        members.push(tt(&gw.ws("/m")).await);
    }
    gw.wait_sessions(|s| s.iter().filter(|s| s["state"] == "CONNECTED").count() == 3).await;
    for i in 0..4 {
        members[0].send(TMsg::text(format!("{i}"))).await.unwrap();
    }
    for m in &mut members {
        for _ in 0..4 {
            next(m).await;
        }
    }
    let m = metrics(&gw).await;
    let series = |s: &str| metric(&m, s).unwrap_or_else(|| panic!("no {s} in\n{m}"));
    assert_eq!(series("websocket_connected_clients "), 3.0);
    assert_eq!(series("websocket_connections_total "), 3.0);
    assert_eq!(series("websocket_messages_total "), 4.0);
    assert_eq!(series("websocket_disconnections_total "), 0.0);
    assert_eq!(series(r#"wsgate_relay_deliveries_total{route="relay"}"#), 12.0);
    assert_eq!(series(r#"wsgate_relay_room_deliveries_total{room="/m"}"#), 12.0);
    assert_eq!(series(r#"wsgate_relay_fanout_seconds_count{route="relay"}"#), 12.0);
    assert!(m.contains("# TYPE websocket_connected_clients gauge"), "{m}");
    assert!(m.contains("# TYPE websocket_messages counter"), "{m}");
    drop(members);
    eventually(|| async {
        let m = metrics(&gw).await;
        (metric(&m, "websocket_disconnections_total ")? == 3.0).then_some(())
    })
    .await;
    assert_eq!(metric(&metrics(&gw).await, "websocket_connected_clients "), Some(0.0));
}

#[tokio::test]
async fn relay_routes_in_serve_refuse_foreign_origins_and_keep_history() {
    let (_dir, file) = config_file(
        r#"
routes:
  - name: chat
    path: /chat/*
    relay: { protocol: raw }
    origins: ["https://app.example.com"]
  - name: echo
    path: /echo
    mock: { echo: true }
"#,
    );
    let gw = Gateway::spawn("serve", &["--config", &file], &[]).await;
    let mut req = gw.ws("/chat/a").into_client_request().unwrap();
    req.headers_mut().insert("Origin", "https://evil.example".parse().unwrap());
    match within(::tokio_tungstenite::connect_async(req)).await {
        Err(::tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("expected 403, got {:?}", other.map(|_| ())),
    }
    let mut req = gw.ws("/chat/a").into_client_request().unwrap();
    req.headers_mut().insert("Origin", "https://app.example.com".parse().unwrap());
    let mut a = within(::tokio_tungstenite::connect_async(req)).await.unwrap().0;
    let mut b = tt(&gw.ws("/chat/a")).await;
    gw.wait_sessions(|s| s.iter().filter(|s| s["state"] == "CONNECTED").count() == 2).await;
    a.send(TMsg::text("recorded")).await.unwrap();
    assert_eq!(next(&mut b).await, TMsg::text("recorded"));
    assert_eq!(next(&mut a).await, TMsg::text("recorded"));
    let sessions = gw.wait_sessions(|s| s.len() == 2).await;
    assert!(sessions.iter().all(|s| s["kind"] == "relay" && s["route"] == "chat"), "{sessions:?}");
    let routes = http_json(&gw.api("/api/routes")).await;
    assert_eq!(routes["routes"][0]["kind"], "relay", "{routes}");
    // b's log: what it received, as a proxied session's log shows it.
    let b_id = sessions.iter().find(|s| s["messages_in"] == 0).map(|s| s["id"].as_str().unwrap().to_owned());
    let b_id = b_id.unwrap_or_else(|| panic!("{sessions:?}"));
    let log = eventually(|| async {
        let v = http_json(&gw.api(&format!("/api/sessions/{b_id}/messages"))).await;
        (v["messages"].as_array()?.len() == 1).then_some(v)
    })
    .await;
    assert_eq!(log["messages"][0]["dir"], "gateway_to_client", "{log}");
    assert_eq!(log["messages"][0]["text"], "recorded", "{log}");
    let export =
        client().get(gw.api(&format!("/api/sessions/{b_id}/export"))).send().await.unwrap().text().await.unwrap();
    assert!(export.contains("recorded") && export.contains("\"relay\""), "{export}");
}

/// One publication to many members is stored once: the rows the recorder writes grow
/// with publications, not deliveries, and every member's history still shows each
/// message it received, in order, as the API, the export and `history show` read it.
#[tokio::test]
async fn publications_are_stored_once_and_each_members_history_shows_them() {
    const MEMBERS: usize = 40;
    const PUBLICATIONS: usize = 50;
    let gw = relay(&[]).await;
    let mut members = Vec::new();
    for _ in 0..MEMBERS {
        members.push(tt(&gw.ws("/wide")).await);
    }
    gw.wait_sessions(|s| s.iter().filter(|s| s["state"] == "CONNECTED").count() == MEMBERS).await;
    let rows_before = metric(&metrics(&gw).await, "wsgate_store_rows_total ").unwrap_or(0.0);
    for i in 0..PUBLICATIONS {
        members[0].send(TMsg::text(format!("pub {i}"))).await.unwrap();
    }
    for m in &mut members {
        for i in 0..PUBLICATIONS {
            assert_eq!(next(m).await, TMsg::text(format!("pub {i}")));
        }
    }
    let sessions = gw.wait_sessions(|s| s.len() == MEMBERS).await;
    let quiet_id = sessions.iter().find(|s| s["messages_in"] == 0).map(|s| s["id"].as_str().unwrap().to_owned());
    let quiet_id = quiet_id.unwrap_or_else(|| panic!("{sessions:?}"));
    let log = eventually(|| async {
        let v = http_json(&gw.api(&format!("/api/sessions/{quiet_id}/messages?limit=1000"))).await;
        (v["messages"].as_array()?.len() == PUBLICATIONS).then_some(v)
    })
    .await;
    for (i, m) in log["messages"].as_array().unwrap().iter().enumerate() {
        assert_eq!((m["seq"].as_u64(), m["dir"].as_str()), (Some(i as u64 + 1), Some("gateway_to_client")), "{m}");
        assert_eq!(m["text"], format!("pub {i}"), "{m}");
    }
    // A page that starts inside the run.
    let page = http_json(&gw.api(&format!("/api/sessions/{quiet_id}/messages?after_seq=10&limit=3"))).await;
    let seqs: Vec<_> = page["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [11, 12, 13], "{page}");
    // 2 000 deliveries: the publisher's 50 messages, 50 log entries, a run per member
    // per batch and lifecycle rows — not a row per delivery.
    let rows = metric(&metrics(&gw).await, "wsgate_store_rows_total ").unwrap() - rows_before;
    assert!(rows < (MEMBERS * PUBLICATIONS / 4) as f64, "{rows} rows for {} deliveries", MEMBERS * PUBLICATIONS);
    for m in &mut members {
        m.close(None).await.unwrap();
    }
    gw.wait_sessions(|s| s.iter().all(|s| s["state"] == "DISCONNECTED")).await;
    let export = eventually(|| async {
        let url = gw.api(&format!("/api/sessions/{quiet_id}/export"));
        let text = client().get(url).send().await.unwrap().text().await.unwrap();
        text.contains("pub 49").then_some(text)
    })
    .await;
    let lines: Vec<Value> = export.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let texts: Vec<_> = lines.iter().filter_map(|l| l["text"].as_str()).filter(|t| t.starts_with("pub ")).collect();
    assert_eq!(texts.len(), PUBLICATIONS, "{export}");
    assert_eq!(texts[49], "pub 49");
}

#[tokio::test]
async fn graceful_shutdown_closes_every_member_with_1001() {
    let mut gw = relay(&["--no-store"]).await;
    let mut a = tt(&gw.ws("/s")).await;
    let mut b = tt(&gw.ws("/t")).await;
    gw.wait_sessions(|s| s.iter().filter(|s| s["state"] == "CONNECTED").count() == 2).await;
    let pid = gw.pid().to_string();
    std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert_eq!(closed_with(&mut a).await.0, 1001);
    assert_eq!(closed_with(&mut b).await.0, 1001);
    drop((a, b));
    assert_eq!(within(gw.child.wait()).await.unwrap().code(), Some(0));
}

#[tokio::test]
async fn python_websockets_and_node_ws_clients_share_a_room() {
    let gw = relay(&["--no-store"]).await;
    let python = std::env::var("WSGATE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let py = r#"
import asyncio, sys, websockets
async def main():
    async with websockets.connect(sys.argv[1]) as ws:
        print("ready", flush=True)
        msg = await asyncio.wait_for(ws.recv(), 20)
        await ws.send("python got " + msg)
        while True:
            m = await asyncio.wait_for(ws.recv(), 20)
            if m.startswith("node got"):
                print(m, flush=True)
                return
asyncio.run(main())
"#;
    let node = r#"
const WebSocket = require('ws');
const ws = new WebSocket(process.argv[1]);
ws.on('open', () => console.log('ready'));
ws.on('message', (m) => {
  m = m.toString();
  if (m.startsWith('python got')) { ws.send('node got ' + m); console.log(m); ws.close(); }
});
ws.on('close', () => process.exit(0));
setTimeout(() => process.exit(2), 20000);
"#;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/node");
    let url = gw.ws("/mixed");
    let pyp = tokio::process::Command::new(&python)
        .args(["-c", py, &url])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 with websockets (scripts/interop-setup)");
    let nodep = tokio::process::Command::new("node")
        .args(["-e", node, &url])
        .current_dir(&root)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node with ws (scripts/interop-setup)");
    gw.wait_sessions(|s| s.iter().filter(|s| s["state"] == "CONNECTED").count() == 2).await;
    let mut rust = tt(&url).await;
    rust.send(TMsg::text("start")).await.unwrap();
    let py_out = within(pyp.wait_with_output()).await.unwrap();
    let node_out = within(nodep.wait_with_output()).await.unwrap();
    let (py_out, node_out) = (String::from_utf8_lossy(&py_out.stdout), String::from_utf8_lossy(&node_out.stdout));
    assert!(py_out.contains("node got python got start"), "python saw: {py_out}");
    assert!(node_out.contains("python got start"), "node saw: {node_out}");
}

fn jwt(claims: Value, key: &jsonwebtoken::EncodingKey, alg: jsonwebtoken::Algorithm) -> String {
    jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), &claims, key).unwrap()
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// The status an upgrade to `url` (with an optional bearer token) is refused with.
async fn refused(url: &str, bearer: Option<&str>) -> u16 {
    let mut req = url.into_client_request().unwrap();
    if let Some(t) = bearer {
        req.headers_mut().insert("Authorization", format!("Bearer {t}").parse().unwrap());
    }
    match within(::tokio_tungstenite::connect_async(req)).await {
        Err(::tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
        other => panic!("{url}: expected a refusal, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn jwt_hs256_valid_expired_not_yet_valid_wrong_signature_and_rooms() {
    let gw = relay(&["--jwt-secret", "relay-secret", "--protocol", "envelope"]).await;
    let key = jsonwebtoken::EncodingKey::from_secret(b"relay-secret");
    let hs = |claims: Value| jwt(claims, &key, jsonwebtoken::Algorithm::HS256);
    let now = unix_now();
    assert_eq!(refused(&gw.ws("/chat/a"), None).await, 401);
    assert_eq!(refused(&gw.ws("/chat/a"), Some(&hs(json!({"exp": now - 3600})))).await, 401);
    assert_eq!(refused(&gw.ws("/chat/a"), Some(&hs(json!({"nbf": now + 3600})))).await, 401);
    let forged = jwt(json!({}), &jsonwebtoken::EncodingKey::from_secret(b"guess"), jsonwebtoken::Algorithm::HS256);
    assert_eq!(refused(&gw.ws("/chat/a"), Some(&forged)).await, 401);

    // A valid token in the query: accepted, and the recorded path does not keep it.
    let token = hs(json!({"sub": "u1", "exp": now + 600, "rooms": ["/chat/*"]}));
    let mut ws = tt(&gw.ws(&format!("/chat/a?x=1&token={token}"))).await;
    let welcome = next_json(&mut ws).await;
    assert_eq!(welcome["rooms"], json!(["/chat/a"]), "{welcome}");
    let sessions = gw.wait_sessions(|s| s.iter().any(|s| s["state"] == "CONNECTED")).await;
    let path = sessions.iter().find(|s| s["state"] == "CONNECTED").unwrap()["path"].clone();
    assert_eq!(path, "/chat/a?x=1", "the token must not be recorded");
    // The rooms claim: /chat/* yes, /admin no (an error frame, not a disconnect).
    send_json(&mut ws, json!({"type": "join", "room": "/chat/b", "id": 1})).await;
    assert_eq!(next_json(&mut ws).await["type"], "ack");
    send_json(&mut ws, json!({"type": "join", "room": "/admin", "id": 2})).await;
    let e = next_json(&mut ws).await;
    assert_eq!((e["code"].as_str(), e["id"].as_i64()), (Some("forbidden"), Some(2)));
    send_json(&mut ws, json!({"type": "publish", "room": "/admin", "data": 1, "id": 3})).await;
    assert_eq!(next_json(&mut ws).await["code"], "forbidden");
    let m = metrics(&gw).await;
    assert_eq!(metric(&m, r#"wsgate_relay_refused_total{route="relay"}"#), Some(4.0), "{m}");
}

#[tokio::test]
async fn jwt_es256_from_a_public_key_file_and_a_raw_room_outside_the_claim_is_403() {
    let dir = TempDir::new();
    let pair = rcgen::KeyPair::generate().unwrap();
    let public = dir.0.join("jwt.pub.pem");
    std::fs::write(&public, pair.public_key_pem()).unwrap();
    let gw = relay(&["--no-store", "--jwt-public-key", public.to_str().unwrap()]).await;
    let key = jsonwebtoken::EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
    let token = jwt(json!({"rooms": ["/feed"]}), &key, jsonwebtoken::Algorithm::ES256);
    let mut req = gw.ws("/feed").into_client_request().unwrap();
    req.headers_mut().insert("Authorization", format!("Bearer {token}").parse().unwrap());
    let mut ws = within(::tokio_tungstenite::connect_async(req)).await.unwrap().0;
    ws.send(TMsg::text("signed in")).await.unwrap();
    assert_eq!(next(&mut ws).await, TMsg::text("signed in"));
    assert_eq!(refused(&gw.ws("/other"), Some(&token)).await, 403);
    let hs = jwt(json!({}), &jsonwebtoken::EncodingKey::from_secret(b"x"), jsonwebtoken::Algorithm::HS256);
    assert_eq!(refused(&gw.ws("/feed"), Some(&hs)).await, 401);
}

#[tokio::test]
async fn a_bad_key_file_is_a_config_error_naming_the_field() {
    let dir = TempDir::new();
    let junk = dir.0.join("junk.pem");
    std::fs::write(&junk, "not a key").unwrap();
    let out = std::process::Command::new(bin())
        .args(["relay", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--no-store"])
        .args(["--jwt-public-key", junk.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("relay.jwt_public_key") && err.contains("neither an RSA nor an EC"), "{err}");
}

/// A port free a moment ago (the Go relay's config file names fixed ports).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn websocket_relays_config_file_is_read_as_is() {
    let dir = TempDir::new();
    let (port, metrics_port) = (free_port(), free_port());
    let file = dir.0.join("config.yaml");
    std::fs::write(
        &file,
        format!("server:\n  port: {port}\ntls:\n  enabled: false\nmetrics:\n  enabled: true\n  port: {metrics_port}\n"),
    )
    .unwrap();
    let gw = relay(&["--config-file", file.to_str().unwrap(), "--no-store"]).await;
    assert_eq!(gw.listen.to_string(), format!("0.0.0.0:{port}"));
    // Every message to every client on `/`, sender included, as the Go relay does.
    let url = format!("ws://127.0.0.1:{port}/");
    let mut a = tt(&url).await;
    let mut b = tt(&url).await;
    let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");
    eventually(|| async {
        let m = client().get(&metrics_url).send().await.ok()?.text().await.ok()?;
        (metric(&m, "websocket_connected_clients ")? == 2.0).then_some(())
    })
    .await;
    a.send(TMsg::text("to all")).await.unwrap();
    assert_eq!(next(&mut a).await, TMsg::text("to all"));
    assert_eq!(next(&mut b).await, TMsg::text("to all"));
    // The metrics port serves /metrics only.
    let r = client().get(format!("http://127.0.0.1:{metrics_port}/api/sessions")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let m = client().get(&metrics_url).send().await.unwrap().text().await.unwrap();
    assert_eq!(metric(&m, "websocket_messages_total "), Some(1.0), "{m}");
}
