//! Rules as transforms on a proxy route (docs/rules.md, "A proxy's rules"), through
//! the real binary, a tokio-tungstenite client and a real upstream: rewrites by
//! JSONPath and regex in each direction, drops answered in place, delays, closes;
//! every applied message marked in history with its rule.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message as TMessage;

use crate::support::*;
use crate::tt::*;

const RULES: &str = r#"rules:
  - name: hide-password
    match: { json: "$.type", equals: login }
    rewrite: { delete: ["$.password"], set: { "$.via": wsgate } }
  - name: us-spelling
    direction: upstream
    match: { regex: "colour" }
    rewrite: { replace: { regex: "colou?r", with: "color" } }
  - name: local-ping
    match: { regex: "^ping$" }
    drop: true
    respond: pong
  - name: slow-orders
    match: { json: "$.type", equals: order }
    delay: 300ms
  - name: goodbye
    match: { regex: "^bye$" }
    close: { code: 4002, reason: "rule says bye" }
"#;

async fn upstream_text(up: &mut Upstream) -> String {
    match up.next_message().await {
        wsgate_protocol::Message::Text(b) => String::from_utf8(b.to_vec()).unwrap(),
        other => panic!("expected text at the upstream, got {other:?}"),
    }
}

#[tokio::test]
async fn a_proxy_routes_rules_rewrite_drop_answer_delay_and_close() {
    let mut upstream = Upstream::echo().await;
    let dir = TempDir::new();
    let rules = dir.0.join("proxy-rules.yaml");
    std::fs::write(&rules, RULES).unwrap();
    let gw = Gateway::proxy(&["--upstream", &upstream.url(), "--proxy-rules", rules.to_str().unwrap()]).await;
    let (mut ws, _) = within(tokio_tungstenite::connect_async(gw.ws("/t"))).await.unwrap();

    // Client → upstream, by JSONPath: the upstream sees the rewritten message, and
    // echoes it back as is.
    ws.send(TMessage::text(r#"{"type":"login","user":"ann","password":"secret"}"#)).await.unwrap();
    let seen: Value = serde_json::from_str(&upstream_text(&mut upstream).await).unwrap();
    assert_eq!(seen, serde_json::json!({"type":"login","user":"ann","via":"wsgate"}));
    assert_eq!(serde_json::from_str::<Value>(&next_text(&mut ws).await).unwrap(), seen);

    // Upstream → client only: the upstream gets "colour" (the rule's direction is
    // upstream), the client its echo respelled.
    ws.send(TMessage::text("my favourite colour")).await.unwrap();
    assert_eq!(upstream_text(&mut upstream).await, "my favourite colour");
    assert_eq!(next_text(&mut ws).await, "my favourite color");

    // Dropped and answered in place: the upstream never sees the ping.
    ws.send(TMessage::text("ping")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "pong");
    ws.send(TMessage::text("after")).await.unwrap();
    assert_eq!(upstream_text(&mut upstream).await, "after", "the ping was not forwarded");
    assert_eq!(next_text(&mut ws).await, "after");

    // Delayed on its way in (and order kept behind it).
    let sent = Instant::now();
    ws.send(TMessage::text(r#"{"type":"order","id":1}"#)).await.unwrap();
    ws.send(TMessage::text("behind")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, r#"{"type":"order","id":1}"#);
    assert!(sent.elapsed() >= Duration::from_millis(300), "{:?}", sent.elapsed());
    assert_eq!(next_text(&mut ws).await, "behind");

    // Closed by a rule, both sides.
    ws.send(TMessage::text("bye")).await.unwrap();
    let close = loop {
        match within(ws.next()).await {
            Some(Ok(TMessage::Close(Some(c)))) => break c,
            Some(Ok(_)) => {}
            other => panic!("expected the rule's close, got {other:?}"),
        }
    };
    assert_eq!((u16::from(close.code), close.reason.as_str()), (4002, "rule says bye"));
    drop(ws);

    // History marks each message a rule touched, with what it did.
    let list = gw.wait_sessions(|s| !s.is_empty()).await;
    let id = list[0]["id"].as_str().unwrap().to_owned();
    let msgs = eventually(|| async {
        let v = http_json(&gw.api(&format!("/api/sessions/{id}/messages?limit=100"))).await;
        let l = v["messages"].as_array().cloned().unwrap_or_default();
        l.iter().any(|m| m["text"] == "bye").then_some(l)
    })
    .await;
    let marks_of = |text: &str, dir: &str| -> Vec<String> {
        let m = msgs
            .iter()
            .find(|m| m["text"] == text && m["dir"] == dir)
            .unwrap_or_else(|| panic!("{text} {dir}: {msgs:?}"));
        m["marks"].as_array().map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect()).unwrap_or_default()
    };
    assert_eq!(marks_of("ping", "client_to_upstream"), ["rule", "dropped"]);
    assert_eq!(marks_of("pong", "upstream_to_client"), ["rule", "answer"]);
    assert_eq!(marks_of("my favourite color", "upstream_to_client"), ["rule", "rewritten"]);
    assert_eq!(marks_of(r#"{"type":"order","id":1}"#, "client_to_upstream"), ["rule", "delayed"]);
    assert_eq!(marks_of("behind", "client_to_upstream"), Vec::<String>::new());
}

#[tokio::test]
async fn rules_then_faults_and_a_bad_proxy_rules_file_exits_64() {
    let mut upstream = Upstream::echo().await;
    let dir = TempDir::new();
    let rules = dir.0.join("r.yaml");
    std::fs::write(
        &rules,
        "rules:\n  - match: { regex: \"^x\" }\n    rewrite: { replace: { regex: \"x\", with: \"y\" } }\n",
    )
    .unwrap();
    let gw =
        Gateway::proxy(&["--upstream", &upstream.url(), "--proxy-rules", rules.to_str().unwrap(), "--no-store"]).await;
    let url = gw.api("/api/routes/default/faults");
    let res = crate::support::client()
        .put(url)
        .json(&serde_json::json!({"duplicate": {"rate": 1.0, "direction": "from_client"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (mut ws, _) = within(tokio_tungstenite::connect_async(gw.ws("/f"))).await.unwrap();
    ws.send(TMessage::text("xyz")).await.unwrap();
    // Rewritten by the rule, then doubled by the fault.
    assert_eq!(upstream_text(&mut upstream).await, "yyz");
    assert_eq!(upstream_text(&mut upstream).await, "yyz");

    std::fs::write(&rules, "rules:\n  - match: { regex: \"(\" }\n    drop: true\n").unwrap();
    let out = within(
        tokio::process::Command::new(bin())
            .args(["proxy", "--upstream", "ws://127.0.0.1:9", "--proxy-rules", rules.to_str().unwrap()])
            .output(),
    )
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains(&format!("{}:2:", rules.display())), "{stderr}");
}
