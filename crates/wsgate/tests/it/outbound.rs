//! Outbound connections (`POST /api/connections`): a `wsgate mock --echo` gateway
//! hosts the API and dials real servers on 127.0.0.1:0 — an echo server, a refused
//! port, an unresolvable name, TLS it cannot trust, a 403, a server that never
//! answers, one that drops the connection — and the private-target guard.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use wsgate_protocol::handshake::{into_transport, switching_protocols, validate_upgrade};
use wsgate_protocol::{Message, Role, Transport, WsConfig, WsStream};

use crate::support::*;

/// `POST /api/connections`; returns the status and the answer.
async fn post(gw_api: &str, token: Option<&str>, body: Value) -> (u16, Value, Option<String>) {
    let mut req = client().post(format!("{gw_api}/api/connections")).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let location = res.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
    (status, res.json().await.unwrap(), location)
}

/// Opens a connection and returns its session id.
async fn open(gw: &Gateway, body: Value) -> String {
    let (status, v, location) = post(&gw.api(""), None, body).await;
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(v["session"], format!("/api/sessions/{id}"));
    assert_eq!(location.as_deref(), Some(format!("/api/sessions/{id}").as_str()));
    id
}

async fn session(gw: &Gateway, id: &str) -> Value {
    http_json(&gw.api(&format!("/api/sessions/{id}"))).await
}

/// The session once its state is `state` (polling the API).
async fn until_state(gw: &Gateway, id: &str, state: &str) -> Value {
    eventually(|| async {
        let s = session(gw, id).await;
        (s["state"] == state).then_some(s)
    })
    .await
}

/// The session once it has ended and the store holds its final row.
async fn until_ended(gw: &Gateway, id: &str) -> Value {
    let mut last = Value::Null;
    let ended = tokio::time::timeout(WAIT, async {
        loop {
            let s = session(gw, id).await;
            if s["live"] == false && matches!(s["state"].as_str(), Some("FAILED" | "DISCONNECTED")) {
                return s;
            }
            last = s;
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    // Says which session and where it stood, so a failure points at its case.
    ended.unwrap_or_else(|_| panic!("session {id} did not end within {WAIT:?}; last seen: {last}"))
}

fn steps<'a>(s: &'a Value, state: &str) -> Vec<&'a Value> {
    s["lifecycle"].as_array().unwrap().iter().filter(|t| t["state"] == state).collect()
}

async fn send(gw: &Gateway, id: &str, body: Value) -> u16 {
    let res = client().post(gw.api(&format!("/api/connections/{id}/send"))).json(&body).send().await.unwrap();
    res.status().as_u16()
}

/// A port nothing listens on.
async fn dead_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn outbound_echo_send_text_and_base64_then_close_with_4000() {
    let mut up = Upstream::start(UpstreamOpts { accept_protocols: vec!["v2".into()], ..Default::default() }).await;
    let gw = Gateway::mock(&["--echo"]).await;
    let id = open(
        &gw,
        json!({
            "url": format!("{}/feed?x=1", up.url()),
            "headers": {"X-Test": "yes", "Authorization": "Bearer s3cret"},
            "subprotocols": ["v3", "v2"],
        }),
    )
    .await;
    let (path, headers) = up.next_connection().await;
    assert_eq!(path, "/feed?x=1");
    assert_eq!(headers["x-test"], "yes");
    assert_eq!(headers["authorization"], "Bearer s3cret", "the header is sent as given");
    assert_eq!(headers["sec-websocket-protocol"], "v3, v2");

    let s = until_state(&gw, &id, "CONNECTED").await;
    assert_eq!(
        (s["kind"].as_str(), s["route"].as_str(), s["path"].as_str()),
        (Some("outbound"), Some("outbound"), Some("/feed?x=1"))
    );
    assert_eq!(s["subprotocol"], "v2");
    assert_eq!(s["upstream"], format!("{}/feed?x=1", up.url()));
    let recorded: Vec<(String, String)> = serde_json::from_value(s["headers"].clone()).unwrap();
    assert!(recorded.contains(&("authorization".into(), "[redacted]".into())), "{recorded:?}");
    assert!(recorded.contains(&("x-test".into(), "yes".into())), "{recorded:?}");
    let connecting = steps(&s, "CONNECTING");
    assert_eq!(connecting.len(), 1);
    assert_eq!(connecting[0]["attempt"], 1);
    let connected = steps(&s, "CONNECTED");
    assert_eq!(connected[0]["attempt"], 1);
    assert!(connected[0]["connect_ms"].as_f64().unwrap() >= 0.0);

    assert_eq!(send(&gw, &id, json!({"text": "hello"})).await, 202);
    assert_eq!(up.next_message().await, Message::text("hello"));
    assert_eq!(send(&gw, &id, json!({"base64": "AAEC/w=="})).await, 202);
    assert_eq!(up.next_message().await, Message::Binary(Bytes::from_static(&[0, 1, 2, 255])));
    // Bad bodies are refused before anything is sent.
    assert_eq!(send(&gw, &id, json!({"text": "a", "base64": "AA=="})).await, 400);
    assert_eq!(send(&gw, &id, json!({"base64": "not base64!"})).await, 400);
    assert_eq!(send(&gw, &id, json!({"text": "a", "to": "client"})).await, 400);

    // The echoes are recorded, what wsgate sent as client_to_upstream (injected).
    let messages = eventually(|| async {
        let v = http_json(&gw.api(&format!("/api/sessions/{id}/messages"))).await;
        let m = v["messages"].as_array().cloned().unwrap_or_default();
        (m.len() >= 4).then_some(m)
    })
    .await;
    let brief: Vec<(String, String, Value, Value)> = messages
        .iter()
        .map(|m| {
            let payload = if m["text"].is_string() { m["text"].clone() } else { m["base64"].clone() };
            (m["dir"].as_str().unwrap().into(), m["type"].as_str().unwrap().into(), payload, m["injected"].clone())
        })
        .collect();
    assert_eq!(
        brief,
        [
            ("client_to_upstream".into(), "text".into(), json!("hello"), json!(true)),
            ("upstream_to_client".into(), "text".into(), json!("hello"), Value::Null),
            ("client_to_upstream".into(), "binary".into(), json!("AAEC/w=="), json!(true)),
            ("upstream_to_client".into(), "binary".into(), json!("AAEC/w=="), Value::Null),
        ]
    );

    let res = client()
        .delete(gw.api(&format!("/api/connections/{id}")))
        .json(&json!({"code": 4000, "reason": "done here"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    loop {
        if let Message::Close(Some(c)) = up.next_message().await {
            assert_eq!((c.code, c.reason.as_str()), (4000, "done here"));
            break;
        }
    }
    let s = until_ended(&gw, &id).await;
    assert_eq!(s["state"], "DISCONNECTED");
    assert_eq!(s["close"], json!({"code": 4000, "reason": "done here", "initiator": "admin"}));
    assert_eq!((s["messages_in"].as_u64(), s["messages_out"].as_u64()), (Some(3), Some(3)), "{s}");

    // The connection has ended: sending or closing again is a 409; an id that is not
    // an outbound connection is a 404.
    assert_eq!(send(&gw, &id, json!({"text": "late"})).await, 409);
    let res = client().delete(gw.api(&format!("/api/connections/{id}"))).send().await.unwrap();
    assert_eq!(res.status(), 409);
    let body: Value = res.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("has ended"), "{body}");
    assert_eq!(send(&gw, "0193a4b2-7c1e-7d3f-9a2b-1c2d3e4f5a6b", json!({"text": "x"})).await, 404);
    assert_eq!(send(&gw, "nope", json!({"text": "x"})).await, 400);
}

#[tokio::test]
async fn outbound_close_in_the_query_and_mock_sessions_are_not_connections() {
    let mut up = Upstream::echo().await;
    let gw = Gateway::mock(&["--echo"]).await;
    let id = open(&gw, json!({"url": up.url()})).await;
    until_state(&gw, &id, "CONNECTED").await;
    // A mock session on the same gateway is a session, but not an outbound connection.
    let _client = ws_connect(&gw.ws("/m")).await;
    let list = gw.wait_sessions(|s| s.iter().any(|x| x["kind"] == "mock" && x["state"] == "CONNECTED")).await;
    let mock_id = list.iter().find(|x| x["kind"] == "mock").unwrap()["id"].as_str().unwrap().to_owned();
    assert_eq!(send(&gw, &mock_id, json!({"text": "x"})).await, 404);

    let bad = client().delete(gw.api(&format!("/api/connections/{id}?code=1005"))).send().await.unwrap();
    assert_eq!(bad.status(), 400, "1005 is never sent");
    let bad = client()
        .delete(gw.api(&format!("/api/connections/{id}?code=1005")))
        .json(&json!({"code": 4002}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400, "the query is checked even when the body gives the code");
    // Both: where both give a field the body's wins; the query's reason still counts.
    let res = client()
        .delete(gw.api(&format!("/api/connections/{id}?code=4002&reason=q")))
        .json(&json!({"code": 4001}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    loop {
        if let Message::Close(Some(c)) = up.next_message().await {
            assert_eq!((c.code, c.reason.as_str()), (4001, "q"));
            break;
        }
    }
    let s = until_ended(&gw, &id).await;
    assert_eq!(s["close"], json!({"code": 4001, "reason": "q", "initiator": "admin"}));
}

#[tokio::test]
async fn outbound_remote_close_ends_the_session_with_its_code() {
    let up = Upstream::echo().await;
    let gw = Gateway::mock(&["--echo"]).await;
    let id = open(&gw, json!({"url": up.url(), "reconnect": true})).await;
    until_state(&gw, &id, "CONNECTED").await;
    // The test upstream closes when told to; a close frame is a deliberate end, so
    // even with reconnect on the session is over.
    assert_eq!(send(&gw, &id, json!({"text": "close:4100:server says bye"})).await, 202);
    let s = until_ended(&gw, &id).await;
    assert_eq!(s["state"], "DISCONNECTED");
    assert_eq!(s["close"], json!({"code": 4100, "reason": "server says bye", "initiator": "upstream"}));
    assert_eq!(steps(&s, "CONNECTING").len(), 1, "no reconnect after a close frame");
}

#[tokio::test]
async fn outbound_bad_requests_are_400() {
    let gw = Gateway::mock(&["--echo"]).await;
    for (body, says) in [
        (json!({"url": "http://127.0.0.1/"}), "ws or wss"),
        (json!({"url": "ws//nope"}), "invalid url"),
        (json!({"url": "ws://127.0.0.1/", "headers": {"Bad Name": "x"}}), "invalid header name"),
        (json!({"url": "ws://127.0.0.1/", "headers": {"Upgrade": "x"}}), "written by wsgate"),
        (json!({"url": "ws://127.0.0.1/", "subprotocols": ["a,b"]}), "invalid subprotocol"),
        (json!({"url": "ws://127.0.0.1/", "reconnect": {"max_attempts": 0}}), "max_attempts"),
        (json!({"url": "ws://127.0.0.1/", "reconnect": "yes"}), "reconnect"),
        (json!({"url": "ws://127.0.0.1/", "nope": 1}), "unknown field"),
    ] {
        let (status, v, _) = post(&gw.api(""), None, body.clone()).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(says), "{body}: {v}");
    }
    let list = http_json(&gw.api("/api/sessions?kind=outbound")).await;
    assert_eq!(list["sessions"], json!([]), "no session for a refused request");
}

/// A self-signed certificate no system root trusts.
fn untrusted_tls() -> Arc<rustls::ServerConfig> {
    let dir = TempDir::new();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(dir.0.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.0.join("key.pem"), key.serialize_pem()).unwrap();
    wsgate_protocol::tls::server_config(&dir.0.join("cert.pem"), &dir.0.join("key.pem")).unwrap()
}

/// Accepts TCP connections and never answers (they stay open while the task runs).
async fn silent_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    addr
}

#[tokio::test]
async fn outbound_failures_name_their_reason() {
    let plain = Upstream::echo().await;
    let tls = Upstream::start(UpstreamOpts { tls: Some(untrusted_tls()), ..Default::default() }).await;
    let forbidden = Upstream::start(UpstreamOpts { reject: Some((403, "forbidden here")), ..Default::default() }).await;
    let silent = silent_server().await;
    let refused = dead_port().await;
    let gw = Gateway::mock(&["--echo", "--outbound-connect-timeout", "300ms"]).await;
    let cases = [
        (format!("ws://127.0.0.1:{refused}/"), "refused", None),
        ("ws://nonexistent.invalid/".to_owned(), "dns", None),
        (format!("wss://127.0.0.1:{}/", tls.addr.port()), "tls", None),
        (format!("wss://127.0.0.1:{}/", plain.addr.port()), "tls", None),
        (format!("ws://127.0.0.1:{}/", forbidden.addr.port()), "http_status", Some(403u64)),
        (format!("ws://{silent}/"), "timeout", None),
    ];
    let mut ids = Vec::new();
    for (url, _, _) in &cases {
        ids.push(open(&gw, json!({"url": url})).await);
    }
    for ((url, kind, status), id) in cases.iter().zip(&ids) {
        let s = until_ended(&gw, id).await;
        assert_eq!(s["state"], "FAILED", "{url}: {s}");
        assert_eq!(s["failure_kind"], *kind, "{url}: {s}");
        assert_eq!(s["http_status"].as_u64(), *status, "{url}: {s}");
        assert!(s["failure"].as_str().is_some_and(|f| !f.is_empty()), "{url}: {s}");
        let failed = steps(&s, "FAILED");
        assert_eq!(failed[0]["attempt"], 1, "{url}: {s}");
        assert_eq!(failed[0]["upstream"], url.as_str(), "{url}: {s}");
        assert_eq!(steps(&s, "CONNECTING").len(), 1, "{url}: one attempt without reconnect");
    }
    let failed = gw.wait_sessions(|s| s.iter().filter(|x| x["state"] == "FAILED").count() == cases.len()).await;
    assert!(failed.iter().all(|s| s["kind"] == "outbound"));
}

#[tokio::test]
async fn outbound_reconnect_gives_up_after_exactly_max_attempts() {
    let port = dead_port().await;
    let forbidden = Upstream::start(UpstreamOpts { reject: Some((403, "no")), ..Default::default() }).await;
    let gw = Gateway::mock(&["--echo"]).await;
    let url = format!("ws://127.0.0.1:{port}/");
    let id = open(&gw, json!({"url": url, "reconnect": {"max_attempts": 4, "base_ms": 1, "max_ms": 20}})).await;
    let s = until_ended(&gw, &id).await;
    assert_eq!(s["state"], "FAILED", "{s}");
    assert_eq!(s["failure_kind"], "refused");
    let connecting = steps(&s, "CONNECTING");
    let attempts: Vec<_> = connecting.iter().map(|t| t["attempt"].as_u64().unwrap()).collect();
    assert_eq!(attempts, [1, 2, 3, 4], "{s}");
    // Every retry says why the attempt before it failed.
    assert!(connecting[0].get("reason_kind").is_none());
    for t in &connecting[1..] {
        assert_eq!(t["reason_kind"], "refused", "{t}");
        assert!(t["reason"].as_str().unwrap().contains("refused"), "{t}");
    }
    assert_eq!(steps(&s, "FAILED")[0]["attempt"], 4);
    // And each failed attempt but the last is an error event with the wait.
    // (Errors are history, not live state: they are there once the recorder's batch
    // is, within its 100 ms.)
    let events = eventually(|| async {
        let events = http_json(&gw.api(&format!("/api/sessions/{id}/events"))).await;
        // Only stored events include errors, and the store writes in order: once
        // FAILED is stored, every error before it is.
        let list = events["events"].as_array().unwrap();
        let stored = list.iter().any(|e| e["type"] == "error") && list.iter().any(|e| e["state"] == "FAILED");
        stored.then_some(events)
    })
    .await;
    let errors: Vec<&Value> =
        events["events"].as_array().unwrap().iter().filter(|e| e["error_kind"] == "attempt_failed").collect();
    assert_eq!(errors.len(), 3, "{events}");
    assert!(errors[0]["detail"]["message"].as_str().unwrap().contains("retrying in"), "{events}");

    // A refused upgrade (403) is a verdict, not a glitch: no retry.
    let id = open(&gw, json!({"url": forbidden.url(), "reconnect": true})).await;
    let s = until_ended(&gw, &id).await;
    assert_eq!((s["failure_kind"].as_str(), s["http_status"].as_u64()), (Some("http_status"), Some(403)));
    assert_eq!(steps(&s, "CONNECTING").len(), 1);
}

/// A server whose first connection is dropped (no close frame) right after the
/// upgrade; later ones echo.
async fn flaky_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| async move {
                        let key = validate_upgrade(req.method(), req.headers()).unwrap();
                        let on = hyper::upgrade::on(&mut req);
                        tokio::spawn(async move {
                            let Ok(up) = on.await else { return };
                            let (io, left) = into_transport(up).unwrap();
                            if n == 0 {
                                drop(io);
                                return;
                            }
                            let mut ws = WsStream::new(io, Role::Server, WsConfig::default(), left);
                            while let Ok(m) = ws.recv().await {
                                match m {
                                    Message::Text(_) | Message::Binary(_) if ws.send(m.clone()).await.is_err() => break,
                                    Message::Close(_) => {
                                        let _ = ws.flush().await;
                                        break;
                                    }
                                    _ => {}
                                }
                            }
                        });
                        Ok::<_, Infallible>(switching_protocols(&key, None).map(|_| Full::new(Bytes::new())))
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(Transport::Plain(tcp)), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn outbound_reconnects_after_the_remote_drops_the_connection() {
    let (addr, accepted) = flaky_server().await;
    let gw = Gateway::mock(&["--echo"]).await;
    let id = open(&gw, json!({"url": format!("ws://{addr}/"), "reconnect": {"base_ms": 1, "max_ms": 20}})).await;
    // Connected, dropped, reconnecting, connected again: all in one session.
    let s = eventually(|| async {
        let s = session(&gw, &id).await;
        (s["state"] == "CONNECTED" && steps(&s, "CONNECTED").len() == 2).then_some(s)
    })
    .await;
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    let states: Vec<&str> = s["lifecycle"].as_array().unwrap().iter().map(|t| t["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["REQUESTED", "CONNECTING", "CONNECTED", "CONNECTING", "CONNECTED"]);
    let lost = &steps(&s, "CONNECTING")[1];
    assert_eq!((lost["attempt"].as_u64(), lost["reason_kind"].as_str()), (Some(2), Some("connection_lost")));
    assert_eq!(steps(&s, "CONNECTED")[1]["attempt"], 2);

    // The new connection carries messages.
    assert_eq!(send(&gw, &id, json!({"text": "after the drop"})).await, 202);
    eventually(|| async {
        let v = http_json(&gw.api(&format!("/api/sessions/{id}/messages"))).await;
        let m = v["messages"].as_array().cloned().unwrap_or_default();
        m.iter().any(|m| m["dir"] == "upstream_to_client" && m["text"] == "after the drop").then_some(())
    })
    .await;
    let events = http_json(&gw.api(&format!("/api/sessions/{id}/events"))).await;
    assert!(events["events"].as_array().unwrap().iter().any(|e| e["error_kind"] == "connection_lost"), "{events}");
    let res = client().delete(gw.api(&format!("/api/connections/{id}"))).send().await.unwrap();
    assert_eq!(res.status(), 202);
    let s = until_ended(&gw, &id).await;
    assert_eq!(s["close"], json!({"code": 1000, "reason": "", "initiator": "admin"}));
}

/// A server that completes the upgrade and then never reads or writes again: a
/// connection gone dead without a FIN, as behind a NAT that forgot it.
async fn mute_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|mut req: hyper::Request<hyper::body::Incoming>| async move {
                    let key = validate_upgrade(req.method(), req.headers()).unwrap();
                    let on = hyper::upgrade::on(&mut req);
                    tokio::spawn(async move {
                        let Ok(up) = on.await else { return };
                        let held = into_transport(up).unwrap();
                        std::future::pending::<()>().await;
                        drop(held);
                    });
                    Ok::<_, Infallible>(switching_protocols(&key, None).map(|_| Full::new(Bytes::new())))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(Transport::Plain(tcp)), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn outbound_keepalive_pings_keep_a_live_connection_and_find_a_dead_one() {
    let gw = Gateway::mock(&["--echo"]).await;
    // A server that answers pings stays connected through several intervals; the
    // pings and their pongs are in the message log.
    let up = Upstream::echo().await;
    let live = open(&gw, json!({"url": up.url(), "ping_interval_ms": 200})).await;
    eventually(|| async {
        let v = http_json(&gw.api(&format!("/api/sessions/{live}/messages"))).await;
        let m = v["messages"].as_array().cloned().unwrap_or_default();
        let pongs = m.iter().filter(|m| m["dir"] == "upstream_to_client" && m["type"] == "pong").count();
        (pongs >= 3).then_some(())
    })
    .await;
    assert_eq!(session(&gw, &live).await["state"], "CONNECTED");
    let res = client().delete(gw.api(&format!("/api/connections/{live}"))).send().await.unwrap();
    assert_eq!(res.status(), 202);
    assert_eq!(until_ended(&gw, &live).await["close"]["code"], 1000);
    drop(up);

    // A server that went silent: the connection is lost after two unanswered
    // intervals (no reconnect asked: 1006).
    let addr = mute_server().await;
    let dead = open(&gw, json!({"url": format!("ws://{addr}/"), "ping_interval_ms": 100})).await;
    let s = until_ended(&gw, &dead).await;
    assert_eq!(s["state"], "DISCONNECTED", "{s}");
    assert_eq!((s["close"]["code"].as_u64(), s["close"]["initiator"].as_str()), (Some(1006), Some("upstream")));
    let reason = s["close"]["reason"].as_str().unwrap();
    assert!(reason.contains("no answer to keepalive pings"), "{reason}");

    // Out of range: a 400 naming the field.
    let (status, v, _) = post(&gw.api(""), None, json!({"url": format!("ws://{addr}/"), "ping_interval_ms": 5})).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("ping_interval_ms"), "{v}");
}

#[tokio::test]
async fn outbound_without_reconnect_a_drop_is_1006() {
    let (addr, _) = flaky_server().await;
    let gw = Gateway::mock(&["--echo"]).await;
    let id = open(&gw, json!({"url": format!("ws://{addr}/")})).await;
    let s = until_ended(&gw, &id).await;
    assert_eq!(s["state"], "DISCONNECTED", "{s}");
    assert_eq!((s["close"]["code"].as_u64(), s["close"]["initiator"].as_str()), (Some(1006), Some("upstream")));
}

#[tokio::test]
async fn outbound_sessions_close_with_1001_on_shutdown() {
    let mut up = Upstream::echo().await;
    let mut gw = Gateway::mock(&["--echo"]).await;
    let id = open(&gw, json!({"url": up.url()})).await;
    until_state(&gw, &id, "CONNECTED").await;
    assert_eq!(gw.terminate().await, 0);
    loop {
        if let Message::Close(Some(c)) = up.next_message().await {
            assert_eq!(c.code, 1001);
            break;
        }
    }
}

#[tokio::test]
async fn outbound_guard_refuses_private_targets_beyond_loopback() {
    let up = Upstream::echo().await;
    let port = up.addr.port();
    let gw = Gateway::mock(&["--echo", "--control", "0.0.0.0:0", "--admin-token", "t"]).await;
    assert!(gw.control.ip().is_unspecified());
    let api = format!("http://127.0.0.1:{}", gw.control.port());
    for (url, addr) in [
        (format!("ws://127.0.0.1:{port}/"), "127.0.0.1"),
        (format!("ws://[::1]:{port}/"), "::1"),
        ("ws://10.0.0.1/".to_owned(), "10.0.0.1"),
        ("wss://169.254.169.254/latest/meta-data".to_owned(), "169.254.169.254"),
        (format!("ws://[::ffff:127.0.0.1]:{port}/"), "127.0.0.1"),
        (format!("ws://localhost:{port}/"), "localhost resolves to"),
    ] {
        let (status, v, _) = post(&api, Some("t"), json!({"url": url})).await;
        assert_eq!(status, 403, "{url}: {v}");
        let e = v["error"].as_str().unwrap();
        assert!(e.contains(addr) && e.contains("--allow-private-targets"), "{url}: {e}");
    }
    let (status, _, _) = post(&api, None, json!({"url": format!("ws://127.0.0.1:{port}/")})).await;
    assert_eq!(status, 401, "the token is needed first");
    let list: Value = client()
        .get(format!("{api}/api/sessions?kind=outbound"))
        .bearer_auth("t")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["sessions"], json!([]), "a refused target opens no session");

    // With --allow-private-targets the same target is dialled.
    let open_gw =
        Gateway::mock(&["--echo", "--control", "0.0.0.0:0", "--admin-token", "t", "--allow-private-targets"]).await;
    let api = format!("http://127.0.0.1:{}", open_gw.control.port());
    let (status, v, _) = post(&api, Some("t"), json!({"url": format!("ws://127.0.0.1:{port}/")})).await;
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_str().unwrap();
    eventually(|| async {
        let s: Value = client()
            .get(format!("{api}/api/sessions/{id}"))
            .bearer_auth("t")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (s["state"] == "CONNECTED").then_some(())
    })
    .await;
}

#[tokio::test]
async fn outbound_sends_while_connecting_wait_for_the_connection() {
    let hold = Arc::new(tokio::sync::Notify::new());
    let mut up = Upstream::start(UpstreamOpts { hold: Some(hold.clone()), ..Default::default() }).await;
    let gw = Gateway::mock(&["--echo"]).await;
    let id = open(&gw, json!({"url": up.url()})).await;
    // The server has the upgrade request and sits on it: the session is CONNECTING.
    up.next_connection().await;
    assert_eq!(session(&gw, &id).await["state"], "CONNECTING");
    assert_eq!(send(&gw, &id, json!({"text": "first"})).await, 202);
    assert_eq!(send(&gw, &id, json!({"base64": "AQI="})).await, 202);
    hold.notify_one();
    until_state(&gw, &id, "CONNECTED").await;
    assert_eq!(send(&gw, &id, json!({"text": "third"})).await, 202);
    // Held sends go first, in order.
    assert_eq!(up.next_message().await, Message::text("first"));
    assert_eq!(up.next_message().await, Message::Binary(Bytes::from_static(&[1, 2])));
    assert_eq!(up.next_message().await, Message::text("third"));
}

#[tokio::test]
async fn outbound_shutdown_stops_a_session_waiting_to_reconnect() {
    let port = dead_port().await;
    let mut gw = Gateway::mock(&["--echo"]).await;
    let policy = json!({"max_attempts": 5, "base_ms": 60000, "max_ms": 60000});
    let id = open(&gw, json!({"url": format!("ws://127.0.0.1:{port}/"), "reconnect": policy})).await;
    // The first attempt failed; the second waits (up to a minute).
    eventually(|| async {
        let s = session(&gw, &id).await;
        (steps(&s, "CONNECTING").len() >= 2).then_some(())
    })
    .await;
    let started = std::time::Instant::now();
    assert_eq!(gw.terminate().await, 0);
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "shutdown waited {:?}", started.elapsed());
}
