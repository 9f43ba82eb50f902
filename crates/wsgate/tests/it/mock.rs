//! `wsgate mock --echo`: a session of kind `mock`, with events, inject and close.

use bytes::Bytes;
use serde_json::json;
use wsgate_protocol::{CloseFrame, ConnectRequest, Frame, Message, OpCode};

use crate::support::*;

#[tokio::test]
async fn echo_is_a_session_with_events_inject_and_close() {
    let mut gw = Gateway::spawn("mock", &["--echo", "--subprotocol", "v1"], &[]).await;
    let mut req = ConnectRequest::new(gw.ws("/echo?x=1").parse().unwrap());
    req.subprotocols = vec!["v0".into(), "v1".into()];
    let c = within(wsgate_protocol::connect(req)).await.unwrap();
    assert_eq!(c.subprotocol.as_deref(), Some("v1"));
    let mut ws =
        wsgate_protocol::WsStream::new(c.transport, wsgate_protocol::Role::Client, Default::default(), c.leftover);

    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(text(&recv(&mut ws).await), "hello");
    let big = Bytes::from(vec![7u8; 300_000]);
    ws.send(Message::Binary(big.clone())).await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::Binary(big));
    ws.feed_frame(&Frame::text("a").with_fin(false)).unwrap();
    ws.feed_frame(&Frame::new(OpCode::Continuation, "b")).unwrap();
    ws.flush().await.unwrap();
    assert_eq!(text(&recv(&mut ws).await), "ab");
    ws.send(Message::Ping(Bytes::from("p"))).await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::Pong(Bytes::from("p")));

    let s = gw.wait_sessions(|s| s.iter().any(|x| x["messages_in"].as_u64() >= Some(3))).await;
    assert_eq!(s[0]["kind"], "mock");
    assert_eq!(s[0]["path"], "/echo?x=1");
    assert_eq!(s[0]["state"], "CONNECTED");
    let id = s[0]["id"].as_str().unwrap().to_owned();
    let http = client();
    let r = http
        .post(gw.api(&format!("/api/sessions/{id}/inject")))
        .json(&json!({"to":"client","text":"pushed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(text(&recv(&mut ws).await), "pushed");
    let r = http
        .post(gw.api(&format!("/api/sessions/{id}/close")))
        .json(&json!({"code":4200,"reason":"enough"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(close_of(&recv(&mut ws).await), Some(CloseFrame::new(4200, "enough")));
    let s = gw.wait_sessions(|s| s.iter().any(|x| x["state"] == "DISCONNECTED")).await;
    assert_eq!(s[0]["close"]["initiator"], "admin");
    assert_eq!(s[0]["close"]["code"], 4200);

    // Shutdown closes live mock sessions with 1001 too.
    let mut ws2 = ws_connect(&gw.ws("/")).await;
    ws2.send(Message::text("x")).await.unwrap();
    recv(&mut ws2).await;
    let end = tokio::spawn(async move { close_of(&recv(&mut ws2).await) });
    assert_eq!(gw.terminate().await, 0);
    assert_eq!(within(end).await.unwrap().map(|c| c.code), Some(1001));
}

#[tokio::test]
async fn echo_fails_bad_clients_with_the_rfc_close_code() {
    let gw = Gateway::spawn("mock", &["--echo", "--max-message-size", "100"], &[]).await;
    let mut ws = ws_connect(&gw.ws("/")).await;
    ws.send(Message::Text(Bytes::from(vec![b'a'; 101]))).await.unwrap();
    assert_eq!(close_of(&recv(&mut ws).await).map(|c| c.code), Some(1009));
    let mut ws = ws_connect(&gw.ws("/")).await;
    ws.feed_frame(&Frame::text(&b"\xff\xfe"[..])).unwrap();
    ws.flush().await.unwrap();
    assert_eq!(close_of(&recv(&mut ws).await).map(|c| c.code), Some(1007));
}

#[tokio::test]
async fn idle_mock_sessions_are_closed_with_1001() {
    let gw = Gateway::spawn("mock", &["--echo", "--idle-timeout", "300ms", "--no-store"], &[]).await;
    let mut ws = ws_connect(&gw.ws("/quiet")).await;
    ws.send(Message::text("once")).await.unwrap();
    assert_eq!(text(&recv(&mut ws).await), "once");
    // Then nothing: the gateway closes it.
    assert_eq!(close_of(&recv(&mut ws).await), Some(CloseFrame::new(1001, "idle timeout")));
    // Our answer to the close (queued by the stream) ends the handshake.
    ws.flush().await.unwrap();
    let s = gw.wait_sessions(|s| s.iter().any(|x| x["state"] == "DISCONNECTED")).await;
    assert_eq!((s[0]["close"]["code"].as_u64(), s[0]["close"]["initiator"].as_str()), (Some(1001), Some("gateway")));
}
