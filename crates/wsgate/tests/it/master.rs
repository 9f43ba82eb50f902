//! websocket-multiplex's master connection on the control root, written from its
//! documented protocol (README "Master Message Types"): a real proxied session seen
//! through `ws://CONTROL/`, its commands, and `--replace-same-path`.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::Notify;
use wsgate_protocol::{CloseFrame, ConnectError, ConnectRequest, Message, Transport, WsStream};

use crate::support::*;

type Ws = WsStream<Transport>;

async fn master(gw: &Gateway) -> Ws {
    ws_connect(&format!("ws://{}/", gw.control)).await
}

async fn next_json(ws: &mut Ws) -> Value {
    serde_json::from_str(&text(&recv(ws).await)).unwrap()
}

fn is_iso_millis(v: &Value) -> bool {
    // `2024-01-01T12:00:00.000Z`, as JavaScript's toISOString() writes it.
    v.as_str().is_some_and(|s| {
        let b = s.as_bytes();
        b.len() == 24 && b[10] == b'T' && b[19] == b'.' && b[23] == b'Z' && s[..4].parse::<u16>().is_ok()
    })
}

#[tokio::test]
async fn a_proxied_session_as_the_master_sees_it() {
    let mut up = Upstream::echo().await;
    let gw = Gateway::proxy(&["--upstream", &up.url()]).await;
    let mut m = master(&gw).await;
    assert_eq!(next_json(&mut m).await, json!({"type":"status","clients":[],"upstreams":[]}));

    let mut req = ConnectRequest::new(gw.ws("/cp1?serial=7").parse().unwrap());
    req.headers.insert("user-agent", "station/1.0".parse().unwrap());
    req.headers.insert("authorization", "Basic c2VjcmV0".parse().unwrap());
    let mut client = ws_connect_with(req).await;
    let c = next_json(&mut m).await;
    assert_eq!((c["type"].as_str(), c["event"].as_str()), (Some("connection"), Some("client-connected")));
    assert_eq!(c["connectionId"], "/cp1", "the path without its query, as websocket-multiplex's pathname");
    assert_eq!(c["ip"], "127.0.0.1");
    assert_eq!(c["headers"]["user-agent"], "station/1.0");
    assert!(!c.to_string().contains("c2VjcmV0"), "credentials are redacted: {c}");

    client.send(Message::text("hello")).await.unwrap();
    assert_eq!(
        next_json(&mut m).await,
        json!({"type":"message","direction":"client-to-upstream","connectionId":"/cp1","message":"hello"})
    );
    assert_eq!(
        next_json(&mut m).await,
        json!({"type":"message","direction":"upstream-to-client","connectionId":"/cp1","message":"hello"})
    );
    assert_eq!(text(&recv(&mut client).await), "hello");

    // Binary: readable as a string, exact in base64; the traffic itself unchanged.
    client.send(Message::Binary(Bytes::from_static(b"hi\xff"))).await.unwrap();
    let b = next_json(&mut m).await;
    assert_eq!(
        b,
        json!({"type":"message","direction":"client-to-upstream","connectionId":"/cp1",
               "message":"hi\u{fffd}","binary":true,"base64":"aGn/"})
    );
    assert_eq!(next_json(&mut m).await["direction"], "upstream-to-client");
    assert_eq!(recv(&mut client).await, Message::Binary(Bytes::from_static(b"hi\xff")));

    // A master connecting now is told of the session in its status, and not again.
    let mut late = master(&gw).await;
    assert_eq!(next_json(&mut late).await, json!({"type":"status","clients":["/cp1"],"upstreams":["/cp1"]}));

    // inject: to the client, and to the upstream (whose echo is real traffic). The
    // injection itself is not reported, as websocket-multiplex does not report its own.
    m.send(Message::text(json!({"type":"inject","target":"client:/cp1","message":"pushed"}).to_string()))
        .await
        .unwrap();
    assert_eq!(text(&recv(&mut client).await), "pushed");
    m.send(Message::text(json!({"type":"inject","target":"upstream:/cp1","message":"to-up"}).to_string()))
        .await
        .unwrap();
    assert_eq!(text(&recv(&mut client).await), "to-up");
    let echoed = next_json(&mut m).await;
    assert_eq!((echoed["direction"].as_str(), echoed["message"].as_str()), (Some("upstream-to-client"), Some("to-up")));
    assert_eq!(next_json(&mut late).await["message"], "to-up", "the late master sees only what followed its status");

    // close: announced first, then the disconnection with its code and reason.
    m.send(Message::text(json!({"type":"close","connectionId":"/cp1","reason":"bye from master"}).to_string()))
        .await
        .unwrap();
    let closed = next_json(&mut m).await;
    assert_eq!(
        (closed["event"].as_str(), closed["connectionId"].as_str(), closed["reason"].as_str()),
        (Some("connection-closed-by-master"), Some("/cp1"), Some("bye from master"))
    );
    assert!(is_iso_millis(&closed["timestamp"]), "{closed}");
    let bye = close_of(&recv(&mut client).await).unwrap();
    assert_eq!((bye.code, bye.reason.as_str()), (1000, "bye from master"));
    let gone = next_json(&mut m).await;
    assert_eq!(
        gone,
        json!({"type":"connection","event":"client-disconnected","connectionId":"/cp1","code":1000,"reason":"bye from master"})
    );
    let _ = up.next().await;
}

#[tokio::test]
async fn an_unreachable_upstream_is_an_upstream_error() {
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", dead.local_addr().unwrap());
    drop(dead);
    let gw = Gateway::proxy(&["--upstream", &url]).await;
    let mut m = master(&gw).await;
    let _status = next_json(&mut m).await;
    let refused = within(wsgate_protocol::connect(ConnectRequest::new(gw.ws("/down").parse().unwrap()))).await;
    assert!(matches!(refused, Err(ConnectError::Rejected { .. })), "the client is refused with an HTTP status");
    let e = next_json(&mut m).await;
    assert_eq!((e["type"].as_str(), e["event"].as_str()), (Some("error"), Some("upstream-error")));
    assert_eq!((e["connectionId"].as_str(), e["code"].as_str()), (Some("/down"), Some("ECONNREFUSED")));
    assert_eq!(e["target"], format!("{url}/down"));
    assert!(e["message"].as_str().is_some_and(|s| !s.is_empty()), "{e}");
    assert!(is_iso_millis(&e["time"]), "{e}");
}

#[tokio::test]
async fn accept_early_reports_dequeued_messages() {
    let hold = Arc::new(Notify::new());
    let up = Upstream::start(UpstreamOpts { hold: Some(hold.clone()), ..Default::default() }).await;
    let gw = Gateway::proxy(&["--upstream", &up.url(), "--accept-early"]).await;
    let mut m = master(&gw).await;
    let _status = next_json(&mut m).await;

    let mut client = ws_connect(&gw.ws("/early")).await;
    assert_eq!(next_json(&mut m).await["event"], "client-connected");
    client.send(Message::text("queued")).await.unwrap();
    let sent = next_json(&mut m).await;
    assert_eq!((sent["direction"].as_str(), sent["message"].as_str()), (Some("client-to-upstream"), Some("queued")));

    hold.notify_one();
    assert_eq!(
        next_json(&mut m).await,
        json!({"type":"connection","event":"upstream-connected","connectionId":"/early"})
    );
    let d = next_json(&mut m).await;
    assert_eq!(
        (d["type"].as_str(), d["direction"].as_str(), d["connectionId"].as_str(), d["message"].as_str()),
        (Some("message"), Some("client-to-upstream-dequeued"), Some("/early"), Some("queued"))
    );
    assert!(is_iso_millis(&d["queuedAt"]) && is_iso_millis(&d["sentAt"]), "{d}");
    assert!(d["queuedAt"].as_str() <= d["sentAt"].as_str(), "{d}");
    assert_eq!(text(&recv(&mut client).await), "queued", "echoed once the upstream got it");
}

#[tokio::test]
async fn accept_early_reports_discarded_messages() {
    let hold = Arc::new(Notify::new());
    let up = Upstream::start(UpstreamOpts { hold: Some(hold.clone()), ..Default::default() }).await;
    // MESSAGE_QUEUE_TIMEOUT, websocket-multiplex's name, in milliseconds.
    let gw = Gateway::spawn("proxy", &["--upstream", &up.url(), "--accept-early"], &[("MESSAGE_QUEUE_TIMEOUT", "100")])
        .await;
    let mut m = master(&gw).await;
    let _status = next_json(&mut m).await;

    let mut client = ws_connect(&gw.ws("/late")).await;
    assert_eq!(next_json(&mut m).await["event"], "client-connected");
    client.send(Message::text("too late")).await.unwrap();
    assert_eq!(next_json(&mut m).await["direction"], "client-to-upstream");
    // The queue timeout fires on its own; the event is what the test waits for.
    let d = next_json(&mut m).await;
    assert_eq!(
        (d["type"].as_str(), d["event"].as_str(), d["connectionId"].as_str(), d["message"].as_str()),
        (Some("message"), Some("message-discarded"), Some("/late"), Some("too late"))
    );
    assert_eq!(d["reason"], "timeout");
    assert!(is_iso_millis(&d["queuedAt"]), "{d}");
    hold.notify_one();
}

#[tokio::test]
async fn the_root_upgrade_needs_the_admin_token_but_the_page_does_not() {
    let up = Upstream::echo().await;
    let gw = Gateway::proxy(&["--upstream", &up.url(), "--admin-token", "s3cret"]).await;
    let refused =
        within(wsgate_protocol::connect(ConnectRequest::new(format!("ws://{}/", gw.control).parse().unwrap()))).await;
    match refused {
        Err(ConnectError::Rejected { status, .. }) => assert_eq!(status.as_u16(), 401),
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
    let mut m = ws_connect(&format!("ws://{}/?token=s3cret", gw.control)).await;
    assert_eq!(next_json(&mut m).await["type"], "status");
    let mut req = ConnectRequest::new(format!("ws://{}/", gw.control).parse().unwrap());
    req.headers.insert("authorization", "Bearer s3cret".parse().unwrap());
    let mut m = ws_connect_with(req).await;
    assert_eq!(next_json(&mut m).await["type"], "status");
    let page = http_json(&format!("http://{}/", gw.control)).await;
    assert_eq!(page["name"], "wsgate");
}

#[tokio::test]
async fn replace_same_path_closes_the_older_client() {
    let up = Upstream::echo().await;
    let gw = Gateway::proxy(&["--upstream", &up.url(), "--replace-same-path"]).await;
    let mut first = ws_connect(&gw.ws("/cp?a=1")).await;
    let old = gw.wait_sessions(|s| s.iter().any(|x| x["state"] == "CONNECTED")).await;
    let old_id = old[0]["id"].as_str().unwrap().to_owned();
    let mut second = ws_connect(&gw.ws("/cp?a=2")).await;

    let bye = close_of(&recv(&mut first).await).unwrap();
    assert_eq!(bye, CloseFrame::new(1000, "replaced by a new client on the same path"));
    let ended = eventually(|| {
        let url = gw.api(&format!("/api/sessions/{old_id}"));
        async move {
            let s = http_json(&url).await;
            (s["state"] == "DISCONNECTED").then_some(s)
        }
    })
    .await;
    let last = ended["lifecycle"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((last["reason_kind"].as_str(), last["initiator"].as_str()), (Some("replaced"), Some("gateway")));
    assert_eq!(last["close_code"], 1000);

    second.send(Message::text("still here")).await.unwrap();
    assert_eq!(text(&recv(&mut second).await), "still here");
}

#[tokio::test]
async fn without_replace_same_path_clients_share_a_path() {
    let up = Upstream::echo().await;
    let gw = Gateway::proxy(&["--upstream", &up.url()]).await;
    let mut first = ws_connect(&gw.ws("/cp")).await;
    let mut second = ws_connect(&gw.ws("/cp")).await;
    gw.wait_sessions(|s| s.iter().filter(|x| x["state"] == "CONNECTED").count() == 2).await;
    for (ws, t) in [(&mut first, "one"), (&mut second, "two")] {
        ws.send(Message::text(t)).await.unwrap();
        assert_eq!(text(&recv(ws).await), t);
    }
}
