//! A proxy route's `fallback:` mock (MockForge's proxy mode): when the upstream cannot
//! be reached, the route's mock answers the client, through the real binary and a
//! tokio-tungstenite client. The failed proxy session says so in its history; the
//! mock's session is a session of its own on the same route.

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as TMessage;

use crate::support::*;

/// A port nobody listens on (bound, then released).
async fn dead_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

async fn echoed(gw: &Gateway, path: &str, text: &str) -> String {
    let (mut ws, _) = within(tokio_tungstenite::connect_async(gw.ws(path))).await.expect("connect");
    ws.send(TMessage::text(text)).await.unwrap();
    loop {
        match within(ws.next()).await {
            Some(Ok(TMessage::Text(t))) => return t.to_string(),
            Some(Ok(_)) => {}
            other => panic!("expected an answer, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_unreachable_upstream_falls_back_to_the_routes_mock() {
    let port = dead_port().await;
    let dir = TempDir::new();
    let script = dir.0.join("fallback.jsonl");
    std::fs::write(&script, "{\"ts\":0,\"text\":\"offline copy\",\"waitFor\":\"^hello$\"}\n").unwrap();
    let (_cfg_dir, file) = config_file(&format!(
        "routes:\n  - name: live\n    path: /live\n    proxy:\n      upstream: ws://127.0.0.1:{port}\n      fallback: {{ echo: true }}\n  - name: feed\n    path: /feed\n    proxy:\n      upstream: ws://127.0.0.1:{port}\n      fallback: {{ replay: {} }}\n",
        script.display()
    ));
    let gw = Gateway::spawn("serve", &["--config", &file], &[]).await;
    assert_eq!(echoed(&gw, "/live", "ping?").await, "ping?");
    assert_eq!(echoed(&gw, "/feed", "hello").await, "offline copy");

    let sessions = gw.wait_sessions(|s| s.len() >= 4).await;
    let of = |kind: &str, route: &str| {
        sessions
            .iter()
            .find(|s| s["kind"] == kind && s["route"] == route)
            .cloned()
            .unwrap_or_else(|| panic!("{sessions:?}"))
    };
    let proxy = of("proxy", "live");
    assert_eq!(proxy["state"], "FAILED", "{proxy}");
    let mock = of("mock", "live");
    assert_eq!((mock["messages_in"].as_u64(), mock["messages_out"].as_u64()), (Some(1), Some(1)), "{mock}");
    let id = proxy["id"].as_str().unwrap();
    let events = eventually(|| async {
        let v = http_json(&gw.api(&format!("/api/sessions/{id}/events"))).await;
        let list = v["events"].as_array().cloned().unwrap_or_default();
        list.iter().any(|e| e["error_kind"] == "mock_fallback").then_some(list)
    })
    .await;
    let note = events.iter().find(|e| e["error_kind"] == "mock_fallback").unwrap();
    assert!(note.to_string().contains("fallback mock answers"), "{note}");

    let routes = http_json(&gw.api("/api/routes")).await;
    assert!(routes["routes"][0]["target"].as_str().unwrap().contains("fallback: mock echo"), "{routes}");
}

#[tokio::test]
async fn a_fallback_with_accept_early_is_refused_at_start() {
    let (_dir, file) =
        config_file("proxy:\n  upstream: ws://127.0.0.1:9\n  accept_early: true\n  fallback: { echo: true }\n");
    let out = within(tokio::process::Command::new(bin()).args(["proxy", "--config", &file]).output()).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("proxy.fallback") && stderr.contains("accept_early"), "{stderr}");
}
