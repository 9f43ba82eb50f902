//! `wsgate mock --rules` through the real binary, driven by tokio-tungstenite (a
//! client wsgate did not write): the first matching rule answers, state (a counter,
//! a captured value) carries across messages into templates and later matches, the
//! fallback answers the rest, answers keep their order and delays, binary prefixes
//! match, a broadcast reaches the route's other sessions, a close has its code, a
//! seed repeats, a `serve` route runs rules, and a bad file stops the start with
//! file:line:column.

use std::time::{Duration, Instant};

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message as TMessage;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::*;
use crate::tt::*;

async fn ask(ws: &mut Client, text: &str) -> String {
    ws.send(TMessage::text(text)).await.unwrap();
    next_text(ws).await
}

fn rules_file(dir: &TempDir, name: &str, yaml: &str) -> String {
    let path = dir.0.join(name);
    std::fs::write(&path, yaml).unwrap();
    path.display().to_string()
}

async fn mock_rules(file: &str, extra: &[&str]) -> Gateway {
    let mut args = vec!["--rules", file, "--no-store"];
    args.extend_from_slice(extra);
    Gateway::mock(&args).await
}

const CHAT: &str = r#"
rules:
  - name: login
    match: { regex: "^LOGIN (\\w+)$" }
    capture: { user: "$1" }
    set: { logged_in: true }
    count: logins
    respond: 'welcome {{state.user}} #{{state.logins}}'
  - name: whoami
    match: { regex: "^WHO$", state: { name: logged_in, equals: true } }
    respond: 'you are {{state.user}}'
  - name: order
    match: { json: "$.type", equals: order }
    capture: { item: "$.item.id" }
    respond: '{"ok":true,"item":{{state.item}},"qty":{{$.qty}}}'
  - name: catch-all-json
    match: { json: "$.type" }
    respond: 'type {{$.type}}'
  - name: bytes
    match: { binary_prefix: "hex:cafe" }
    respond: { base64: AQID }
  - name: quit
    match: { regex: "^QUIT" }
    respond: 'bye {{state.user}}'
    close: { code: 4001, reason: "see you" }
fallback:
  respond: [ { text: "unknown command" } ]
"#;

#[tokio::test]
async fn rules_answer_in_order_with_state_and_fallback() {
    let dir = TempDir::new();
    let gw = mock_rules(&rules_file(&dir, "chat.yaml", CHAT), &[]).await;
    let mut ws = connect(&gw, "/chat").await;
    assert_eq!(ask(&mut ws, "WHO").await, "unknown command", "not logged in: the state condition fails");
    assert_eq!(ask(&mut ws, "hello").await, "unknown command");
    assert_eq!(ask(&mut ws, "LOGIN ada").await, "welcome ada #1");
    assert_eq!(ask(&mut ws, "WHO").await, "you are ada", "a value captured by one rule, matched by a later one");
    assert_eq!(ask(&mut ws, "LOGIN bob").await, "welcome bob #2", "the counter counts per session");
    // The first matching rule wins: `order` comes before the broader JSON rule.
    let order = ask(&mut ws, r#"{"type":"order","item":{"id":7},"qty":3}"#).await;
    assert_eq!(order, r#"{"ok":true,"item":7,"qty":3}"#);
    assert_eq!(ask(&mut ws, r#"{"type":"cancel"}"#).await, "type cancel");

    ws.send(TMessage::binary(vec![0xca, 0xfe, 0x00])).await.unwrap();
    assert_eq!(next(&mut ws).await, TMessage::binary(vec![1, 2, 3]));
    ws.send(TMessage::binary(vec![0xca, 0x00])).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "unknown command", "another prefix");

    // Another session has its own state.
    let mut other = connect(&gw, "/chat").await;
    assert_eq!(ask(&mut other, "WHO").await, "unknown command");
    assert_eq!(ask(&mut other, "LOGIN cy").await, "welcome cy #1");

    assert_eq!(ask(&mut ws, "QUIT").await, "bye bob");
    match next(&mut ws).await {
        TMessage::Close(Some(frame)) => {
            assert_eq!((frame.code, frame.reason.as_str()), (CloseCode::from(4001), "see you"));
        }
        other => panic!("expected a close, got {other:?}"),
    }
}

#[tokio::test]
async fn answers_keep_their_order_and_delays() {
    let dir = TempDir::new();
    let yaml = r#"
rules:
  - match: { regex: "^go$" }
    respond:
      - text: first
      - text: second
        delay: 200ms
      - text: third
        delay: 100ms
"#;
    let gw = mock_rules(&rules_file(&dir, "timed.yaml", yaml), &[]).await;
    let mut ws = connect(&gw, "/").await;
    let t0 = Instant::now();
    ws.send(TMessage::text("go")).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        let text = next_text(&mut ws).await;
        got.push((text, t0.elapsed()));
    }
    let names: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(names, ["first", "second", "third"]);
    let ms = |d: Duration| d.as_millis();
    assert!(ms(got[0].1) < 150, "the first at once: {got:?}");
    assert!(ms(got[1].1) >= 200, "the second 200 ms after the message: {got:?}");
    assert!(ms(got[2].1) >= 300, "the third 100 ms after the second: {got:?}");
    assert!(ms(got[2].1) < 2000, "{got:?}");
}

#[tokio::test]
async fn a_broadcast_reaches_the_routes_other_sessions() {
    let dir = TempDir::new();
    let yaml = r#"
rules:
  - name: join
    match: { regex: "^JOIN (\\w+)$" }
    respond: 'you joined as {{$1}}'
    broadcast: '{{$1}} joined'
fallback:
  respond: ok
"#;
    let gw = mock_rules(&rules_file(&dir, "room.yaml", yaml), &[]).await;
    let mut a = connect(&gw, "/room").await;
    let mut b = connect(&gw, "/room").await;
    let mut c = connect(&gw, "/other-path").await;
    // Each session answers once, so each is running (and subscribed) before the join.
    for ws in [&mut a, &mut b, &mut c] {
        assert_eq!(ask(ws, "ping").await, "ok");
    }
    assert_eq!(ask(&mut a, "JOIN ada").await, "you joined as ada");
    assert_eq!(next_text(&mut b).await, "ada joined");
    assert_eq!(next_text(&mut c).await, "ada joined", "every session of the route, whatever its path");
    // The sender does not get its own broadcast: its next message is the next answer.
    assert_eq!(ask(&mut a, "ping").await, "ok");
    assert_eq!(ask(&mut b, "JOIN bob").await, "you joined as bob");
    assert_eq!(next_text(&mut a).await, "bob joined");
}

#[tokio::test]
async fn a_seed_repeats_random_answers() {
    let dir = TempDir::new();
    let yaml = "rules:\n  - respond: '{{uuid}} {{randInt 1 1000000000}}'\n";
    let file = rules_file(&dir, "random.yaml", yaml);
    let gw = mock_rules(&file, &["--seed", "42"]).await;
    let mut a = connect(&gw, "/").await;
    let mut b = connect(&gw, "/").await;
    let first = ask(&mut a, "x").await;
    assert_eq!(ask(&mut b, "x").await, first, "one seed, the same values in every session");
    assert_ne!(ask(&mut a, "x").await, first, "and the sequence goes on");
    let unseeded = mock_rules(&file, &[]).await;
    let (mut c, mut d) = (connect(&unseeded, "/").await, connect(&unseeded, "/").await);
    assert_ne!(ask(&mut c, "x").await, ask(&mut d, "x").await);
}

#[tokio::test]
async fn a_serve_route_runs_rules_beside_others() {
    let dir = TempDir::new();
    let file =
        rules_file(&dir, "api.yaml", "rules:\n  - match: { regex: '^hi$' }\n    respond: 'hi {{randInt 1 1000000}}'\n");
    let yaml = format!(
        "store: {{enabled: false}}\nroutes:\n  - name: api\n    path: /api\n    mock: {{rules: {file:?}, seed: 7}}\n  - name: echo\n    path: /echo\n    mock: {{echo: true}}\n"
    );
    let (_cfg_dir, cfg) = config_file(&yaml);
    let gw = Gateway::spawn("serve", &["--config", &cfg], &[]).await;
    let (mut a, mut b) = (connect(&gw, "/api").await, connect(&gw, "/api").await);
    let hi = ask(&mut a, "hi").await;
    assert!(hi.starts_with("hi "), "{hi}");
    assert_eq!(ask(&mut b, "hi").await, hi, "the route's seed");
    let mut e = connect(&gw, "/echo").await;
    assert_eq!(ask(&mut e, "x").await, "x");
    let routes = http_json(&gw.api("/api/routes")).await;
    assert!(routes.to_string().contains("rules "), "{routes}");
}

#[tokio::test]
async fn a_bad_rules_file_stops_the_start_with_file_line_and_column() {
    let dir = TempDir::new();
    for (name, yaml, says) in [
        ("syntax.yaml", "rules:\n  - match: { regex: \"a\"\n    respond: x\n", None),
        ("regex.yaml", "rules:\n  - match: { regex: \"(a\" }\n", Some(":2:21: bad regex")),
        ("template.yaml", "rules:\n  - respond: 'hi {{nope}}'\n", Some(":2:18: unknown template {{nope}}")),
        ("state.yaml", "rules:\n  - respond: '{{state.who}}'\n", Some(":2:15: unknown state {{state.who}}")),
        ("key.yaml", "rules:\n  - respnd: x\n", Some(":2:5: unknown key `respnd` in rule 1")),
        ("role.yaml", "rules:\n  - drop: true\n", Some(":2:5: `drop` is for proxy routes")),
    ] {
        let file = rules_file(&dir, name, yaml);
        let out = std::process::Command::new(bin())
            .args(["mock", "--rules", &file, "--no-store", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{name}: {stderr}");
        match says {
            Some(says) => assert!(stderr.contains(&format!("{file}{says}")), "{name}: {stderr}"),
            None => {
                // A YAML syntax error: its own message, at a line and column.
                let at = stderr.split(&format!("{file}:")).nth(1).unwrap_or_else(|| panic!("{name}: {stderr}"));
                let mut parts = at.splitn(3, ':');
                let (line, column) = (parts.next().unwrap(), parts.next().unwrap());
                assert!(line.parse::<u32>().is_ok() && column.parse::<u32>().is_ok(), "{name}: {stderr}");
                assert!(stderr.contains("not valid YAML"), "{name}: {stderr}");
            }
        }
    }
    // A proxy route's rules are checked for the proxy's role at start too.
    let file = rules_file(&dir, "proxy.yaml", "rules:\n  - broadcast: hi\n");
    let out = std::process::Command::new(bin())
        .args(["proxy", "--upstream", "ws://127.0.0.1:9/", "--proxy-rules", &file, "--no-store"])
        .args(["--listen", "127.0.0.1:0", "--control", "127.0.0.1:0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains(&format!("{file}:2:5: `broadcast` is for mock routes")), "{stderr}");
}
