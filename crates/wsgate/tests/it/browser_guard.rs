//! The control plane against browsers (docs/security.md): foreign `Origin`s refused on
//! every WebSocket and API call, foreign `Host`s refused (DNS rebinding), CORS only
//! for listed origins, single-use tickets instead of the token in URLs, no credential
//! in the logs — over real sockets against the real binary, and with a real headless
//! Chromium on another origin.

use std::net::SocketAddr;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

/// What a handshake got: the status, and the JSON error body when refused.
struct Answer {
    status: u16,
    body: String,
}

/// A WebSocket upgrade to `path` on `addr` with `headers` (`Host` is `addr` unless
/// given); reads the answer's head, and its body when it is not a 101.
async fn upgrade(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Answer {
    within(async {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        let mut head = format!("GET {path} HTTP/1.1\r\n");
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            head.push_str(&format!("Host: {addr}\r\n"));
        }
        head.push_str(
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n",
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        tcp.write_all(head.as_bytes()).await.expect("write");
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        let end = loop {
            let n = tcp.read(&mut buf).await.expect("read");
            assert!(n > 0, "connection closed before an answer: {:?}", String::from_utf8_lossy(&raw));
            raw.extend_from_slice(&buf[..n]);
            if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
        let len = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = raw[end..].to_vec();
        while status != 101 && body.len() < len {
            let n = tcp.read(&mut buf).await.expect("read body");
            if n == 0 {
                break;
            }
            body.extend_from_slice(&buf[..n]);
        }
        Answer { status, body: String::from_utf8_lossy(&body).into_owned() }
    })
    .await
}

const EVIL: &str = "https://evil.example";
/// Every WebSocket the control plane serves today.
const SOCKETS: [&str; 3] = ["/api/live", "/client/echo", "/upstream/echo"];

#[tokio::test]
async fn foreign_origins_cannot_open_the_control_sockets() {
    let gw = Gateway::mock(&["--echo", "--no-store", "--control-origin", "http://localhost:5173"]).await;
    let own = format!("http://{}", gw.control);
    for path in SOCKETS {
        let refused = upgrade(gw.control, path, &[("Origin", EVIL)]).await;
        assert_eq!(refused.status, 403, "{path}: {}", refused.body);
        let error: Value = serde_json::from_str(&refused.body).expect("JSON error");
        assert!(error["error"].as_str().unwrap_or_default().contains("--control-origin"), "{path}: {error}");
        for origin in ["null", "http://127.0.0.1:1", "http://localhost:5174"] {
            assert_eq!(upgrade(gw.control, path, &[("Origin", origin)]).await.status, 403, "{path} from {origin}");
        }
        assert_eq!(upgrade(gw.control, path, &[]).await.status, 101, "{path} without Origin");
        assert_eq!(upgrade(gw.control, path, &[("Origin", &own)]).await.status, 101, "{path} from its own origin");
        let listed = upgrade(gw.control, path, &[("Origin", "http://localhost:5173")]).await;
        assert_eq!(listed.status, 101, "{path} from a listed origin");
    }
    // The API refuses a foreign page's calls too, not only its sockets.
    let api = RawRequest::new("GET", "/api/sessions").header("origin", EVIL).send(gw.control).await;
    api.assert_error(403, "GET /api/sessions from a foreign origin");
}

#[tokio::test]
async fn foreign_hosts_are_misdirected() {
    let gw = Gateway::mock(&["--echo", "--no-store", "--control-host", "wsgate.test"]).await;
    let port = gw.control.port();
    let foreign = format!("evil.example:{port}");
    let api = RawRequest::new("GET", "/api/sessions").header("host", foreign.clone()).send(gw.control).await;
    api.assert_error(421, "GET /api/sessions with a foreign Host");
    assert!(api.json()["error"].as_str().unwrap_or_default().contains("--control-host"), "{:?}", api.json());
    for path in SOCKETS {
        assert_eq!(upgrade(gw.control, path, &[("Host", &foreign)]).await.status, 421, "{path}");
    }
    // Rebinding a name onto 127.0.0.1 does not make it same-origin either.
    let rebound = upgrade(gw.control, "/api/live", &[("Host", &foreign), ("Origin", "http://evil.example")]).await;
    assert_eq!(rebound.status, 421);
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        format!("wsgate.test:{port}"),
        "wsgate.test".to_owned(),
    ] {
        let ok = RawRequest::new("GET", "/api/sessions").header("host", host.clone()).send(gw.control).await;
        assert_eq!(ok.status, 200, "Host {host}");
        let origin = format!("http://{host}");
        let ws = upgrade(gw.control, "/api/live", &[("Host", &host), ("Origin", &origin)]).await;
        assert_eq!(ws.status, 101, "Host {host}, same origin");
    }
    // Probes answer whatever Host an orchestrator sends.
    let probe = RawRequest::new("GET", "/healthz").header("host", foreign).send(gw.control).await;
    assert_eq!(probe.status, 200);
}

#[tokio::test]
async fn cors_answers_listed_origins_only() {
    let listed = "http://localhost:5173";
    let gw = Gateway::mock(&["--echo", "--no-store", "--admin-token", "s3cret", "--control-origin", listed]).await;
    let preflight = |origin: &'static str| {
        let control = gw.control;
        async move {
            RawRequest::new("OPTIONS", "/api/connections")
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .header("access-control-request-headers", "authorization,content-type")
                .send(control)
                .await
        }
    };
    let ok = preflight("http://localhost:5173").await;
    assert!((200..300).contains(&ok.status), "{ok:?}");
    assert_eq!(ok.header("access-control-allow-origin"), Some(listed));
    let methods = ok.header("access-control-allow-methods").unwrap_or_default().to_ascii_uppercase();
    assert!(methods.contains("POST") && methods.contains("DELETE"), "{methods}");
    let headers = ok.header("access-control-allow-headers").unwrap_or_default().to_ascii_lowercase();
    assert!(headers.contains("authorization") && headers.contains("content-type"), "{headers}");
    let refused = preflight("https://evil.example").await;
    refused.assert_error(403, "a preflight from an unlisted origin");
    assert_eq!(refused.header("access-control-allow-origin"), None);
    let call = RawRequest::new("GET", "/api/sessions")
        .header("origin", listed)
        .header("authorization", "Bearer s3cret")
        .send(gw.control)
        .await;
    assert_eq!(call.status, 200);
    assert_eq!(call.header("access-control-allow-origin"), Some(listed));
    assert!(call.headers.iter().any(|(k, v)| k == "vary" && v.to_ascii_lowercase().contains("origin")), "{call:?}");
    // Same-origin and non-browser calls get no CORS headers: there is nothing to share.
    let plain = RawRequest::new("GET", "/api/sessions").header("authorization", "Bearer s3cret").send(gw.control).await;
    assert_eq!(plain.header("access-control-allow-origin"), None);

    // Nothing listed: CORS stays closed, even for a preflight from a would-be dashboard.
    let closed = Gateway::mock(&["--echo", "--no-store"]).await;
    let p = RawRequest::new("OPTIONS", "/api/sessions")
        .header("origin", listed)
        .header("access-control-request-method", "GET")
        .send(closed.control)
        .await;
    p.assert_error(403, "a preflight with no origin listed");
    assert_eq!(p.header("access-control-allow-origin"), None);
}

async fn ticket(gw: &Gateway) -> String {
    let res =
        client().post(gw.api("/api/live/ticket")).bearer_auth("s3cret").send().await.expect("POST /api/live/ticket");
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["expires_in"], 30);
    body["ticket"].as_str().expect("a ticket").to_owned()
}

#[tokio::test]
async fn a_ticket_opens_one_socket() {
    let gw = Gateway::mock(&["--echo", "--no-store", "--admin-token", "s3cret"]).await;
    let anon = client().post(gw.api("/api/live/ticket")).send().await.expect("POST");
    assert_eq!(anon.status(), 401, "a ticket needs the token");
    for path in SOCKETS {
        let t = ticket(&gw).await;
        let with = format!("{path}?ticket={t}");
        assert_eq!(upgrade(gw.control, &with, &[]).await.status, 101, "{with}");
        assert_eq!(upgrade(gw.control, &with, &[]).await.status, 401, "{with} again: tickets are single-use");
    }
    // Only on an upgrade, and never instead of the token on the API.
    let t = ticket(&gw).await;
    let api = RawRequest::new("GET", &format!("/api/sessions?ticket={t}")).send(gw.control).await;
    api.assert_error(401, "the API with a ticket");
    assert_eq!(upgrade(gw.control, &format!("/api/live?ticket={t}"), &[]).await.status, 101, "still unspent");
    // The token in the query keeps working, as the lesser choice.
    assert_eq!(upgrade(gw.control, "/api/live?token=s3cret", &[]).await.status, 101);
}

#[tokio::test]
async fn credentials_never_reach_the_logs() {
    const TOKEN: &str = "tok-5f3a9c1e-never-log-me";
    // Everything at trace: the strictest reading of "every log line".
    let gw = Gateway::spawn("mock", &["--echo", "--no-store", "--admin-token", TOKEN], &[("RUST_LOG", "trace")]).await;
    let mut tickets = Vec::new();
    for path in SOCKETS {
        let res = client().post(gw.api("/api/live/ticket")).bearer_auth(TOKEN).send().await.expect("POST");
        let t = res.json::<Value>().await.expect("json")["ticket"].as_str().expect("ticket").to_owned();
        assert_eq!(upgrade(gw.control, &format!("{path}?ticket={t}"), &[]).await.status, 101);
        // Spent: refused, and the refusal is logged too.
        assert_eq!(upgrade(gw.control, &format!("{path}?ticket={t}"), &[]).await.status, 401);
        assert_eq!(upgrade(gw.control, &format!("{path}?token={TOKEN}&x=1"), &[]).await.status, 101);
        let refused = upgrade(gw.control, &format!("{path}?token={TOKEN}"), &[("Origin", EVIL)]).await;
        assert_eq!(refused.status, 403);
        tickets.push(t);
    }
    let api = client().get(gw.api(&format!("/api/sessions?token={TOKEN}"))).send().await.expect("GET");
    assert_eq!(api.status(), 200);
    let mut gw = gw;
    assert_eq!(gw.terminate().await, 0);
    let logs = gw.logs();
    assert!(logs.contains("token=<redacted>"), "the upgrades were logged, redacted:\n{logs}");
    assert!(logs.contains("ticket=<redacted>"), "the ticket upgrades were logged, redacted:\n{logs}");
    assert!(!logs.contains(TOKEN), "the admin token is in the logs:\n{logs}");
    for t in &tickets {
        assert!(!logs.contains(t.as_str()), "ticket {t} is in the logs:\n{logs}");
    }
}

/// A page served on 127.0.0.1:0 — another port, so another origin than the control
/// plane's — for the browser to load.
async fn other_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let page = "<!doctype html><title>another origin</title>";
                let res = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                    page.len()
                );
                let _ = tcp.write_all(res.as_bytes()).await;
            });
        }
    });
    addr
}

/// Runs tests/interop/clients/chromium_cross_origin.mjs and returns its report.
async fn chromium_probe(page: &str, control: SocketAddr, token: Option<&str>) -> Value {
    let control = format!("http://{control}");
    let args = [page, control.as_str()].into_iter().chain(token);
    node_report("tests/interop/clients/chromium_cross_origin.mjs", args, 60, "").await
}

#[tokio::test]
async fn a_page_on_another_origin_is_kept_out_until_listed() {
    let page_addr = other_origin().await;
    let page = format!("http://{page_addr}/");
    let origin = format!("http://{page_addr}");

    let closed = Gateway::mock(&["--echo", "--no-store"]).await;
    let report = chromium_probe(&page, closed.control, None).await;
    assert_eq!(report["origin"], origin.as_str(), "{report}");
    assert_eq!(report["live"]["outcome"], "error", "a foreign page opened /api/live: {report}");
    assert_eq!(report["sessions"]["outcome"], "failed", "a foreign page read the API: {report}");

    let open = Gateway::mock(&["--echo", "--no-store", "--admin-token", "s3cret", "--control-origin", &origin]).await;
    let report = chromium_probe(&page, open.control, Some("s3cret")).await;
    // The token is not in the first socket's URL: refused, as any unauthenticated one.
    assert_eq!(report["live"]["outcome"], "error", "{report}");
    assert_eq!(report["sessions"]["outcome"], "answered", "{report}");
    assert_eq!(report["sessions"]["status"], 200, "{report}");
    assert!(report["sessions"]["body"]["sessions"].is_array(), "{report}");
    assert_eq!(report["ticket"]["status"], 201, "the preflighted POST for a ticket: {report}");
    assert_eq!(report["live_ticket"]["outcome"], "open", "a listed page with a ticket: {report}");
    assert_eq!(report["live_ticket"]["first"], "status", "{report}");
}
