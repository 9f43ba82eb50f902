//! wsgate as a WebSocket *client* of servers no one here wrote: Python `websockets`,
//! Python `aiohttp`, Node `ws`, Go gorilla/websocket (all in tests/interop/servers,
//! installed by scripts/interop-setup) and tokio-tungstenite (in process, below).
//!
//! Each server × each way wsgate dials out is one test, so a failure names its cell
//! (the matrix in docs/interop.md):
//! - `proxy_upstream`: `wsgate proxy --upstream` dials the server; the harness's own
//!   client drives the proxy.
//! - `outbound`: `POST /api/connections`, `/send`, `DELETE` with a code; what wsgate
//!   received is read back from the session's message log.
//! - `connect_cli`: `wsgate connect` with stdin piped, closing with `--close-code` and
//!   `--close-reason` (it cannot send one message larger than a read of stdin: noted
//!   in docs/interop.md).
//!
//! Every server reports what it saw as JSON lines (`ready`, then per connection
//! `open`, `message`, `close`, `end`), so each check is made from both ends.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite as tt;
use wsgate_protocol::{CloseFrame, ConnectRequest, Message, Role, Transport, WsConfig, WsStream};

use crate::support::*;

/// The subprotocols every server knows; the tests offer an unknown one first, so the
/// server has to pick.
const KNOWN: [&str; 2] = ["wsgate.v1", "wsgate.v2"];
const OFFER: [&str; 2] = ["nope.v0", "wsgate.v1"];
const TEXT: &str = "héllo ✓";
/// Non-ASCII on purpose: the reason is UTF-8 on the wire.
const REASON: &str = "interop done ✓";
const CODE: u16 = 4001;
/// The servers print payloads up to this size (larger ones: size only).
const SHOWN: usize = 1024;
/// Building the Go server from a cold cache, or starting an interpreter on a
/// loaded 2-core machine, takes longer than the harness's usual wait.
const START: Duration = Duration::from_secs(120);

fn small() -> Vec<u8> {
    (0..=255).collect()
}

/// 1 MiB that is not one repeated byte, so a shifted or truncated echo shows.
fn big(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ (i >> 12) as u8).collect()
}

fn script(name: &str) -> String {
    format!("{}/../../tests/interop/servers/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    PyWebsockets,
    PyAiohttp,
    NodeWs,
    Gorilla,
    Tungstenite,
}

/// A running third-party echo server and the events it reports.
struct Server {
    name: &'static str,
    port: u16,
    events: mpsc::UnboundedReceiver<Value>,
    stderr: Option<PathBuf>,
    _child: Option<Child>,
    _dir: TempDir,
}

impl Server {
    async fn start(kind: Kind) -> Self {
        let dir = TempDir::new();
        let python = || std::env::var("WSGATE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let (name, program, args) = match kind {
            Kind::PyWebsockets => ("python websockets", python(), vec![script("py_websockets.py")]),
            Kind::PyAiohttp => ("python aiohttp", python(), vec![script("py_aiohttp.py")]),
            Kind::NodeWs => ("node ws", "node".to_owned(), vec![script("node_ws.mjs")]),
            Kind::Gorilla => ("go gorilla/websocket", build_gorilla(&dir).await, vec![]),
            Kind::Tungstenite => return Self::tungstenite(dir).await,
        };
        let stderr = dir.0.join("server.stderr");
        let mut child = Command::new(&program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot run {program} {args:?} ({e}): run scripts/interop-setup"));
        let (tx, events) = mpsc::unbounded_channel();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let v = serde_json::from_str(&line).unwrap_or_else(|_| json!({"event": "unparsed", "line": line}));
                let _ = tx.send(v);
            }
            let _ = tx.send(json!({"event": "exit"}));
        });
        let mut server = Self { name, port: 0, events, stderr: Some(stderr), _child: Some(child), _dir: dir };
        let ready = server.expect_within("ready", START).await;
        server.port = ready["port"].as_u64().and_then(|p| u16::try_from(p).ok()).expect("a port in the ready line");
        server
    }

    /// tokio-tungstenite, served by a task of this test's runtime, reporting the same
    /// events as the external servers.
    async fn tungstenite(dir: TempDir) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            for conn in 1u64.. {
                let Ok((tcp, _)) = listener.accept().await else { return };
                tokio::spawn(tungstenite_connection(tcp, conn, tx.clone()));
            }
        });
        Self { name: "tokio-tungstenite", port, events, stderr: None, _child: None, _dir: dir }
    }

    fn url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }

    fn stderr(&self) -> String {
        self.stderr.as_ref().map(|p| std::fs::read_to_string(p).unwrap_or_default()).unwrap_or_default()
    }

    async fn expect(&mut self, event: &str) -> Value {
        self.expect_within(event, WAIT).await
    }

    /// The next event, which must be `event`. Only `end` (a finished connection) is
    /// passed over: everything else the server reports is in a fixed order.
    async fn expect_within(&mut self, event: &str, wait: Duration) -> Value {
        loop {
            let next = tokio::time::timeout(wait, self.events.recv()).await;
            let v = match next {
                Ok(Some(v)) => v,
                Ok(None) => panic!("{}: event channel closed while waiting for {event}", self.name),
                Err(_) => panic!("{}: no {event} within {wait:?}; stderr:\n{}", self.name, self.stderr()),
            };
            if v["event"] == event {
                return v;
            }
            if v["event"] != "end" {
                panic!("{}: expected {event}, got {v}; stderr:\n{}", self.name, self.stderr());
            }
        }
    }

    async fn expect_open(&mut self, path: &str, subprotocol: Option<&str>) {
        let v = self.expect("open").await;
        assert_eq!(v["path"], path, "{}: the path the server saw", self.name);
        assert_eq!(v["subprotocol"], json!(subprotocol), "{}: the subprotocol the server picked", self.name);
    }

    /// A message the server received: its type, size and (when small) its payload.
    async fn expect_message(&mut self, binary: bool, payload: &[u8]) {
        let v = self.expect("message").await;
        let what = format!("{}: message {v}", self.name);
        assert_eq!(v["type"], if binary { "binary" } else { "text" }, "{what}");
        assert_eq!(v["size"].as_u64(), Some(payload.len() as u64), "{what}");
        if payload.len() <= SHOWN {
            let seen = if binary { v["hex"].as_str().map(hex_decode) } else { v["text"].as_str().map(|t| t.into()) };
            assert_eq!(seen.as_deref(), Some(payload), "{what}");
        }
    }

    async fn expect_close(&mut self, code: u16, reason: &str) {
        let v = self.expect("close").await;
        assert_eq!((v["code"].as_u64(), v["reason"].as_str()), (Some(code.into()), Some(reason)), "{}: {v}", self.name);
    }
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

/// Builds the gorilla server with Debian's GOPATH into this test's directory.
async fn build_gorilla(dir: &TempDir) -> String {
    let out = dir.0.join("gorilla-echo");
    let src = format!("{}/../../tests/interop/servers/gorilla", env!("CARGO_MANIFEST_DIR"));
    let mut go = Command::new("go");
    go.args(["build", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(&src)
        .env("GOPATH", "/usr/share/gocode")
        .env("GO111MODULE", "off")
        .kill_on_drop(true);
    // go refuses to build without a cache directory, which it finds through HOME; CI
    // environments without one get a shared one in the temp dir.
    if ["GOCACHE", "XDG_CACHE_HOME", "HOME"].iter().all(|v| std::env::var_os(v).is_none()) {
        go.env("GOCACHE", std::env::temp_dir().join("wsgate-it-gocache"));
    }
    let build = go.output();
    let build = tokio::time::timeout(START, build)
        .await
        .expect("go build timed out")
        .unwrap_or_else(|e| panic!("cannot run go ({e}): run scripts/interop-setup"));
    assert!(
        build.status.success(),
        "go build of {src} failed (scripts/interop-setup installs golang-github-gorilla-websocket-dev):\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    out.display().to_string()
}

/// One tokio-tungstenite connection: the subprotocol picked in the handshake
/// callback, then echo until the close (tungstenite answers it with the same frame).
async fn tungstenite_connection(tcp: tokio::net::TcpStream, conn: u64, tx: mpsc::UnboundedSender<Value>) {
    use tt::handshake::server::{Request, Response};
    use tt::http::{HeaderValue, header::SEC_WEBSOCKET_PROTOCOL};
    let report = |v: Value| {
        let _ = tx.send(v);
    };
    let mut path = String::new();
    let mut picked: Option<String> = None;
    // The error type is tungstenite's (`ErrorResponse`), which this callback never returns.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, mut res: Response| {
        path = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
        picked = req
            .headers()
            .get_all(SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(',').map(str::trim))
            .find(|p| KNOWN.contains(p))
            .map(str::to_owned);
        if let Some(p) = &picked {
            res.headers_mut().insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_str(p).expect("a token"));
        }
        Ok(res)
    };
    let mut ws = match tokio_tungstenite::accept_hdr_async(tcp, callback).await {
        Ok(ws) => ws,
        Err(e) => return report(json!({"event": "refused", "error": e.to_string()})),
    };
    report(json!({"event": "open", "conn": conn, "path": path, "subprotocol": picked}));
    while let Some(msg) = ws.next().await {
        let echo = match msg {
            Ok(tt::Message::Text(t)) => {
                let mut v = json!({"event": "message", "conn": conn, "type": "text", "size": t.len()});
                if t.len() <= SHOWN {
                    v["text"] = json!(t.as_str());
                }
                report(v);
                tt::Message::Text(t)
            }
            Ok(tt::Message::Binary(b)) => {
                let mut v = json!({"event": "message", "conn": conn, "type": "binary", "size": b.len()});
                if b.len() <= SHOWN {
                    v["hex"] = json!(b.iter().map(|x| format!("{x:02x}")).collect::<String>());
                }
                report(v);
                tt::Message::Binary(b)
            }
            Ok(tt::Message::Close(frame)) => {
                let (code, reason) =
                    frame.map(|f| (u16::from(f.code), f.reason.to_string())).unwrap_or((1005, String::new()));
                report(json!({"event": "close", "conn": conn, "code": code, "reason": reason}));
                // The reply is queued; reading on sends it and ends the stream.
                continue;
            }
            Ok(_) => continue,
            Err(e) => {
                report(json!({"event": "error", "conn": conn, "message": e.to_string()}));
                break;
            }
        };
        if ws.send(echo).await.is_err() {
            break;
        }
    }
    report(json!({"event": "end", "conn": conn}));
}

// ---- wsgate proxy --upstream SERVER ----

/// Connects through the proxy offering `subprotocols`; returns the stream and what
/// the proxy answered (the upstream's choice, relayed).
async fn dial(url: &str, subprotocols: &[&str]) -> (WsStream<Transport>, Option<String>) {
    let mut req = ConnectRequest::new(url.parse().unwrap());
    req.subprotocols = subprotocols.iter().map(|s| s.to_string()).collect();
    let c = within(wsgate_protocol::connect(req)).await.expect("connect through the proxy");
    (WsStream::new(c.transport, Role::Client, WsConfig::default(), c.leftover), c.subprotocol)
}

async fn round_trip(ws: &mut WsStream<Transport>, server: &mut Server, msg: Message) {
    let (binary, payload) = match &msg {
        Message::Text(b) => (false, b.clone()),
        Message::Binary(b) => (true, b.clone()),
        other => panic!("not a data message: {other:?}"),
    };
    within(ws.send(msg.clone())).await.expect("send");
    server.expect_message(binary, &payload).await;
    let echo = recv(ws).await;
    // Compared without Debug-printing a 1 MiB payload on failure.
    assert!(echo == msg, "{}: echo differs: got {} bytes of {:?}", server.name, payload.len(), kind_of(&echo));
}

fn kind_of(m: &Message) -> String {
    match m {
        Message::Text(b) => format!("text ({} bytes)", b.len()),
        Message::Binary(b) => format!("binary ({} bytes)", b.len()),
        other => format!("{other:?}"),
    }
}

async fn proxy_upstream(kind: Kind) {
    let mut server = Server::start(kind).await;
    let gw = Gateway::proxy(&["--upstream", &server.url("")]).await;

    let (mut ws, sub) = dial(&gw.ws("/interop?role=proxy"), &OFFER).await;
    assert_eq!(sub.as_deref(), Some("wsgate.v1"), "{}: the subprotocol relayed to the client", server.name);
    server.expect_open("/interop?role=proxy", Some("wsgate.v1")).await;
    round_trip(&mut ws, &mut server, Message::text(TEXT)).await;
    round_trip(&mut ws, &mut server, Message::Binary(small().into())).await;
    round_trip(&mut ws, &mut server, Message::Binary(big(1 << 20).into())).await;
    within(ws.send(Message::Close(Some(CloseFrame::new(CODE, REASON))))).await.unwrap();
    server.expect_close(CODE, REASON).await;
    assert_eq!(
        close_of(&recv(&mut ws).await),
        Some(CloseFrame::new(CODE, REASON)),
        "{}: the server's reply",
        server.name
    );

    let (mut ws, sub) = dial(&gw.ws("/plain"), &[]).await;
    assert_eq!(sub, None);
    server.expect_open("/plain", None).await;
    round_trip(&mut ws, &mut server, Message::text(TEXT)).await;
    within(ws.close(1000, "")).await.unwrap();
    server.expect_close(1000, "").await;

    let sessions = gw.wait_sessions(|s| s.iter().filter(|x| x["state"] == "DISCONNECTED").count() == 2).await;
    let first = sessions.iter().find(|s| s["path"] == "/interop?role=proxy").expect("the first session");
    assert_eq!(first["subprotocol"], "wsgate.v1", "{first}");
    assert_eq!(first["close"], json!({"code": CODE, "reason": REASON, "initiator": "client"}), "{first}");
    assert_eq!((first["messages_in"].as_u64(), first["messages_out"].as_u64()), (Some(4), Some(4)), "{first}");
    let second = sessions.iter().find(|s| s["path"] == "/plain").expect("the second session");
    assert!(second["subprotocol"].is_null(), "{second}");
    assert_eq!(second["close"]["code"], 1000, "{second}");
}

// ---- POST /api/connections ----

async fn open_connection(gw: &Gateway, body: Value) -> String {
    let res = client().post(gw.api("/api/connections")).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    v["id"].as_str().unwrap().to_owned()
}

async fn send(gw: &Gateway, id: &str, body: &Value) -> u16 {
    let res = client().post(gw.api(&format!("/api/connections/{id}/send"))).json(body).send().await.unwrap();
    res.status().as_u16()
}

async fn close_connection(gw: &Gateway, id: &str, code: u16, reason: &str) {
    let url = gw.api(&format!("/api/connections/{id}"));
    let res = client().delete(url).json(&json!({"code": code, "reason": reason})).send().await.unwrap();
    assert_eq!(res.status(), 202);
}

/// The session once `pred` holds for it.
async fn session_until(gw: &Gateway, id: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let last = Arc::new(Mutex::new(Value::Null));
    let found = tokio::time::timeout(WAIT, async {
        loop {
            let s = http_json(&gw.api(&format!("/api/sessions/{id}"))).await;
            if pred(&s) {
                return s;
            }
            *last.lock().unwrap() = s;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| {
        panic!("session {id}: condition not met within {WAIT:?}; last seen: {}", last.lock().unwrap())
    })
}

/// The session's message log, once it holds `n` entries.
async fn messages(gw: &Gateway, id: &str, n: usize) -> Vec<Value> {
    eventually(|| async {
        let v = http_json(&gw.api(&format!("/api/sessions/{id}/messages?limit=1000"))).await;
        let list = v["messages"].as_array().cloned().unwrap_or_default();
        (list.len() >= n).then_some(list)
    })
    .await
}

/// What one logged data message carried, asserting it was stored whole.
fn logged_payload(m: &Value) -> (String, Vec<u8>) {
    assert!(m.get("truncated").is_none(), "stored whole (--store-payload-cap): {}", m["size"]);
    let payload = match (m["text"].as_str(), m["base64"].as_str()) {
        (Some(t), _) => t.as_bytes().to_vec(),
        (_, Some(b)) => BASE64.decode(b).expect("base64"),
        _ => Vec::new(),
    };
    (m["dir"].as_str().unwrap_or_default().to_owned(), payload)
}

async fn outbound(kind: Kind) {
    let mut server = Server::start(kind).await;
    // The log keeps whole payloads, so the echoes are compared byte for byte.
    let gw = Gateway::spawn("serve", &["--store-payload-cap", "2097152"], &[]).await;

    let url = server.url("/interop?role=outbound");
    let id = open_connection(&gw, json!({"url": url, "subprotocols": OFFER})).await;
    let s = session_until(&gw, &id, |s| s["state"] != "REQUESTED" && s["state"] != "CONNECTING").await;
    assert_eq!(s["state"], "CONNECTED", "{}: {s}", server.name);
    assert_eq!(s["subprotocol"], "wsgate.v1", "{s}");
    server.expect_open("/interop?role=outbound", Some("wsgate.v1")).await;

    let large = big(1 << 20);
    assert_eq!(send(&gw, &id, &json!({"text": TEXT})).await, 202);
    server.expect_message(false, TEXT.as_bytes()).await;
    assert_eq!(send(&gw, &id, &json!({"base64": BASE64.encode(small())})).await, 202);
    server.expect_message(true, &small()).await;
    assert_eq!(send(&gw, &id, &json!({"base64": BASE64.encode(&large)})).await, 202);
    server.expect_message(true, &large).await;

    // What wsgate sent and what came back, in order, each stored whole.
    let log = messages(&gw, &id, 6).await;
    let data: Vec<(String, Vec<u8>)> = log.iter().filter(|m| m["type"] != "close").map(logged_payload).collect();
    let expected: Vec<(String, Vec<u8>)> = [TEXT.as_bytes().to_vec(), small(), large.clone()]
        .into_iter()
        .flat_map(|p| [("client_to_upstream".to_owned(), p.clone()), ("upstream_to_client".to_owned(), p)])
        .collect();
    assert!(
        data == expected,
        "{}: logged {:?}",
        server.name,
        data.iter().map(|(d, p)| (d.as_str(), p.len())).collect::<Vec<_>>()
    );

    close_connection(&gw, &id, CODE, REASON).await;
    server.expect_close(CODE, REASON).await;
    let s = session_until(&gw, &id, |s| s["live"] == false && s["state"] == "DISCONNECTED").await;
    assert_eq!(s["close"], json!({"code": CODE, "reason": REASON, "initiator": "admin"}), "{}: {s}", server.name);
    // The server's answer to the close is in the log: same code, same reason.
    let log = messages(&gw, &id, 8).await;
    let closes: Vec<(&str, Option<u64>, Option<&str>)> = log
        .iter()
        .filter(|m| m["type"] == "close")
        .map(|m| (m["dir"].as_str().unwrap_or_default(), m["code"].as_u64(), m["reason"].as_str()))
        .collect();
    assert_eq!(
        closes,
        [
            ("client_to_upstream", Some(CODE.into()), Some(REASON)),
            ("upstream_to_client", Some(CODE.into()), Some(REASON))
        ],
        "{}",
        server.name
    );

    // No subprotocol offered: none is picked.
    let id = open_connection(&gw, json!({"url": server.url("/plain")})).await;
    let s = session_until(&gw, &id, |s| s["state"] == "CONNECTED").await;
    assert!(s["subprotocol"].is_null(), "{s}");
    server.expect_open("/plain", None).await;
    assert_eq!(send(&gw, &id, &json!({"text": TEXT})).await, 202);
    server.expect_message(false, TEXT.as_bytes()).await;
    close_connection(&gw, &id, 1000, "").await;
    server.expect_close(1000, "").await;
    let s = session_until(&gw, &id, |s| s["live"] == false && s["state"] == "DISCONNECTED").await;
    assert_eq!(s["close"]["code"], 1000, "{s}");
}

// ---- wsgate connect ----

/// Runs `wsgate connect --json ARGS`, writes `stdin` to it, and ends its stdin (which
/// makes it close with 1000 at once, `--wait` being 0) only once `echoed` payload
/// bytes have come back. Ending stdin right after writing would race the echo against
/// the close: a server that reads our close before it has echoed the last message
/// answers the close and drops the echo (`websockets` does, as RFC 6455 lets it).
/// Returns the exit code, the JSON events printed, and stderr.
async fn run_connect(args: &[&str], stdin: Vec<u8>, echoed: usize) -> (i32, Vec<Value>, String) {
    let mut child = Command::new(bin())
        .arg("connect")
        .args(args)
        .arg("--json")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let (echoes_in, all_back) = tokio::sync::oneshot::channel::<()>();
    // Written while the output is read, so neither side can fill a pipe and stall.
    let writer = tokio::spawn(async move {
        let _ = input.write_all(&stdin).await;
        let _ = all_back.await;
    });
    let mut stderr = child.stderr.take().unwrap();
    let errors = tokio::spawn(async move {
        let mut buf = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut buf).await;
        buf
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut events = Vec::new();
    let mut echoes_in = Some(echoes_in);
    let mut back = 0;
    let read = async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            let event: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON event ({e}): {line}"));
            back += received(std::slice::from_ref(&event)).iter().map(|(_, p)| p.len()).sum::<usize>();
            events.push(event);
            if back >= echoed
                && let Some(tx) = echoes_in.take()
            {
                let _ = tx.send(());
            }
        }
    };
    let status = tokio::time::timeout(WAIT, async {
        read.await;
        child.wait().await
    })
    .await;
    if status.is_err() {
        // Stuck: end it, so its stderr can be read for the message below.
        let _ = child.start_kill();
    }
    let err = within(errors).await.unwrap();
    let status =
        status.unwrap_or_else(|_| panic!("wsgate connect did not end; {back} of {echoed} bytes back; stderr:\n{err}"));
    writer.abort();
    (status.unwrap().code().unwrap_or(-1), events, err)
}

fn lifecycle<'a>(events: &'a [Value], state: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["type"] == "lifecycle" && e["state"] == state)
        .unwrap_or_else(|| panic!("no {state} in {events:?}"))
}

/// The payloads of the messages `wsgate connect` printed.
fn received(events: &[Value]) -> Vec<(bool, Vec<u8>)> {
    events
        .iter()
        .filter(|e| e["type"] == "message")
        .map(|e| match (e["text"].as_str(), e["base64"].as_str()) {
            (Some(t), _) => (false, t.as_bytes().to_vec()),
            (_, Some(b)) => (true, BASE64.decode(b).expect("base64")),
            _ => panic!("message without a payload: {e}"),
        })
        .collect()
}

async fn connect_role(kind: Kind) {
    let mut server = Server::start(kind).await;

    // Text from stdin lines, offering subprotocols.
    let url = server.url("/interop?role=connect");
    let code = CODE.to_string();
    let args = [
        url.as_str(),
        "--subprotocol",
        OFFER[0],
        "--subprotocol",
        OFFER[1],
        "--close-code",
        &code,
        "--close-reason",
        REASON,
    ];
    let (code, events, err) = run_connect(&args, format!("{TEXT}\n").into(), TEXT.len()).await;
    assert_eq!(code, 0, "{}: {err}", server.name);
    assert_eq!(lifecycle(&events, "CONNECTED")["subprotocol"], "wsgate.v1");
    assert_eq!(received(&events), [(false, TEXT.as_bytes().to_vec())]);
    // The close it reports is the server's answer to its --close-code/--close-reason.
    let end = lifecycle(&events, "DISCONNECTED");
    assert_eq!(
        (end["close_code"].as_u64(), end["close_reason"].as_str(), end["initiator"].as_str()),
        (Some(u64::from(CODE)), Some(REASON), Some("client")),
        "{}: {end}",
        server.name
    );
    server.expect_open("/interop?role=connect", Some("wsgate.v1")).await;
    server.expect_message(false, TEXT.as_bytes()).await;
    server.expect_close(CODE, REASON).await;

    // Binary (--binary: one message per read of stdin); no subprotocol offered.
    let (code, events, err) = run_connect(&[&server.url("/bin"), "--binary"], small(), 256).await;
    assert_eq!(code, 0, "{}: {err}", server.name);
    assert!(lifecycle(&events, "CONNECTED")["subprotocol"].is_null(), "{events:?}");
    assert_eq!(received(&events), [(true, small())]);
    server.expect_open("/bin", None).await;
    server.expect_message(true, &small()).await;
    server.expect_close(1000, "").await;

    // 1 MiB through stdin arrives as several messages (each read of the pipe, at most
    // 64 KiB); all of it comes back in order.
    let payload = big(1 << 20);
    let (code, events, err) = run_connect(&[&server.url("/big"), "--binary"], payload.clone(), payload.len()).await;
    assert_eq!(code, 0, "{}: {err}", server.name);
    let back = received(&events);
    assert!(back.iter().all(|(binary, _)| *binary));
    let joined: Vec<u8> = back.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    assert!(joined == payload, "{}: {} bytes came back in {} messages", server.name, joined.len(), back.len());
    server.expect_open("/big", None).await;
    let mut seen = 0;
    for (_, part) in &back {
        server.expect_message(true, part).await;
        seen += part.len();
    }
    assert_eq!(seen, payload.len());
    server.expect_close(1000, "").await;
}

/// One test per server × role, named `interop_servers::<server>::<role>`.
macro_rules! cells {
    ($($server:ident => $kind:expr;)*) => {$(
        mod $server {
            use super::*;

            #[tokio::test]
            async fn proxy_upstream() {
                super::proxy_upstream($kind).await
            }

            #[tokio::test]
            async fn outbound() {
                super::outbound($kind).await
            }

            #[tokio::test]
            async fn connect_cli() {
                super::connect_role($kind).await
            }
        }
    )*};
}

cells! {
    py_websockets => Kind::PyWebsockets;
    py_aiohttp => Kind::PyAiohttp;
    node_ws => Kind::NodeWs;
    gorilla => Kind::Gorilla;
    tungstenite => Kind::Tungstenite;
}
