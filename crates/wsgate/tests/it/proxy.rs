//! The proxy's data path: frames, control frames, close codes, subprotocols, headers,
//! refusals, accept-early, limits, resolution.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Notify;
use wsgate_protocol::{CloseFrame, ConnectError, ConnectRequest, Frame, Message, OpCode};

use crate::support::*;

#[tokio::test]
async fn echo_text_binary_all_sizes_and_fragmented() {
    let mut up = Upstream::echo().await;
    let gw = Gateway::proxy(&["--upstream", &up.url()]).await;
    let mut ws = ws_connect(&gw.ws("/echo?x=1")).await;
    assert_eq!(up.next_connection().await.0, "/echo?x=1");

    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(text(&recv(&mut ws).await), "hello");

    for size in [0usize, 1, 125, 126, 65535, 65536, 1 << 20] {
        let payload: Bytes = (0..size).map(|i| (i % 251) as u8).collect::<Vec<_>>().into();
        ws.send(Message::Binary(payload.clone())).await.unwrap();
        assert_eq!(recv(&mut ws).await, Message::Binary(payload), "binary of {size} bytes");
    }

    // A fragmented text message with a ping between its fragments.
    ws.feed_frame(&Frame::text("frag").with_fin(false)).unwrap();
    ws.feed_frame(&Frame::ping("mid")).unwrap();
    ws.feed_frame(&Frame::new(OpCode::Continuation, "men").with_fin(false)).unwrap();
    ws.feed_frame(&Frame::new(OpCode::Continuation, "ted")).unwrap();
    ws.flush().await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::Pong(Bytes::from("mid")));
    assert_eq!(text(&recv(&mut ws).await), "fragmented");
    // The upstream got the message whole and its bytes intact, and saw the ping itself.
    let mut got_ping = false;
    loop {
        match up.next_message().await {
            Message::Ping(p) => {
                assert_eq!(p, Bytes::from("mid"));
                got_ping = true
            }
            Message::Text(t) if t == "fragmented" => break,
            _ => {}
        }
    }
    assert!(got_ping, "the upstream answered the ping, not the proxy");
}

#[tokio::test]
async fn ping_is_answered_once_by_the_upstream() {
    let mut up = Upstream::echo().await;
    let gw = Gateway::proxy(&["--upstream", &up.url()]).await;
    let mut ws = ws_connect(&gw.ws("/")).await;
    ws.send(Message::Ping(Bytes::from("p1"))).await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::Pong(Bytes::from("p1")));
    assert_eq!(up.next_message().await, Message::Ping(Bytes::from("p1")));
    // Exactly one pong: the next thing the client gets is the echo of what follows.
    ws.send(Message::text("after")).await.unwrap();
    assert_eq!(text(&recv(&mut ws).await), "after");
}

#[tokio::test]
async fn close_codes_pass_both_ways() {
    let mut up = Upstream::echo().await;
    let gw = Gateway::proxy(&["--upstream", &up.url()]).await;

    // Client closes with 4001 "bye": the upstream sees exactly that, the client gets
    // the upstream's reply.
    let mut ws = ws_connect(&gw.ws("/a")).await;
    ws.send(Message::Close(Some(CloseFrame::new(4001, "bye")))).await.unwrap();
    assert_eq!(up.next_message().await, Message::Close(Some(CloseFrame::new(4001, "bye"))));
    assert_eq!(close_of(&recv(&mut ws).await).unwrap().code, 4001);

    // The upstream closes with 4002 "later".
    let mut ws = ws_connect(&gw.ws("/b")).await;
    ws.send(Message::text("close:4002:later")).await.unwrap();
    assert_eq!(close_of(&recv(&mut ws).await), Some(CloseFrame::new(4002, "later")));

    let sessions = gw.wait_sessions(|s| s.iter().filter(|x| x["state"] == "DISCONNECTED").count() == 2).await;
    let a = sessions.iter().find(|s| s["path"] == "/a").unwrap();
    assert_eq!(a["close"]["code"], 4001);
    assert_eq!(a["close"]["reason"], "bye");
    assert_eq!(a["close"]["initiator"], "client");
    let b = sessions.iter().find(|s| s["path"] == "/b").unwrap();
    assert_eq!(b["close"]["code"], 4002);
    assert_eq!(b["close"]["initiator"], "upstream");
}

#[tokio::test]
async fn subprotocol_is_the_upstreams_choice() {
    let up = Upstream::start(UpstreamOpts { accept_protocols: vec!["v2".into()], ..Default::default() }).await;
    let gw = Gateway::proxy(&["--upstream", &up.url()]).await;
    let mut req = ConnectRequest::new(gw.ws("/").parse().unwrap());
    req.subprotocols = vec!["v1".into(), "v2".into()];
    let c = within(wsgate_protocol::connect(req)).await.unwrap();
    assert_eq!(c.subprotocol.as_deref(), Some("v2"));

    // Nothing acceptable offered: the upstream picks none, so does the proxy.
    let mut req = ConnectRequest::new(gw.ws("/").parse().unwrap());
    req.subprotocols = vec!["v9".into()];
    let c = within(wsgate_protocol::connect(req)).await.unwrap();
    assert_eq!(c.subprotocol, None);
}

#[tokio::test]
async fn headers_allowlist_extra_and_hop_by_hop() {
    let mut up = Upstream::echo().await;
    let gw = Gateway::proxy(&["--upstream", &up.url(), "--forward-header", "x-tenant"]).await;
    let mut req = ConnectRequest::new(gw.ws("/h").parse().unwrap());
    for (k, v) in
        [("authorization", "Bearer t0k"), ("x-tenant", "acme"), ("x-secret-internal", "no"), ("keep-alive", "5")]
    {
        req.headers.insert(k, v.parse().unwrap());
    }
    let _ws = ws_connect_with(req).await;
    let (_, h) = up.next_connection().await;
    assert_eq!(h["authorization"], "Bearer t0k");
    assert_eq!(h["x-tenant"], "acme");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "ws");
    assert!(h.get("x-secret-internal").is_none());
    assert!(h.get("keep-alive").is_none());
    // Recorded on the session with the credential redacted.
    let s = gw.wait_sessions(|s| !s.is_empty()).await;
    let headers = s[0]["headers"].to_string();
    assert!(headers.contains("[redacted]") && !headers.contains("t0k"), "{headers}");
}

#[tokio::test]
async fn refused_upgrade_reaches_the_client_with_the_same_status() {
    for (status, body) in [(401u16, "who are you"), (403, "forbidden here"), (404, "no such path"), (503, "busy")] {
        let up = Upstream::start(UpstreamOpts { reject: Some((status, body)), ..Default::default() }).await;
        let gw = Gateway::proxy(&["--upstream", &up.url()]).await;
        let err =
            within(wsgate_protocol::connect(ConnectRequest::new(gw.ws("/x").parse().unwrap()))).await.unwrap_err();
        match err {
            ConnectError::Rejected { status: s, body: b, .. } => {
                assert_eq!(s.as_u16(), status);
                assert_eq!(b, Bytes::from(body));
            }
            other => panic!("expected a refusal, got {other}"),
        }
        let s = gw.wait_sessions(|s| s.iter().any(|x| x["state"] == "FAILED")).await;
        let failed = s.iter().find(|x| x["state"] == "FAILED").unwrap();
        assert_eq!(failed["http_status"], status);
        assert_eq!(failed["failure_kind"], "http_status");
        let one = http_json(&gw.api(&format!("/api/sessions/{}", failed["id"].as_str().unwrap()))).await;
        let last = one["lifecycle"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["http_status"], status);
        assert_eq!(last["reason_kind"], "http_status");
    }
}

#[tokio::test]
async fn upstream_down_is_502_and_failed_with_reason() {
    // A port nobody listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let gw = Gateway::proxy(&["--upstream", &format!("ws://127.0.0.1:{port}")]).await;
    let mut live = ws_connect(&format!("ws://{}/api/live", gw.control)).await;
    let _status = recv(&mut live).await;
    let err = within(wsgate_protocol::connect(ConnectRequest::new(gw.ws("/down").parse().unwrap()))).await.unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(502), "{err}");
    // The live stream reports FAILED with the reason.
    let failed = within(async {
        loop {
            let v: serde_json::Value = serde_json::from_str(&text(&recv(&mut live).await)).unwrap();
            if v["type"] == "lifecycle" && v["state"] == "FAILED" {
                return v;
            }
        }
    })
    .await;
    assert_eq!(failed["reason_kind"], "refused", "{failed}");
    assert!(failed["reason"].as_str().unwrap().contains("refused"), "{failed}");
    assert_eq!(failed["path"], "/down");
}

#[tokio::test]
async fn accept_early_queues_in_order_then_delivers() {
    let hold = Arc::new(Notify::new());
    let mut up = Upstream::start(UpstreamOpts { hold: Some(hold.clone()), ..Default::default() }).await;
    let gw = Gateway::proxy(&["--upstream", &up.url(), "--accept-early"]).await;
    // The client is accepted although the upstream has not answered.
    let mut ws = ws_connect(&gw.ws("/q")).await;
    up.next_connection().await;
    for i in 0..5 {
        ws.send(Message::text(format!("m{i}"))).await.unwrap();
    }
    // All five are queued (the session counted them) before the upstream is released.
    gw.wait_sessions(|s| s.first().is_some_and(|x| x["messages_in"] == 5)).await;
    hold.notify_one();
    for i in 0..5 {
        assert_eq!(text(&up.next_message().await), format!("m{i}"));
    }
    for i in 0..5 {
        assert_eq!(text(&recv(&mut ws).await), format!("m{i}"));
    }
}

#[tokio::test]
async fn accept_early_drops_expired_messages_with_an_event() {
    let hold = Arc::new(Notify::new());
    let mut up = Upstream::start(UpstreamOpts { hold: Some(hold.clone()), ..Default::default() }).await;
    let gw = Gateway::proxy(&["--upstream", &up.url(), "--accept-early", "--queue-timeout", "300ms"]).await;
    let mut live = ws_connect(&format!("ws://{}/api/live", gw.control)).await;
    let _status = recv(&mut live).await;
    let mut ws = ws_connect(&gw.ws("/q")).await;
    ws.send(Message::text("stale")).await.unwrap();
    // The drop is announced on the live stream — that is the signal, not a sleep.
    within(async {
        loop {
            let v: serde_json::Value = serde_json::from_str(&text(&recv(&mut live).await)).unwrap();
            if v["type"] == "error" && v["kind"] == "queue_timeout" {
                return;
            }
        }
    })
    .await;
    ws.send(Message::text("fresh")).await.unwrap();
    gw.wait_sessions(|s| s.first().is_some_and(|x| x["messages_in"] == 2)).await;
    hold.notify_one();
    up.next_connection().await;
    assert_eq!(text(&up.next_message().await), "fresh");
    let metrics = reqwest::get(gw.api("/metrics")).await.unwrap().text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("wsgate_queue_dropped_total") && l.contains("queue_timeout") && l.ends_with(" 1")),
        "{metrics}"
    );
}

#[tokio::test]
async fn accept_early_upstream_failure_closes_client_with_1014() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let gw = Gateway::proxy(&["--upstream", &format!("ws://127.0.0.1:{port}"), "--accept-early"]).await;
    let mut ws = ws_connect(&gw.ws("/")).await;
    let close = close_of(&recv(&mut ws).await).unwrap();
    assert_eq!(close.code, 1014);
    assert!(close.reason.contains("refused"), "{close:?}");
}

#[tokio::test]
async fn oversized_message_closes_1009() {
    let up = Upstream::echo().await;
    let gw = Gateway::proxy(&["--upstream", &up.url(), "--max-message-size", "1000"]).await;
    let mut ws = ws_connect(&gw.ws("/")).await;
    ws.send(Message::Binary(Bytes::from(vec![1u8; 999]))).await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::Binary(Bytes::from(vec![1u8; 999])));
    ws.send(Message::Binary(Bytes::from(vec![1u8; 1001]))).await.unwrap();
    assert_eq!(close_of(&recv(&mut ws).await).unwrap().code, 1009);
}

#[tokio::test]
async fn connection_limit_answers_503() {
    let up = Upstream::echo().await;
    let gw = Gateway::proxy(&["--upstream", &up.url(), "--max-connections", "1"]).await;
    let _first = ws_connect(&gw.ws("/")).await;
    let err = within(wsgate_protocol::connect(ConnectRequest::new(gw.ws("/").parse().unwrap()))).await.unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(503), "{err}");
}

#[tokio::test]
async fn idle_sessions_are_closed() {
    let up = Upstream::echo().await;
    let gw = Gateway::proxy(&["--upstream", &up.url(), "--idle-timeout", "300ms"]).await;
    let mut ws = ws_connect(&gw.ws("/")).await;
    let c = close_of(&recv(&mut ws).await).unwrap();
    assert_eq!((c.code, c.reason.as_str()), (1001, "idle timeout"));
}

#[tokio::test]
async fn server_greeting_right_after_101_is_not_lost() {
    let up = Upstream::start(UpstreamOpts { greeting: Some("welcome".into()), ..Default::default() }).await;
    let gw = Gateway::proxy(&["--upstream", &up.url()]).await;
    let mut ws = ws_connect(&gw.ws("/")).await;
    assert_eq!(text(&recv(&mut ws).await), "welcome");
}

/// A tiny HTTP resolver: `/a…` → the first upstream, anything else → HTTP 500.
async fn resolver(target: String) -> std::net::SocketAddr {
    use http_body_util::Full;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else { return };
            let target = target.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let target = target.clone();
                    async move {
                        let mut res = if req.uri().path().starts_with("/a") {
                            hyper::Response::new(Full::new(Bytes::from(format!("{{\"url\":\"{target}/resolved-a\"}}"))))
                        } else {
                            hyper::Response::new(Full::new(Bytes::from("no")))
                        };
                        if !req.uri().path().starts_with("/a") {
                            *res.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                        }
                        Ok::<_, std::convert::Infallible>(res)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn dynamic_upstream_resolution_with_fallback() {
    let mut resolved = Upstream::echo().await;
    let mut fallback = Upstream::echo().await;
    let r = resolver(resolved.url()).await;
    let gw = Gateway::proxy(&[
        "--upstream",
        &fallback.url(),
        "--resolver-url",
        &format!("http://{r}"),
        "--resolver-retries",
        "1",
    ])
    .await;
    let _a = ws_connect(&gw.ws("/a?room=1")).await;
    assert_eq!(resolved.next_connection().await.0, "/resolved-a");
    let _b = ws_connect(&gw.ws("/b?room=2")).await;
    assert_eq!(fallback.next_connection().await.0, "/b?room=2");
}

#[tokio::test]
async fn websocket_multiplex_environment_names() {
    let mut up = Upstream::echo().await;
    // PORT binds 0.0.0.0; the test still connects over loopback.
    let gw =
        Gateway::spawn("proxy", &["--control", "127.0.0.1:0"], &[("UPSTREAM_URL", &up.url()), ("PORT", "0")]).await;
    assert!(gw.listen.ip().is_unspecified(), "{}", gw.listen);
    let mut ws = ws_connect(&format!("ws://127.0.0.1:{}/mx", gw.listen.port())).await;
    assert_eq!(up.next_connection().await.0, "/mx");
    ws.send(Message::text("hi")).await.unwrap();
    assert_eq!(text(&recv(&mut ws).await), "hi");
}

#[tokio::test]
async fn plain_http_gets_426_with_a_message() {
    let up = Upstream::echo().await;
    let gw = Gateway::proxy(&["--upstream", &up.url()]).await;
    let res = reqwest::get(format!("http://{}/chat", gw.listen)).await.unwrap();
    assert_eq!(res.status(), 426);
    assert_eq!(res.headers()["upgrade"], "websocket");
    assert!(res.text().await.unwrap().contains("WebSocket"));
    // No session is recorded for a request that never asked to upgrade.
    let v = http_json(&gw.api("/api/sessions")).await;
    assert_eq!(v["sessions"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn permessage_deflate_is_negotiated_per_side_and_inspected_as_plaintext() {
    // Compressing client → proxy → upstream without compression.
    let mut up = Upstream::echo().await;
    let gw = Gateway::proxy(&["--upstream", &up.url(), "--deflate"]).await;
    let mut live = ws_connect(&format!("ws://{}/api/live", gw.control)).await;
    let _status = recv(&mut live).await;
    let mut req = ConnectRequest::new(gw.ws("/z").parse().unwrap());
    req.deflate = Some(Default::default());
    let c = within(wsgate_protocol::connect(req)).await.unwrap();
    assert!(c.deflate.is_some(), "the proxy accepts the client's offer");
    let mut ws =
        wsgate_protocol::WsStream::new(c.transport, wsgate_protocol::Role::Client, Default::default(), c.leftover)
            .with_deflate(c.deflate, 6);
    let (_, h) = up.next_connection().await;
    assert!(
        h["sec-websocket-extensions"].to_str().unwrap().contains("permessage-deflate"),
        "the proxy offers upstream too"
    );
    let msg = "compress me ".repeat(100);
    ws.send(Message::text(msg.clone())).await.unwrap();
    assert_eq!(text(&recv(&mut ws).await), msg);
    assert_eq!(text(&up.next_message().await), msg, "the upstream gets plaintext");
    let seen = within(async {
        loop {
            let v: serde_json::Value = serde_json::from_str(&text(&recv(&mut live).await)).unwrap();
            if v["type"] == "message" && v["direction"] == "client_to_upstream" {
                return v;
            }
        }
    })
    .await;
    assert_eq!(seen["size"], msg.len(), "events carry the inflated size");
    assert!(seen["text"].as_str().unwrap().starts_with("compress me"));

    // Plain client → proxy → compressing upstream (wsgate mock --echo --deflate).
    let mock = Gateway::spawn("mock", &["--echo", "--deflate"], &[]).await;
    let gw2 = Gateway::proxy(&["--upstream", &mock.ws(""), "--deflate"]).await;
    let mut plain = ws_connect(&gw2.ws("/p")).await;
    let big = Bytes::from(vec![42u8; 100_000]);
    plain.send(Message::Binary(big.clone())).await.unwrap();
    assert_eq!(recv(&mut plain).await, Message::Binary(big));
    plain.send(Message::text("")).await.unwrap();
    assert_eq!(text(&recv(&mut plain).await), "");
}
