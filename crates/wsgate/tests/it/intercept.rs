//! Intercept (breakpoints, `/api/intercepts`) through the real binary, with
//! tokio-tungstenite clients (code no one here wrote) and a real echo upstream: a
//! matching frame is held until it is forwarded, edited or dropped, or its timeout
//! forwards it; later frames of its direction wait behind it in order, while the other
//! direction and other sessions flow; removing a breakpoint lets its frames go; history
//! marks each one; bad breakpoints and ids are refused with a status and a message.

use std::time::{Duration, Instant};

use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as TMessage;

use crate::support::*;
use crate::tt::*;

async fn post(gw: &Gateway, path: &str, body: Value) -> (u16, Value) {
    let res = within(client().post(gw.api(path)).json(&body).send()).await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn arm(gw: &Gateway, body: Value) -> u64 {
    let (status, v) = post(gw, "/api/intercepts", body).await;
    assert_eq!(status, 201, "{v}");
    v["id"].as_u64().unwrap()
}

/// The frame held with this text (waiting until it is).
async fn held(gw: &Gateway, text: &str) -> Value {
    eventually(|| async {
        let v = http_json(&gw.api("/api/intercepts")).await;
        v["held"].as_array()?.iter().find(|f| f["text"] == text).cloned()
    })
    .await
}

async fn session_of(gw: &Gateway, path: &str) -> String {
    let list = gw.wait_sessions(|l| l.iter().any(|s| s["path"] == path && s["state"] == "CONNECTED")).await;
    list.iter().find(|s| s["path"] == path).unwrap()["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn held_frames_are_forwarded_edited_dropped_or_expire_in_order_while_the_rest_flows() {
    let up = Upstream::echo().await;
    let dir = TempDir::new();
    let store = format!("sqlite://{}", dir.0.join("h.db").display());
    let gw = Gateway::proxy(&["--upstream", &up.url(), "--store", &store]).await;
    let bp = arm(&gw, json!({"route": "default", "direction": "client_to_upstream", "match": "^hold"})).await;

    let mut a = connect(&gw, "/a").await;
    let mut b = connect(&gw, "/b").await;
    let a_id = session_of(&gw, "/a").await;

    // Held: the frame, and the one after it of the same direction.
    a.send(TMessage::text("hold 1")).await.unwrap();
    a.send(TMessage::text("after 1")).await.unwrap();
    let frame = held(&gw, "hold 1").await;
    assert_eq!(frame["session"], a_id.as_str(), "{frame}");
    assert_eq!(frame["direction"], "client_to_upstream", "{frame}");
    assert_eq!(frame["breakpoint"], bp, "{frame}");
    assert_eq!(frame["size"], 6, "{frame}");
    let m = metrics(&gw).await;
    assert_eq!(metric(&m, "wsgate_intercept_breakpoints "), Some(1.0), "{m}");
    assert_eq!(metric(&m, "wsgate_intercept_held_frames "), Some(1.0), "{m}");

    // Keepalives go round it: the upstream answers a ping while the frame is held.
    a.send(TMessage::Ping("keepalive".into())).await.unwrap();
    match within(futures_util::StreamExt::next(&mut a)).await {
        Some(Ok(TMessage::Pong(p))) => assert_eq!(&p[..], b"keepalive"),
        other => panic!("expected the pong first, got {other:?}"),
    }

    // Another session flows, and so does the held session's other direction: an
    // inject to A's client arrives before any echo (the upstream has seen nothing).
    b.send(TMessage::text("b flows")).await.unwrap();
    assert_eq!(next_text(&mut b).await, "b flows");
    let (status, v) = post(&gw, &format!("/api/sessions/{a_id}/inject"), json!({"to": "client", "text": "to a"})).await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(next_text(&mut a).await, "to a");

    // Edited in place, then forwarded: the upstream gets the edit, then what waited.
    let id = frame["id"].as_u64().unwrap();
    let (status, v) = post(&gw, &format!("/api/intercepts/held/{id}/forward"), json!({"text": "edited 1"})).await;
    assert_eq!((status, &v), (200, &json!({"id": id, "outcome": "edited"})));
    assert_eq!(texts(&mut a, 2).await, ["edited 1", "after 1"]);
    let (status, v) = post(&gw, &format!("/api/intercepts/held/{id}/drop"), json!({})).await;
    assert_eq!(status, 404, "not held any more: {v}");
    assert!(v["error"].as_str().unwrap().contains("not held"), "{v}");

    // Dropped: never forwarded.
    a.send(TMessage::text("hold 2")).await.unwrap();
    let id = held(&gw, "hold 2").await["id"].as_u64().unwrap();
    a.send(TMessage::text("after 2")).await.unwrap();
    let res = within(client().post(gw.api(&format!("/api/intercepts/held/{id}/drop"))).send()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(next_text(&mut a).await, "after 2");

    // Forwarded as it came, with no body at all.
    a.send(TMessage::text("hold 3")).await.unwrap();
    let id = held(&gw, "hold 3").await["id"].as_u64().unwrap();
    let res = within(client().post(gw.api(&format!("/api/intercepts/held/{id}/forward"))).send()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(next_text(&mut a).await, "hold 3");

    // Edited into a binary message.
    a.send(TMessage::text("hold 4")).await.unwrap();
    let id = held(&gw, "hold 4").await["id"].as_u64().unwrap();
    let (status, _) = post(&gw, &format!("/api/intercepts/held/{id}/forward"), json!({"base64": "AAEC"})).await;
    assert_eq!(status, 200);
    assert_eq!(next(&mut a).await, TMessage::binary(vec![0u8, 1, 2]));

    // The timeout forwards it unchanged (both ways: the echo is held on its way back).
    let slow = arm(&gw, json!({"route": "default", "match": "^slow", "timeout_ms": 300})).await;
    let sent = Instant::now();
    a.send(TMessage::text("slow")).await.unwrap();
    assert_eq!(next_text(&mut a).await, "slow");
    assert!(sent.elapsed() >= Duration::from_millis(600), "held twice, 300 ms each: {:?}", sent.elapsed());

    // Removing a breakpoint lets what it holds go.
    a.send(TMessage::text("hold 5")).await.unwrap();
    held(&gw, "hold 5").await;
    let res = within(client().delete(gw.api(&format!("/api/intercepts/{bp}"))).send()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(next_text(&mut a).await, "hold 5");
    a.send(TMessage::text("hold 6")).await.unwrap();
    assert_eq!(next_text(&mut a).await, "hold 6", "no longer held");

    let v = http_json(&gw.api("/api/intercepts")).await;
    assert_eq!(v["held"], json!([]), "{v}");
    assert_eq!(metric(&metrics(&gw).await, "wsgate_intercept_held_frames "), Some(0.0));
    let left = v["breakpoints"].as_array().unwrap();
    assert_eq!(left.len(), 1, "{v}");
    assert_eq!((left[0]["id"].as_u64(), left[0]["hits"].as_u64()), (Some(slow), Some(2)), "{v}");

    // History: the messages the upstream got, in the order it got them (the ping went
    // first, round the held frame), each held frame marked.
    let msgs = eventually(|| async {
        let v = http_json(&gw.api(&format!("/api/sessions/{a_id}/messages?limit=100"))).await;
        let l = v["messages"].as_array().cloned().unwrap_or_default();
        l.iter().any(|m| m["text"] == "hold 6").then_some(l)
    })
    .await;
    let sent: Vec<(Value, Vec<String>)> = msgs
        .iter()
        .filter(|m| m["dir"] == "client_to_upstream" && (m["opcode"] == 1 || m["opcode"] == 2))
        .map(|m| {
            let payload = if m["text"].is_null() { m["base64"].clone() } else { m["text"].clone() };
            let marks = m["marks"].as_array().map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect());
            (payload, marks.unwrap_or_default())
        })
        .collect();
    let marks = |m: &[&str]| m.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        sent,
        [
            (json!("edited 1"), marks(&["rewritten", "held"])),
            (json!("after 1"), marks(&[])),
            (json!("hold 2"), marks(&["dropped", "held"])),
            (json!("after 2"), marks(&[])),
            (json!("hold 3"), marks(&["held"])),
            (json!("AAEC"), marks(&["rewritten", "held"])),
            (json!("slow"), marks(&["held"])),
            (json!("hold 5"), marks(&["held"])),
            (json!("hold 6"), marks(&[])),
        ]
    );
}

#[tokio::test]
async fn a_jsonpath_breakpoint_holds_the_upstreams_answers_and_closing_lets_them_go() {
    let up = Upstream::echo().await;
    let gw = Gateway::proxy(&["--upstream", &up.url(), "--no-store"]).await;
    arm(&gw, json!({"route": "default", "direction": "upstream_to_client", "match": "$.type", "equals": "order"}))
        .await;
    let mut a = connect(&gw, "/").await;
    a.send(TMessage::text(r#"{"type":"quote"}"#)).await.unwrap();
    assert_eq!(next_text(&mut a).await, r#"{"type":"quote"}"#, "not matched: not held");
    a.send(TMessage::text(r#"{"type":"order","n":1}"#)).await.unwrap();
    let frame = held(&gw, r#"{"type":"order","n":1}"#).await;
    assert_eq!(frame["direction"], "upstream_to_client", "{frame}");
    let id = frame["id"].as_u64().unwrap();
    let (status, _) =
        post(&gw, &format!("/api/intercepts/held/{id}/forward"), json!({"text": "{\"type\":\"order\",\"n\":2}"})).await;
    assert_eq!(status, 200);
    assert_eq!(next_text(&mut a).await, r#"{"type":"order","n":2}"#);

    // An operator's close lets held frames go first, then closes at once.
    a.send(TMessage::text(r#"{"type":"order","n":3}"#)).await.unwrap();
    held(&gw, r#"{"type":"order","n":3}"#).await;
    let a_id = session_of(&gw, "/").await;
    let (status, _) = post(&gw, &format!("/api/sessions/{a_id}/close"), json!({"code": 4000, "reason": "done"})).await;
    assert_eq!(status, 202);
    assert_eq!(next_text(&mut a).await, r#"{"type":"order","n":3}"#);
    match next(&mut a).await {
        TMessage::Close(Some(c)) => assert_eq!(u16::from(c.code), 4000),
        other => panic!("expected the close, got {other:?}"),
    }
    let v = http_json(&gw.api("/api/intercepts")).await;
    assert_eq!(v["held"], json!([]), "{v}");
}

#[tokio::test]
async fn bad_breakpoints_and_ids_are_refused_with_a_message() {
    let up = Upstream::echo().await;
    let gw = Gateway::proxy(&["--upstream", &up.url(), "--no-store"]).await;
    for (body, status, says) in [
        (json!({"route": "default", "match": "("}), 400, "bad regex"),
        (json!({"route": "default", "match": "$["}), 400, "bad JSONPath"),
        (json!({"route": "default", "match": "x", "equals": 1}), 400, "cannot have an expected value"),
        (json!({"route": "default", "equals": 1}), 400, "equals needs a match"),
        (json!({"route": "default", "timeout_ms": 0}), 400, "timeout_ms"),
        (json!({"route": "default", "direction": "sideways"}), 400, "unknown variant `sideways`"),
        (json!({"route": "default", "colour": "red"}), 400, "colour"),
        (json!({"match": "x"}), 400, "route"),
        (json!({"route": "elsewhere"}), 404, "no route named \"elsewhere\""),
    ] {
        let (got, v) = post(&gw, "/api/intercepts", body.clone()).await;
        assert_eq!(got, status, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(says), "{body}: {v}");
    }
    for (method, path, status) in [
        ("DELETE", "/api/intercepts/7", 404),
        ("DELETE", "/api/intercepts/0", 400),
        ("DELETE", "/api/intercepts/x", 400),
        ("POST", "/api/intercepts/held/9/forward", 404),
        ("POST", "/api/intercepts/held/-1/drop", 400),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let res = within(client().request(method, gw.api(path)).send()).await.unwrap();
        assert_eq!(res.status().as_u16(), status, "{path}");
        let v: Value = res.json().await.unwrap();
        assert!(v["error"].is_string(), "{path}: {v}");
    }
    let (got, v) = post(&gw, "/api/intercepts/held/9/forward", json!({"text": "a", "base64": "YQ=="})).await;
    assert_eq!(got, 400, "{v}");

    // Breakpoints hold frames on proxy routes only.
    let mock = Gateway::mock(&["--echo", "--no-store"]).await;
    let (got, v) = post(&mock, "/api/intercepts", json!({"route": "mock"})).await;
    assert_eq!(got, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("proxy routes"), "{v}");
}

#[tokio::test]
async fn on_a_route_with_rules_what_queues_behind_a_held_frame_is_recorded_after_it() {
    let up = Upstream::echo().await;
    let dir = TempDir::new();
    let rules = dir.0.join("rules.yaml");
    std::fs::write(
        &rules,
        "rules:\n  - name: shout\n    match: { regex: \"^r\" }\n    rewrite: { replace: { regex: \"^r\", with: \"R\" } }\n    delay: 50ms\n",
    )
    .unwrap();
    let store = format!("sqlite://{}", dir.0.join("h.db").display());
    let gw =
        Gateway::proxy(&["--upstream", &up.url(), "--store", &store, "--proxy-rules", rules.to_str().unwrap()]).await;
    arm(&gw, json!({"route": "default", "direction": "client_to_upstream", "match": "^hold"})).await;
    let mut a = connect(&gw, "/").await;
    let id = session_of(&gw, "/").await;

    // The held frame skips the rules; the one behind it is rewritten and delayed by
    // its rule, and still leaves after it.
    a.send(TMessage::text("hold me")).await.unwrap();
    a.send(TMessage::text("rest")).await.unwrap();
    let frame = held(&gw, "hold me").await["id"].as_u64().unwrap();
    let (status, _) = post(&gw, &format!("/api/intercepts/held/{frame}/forward"), json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(texts(&mut a, 2).await, ["hold me", "Rest"]);

    let msgs = eventually(|| async {
        let v = http_json(&gw.api(&format!("/api/sessions/{id}/messages?limit=100"))).await;
        let l = v["messages"].as_array().cloned().unwrap_or_default();
        (l.iter().filter(|m| m["dir"] == "client_to_upstream").count() == 2).then_some(l)
    })
    .await;
    let sent: Vec<(&Value, &Value)> =
        msgs.iter().filter(|m| m["dir"] == "client_to_upstream").map(|m| (&m["text"], &m["marks"])).collect();
    assert_eq!(
        sent,
        [(&json!("hold me"), &json!(["held"])), (&json!("Rest"), &json!(["rule", "delayed", "rewritten"]))],
        "in the order the upstream got them"
    );
}
