//! `wsgate serve` with routes: proxy and mock handlers on one listener, each session
//! recording its route; 404 and 403 at the door; reload on SIGHUP and
//! `POST /api/reload`; `config check` naming file:line:column for bad route files.

use serde_json::Value;
use wsgate_protocol::{ConnectError, ConnectRequest, Message};

use crate::support::*;

/// Writes `yaml` to a config file in its own directory (kept alive by the `TempDir`).
async fn serve(config: &str) -> Gateway {
    Gateway::spawn("serve", &["--config", config], &[]).await
}

/// The status a WebSocket handshake on `url` is refused with (with optional Origin).
async fn refused_with(url: &str, origin: Option<&str>) -> u16 {
    let mut req = ConnectRequest::new(url.parse().unwrap());
    if let Some(o) = origin {
        req.headers.insert(http::header::ORIGIN, o.parse().unwrap());
    }
    match within(wsgate_protocol::connect(req)).await {
        Err(ConnectError::Rejected { status, .. }) => status.as_u16(),
        Err(e) => panic!("{url}: {e}"),
        Ok(_) => panic!("{url}: the handshake was accepted"),
    }
}

fn route_of(sessions: &[Value], path: &str) -> Option<String> {
    sessions.iter().find(|s| s["path"] == path).and_then(|s| s["route"].as_str()).map(str::to_owned)
}

#[tokio::test]
async fn three_routes_share_one_listener_and_every_session_knows_its_route() {
    let mut orders = Upstream::echo().await;
    let mut feed = Upstream::echo().await;
    let yaml = format!(
        r#"
routes:
  - name: api
    path: /api/*
    proxy: {{ upstream: "{}", strip_prefix: /api }}
  - name: feed
    path: /feed
    proxy: {{ upstream: "{}" }}
    origins: ["https://app.example.com"]
    limits: {{ max_connections: 1 }}
  - name: echo
    path: /echo
    mock: {{ echo: true }}
  - name: small
    path: /small/*
    mock: {{ echo: true }}
    limits: {{ max_message_size: 1024, idle_timeout: 300ms }}
"#,
        orders.url(),
        feed.url()
    );
    let (_dir, file) = config_file(&yaml);
    let gw = serve(&file).await;

    // /api/* goes to the first upstream without its prefix.
    let mut api = ws_connect(&gw.ws("/api/orders?x=1")).await;
    assert_eq!(orders.next_connection().await.0, "/orders?x=1");
    api.send(Message::text("order")).await.unwrap();
    assert_eq!(text(&recv(&mut api).await), "order");
    // /feed keeps its path on the second one; a browser page from the allowed origin
    // gets in, any other origin is refused, and the route's one slot is taken.
    let mut req = ConnectRequest::new(gw.ws("/feed").parse().unwrap());
    req.headers.insert(http::header::ORIGIN, "https://app.example.com".parse().unwrap());
    let c = within(wsgate_protocol::connect(req)).await.unwrap();
    let mut fd =
        wsgate_protocol::WsStream::new(c.transport, wsgate_protocol::Role::Client, Default::default(), c.leftover);
    assert_eq!(feed.next_connection().await.0, "/feed");
    fd.send(Message::text("tick")).await.unwrap();
    assert_eq!(text(&recv(&mut fd).await), "tick");
    assert_eq!(refused_with(&gw.ws("/feed"), Some("https://evil.example")).await, 403);
    assert_eq!(refused_with(&gw.ws("/feed"), None).await, 503, "max_connections: 1 on the feed route");
    // /echo is answered by the mock.
    let mut echo = ws_connect(&gw.ws("/echo")).await;
    echo.send(Message::text("hi")).await.unwrap();
    assert_eq!(text(&recv(&mut echo).await), "hi");
    // A route's own limits: its message size (1009) and idle timeout (1001).
    let mut small = ws_connect(&gw.ws("/small/big")).await;
    small.send(Message::Binary(vec![0u8; 2000].into())).await.unwrap();
    assert_eq!(close_of(&recv(&mut small).await).map(|c| c.code), Some(1009));
    let mut idle = ws_connect(&gw.ws("/small/idle")).await;
    let closed = close_of(&recv(&mut idle).await).unwrap();
    assert_eq!((closed.code, closed.reason.as_str()), (1001, "idle timeout"));
    // Nothing else is served.
    assert_eq!(refused_with(&gw.ws("/nope"), None).await, 404);
    assert_eq!(refused_with(&gw.ws("/apix"), None).await, 404);

    // The API knows each session's route, and filters by it.
    let all = gw.wait_sessions(|s| s.iter().filter(|x| x["state"] == "CONNECTED").count() == 3).await;
    assert_eq!(route_of(&all, "/small/idle").as_deref(), Some("small"));
    assert_eq!(route_of(&all, "/api/orders?x=1").as_deref(), Some("api"));
    assert_eq!(route_of(&all, "/feed").as_deref(), Some("feed"));
    assert_eq!(route_of(&all, "/echo").as_deref(), Some("echo"));
    let only: Value = http_json(&gw.api("/api/sessions?route=echo")).await;
    let only = only["sessions"].as_array().unwrap().clone();
    assert!(only.iter().all(|s| s["route"] == "echo" && s["kind"] == "mock"), "{only:?}");
    assert!(!only.is_empty());
    let table: Value = http_json(&gw.api("/api/routes")).await;
    let names: Vec<&str> = table["routes"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["api", "feed", "echo", "small"]);
    assert_eq!(table["routes"][0]["path"], "/api/*");
    assert_eq!(table["routes"][2]["kind"], "mock");

    // Metrics per route: live sessions now, ended ones once closed.
    let metrics = client().get(gw.api("/metrics")).send().await.unwrap().text().await.unwrap();
    for line in [
        r#"wsgate_route_sessions_active{route="api",kind="proxy"} 1"#,
        r#"wsgate_route_sessions_active{route="feed",kind="proxy"} 1"#,
        r#"wsgate_route_sessions_active{route="echo",kind="mock"} 1"#,
        r#"wsgate_route_sessions_total{route="feed",kind="proxy",outcome="disconnected"} 0"#,
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }

    // The live stream filters by route too.
    let mut live = ws_connect(&format!("ws://{}/api/live?route=echo", gw.control)).await;
    let mut other = ws_connect(&gw.ws("/api/other")).await;
    let mut echo2 = ws_connect(&gw.ws("/echo")).await;
    let event = loop {
        let v: Value = serde_json::from_str(&text(&recv(&mut live).await)).unwrap();
        if v["type"] == "lifecycle" {
            break v;
        }
    };
    assert_eq!(event["route"], "echo", "{event}");
    assert_eq!(event["path"], "/echo");

    // Ended sessions keep their route in the store and its export.
    for ws in [&mut api, &mut fd, &mut echo, &mut other, &mut echo2] {
        ws.close(1000, "").await.unwrap();
    }
    let metrics = eventually(|| async {
        let m = client().get(gw.api("/metrics")).send().await.unwrap().text().await.unwrap();
        m.contains(r#"wsgate_route_sessions_total{route="feed",kind="proxy",outcome="disconnected"} 1"#).then_some(m)
    })
    .await;
    assert!(metrics.contains(r#"wsgate_route_sessions_total{route="echo",kind="mock",outcome="disconnected"}"#));
    let stored = eventually(|| async {
        let v: Value = http_json(&gw.api("/api/sessions?route=api&state=disconnected")).await;
        let list = v["sessions"].as_array().cloned().unwrap_or_default();
        (list.len() == 2).then_some(list)
    })
    .await;
    let id = stored[0]["id"].as_str().unwrap();
    let export = eventually(|| async {
        let r = client().get(gw.api(&format!("/api/sessions/{id}/export"))).send().await.unwrap();
        if !r.status().is_success() {
            return None;
        }
        let body = r.text().await.unwrap();
        let first: Value = serde_json::from_str(body.lines().next()?).ok()?;
        Some(first)
    })
    .await;
    assert_eq!(export["route"], "api", "{export}");
}

#[tokio::test]
async fn reload_moves_new_sessions_keeps_live_ones_and_refuses_a_broken_config() {
    let mut first = Upstream::echo().await;
    let mut second = Upstream::echo().await;
    let route = |up: &str| format!("routes:\n  - name: main\n    path: /*\n    proxy: {{ upstream: \"{up}\" }}\n");
    let (_dir, file) = config_file(&route(&first.url()));
    let mut gw = serve(&file).await;

    let mut old = ws_connect(&gw.ws("/chat")).await;
    first.next_connection().await;
    old.send(Message::text("before")).await.unwrap();
    assert_eq!(text(&recv(&mut old).await), "before");

    // SIGHUP: new sessions go to the second upstream.
    std::fs::write(&file, route(&second.url())).unwrap();
    let pid = gw.pid().to_string();
    std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    let table = eventually(|| async {
        let t: Value = http_json(&gw.api("/api/routes")).await;
        (t["generation"] == 2).then_some(t)
    })
    .await;
    assert_eq!(table["routes"][0]["target"], format!("{}/", second.url()));
    let mut new = ws_connect(&gw.ws("/chat")).await;
    assert_eq!(second.next_connection().await.0, "/chat");
    new.send(Message::text("after")).await.unwrap();
    assert_eq!(text(&recv(&mut new).await), "after");
    // The session opened before the reload still flows through the first upstream.
    old.send(Message::text("still here")).await.unwrap();
    assert_eq!(text(&recv(&mut old).await), "still here");
    assert!(matches!(first.next_message().await, Message::Text(_)));

    // A config that does not validate is refused; the routes in force keep serving.
    std::fs::write(&file, "routes:\n  - name: main\n    path: chat\n    proxy: { upstream: \"ws://x\" }\n").unwrap();
    let r = client().post(gw.api("/api/reload")).send().await.unwrap();
    assert_eq!(r.status(), 422);
    let err: Value = r.json().await.unwrap();
    let msg = err["error"].as_str().unwrap();
    assert!(msg.contains(&format!("{file}:3:5")) && msg.contains("routes[0].path"), "{msg}");
    std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    eventually(|| async {
        let m = client().get(gw.api("/metrics")).send().await.unwrap().text().await.unwrap();
        m.contains(r#"wsgate_config_reloads_total{outcome="refused"} 2"#).then_some(())
    })
    .await;
    let t: Value = http_json(&gw.api("/api/routes")).await;
    assert_eq!(t["generation"], 2);
    let mut third = ws_connect(&gw.ws("/still")).await;
    assert_eq!(second.next_connection().await.0, "/still");
    third.send(Message::text("ok")).await.unwrap();
    assert_eq!(text(&recv(&mut third).await), "ok");
    assert!(gw.logs().contains("reload refused"), "{}", gw.logs());
    assert_eq!(gw.terminate().await, 0);
}

/// A SIGHUP sent the moment the ready line appears reloads: the handlers are in place
/// before the gateway says it is ready (a signal with no handler yet ended it).
#[tokio::test]
async fn a_sighup_right_after_the_ready_line_reloads() {
    let (_dir, file) = config_file("routes:\n  - name: echo\n    path: /*\n    mock: { echo: true }\n");
    for _ in 0..5 {
        let mut gw = serve(&file).await;
        std::process::Command::new("kill").args(["-HUP", &gw.pid().to_string()]).status().unwrap();
        eventually(|| async {
            let t: Value = http_json(&gw.api("/api/routes")).await;
            (t["generation"] == 2).then_some(())
        })
        .await;
        assert_eq!(gw.terminate().await, 0);
    }
}

#[test]
fn config_check_points_at_the_bad_route() {
    let cases = [
        ("routes:\n  - name: a\n    path: /a\n    prxy: { upstream: \"ws://x\" }\n", ":4:5", "prxy"),
        (
            "routes:\n  - name: all\n    path: /*\n    mock: { echo: true }\n  - name: b\n    path: /b\n    mock: { echo: true }\n",
            ":6:5",
            "can never match",
        ),
        ("routes:\n  - name: a\n    path: /a\n    proxy:\n      upstream: \"http://x\"\n", ":5:7", "not a ws://"),
        ("routes:\n  - name: a\n    path: /a\n", ":2:5", "has no handler"),
        (
            "routes:\n  - name: a\n    path: /a\n    proxy: { upstream: \"ws://x\" }\n    mock: { echo: true }\n",
            ":5:5",
            "both",
        ),
    ];
    for (yaml, at, what) in cases {
        let (_dir, file) = config_file(yaml);
        let out = std::process::Command::new(bin()).args(["config", "check", "--config", &file]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{yaml}: {err}");
        assert!(err.contains(&format!("{file}{at}")), "{yaml}: want {at}: {err}");
        assert!(err.contains(what) && err.contains("fix:"), "{yaml}: {err}");
    }
    let (_dir, file) = config_file("routes:\n  - name: echo\n    path: /echo\n    mock: { echo: true }\n");
    let out = std::process::Command::new(bin()).args(["config", "check", "--config", &file]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}
