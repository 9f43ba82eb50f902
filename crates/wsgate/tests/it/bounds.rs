//! Bounds that hold: an inject into a session whose peer is not reading is refused
//! (503 `busy`) once that side's output is at the high-water mark, never buffered
//! without bound; an inject to a side the session does not have is a 409 naming why.

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wsgate_protocol::Message;

use crate::support::*;

/// The proxy's and the server loop's high-water mark (`wsgate_session::HIGH_WATER`).
const HIGH_WATER: u64 = 256 * 1024;
/// Each inject's payload.
const SIZE: usize = 1 << 20;

/// A WebSocket server that completes the handshake and then never reads again: what
/// wsgate sends it piles up in the socket buffers, then in the gateway.
struct DeafUpstream {
    url: String,
    held: tokio::sync::oneshot::Receiver<TcpStream>,
}

impl DeafUpstream {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let (tx, held) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                if sock.read(&mut byte).await.unwrap() == 0 {
                    return;
                }
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).to_string();
            let key = head
                .lines()
                .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-key")))
                .map(|(_, v)| v.trim().to_owned())
                .unwrap();
            let accept = wsgate_protocol::handshake::accept_key(key.as_bytes());
            let answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            );
            sock.write_all(answer.as_bytes()).await.unwrap();
            // Kept open, never read.
            let _ = tx.send(sock);
        });
        Self { url, held }
    }
}

/// What the kernel may hold for one loopback connection, both ends: the sender's
/// largest send buffer and twice the receiver's initial receive buffer (its window
/// does not grow while nothing is read).
fn socket_buffers() -> u64 {
    let field = |path: &str, i: usize, default: u64| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.split_whitespace().nth(i).and_then(|v| v.parse().ok()))
            .unwrap_or(default)
    };
    field("/proc/sys/net/ipv4/tcp_wmem", 2, 4 << 20) + 2 * field("/proc/sys/net/ipv4/tcp_rmem", 1, 128 << 10)
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Injects `SIZE`-byte messages into `id` until one is refused; returns how many were
/// accepted and the refusal.
async fn inject_until_refused(gw: &Gateway, id: &str, to: &str) -> (u64, reqwest::Response) {
    let body = json!({"to": to, "text": "x".repeat(SIZE)});
    post_until_refused(&gw.api(&format!("/api/sessions/{id}/inject")), body).await
}

/// Posts `body` to `url` until it is refused; returns how many were accepted and the
/// refusal.
async fn post_until_refused(url: &str, body: serde_json::Value) -> (u64, reqwest::Response) {
    let http = client();
    // Far more than any bound this test accepts: not refused by then is a failure.
    for accepted in 0..200u64 {
        let r = http.post(url).json(&body).send().await.unwrap();
        if r.status() != 202 {
            return (accepted, r);
        }
    }
    panic!("200 injects of {SIZE} bytes into a peer that does not read were all accepted");
}

async fn assert_busy(r: reqwest::Response) {
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers().get("retry-after").map(|v| v.as_bytes()), Some(&b"1"[..]));
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"], "busy", "{v}");
    assert!(v["detail"].as_str().unwrap_or("").contains("not reading"), "{v}");
}

#[tokio::test]
async fn inject_into_an_upstream_that_does_not_read_is_refused_busy_and_memory_stays_bounded() {
    let up = DeafUpstream::start().await;
    let gw = Gateway::proxy(&["--upstream", &up.url, "--no-store"]).await;
    let _client = ws_connect(&gw.ws("/deaf")).await;
    let held = within(up.held).await.unwrap();
    let s = gw.wait_sessions(|s| s.iter().any(|x| x["state"] == "CONNECTED")).await;
    let id = s[0]["id"].as_str().unwrap().to_owned();
    let rss_before = rss_bytes(gw.pid());

    let (accepted, refused) = inject_until_refused(&gw, &id, "upstream").await;
    assert_busy(refused).await;
    // What was accepted fits in the high-water mark, one message over it, and the
    // socket buffers between the gateway and the upstream.
    let bound = HIGH_WATER + SIZE as u64 + socket_buffers();
    assert!(accepted * SIZE as u64 <= bound, "{accepted} injects of {SIZE} bytes accepted; bound {bound}");

    // Refused it stays: more injects are not buffered, and the gateway does not grow
    // with them.
    for _ in 0..32 {
        let r = client()
            .post(gw.api(&format!("/api/sessions/{id}/inject")))
            .json(&json!({"to": "upstream", "text": "x".repeat(SIZE)}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
    }
    let grown = rss_bytes(gw.pid()).saturating_sub(rss_before);
    // The accepted messages, the refused request bodies passing through, allocator slack;
    // not the 32 MiB refused.
    assert!(grown <= accepted * SIZE as u64 + (24 << 20), "gateway grew by {grown} bytes");
    drop(held);
}

#[tokio::test]
async fn inject_into_a_mock_client_that_does_not_read_is_refused_busy() {
    let gw = Gateway::mock(&["--echo", "--no-store"]).await;
    // Connected, and never reads again.
    let _deaf = ws_connect(&gw.ws("/deaf")).await;
    let s = gw.wait_sessions(|s| s.iter().any(|x| x["state"] == "CONNECTED")).await;
    let id = s[0]["id"].as_str().unwrap().to_owned();
    let (accepted, refused) = inject_until_refused(&gw, &id, "client").await;
    assert_busy(refused).await;
    // The gateway's socket buffers and the client's (initial) receive window.
    let bound = HIGH_WATER + SIZE as u64 + socket_buffers();
    assert!(accepted * SIZE as u64 <= bound, "{accepted} injects of {SIZE} bytes accepted; bound {bound}");
}

#[tokio::test]
async fn sends_on_an_outbound_connection_whose_server_does_not_read_are_refused_busy() {
    let up = DeafUpstream::start().await;
    let gw = Gateway::mock(&["--echo", "--no-store"]).await;
    let r = client().post(gw.api("/api/connections")).json(&json!({"url": up.url})).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let held = within(up.held).await.unwrap();
    gw.wait_sessions(|s| s.iter().any(|x| x["id"] == id.as_str() && x["state"] == "CONNECTED")).await;
    let url = gw.api(&format!("/api/connections/{id}/send"));
    let (accepted, refused) = post_until_refused(&url, json!({"text": "x".repeat(SIZE)})).await;
    assert_busy(refused).await;
    let bound = HIGH_WATER + SIZE as u64 + socket_buffers();
    assert!(accepted * SIZE as u64 <= bound, "{accepted} sends of {SIZE} bytes accepted; bound {bound}");
    drop(held);
}

#[tokio::test]
async fn inject_to_the_upstream_of_a_mock_session_is_a_409_naming_why() {
    let gw = Gateway::mock(&["--echo", "--no-store"]).await;
    let mut ws = ws_connect(&gw.ws("/m")).await;
    let s = gw.wait_sessions(|s| s.iter().any(|x| x["state"] == "CONNECTED")).await;
    let id = s[0]["id"].as_str().unwrap().to_owned();

    let r = client()
        .post(gw.api(&format!("/api/sessions/{id}/inject")))
        .json(&json!({"to": "upstream", "text": "lost?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let v: serde_json::Value = r.json().await.unwrap();
    let error = v["error"].as_str().unwrap_or("");
    assert!(error.contains("no upstream"), "{v}");

    // The live stream says the same in its ack.
    let mut live = ws_connect(&gw.api("/api/live").replacen("http://", "ws://", 1)).await;
    live.send(Message::text(json!({"type":"inject","session":id,"to":"upstream","text":"x","id":9}).to_string()))
        .await
        .unwrap();
    let ack = within(async {
        loop {
            let v: serde_json::Value = serde_json::from_str(&text(&recv(&mut live).await)).unwrap();
            if v["type"] == "ack" {
                return v;
            }
        }
    })
    .await;
    assert_eq!((ack["ok"].as_bool(), ack["id"].as_u64()), (Some(false), Some(9)), "{ack}");
    assert!(ack["error"].as_str().unwrap_or("").contains("no upstream"), "{ack}");

    // The session is unharmed: it still echoes, and injects to its client still work.
    ws.send(Message::text("still here")).await.unwrap();
    assert_eq!(text(&recv(&mut ws).await), "still here");
    let r = client()
        .post(gw.api(&format!("/api/sessions/{id}/inject")))
        .json(&json!({"to": "client", "text": "pushed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(text(&recv(&mut ws).await), "pushed");
}
