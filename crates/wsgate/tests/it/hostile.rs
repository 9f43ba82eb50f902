//! Hostile input at the WebSocket and TCP level, against both roles that accept
//! WebSocket clients (`mock --echo`, `proxy`) and the proxy's upstream side.
//!
//! Frames are written byte by byte on a plain `TcpStream` after a hand-written upgrade,
//! so every bit (FIN, RSV, opcode, mask, length form) is the test's choice. Each case
//! must get the RFC 6455 §7.4.1 close code (or an HTTP status) and then see its TCP
//! connection end, within a deadline. Throughout, a well-behaved session opened first
//! keeps echoing, `/healthz` answers, nothing panics, and no session stays CONNECTED.
//!
//! The proxy forwards frames one by one and leaves message-level checks (UTF-8 of
//! text messages, the order of fragments) to the endpoints (`docs/conformance.md`):
//! for those cases the code the client sees is the upstream's, relayed unchanged.
//! Everything a frame header or a close payload can get wrong, the proxy catches
//! itself, on either side.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use wsgate_protocol::handshake::{accept_key, generate_key};
use wsgate_protocol::{CloseFrame, Decoder, Frame, Message, OpCode, Role, Transport, WsConfig, WsError, WsStream};

use crate::support::*;

// ---------------------------------------------------------------------------------------
// Frames by hand
// ---------------------------------------------------------------------------------------

const FIN: u8 = 0x80;
const RSV1: u8 = 0x40;
const RSV2: u8 = 0x20;
const RSV3: u8 = 0x10;
const CONT: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// The masking key of every client frame we write (any key will do; a fixed one makes
/// failures reproducible).
const MASK: [u8; 4] = [0x5a, 0x17, 0xc3, 0x9e];

/// `--max-message-size` of the frame tests.
const MAX: usize = 64 * 1024;

/// How long a gateway may take to send its close frame, and then to close TCP. Below
/// the 5 s close-handshake timeout on purpose: a connection failed for bad input is
/// dropped at once (RFC 6455 §7.1.7), never held until the peer answers.
const CLOSED_WITHIN: Duration = Duration::from_secs(3);

/// One frame: `b0` (FIN, RSV1–3, opcode) exactly as given, the shortest length form,
/// the payload masked with `mask` when given.
fn raw_frame(b0: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![b0];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.push(m | n as u8),
        n @ 126..=0xFFFF => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(k) => {
            out.extend_from_slice(&k);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A client frame (masked, as RFC 6455 §5.3 requires of clients).
fn cf(b0: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(b0, payload, Some(MASK))
}

/// Only the header of a frame announcing `len` payload bytes in the 64-bit form.
fn header64(b0: u8, len: u64, mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![b0, if mask.is_some() { 0x80 | 127 } else { 127 }];
    out.extend_from_slice(&len.to_be_bytes());
    if let Some(k) = mask {
        out.extend_from_slice(&k);
    }
    out
}

fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

/// Which peer writes a case's bytes: a client (masks) or an upstream (does not).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Peer {
    Client,
    Upstream,
}

impl Peer {
    fn mask(self) -> Option<[u8; 4]> {
        (self == Peer::Client).then_some(MASK)
    }
    fn frame(self, b0: u8, payload: &[u8]) -> Vec<u8> {
        raw_frame(b0, payload, self.mask())
    }
}

/// Bytes a peer sends and the close code it must get back for them.
struct Case {
    name: String,
    bytes: Vec<u8>,
    code: u16,
    /// A message-level violation the proxy forwards: the code comes from the endpoint.
    endpoint_checks: bool,
}

fn case(name: impl Into<String>, bytes: Vec<u8>, code: u16) -> Case {
    Case { name: name.into(), bytes, code, endpoint_checks: false }
}

/// A case the proxy leaves to the endpoint (text UTF-8, fragment order).
fn endpoint_case(name: impl Into<String>, bytes: Vec<u8>, code: u16) -> Case {
    Case { endpoint_checks: true, ..case(name, bytes, code) }
}

/// Frame-level violations and sizes (with `--max-message-size MAX`).
fn framing_cases(peer: Peer) -> Vec<Case> {
    let mut cases = vec![
        // RFC 6455 §5.2: "the most significant bit MUST be 0" — a malformed header,
        // not merely a big frame.
        case("64-bit length with the MSB set", header64(FIN | BINARY, 1 << 63, peer.mask()), 1002),
        // Only the header and a little payload: the limit is enforced on the header.
        case(
            "frame header announcing more than --max-message-size",
            [header64(FIN | BINARY, MAX as u64 + 1, peer.mask()), vec![0; 1024]].concat(),
            1009,
        ),
        case("message over --max-message-size in continuation frames", continuation_flood(peer), 1009),
        case("ping of 126 bytes", peer.frame(FIN | PING, &[b'p'; 126]), 1002),
        case("close of 126 bytes", peer.frame(FIN | CLOSE, &close_payload(1000, &[b'r'; 124])), 1002),
        case("fragmented ping", [peer.frame(PING, b"a"), peer.frame(FIN | CONT, b"b")].concat(), 1002),
        case("fragmented close", peer.frame(CLOSE, &close_payload(1000, b"")), 1002),
        case("RSV1 without a negotiated extension", peer.frame(FIN | RSV1 | TEXT, b"x"), 1002),
        case("RSV2 set", peer.frame(FIN | RSV2 | BINARY, b"x"), 1002),
        case("RSV3 set", peer.frame(FIN | RSV3 | TEXT, b"x"), 1002),
        case("RSV2 on a ping", peer.frame(FIN | RSV2 | PING, b"x"), 1002),
        endpoint_case("continuation without a message", peer.frame(FIN | CONT, b"x"), 1002),
        endpoint_case(
            "new data frame inside a fragmented message",
            [peer.frame(TEXT, b"a"), peer.frame(FIN | BINARY, b"b")].concat(),
            1002,
        ),
    ];
    for op in (0x3..=0x7).chain(0xB..=0xF) {
        cases.push(case(format!("reserved opcode {op:#x}"), peer.frame(FIN | op, b"x"), 1002));
    }
    cases.push(match peer {
        Peer::Client => case("unmasked client frame", raw_frame(FIN | TEXT, b"x", None), 1002),
        Peer::Upstream => case("masked server frame", raw_frame(FIN | TEXT, b"x", Some(MASK)), 1002),
    });
    cases
}

/// A binary message sent in 1 KiB fragments until it is one fragment over the limit
/// (every fragment is small: only the message is too big). Nothing is sent past the
/// fragment that crosses the limit.
fn continuation_flood(peer: Peer) -> Vec<u8> {
    let chunk = [0xABu8; 1024];
    let mut out = peer.frame(BINARY, &chunk);
    for _ in 0..MAX / chunk.len() {
        out.extend(peer.frame(CONT, &chunk));
    }
    out
}

/// Text that is not UTF-8, whole or in fragments, and a close reason that is not.
fn utf8_cases(peer: Peer) -> Vec<Case> {
    let mut cases: Vec<Case> = [
        ("bytes 0xFF 0xFE", &b"\xff\xfe"[..]),
        ("overlong encoding of '/'", b"\xc0\xaf"),
        ("UTF-16 surrogate", b"a\xed\xa0\x80b"),
        ("code point above U+10FFFF", b"\xf4\x90\x80\x80"),
        ("lone continuation byte", b"ok\x80"),
        ("message ending mid-character", b"euro \xe2\x82"),
    ]
    .into_iter()
    .map(|(what, bytes)| {
        endpoint_case(format!("invalid UTF-8 in a text frame: {what}"), peer.frame(FIN | TEXT, bytes), 1007)
    })
    .collect();
    cases.push(endpoint_case(
        "invalid UTF-8 split across fragments",
        [peer.frame(TEXT, b"kappa \xce"), peer.frame(FIN | CONT, b"A")].concat(),
        1007,
    ));
    cases.push(endpoint_case(
        "invalid byte in a later fragment",
        [peer.frame(TEXT, b"fine"), peer.frame(CONT, b" also fine"), peer.frame(FIN | CONT, b"\xff")].concat(),
        1007,
    ));
    cases.push(endpoint_case(
        "fragmented text ending mid-character",
        [peer.frame(TEXT, b"euro "), peer.frame(FIN | CONT, b"\xe2\x82")].concat(),
        1007,
    ));
    cases.push(case(
        "invalid UTF-8 in a close reason",
        peer.frame(FIN | CLOSE, &close_payload(1000, b"bye \xff")),
        1007,
    ));
    cases
}

/// Close codes: reserved or not sendable ones fail the connection (RFC 6455 §7.4.1,
/// §7.4.2), valid ones are answered with the same code.
fn close_code_cases(peer: Peer) -> Vec<Case> {
    let mut cases = vec![case("close payload of 1 byte", peer.frame(FIN | CLOSE, &[0x03]), 1002)];
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
        cases.push(case(format!("close code {code}"), peer.frame(FIN | CLOSE, &close_payload(code, b"")), 1002));
    }
    for code in [1000u16, 1001, 1003, 1011, 3000, 4000, 4999] {
        let bytes = peer.frame(FIN | CLOSE, &close_payload(code, b"valid"));
        cases.push(case(format!("valid close code {code} is answered"), bytes, code));
    }
    cases
}

// ---------------------------------------------------------------------------------------
// Raw connections
// ---------------------------------------------------------------------------------------

/// One end of a WebSocket connection spoken by hand: we write raw bytes and decode
/// what the gateway sends (which must always be valid).
struct Raw {
    tcp: TcpStream,
    rd: BytesMut,
    /// The role we play: a client masks its frames, a server does not.
    role: Role,
    decoder: Decoder,
}

impl Raw {
    fn new(tcp: TcpStream, rd: BytesMut, role: Role) -> Self {
        Self { tcp, rd, role, decoder: Decoder::new(role, 1 << 20) }
    }
}

impl Raw {
    /// A client: a hand-written upgrade, then the 101 is checked.
    async fn client(addr: SocketAddr, path: &str) -> Self {
        let mut tcp = within(TcpStream::connect(addr)).await.expect("connect");
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            generate_key()
        );
        tcp.write_all(req.as_bytes()).await.expect("write upgrade");
        let (head, rd) = read_head(&mut tcp).await;
        assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
        Self::new(tcp, rd, Role::Client)
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).await.expect("write frames");
    }

    /// The next frame, or `None` once the connection has ended (EOF or reset).
    async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = self.decoder.decode(&mut self.rd).expect("the gateway sends valid frames") {
                return Some(f);
            }
            match self.tcp.read_buf(&mut self.rd).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// The next frame must be a close with `code`, and the TCP connection must then
    /// end, each within `CLOSED_WITHIN`. With `answer`, we first send the close reply
    /// RFC 6455 §5.5.1 asks for; without, the gateway must not wait for one.
    async fn expect_close(&mut self, code: u16, answer: bool, what: &str) -> CloseFrame {
        let frame = tokio::time::timeout(CLOSED_WITHIN, self.next_frame())
            .await
            .unwrap_or_else(|_| panic!("{what}: no close frame within {CLOSED_WITHIN:?}"))
            .unwrap_or_else(|| panic!("{what}: the connection ended without a close frame"));
        assert_eq!(frame.opcode, OpCode::Close, "{what}: expected a close frame, got {frame:?}");
        let close = CloseFrame::parse(&frame.payload).expect("a valid close frame").expect("a close code");
        assert_eq!(close.code, code, "{what}: close code (reason {:?})", close.reason);
        if answer {
            let mask = (self.role == Role::Client).then_some(MASK);
            self.send(&raw_frame(FIN | CLOSE, &close_payload(code, b""), mask)).await;
        }
        self.expect_end(what).await;
        close
    }

    /// The TCP connection ends within `CLOSED_WITHIN`, with nothing more sent.
    async fn expect_end(&mut self, what: &str) {
        match tokio::time::timeout(CLOSED_WITHIN, self.next_frame()).await {
            Ok(None) => {}
            Ok(Some(f)) => panic!("{what}: frame after the close: {f:?}"),
            Err(_) => panic!("{what}: TCP connection still open {CLOSED_WITHIN:?} after the close frame"),
        }
    }

    /// Leaves without a close frame: an RST (`SO_LINGER` 0) or a plain FIN.
    fn vanish(self, reset: bool) {
        if reset {
            self.tcp.set_zero_linger().expect("SO_LINGER 0");
        }
        drop(self);
    }
}

/// Reads an HTTP/1.1 head; returns it and whatever was read past it.
async fn read_head(tcp: &mut TcpStream) -> (String, BytesMut) {
    within(async move {
        let mut buf = BytesMut::new();
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let _ = buf.split_to(end + 4);
                return (head, buf);
            }
            let n = tcp.read_buf(&mut buf).await.expect("read the HTTP head");
            assert!(n > 0, "connection closed inside the HTTP head: {:?}", String::from_utf8_lossy(&buf));
        }
    })
    .await
}

/// A test upstream that completes every upgrade by hand and hands the connection to
/// the test as a [`Raw`] (server side), except on `/sentinel`, which it serves as a
/// well-behaved echo.
struct RawUpstream {
    addr: SocketAddr,
    conns: mpsc::UnboundedReceiver<Raw>,
}

impl RawUpstream {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, conns) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(Self::serve(tcp, tx.clone()));
            }
        });
        Self { addr, conns }
    }

    async fn serve(mut tcp: TcpStream, tx: mpsc::UnboundedSender<Raw>) {
        let (head, rest) = read_head(&mut tcp).await;
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let key = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("sec-websocket-key"))
            .map(|(_, v)| v.trim().to_owned())
            .expect("the proxy sends a key");
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            accept_key(key.as_bytes())
        );
        tcp.write_all(answer.as_bytes()).await.unwrap();
        if path.starts_with("/sentinel") {
            let mut ws = WsStream::new(Transport::Plain(tcp), Role::Server, WsConfig::default(), rest.freeze());
            while let Ok(m) = ws.recv().await {
                if matches!(m, Message::Text(_) | Message::Binary(_)) && ws.send(m).await.is_err() {
                    break;
                }
            }
        } else {
            let _ = tx.send(Raw::new(tcp, rest, Role::Server));
        }
    }

    fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    async fn next(&mut self) -> Raw {
        within(self.conns.recv()).await.expect("upstream listener stopped")
    }
}

// ---------------------------------------------------------------------------------------
// The bystander
// ---------------------------------------------------------------------------------------

/// A well-behaved session opened before the hostile traffic and checked after it: no
/// other session may be disturbed, and the gateway must stay up and healthy.
struct Sentinel {
    ws: WsStream<Transport>,
    sent: usize,
}

impl Sentinel {
    async fn open(gw: &Gateway) -> Self {
        let mut s = Self { ws: ws_connect(&gw.ws("/sentinel")).await, sent: 0 };
        s.echo().await;
        s
    }

    async fn echo(&mut self) {
        self.sent += 1;
        let t = format!("sentinel {} — still here", self.sent);
        self.ws.send(Message::text(t.clone())).await.expect("sentinel send");
        assert_eq!(text(&recv(&mut self.ws).await), t, "the sentinel's echo");
        let b = Bytes::from(vec![self.sent as u8; 3000]);
        self.ws.send(Message::Binary(b.clone())).await.expect("sentinel send");
        assert_eq!(recv(&mut self.ws).await, Message::Binary(b), "the sentinel's binary echo");
    }

    async fn check(&mut self, gw: &mut Gateway) {
        assert!(gw.child.try_wait().unwrap().is_none(), "wsgate exited; stderr:\n{}", gw.logs());
        let health = reqwest::get(gw.api("/healthz")).await.unwrap();
        assert_eq!(health.status(), 200, "/healthz");
        self.echo().await;
        assert!(!gw.logs().contains("panicked"), "wsgate panicked; stderr:\n{}", gw.logs());
    }
}

// ---------------------------------------------------------------------------------------
// Roles
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Under {
    Mock,
    Proxy,
}

/// A gateway in `role` (the proxy in front of an echoing test upstream), with `args`.
async fn start(role: Under, args: &[&str]) -> (Gateway, Option<Upstream>) {
    match role {
        Under::Mock => (Gateway::mock(&[&["--echo"], args].concat()).await, None),
        Under::Proxy => {
            let up = Upstream::echo().await;
            let url = up.url();
            (Gateway::proxy(&[&["--upstream", url.as_str()], args].concat()).await, Some(up))
        }
    }
}

/// Sends each case on its own connection and expects its close code and the end of
/// the connection; then checks every case's session ended DISCONNECTED with that code
/// on record, and that the sentinel was not disturbed.
async fn run_cases(role: Under, cases: Vec<Case>) {
    let max = MAX.to_string();
    let (mut gw, _up) = start(role, &["--max-message-size", &max]).await;
    let mut sentinel = Sentinel::open(&gw).await;
    for (i, c) in cases.iter().enumerate() {
        let mut raw = Raw::client(gw.listen, &format!("/hostile/{i}")).await;
        raw.send(&c.bytes).await;
        // Through the proxy, a message-level violation is failed by the upstream and
        // its close relayed: for the proxy that is the upstream closing, so it waits
        // (up to its close timeout) for our reply, as RFC 6455 §7.1.2 has it.
        let answer = matches!(role, Under::Proxy) && c.endpoint_checks;
        raw.expect_close(c.code, answer, &format!("{role:?}: {}", c.name)).await;
    }
    let ended = eventually(|| async {
        let v = http_json(&gw.api("/api/sessions?limit=1000")).await;
        let hostile: Vec<_> = v["sessions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|s| s["path"].as_str().is_some_and(|p| p.starts_with("/hostile/")))
            .collect();
        (hostile.len() == cases.len() && hostile.iter().all(|s| s["state"] == "DISCONNECTED")).then_some(hostile)
    })
    .await;
    for s in ended {
        let i: usize = s["path"].as_str().unwrap()["/hostile/".len()..].parse().unwrap();
        assert_eq!(s["close"]["code"], cases[i].code, "{role:?}: {}: the recorded close code", cases[i].name);
    }
    sentinel.check(&mut gw).await;
}

#[tokio::test]
async fn mock_fails_framing_violations_with_1002_and_oversize_with_1009() {
    run_cases(Under::Mock, framing_cases(Peer::Client)).await;
}

#[tokio::test]
async fn proxy_fails_framing_violations_with_1002_and_oversize_with_1009() {
    run_cases(Under::Proxy, framing_cases(Peer::Client)).await;
}

#[tokio::test]
async fn mock_fails_invalid_utf8_with_1007() {
    run_cases(Under::Mock, utf8_cases(Peer::Client)).await;
}

#[tokio::test]
async fn proxy_fails_invalid_utf8_with_1007() {
    run_cases(Under::Proxy, utf8_cases(Peer::Client)).await;
}

#[tokio::test]
async fn mock_fails_reserved_close_codes_with_1002_and_answers_valid_ones() {
    run_cases(Under::Mock, close_code_cases(Peer::Client)).await;
}

#[tokio::test]
async fn proxy_fails_reserved_close_codes_with_1002_and_answers_valid_ones() {
    run_cases(Under::Proxy, close_code_cases(Peer::Client)).await;
}

/// Valid input that looks like the hostile cases (boundaries, a character split
/// between fragments, control frames between fragments) passes untouched: the checks
/// above are not over-eager.
#[tokio::test]
async fn near_misses_pass_in_both_roles() {
    for role in [Under::Mock, Under::Proxy] {
        let max = MAX.to_string();
        let (mut gw, _up) = start(role, &["--max-message-size", &max]).await;
        let mut sentinel = Sentinel::open(&gw).await;
        let mut raw = Raw::client(gw.listen, "/near-miss").await;
        let echoes = |f: &Frame, want: &[u8]| f.fin && f.payload == want;

        // A character split between fragments, with a 125-byte ping between them.
        raw.send(&[cf(TEXT, b"kappa \xce"), cf(FIN | PING, &[b'p'; 125])].concat()).await;
        let pong = raw.next_frame().await.unwrap();
        assert_eq!((pong.opcode, pong.payload.len()), (OpCode::Pong, 125), "{role:?}: 125-byte ping");
        raw.send(&cf(FIN | CONT, b"\xba")).await;
        let f = raw.next_frame().await.unwrap();
        assert!(f.opcode == OpCode::Text && echoes(&f, "kappa κ".as_bytes()), "{role:?}: split character: {f:?}");

        let exactly_max = vec![7u8; MAX];
        raw.send(&cf(FIN | BINARY, &exactly_max)).await;
        let f = raw.next_frame().await.unwrap();
        assert!(f.opcode == OpCode::Binary && echoes(&f, &exactly_max), "{role:?}: a message of exactly the limit");

        raw.send(&cf(FIN | PONG, b"unsolicited")).await;
        raw.send(&cf(FIN | TEXT, b"")).await;
        let f = raw.next_frame().await.unwrap();
        assert!(f.opcode == OpCode::Text && f.payload.is_empty(), "{role:?}: empty text after a pong: {f:?}");

        raw.send(&cf(FIN | CLOSE, b"")).await;
        let f = raw.next_frame().await.unwrap();
        assert_eq!(f.opcode, OpCode::Close, "{role:?}: empty close is answered");
        raw.expect_end(&format!("{role:?}: empty close")).await;
        sentinel.check(&mut gw).await;
    }
}

// ---------------------------------------------------------------------------------------
// A hostile upstream
// ---------------------------------------------------------------------------------------

/// The upstream breaks the protocol: the proxy fails the upstream with the RFC's code
/// and tells the client it is going away (1001); other sessions are not touched.
#[tokio::test]
async fn proxy_fails_a_hostile_upstream_and_tells_the_client_1001() {
    let mut up = RawUpstream::start().await;
    let max = MAX.to_string();
    let mut gw = Gateway::proxy(&["--upstream", &up.url(), "--max-message-size", &max]).await;
    let mut sentinel = Sentinel::open(&gw).await;
    let mut cases = framing_cases(Peer::Upstream);
    cases.extend(utf8_cases(Peer::Upstream));
    cases.extend(close_code_cases(Peer::Upstream).into_iter().filter(|c| c.code == 1002));
    for c in &cases {
        let what = format!("upstream: {}", c.name);
        let mut client = ws_connect(&gw.ws("/hostile")).await;
        let mut upstream = up.next().await;
        upstream.send(&c.bytes).await;
        if c.endpoint_checks {
            // Forwarded like any data frame: the client fails it, and the upstream
            // gets the client's code, relayed.
            match within(client.recv()).await {
                Err(WsError::Protocol(e)) => assert_eq!(e.close_code(), c.code, "{what}: the client's verdict"),
                other => panic!("{what}: the client should fail the connection, got {other:?}"),
            }
            within(client.flush_best_effort()).await;
            // The proxy relays the client's close and waits for our reply, as the
            // upstream's client should.
            upstream.expect_close(c.code, true, &what).await;
        } else {
            // The proxy fails the upstream itself (and closes its TCP at once), then
            // tells the client it is going away.
            upstream.expect_close(c.code, false, &what).await;
            let to_client = close_of(&recv(&mut client).await).unwrap_or_else(|| panic!("{what}: a close code"));
            assert_eq!(to_client.code, 1001, "{what}: the client's close ({:?})", to_client.reason);
        }
    }
    let s = gw.wait_sessions(|s| s.iter().filter(|x| x["state"] == "DISCONNECTED").count() == cases.len()).await;
    assert!(s.iter().all(|x| x["state"] != "CONNECTED" || x["path"] == "/sentinel"), "no session stuck CONNECTED");
    sentinel.check(&mut gw).await;
}

// ---------------------------------------------------------------------------------------
// Handshakes that never finish, and requests that are not upgrades
// ---------------------------------------------------------------------------------------

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(1);

/// What a client saw before the gateway hung up on it, and when.
struct HungUp {
    after: Duration,
    answer: Vec<u8>,
}

/// Sends `at_once`, then every `drip` one byte of `dripped` and after it of a header
/// that never ends, reading whatever comes back, until the gateway closes the
/// connection. Without `drip`, sends nothing more.
async fn drip(addr: SocketAddr, at_once: &[u8], dripped: &'static [u8], drip: Option<Duration>) -> HungUp {
    let started = Instant::now();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(at_once).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let mut pending = dripped;
    let run = async {
        loop {
            let next = pending.split_first();
            tokio::select! {
                r = tcp.read(&mut buf) => match r {
                    Ok(0) | Err(_) => return,
                    Ok(n) => answer.extend_from_slice(&buf[..n]),
                },
                // The deliberate slow drip of a slowloris client (not synchronisation).
                _ = tokio::time::sleep(drip.unwrap_or(Duration::MAX)), if drip.is_some() => {
                    let byte = next.map_or(b'a', |(b, _)| *b);
                    if tcp.write_all(&[byte]).await.is_err() {
                        // Reset: the gateway is gone; collect what it said first.
                        while let Ok(n @ 1..) = tcp.read(&mut buf).await {
                            answer.extend_from_slice(&buf[..n]);
                        }
                        return;
                    }
                    pending = next.map_or(b"", |(_, rest)| rest);
                }
            }
        }
    };
    let limit = HANDSHAKE_TIMEOUT + CLOSED_WITHIN;
    if tokio::time::timeout(limit, run).await.is_err() {
        panic!("a handshake that never finishes is still open after {limit:?}");
    }
    HungUp { after: started.elapsed(), answer }
}

/// Slowloris clients (one byte at a time, never finishing) and silent ones are cut at
/// the handshake timeout, each with a connection close (hyper answers a header-read
/// timeout by closing; a 408 would be accepted too); no session is ever opened for
/// them, and established sessions are not subject to the timeout.
async fn handshakes_that_never_finish(role: Under) {
    let timeout = format!("{}ms", HANDSHAKE_TIMEOUT.as_millis());
    let (mut gw, _up) = start(role, &["--handshake-timeout", &timeout]).await;
    let mut sentinel = Sentinel::open(&gw).await;
    const HEAD: &[u8] = b"GET /slow HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Drip: ";
    let every = Some(Duration::from_millis(50));
    let mut clients = JoinSet::new();
    for i in 0..30 {
        let addr = gw.listen;
        clients.spawn(async move {
            match i % 3 {
                // One byte at a time from the very first byte of the request line.
                0 => drip(addr, b"", HEAD, every).await,
                // The request line and headers at once, then a header that never ends.
                1 => drip(addr, HEAD, b"", every).await,
                // Connects and sends nothing.
                _ => drip(addr, b"", b"", None).await,
            }
        });
    }
    while let Some(r) = clients.join_next().await {
        let hung_up = r.unwrap();
        assert!(
            hung_up.after >= HANDSHAKE_TIMEOUT.mul_f32(0.9),
            "{role:?}: closed after {:?}, before the handshake timeout",
            hung_up.after
        );
        let answer = String::from_utf8_lossy(&hung_up.answer);
        assert!(
            hung_up.answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{role:?}: a timed-out handshake gets a close or a 408, got {answer:?}"
        );
    }
    // The sentinel has outlived the handshake timeout: it applies to handshakes only.
    sentinel.check(&mut gw).await;
    let s = http_json(&gw.api("/api/sessions?limit=1000")).await;
    let paths: Vec<_> = s["sessions"].as_array().unwrap().iter().map(|s| s["path"].clone()).collect();
    assert_eq!(paths, ["/sentinel"], "{role:?}: no session for handshakes that never finished");
}

#[tokio::test]
async fn mock_cuts_slowloris_and_silent_clients_at_the_handshake_timeout() {
    handshakes_that_never_finish(Under::Mock).await;
}

#[tokio::test]
async fn proxy_cuts_slowloris_and_silent_clients_at_the_handshake_timeout() {
    handshakes_that_never_finish(Under::Proxy).await;
}

/// A whole HTTP response: status, head, body (the gateway closes after it).
async fn http_exchange(addr: SocketAddr, request: &[u8]) -> (u16, String, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    // The gateway may answer (and close) before an oversized request is all written.
    let _ = tcp.write_all(request).await;
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    within(async {
        while let Ok(n @ 1..) = tcp.read(&mut buf).await {
            all.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    let text = String::from_utf8_lossy(&all).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP response: {text:?}"));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status");
    (status, head.to_ascii_lowercase(), body.to_owned())
}

/// A request that is not a (valid) upgrade and the answer it must get.
struct Refusal {
    what: &'static str,
    request: Vec<u8>,
    status: u16,
    /// A header the answer must carry (lowercase `name: value`).
    header: Option<&'static str>,
    /// wsgate's handler answers, with a body saying why (hyper's own refusals are bare).
    says_why: bool,
}

/// Requests that are not (valid) WebSocket upgrades get a clear 4xx, with a body
/// saying why when the request was HTTP at all, and the connection closed.
async fn not_upgrades(role: Under) {
    let (mut gw, _up) = start(role, &[]).await;
    let mut sentinel = Sentinel::open(&gw).await;
    let key = generate_key();
    let upgrade = |version: &str, key: Option<&str>| {
        let key = key.map(|k| format!("Sec-WebSocket-Key: {k}\r\n")).unwrap_or_default();
        format!(
            "GET /x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: {version}\r\n{key}\r\n"
        )
        .into_bytes()
    };
    let refusal = |what, request, status| Refusal { what, request, status, header: None, says_why: true };
    let cases = [
        Refusal {
            header: Some("upgrade: websocket"),
            ..refusal("plain GET", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 426)
        },
        refusal("POST", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}".to_vec(), 405),
        refusal("upgrade without a key", upgrade("13", None), 400),
        // RFC 6455 §4.2.2: a version the server does not speak gets an error (426) and
        // `Sec-WebSocket-Version` listing the versions it does.
        Refusal {
            header: Some("sec-websocket-version: 13"),
            ..refusal("unsupported version 8", upgrade("8", Some(&key)), 426)
        },
        // Not HTTP at all, or too much of it: hyper refuses before any handler runs.
        Refusal {
            says_why: false,
            ..refusal(
                "TLS ClientHello on the plain port",
                b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n".to_vec(),
                400,
            )
        },
        Refusal {
            says_why: false,
            ..refusal(
                "1 MiB of headers",
                [&b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: "[..], &vec![b'a'; 1 << 20], b"\r\n\r\n"].concat(),
                431,
            )
        },
    ];
    for c in cases {
        let what = c.what;
        let (status, head, body) = http_exchange(gw.listen, &c.request).await;
        assert_eq!(status, c.status, "{role:?}: {what}: {head}\n\n{body}");
        if c.says_why {
            assert!(body.contains("WebSocket client"), "{role:?}: {what}: the body says why: {body:?}");
        }
        if let Some(h) = c.header {
            assert!(head.contains(h), "{role:?}: {what}: header {h:?} in {head}");
        }
    }
    sentinel.check(&mut gw).await;
}

#[tokio::test]
async fn mock_answers_non_upgrades_with_a_clear_4xx() {
    not_upgrades(Under::Mock).await;
}

#[tokio::test]
async fn proxy_answers_non_upgrades_with_a_clear_4xx() {
    not_upgrades(Under::Proxy).await;
}

// ---------------------------------------------------------------------------------------
// Thousands of connections that vanish
// ---------------------------------------------------------------------------------------

/// Connections per wave, all open at once before they vanish together.
const WAVE: usize = 500;
/// Waves before the memory baseline: they fill the registry's ring of recently ended
/// sessions (1 000) and grow the allocator's arenas to the working size of a wave, both
/// of which legitimately stay. With fewer, the baseline is taken while the arenas are
/// still growing (by 1–3 MiB a wave through the proxy) and the margin below is eaten
/// by that growth rather than kept for a leak.
const WARMUP_WAVES: usize = 6;
/// Waves measured against the baseline: 3 000 connections.
const WAVES: usize = 6;
/// Time the gateway has to notice every vanished connection and give memory back.
const SETTLE: Duration = Duration::from_secs(20);
/// Open files the test process (and the gateway, which inherits the limit) may need:
/// through the proxy, a wave is 500 client and 500 upstream sockets on each side, and
/// a wave's sockets may still be closing while the next one opens. The workspace
/// lints forbid the `unsafe` a `setrlimit` call needs, so the limit is checked, not
/// raised: `scripts/test` raises it to the hard limit (`ulimit -n $(ulimit -Hn)`;
/// 20 000 on the test machines).
const FILES_NEEDED: u64 = 4096;

/// The soft `RLIMIT_NOFILE` of this process.
fn open_files_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("/proc/self/limits");
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("a Max open files line");
    let soft = line["Max open files".len()..].split_whitespace().next().expect("a soft limit");
    if soft == "unlimited" { u64::MAX } else { soft.parse().expect("a number") }
}

/// A `/proc/<pid>/status` field in KiB (`VmRSS`, `VmHWM`).
fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/<pid>/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Opens `WAVE` connections at once, each doing something different before it
/// vanishes without a close frame, and returns the gateway's RSS with all of them open.
async fn vanish_wave(gw: &Gateway, wave: usize) -> u64 {
    let mut set = JoinSet::new();
    for i in 0..WAVE {
        let addr = gw.listen;
        set.spawn(async move {
            let mut raw = Raw::client(addr, &format!("/vanish/{wave}/{i}")).await;
            match i % 4 {
                // A message echoed first.
                1 => {
                    raw.send(&cf(FIN | TEXT, b"hello")).await;
                    let f = within(raw.next_frame()).await.expect("echo");
                    assert_eq!(&f.payload[..], b"hello");
                }
                // A frame cut short: the header announces 32 KiB, 1 KiB arrives.
                2 => {
                    let mut partial = cf(FIN | BINARY, &[7; 32 * 1024]);
                    partial.truncate(8 + 1024);
                    raw.send(&partial).await;
                }
                // Half a fragmented message.
                3 => raw.send(&cf(TEXT, b"first half, ")).await,
                // Nothing after the handshake.
                _ => {}
            }
            (i, raw)
        });
    }
    let mut open = Vec::with_capacity(WAVE);
    while let Some(r) = within(set.join_next()).await {
        open.push(r.unwrap());
    }
    let rss = proc_kib(gw.pid(), "VmRSS");
    // Most reset (SO_LINGER 0); every fifth closes with a bare FIN. None sends a close frame.
    for (i, raw) in open {
        raw.vanish(i % 5 != 0);
    }
    rss
}

/// Waits (polling, with a deadline) until the sentinel is the only session not in a
/// final state.
async fn wait_only_sentinel_live(gw: &Gateway, what: &str) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let mut live = Vec::new();
        for state in ["REQUESTED", "CONNECTING", "CONNECTED"] {
            let v = http_json(&gw.api(&format!("/api/sessions?state={state}&limit=1000"))).await;
            live.extend(v["sessions"].as_array().unwrap().iter().map(|s| s["path"].clone()));
        }
        if live == ["/sentinel"] {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {} sessions still live after {SETTLE:?}", live.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every upstream-side connection of a vanished client ends (the proxy closes it).
async fn wait_upstream_ends(up: &mut Upstream, n: usize) {
    let mut ended = 0;
    tokio::time::timeout(SETTLE, async {
        while ended < n {
            if up.seen.recv().await.expect("upstream running") == Seen::Ended {
                ended += 1;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {ended} of {n} upstream connections ended within {SETTLE:?}"));
}

async fn vanishing_connections(role: Under) {
    let files = open_files_limit();
    assert!(files >= FILES_NEEDED, "open-file limit {files} < {FILES_NEEDED}: run `ulimit -n $(ulimit -Hn)` first");
    let (mut gw, mut up) = start(role, &[]).await;
    let pid = gw.pid();
    let mut sentinel = Sentinel::open(&gw).await;

    for wave in 0..WARMUP_WAVES {
        vanish_wave(&gw, wave).await;
    }
    wait_only_sentinel_live(&gw, "warm-up").await;
    if let Some(up) = up.as_mut() {
        wait_upstream_ends(up, WARMUP_WAVES * WAVE).await;
    }
    let baseline = proc_kib(pid, "VmRSS");

    let started = Instant::now();
    let mut peak = 0;
    for wave in WARMUP_WAVES..WARMUP_WAVES + WAVES {
        peak = peak.max(vanish_wave(&gw, wave).await);
    }
    wait_only_sentinel_live(&gw, "after the waves").await;
    if let Some(up) = up.as_mut() {
        wait_upstream_ends(up, WAVES * WAVE).await;
    }
    let settled_in = started.elapsed();

    // Every one of them ended DISCONNECTED (the registry keeps the last 1 000): a
    // vanished peer is an abnormal closure (1006) initiated by the client.
    let ended = http_json(&gw.api("/api/sessions?state=DISCONNECTED&limit=1000")).await;
    let ended = ended["sessions"].as_array().unwrap();
    assert_eq!(ended.len(), 1000, "{role:?}: recently ended sessions");
    for s in ended {
        assert!(s["path"].as_str().unwrap().starts_with("/vanish/"), "{role:?}: {s}");
        assert_eq!(s["close"]["code"], 1006, "{role:?}: {s}");
        assert_eq!(s["close"]["initiator"], "client", "{role:?}: {s}");
    }
    let failed = http_json(&gw.api("/api/sessions?state=FAILED&limit=1000")).await;
    assert_eq!(failed["sessions"].as_array().unwrap().len(), 0, "{role:?}: no session FAILED");

    // Memory comes back — as far as the allocator lets RSS show it. glibc keeps freed
    // memory in its per-thread arenas and returns pages only from the top of a heap,
    // so RSS stays near the most a wave ever needed, creeping up with fragmentation.
    // Measured once (gdb calling `malloc_stats()` after 9 000 proxied connections had
    // vanished): 2.2 MiB in use, 31 MiB held by the arenas, and `malloc_trim(0)` took
    // RSS below the baseline. Hence the warm-up waves before the baseline (the arenas
    // grow to a wave's working size) and the margin: 8 MiB or 25 % of the baseline,
    // whichever is larger. It still has teeth: a leak of 4 KiB per connection (tried:
    // `forget(vec![1u8; 4096])` in the mock's handler) overshoots it by about 5 MiB.
    let limit = baseline + (8 * 1024).max(baseline / 4);
    let deadline = Instant::now() + SETTLE;
    let after = loop {
        let rss = proc_kib(pid, "VmRSS");
        if rss <= limit || Instant::now() >= deadline {
            break rss;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let hwm = proc_kib(pid, "VmHWM");
    eprintln!(
        "{role:?}: {} connections vanished in {WAVES} waves of {WAVE}, all sessions ended in {settled_in:?}; \
         RSS KiB: baseline {baseline}, peak {peak} (VmHWM {hwm}), after {after}, limit {limit}",
        WAVES * WAVE
    );
    assert!(after <= limit, "{role:?}: RSS {after} KiB did not return near the baseline {baseline} KiB");
    sentinel.check(&mut gw).await;
}

#[tokio::test]
async fn mock_forgets_thousands_of_connections_that_vanish_without_a_close() {
    vanishing_connections(Under::Mock).await;
}

#[tokio::test]
async fn proxy_forgets_thousands_of_connections_that_vanish_without_a_close() {
    vanishing_connections(Under::Proxy).await;
}
