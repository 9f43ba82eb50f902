//! The harness: scripted upstream servers, the gateway process, clients.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::process::{Child, Command};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use wsgate_protocol::handshake::{into_transport, offered_subprotocols, switching_protocols, validate_upgrade};
use wsgate_protocol::{CloseFrame, ConnectRequest, Message, Role, Transport, WsConfig, WsStream};

pub const WAIT: Duration = Duration::from_secs(10);

/// Awaits with the harness deadline, so a broken test fails instead of hanging.
pub async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(WAIT, f).await.expect("timed out waiting")
}

/// What a test upstream saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    Connected { path: String, headers: HeaderMap },
    Message(Message),
    Ended,
}

/// How a test upstream behaves.
#[derive(Clone, Default)]
pub struct UpstreamOpts {
    /// Subprotocols it accepts (the first one the client offers that is in this list).
    pub accept_protocols: Vec<String>,
    /// Refuse every upgrade with this status and body.
    pub reject: Option<(u16, &'static str)>,
    /// Hold every upgrade until notified.
    pub hold: Option<Arc<Notify>>,
    /// Sent right after the upgrade.
    pub greeting: Option<String>,
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// A scripted upstream: echoes text and binary; `close:CODE:REASON` makes it close.
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: mpsc::UnboundedReceiver<Seen>,
}

impl Upstream {
    pub async fn start(opts: UpstreamOpts) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let opts = opts.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let transport = match &opts.tls {
                        None => Transport::Plain(tcp),
                        Some(cfg) => match tokio_rustls::TlsAcceptor::from(cfg.clone()).accept(tcp).await {
                            Ok(s) => Transport::Tls(Box::new(s.into())),
                            Err(_) => return,
                        },
                    };
                    let svc = hyper::service::service_fn(move |req| upgrade(req, opts.clone(), tx.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(transport), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Self { addr, seen: rx }
    }

    pub async fn echo() -> Self {
        Self::start(UpstreamOpts::default()).await
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// The next thing seen, skipping nothing.
    pub async fn next(&mut self) -> Seen {
        within(self.seen.recv()).await.expect("upstream channel closed")
    }

    /// The next message (skipping connection records).
    pub async fn next_message(&mut self) -> Message {
        loop {
            if let Seen::Message(m) = self.next().await {
                return m;
            }
        }
    }

    pub async fn next_connection(&mut self) -> (String, HeaderMap) {
        loop {
            if let Seen::Connected { path, headers } = self.next().await {
                return (path, headers);
            }
        }
    }
}

async fn upgrade(
    mut req: hyper::Request<Incoming>,
    opts: UpstreamOpts,
    tx: mpsc::UnboundedSender<Seen>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let _ = tx.send(Seen::Connected { path, headers: req.headers().clone() });
    if let Some(hold) = &opts.hold {
        hold.notified().await;
    }
    if let Some((status, body)) = opts.reject {
        let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        r.headers_mut().insert("content-type", HeaderValue::from_static("text/plain"));
        return Ok(r);
    }
    let key = validate_upgrade(req.method(), req.headers()).expect("valid upgrade from the proxy");
    let chosen = offered_subprotocols(req.headers()).into_iter().find(|p| opts.accept_protocols.contains(p));
    let on = hyper::upgrade::on(&mut req);
    let greeting = opts.greeting.clone();
    tokio::spawn(async move {
        let Ok(up) = on.await else { return };
        let (io, left) = into_transport(up).expect("our transport");
        let mut ws = WsStream::new(io, Role::Server, WsConfig::default(), left);
        if let Some(g) = greeting {
            let _ = ws.send(Message::text(g)).await;
        }
        while let Ok(m) = ws.recv().await {
            let _ = tx.send(Seen::Message(m.clone()));
            match m {
                Message::Text(t) if t.starts_with(b"close:") => {
                    let s = String::from_utf8_lossy(&t).into_owned();
                    let mut it = s.splitn(3, ':').skip(1);
                    let code = it.next().and_then(|c| c.parse().ok()).unwrap_or(1000);
                    let reason = it.next().unwrap_or("").to_owned();
                    let _ = tokio::time::timeout(WAIT, ws.close(code, &reason)).await;
                    break;
                }
                Message::Text(_) | Message::Binary(_) if ws.send(m.clone()).await.is_err() => break,
                Message::Close(_) => {
                    let _ = ws.flush().await;
                    break;
                }
                _ => {}
            }
        }
        // A protocol error leaves our close frame (1002, 1007, 1009) queued: send it,
        // as a real server does, so the proxy has a code to relay.
        let _ = tokio::time::timeout(WAIT, ws.flush_best_effort()).await;
        let _ = tx.send(Seen::Ended);
    });
    Ok(switching_protocols(&key, chosen.as_deref()).map(|_| Full::new(Bytes::new())))
}

/// A running `wsgate` process.
pub struct Gateway {
    pub child: Child,
    pub listen: SocketAddr,
    pub control: SocketAddr,
    pub stderr: PathBuf,
    _dir: TempDir,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_wsgate")
}

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let p = std::env::temp_dir().join(format!("wsgate-it-{}-{}", std::process::id(), fastrand_id()));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fastrand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed) * 7919
        + std::time::SystemTime::now().elapsed().map(|d| d.as_nanos() as u64).unwrap_or(0)
}

impl Gateway {
    /// Starts `wsgate proxy` with `args` (plus loopback ports 0 unless given) and waits
    /// for its ready line.
    pub async fn proxy(args: &[&str]) -> Self {
        Self::spawn("proxy", args, &[]).await
    }

    pub async fn spawn(sub: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = TempDir::new();
        let stderr = dir.0.join("stderr.log");
        let mut cmd = Command::new(bin());
        cmd.arg(sub);
        // The listen address comes from `--listen`, websocket-multiplex's PORT, or
        // websocket-relay's config file (`--config-file`) when a test gives one.
        let listen_given = args.iter().any(|a| matches!(*a, "--listen" | "--config-file"));
        if !listen_given && !env.iter().any(|(k, _)| *k == "PORT") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        if !args.contains(&"--control") {
            cmd.args(["--control", "127.0.0.1:0"]);
        }
        // Its own working directory: the default store (./wsgate.db) is per gateway.
        cmd.args(args)
            .current_dir(&dir.0)
            .kill_on_drop(true)
            .env("RUST_LOG", "wsgate=debug,info")
            // After the default, so a test can ask for more (or less).
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .stdin(Stdio::null());
        let mut child = cmd.spawn().expect("spawn wsgate");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = match tokio::time::timeout(WAIT, lines.next_line()).await {
            Ok(Ok(Some(l))) => l,
            other => panic!(
                "wsgate did not start ({other:?}); stderr:\n{}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            ),
        };
        let field = |name: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
                .parse()
                .unwrap()
        };
        let control = field("control");
        // `wsgate serve` with no routes and no config file has no listener: its ready line names only
        // the control plane.
        let listen = if line.contains("listen=") { field("listen") } else { control };
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { child, listen, control, stderr, _dir: dir }
    }

    /// `wsgate mock` with `args` (plus loopback ports 0), once ready.
    pub async fn mock(args: &[&str]) -> Self {
        Self::spawn("mock", args, &[]).await
    }

    /// The process id (for reading `/proc/<pid>/status`).
    pub fn pid(&self) -> u32 {
        self.child.id().expect("wsgate is running")
    }

    pub fn ws(&self, path: &str) -> String {
        format!("ws://{}{}", self.listen, path)
    }

    pub fn api(&self, path: &str) -> String {
        format!("http://{}{}", self.control, path)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Kills the process with SIGKILL (a crash) and waits for it to be gone.
    pub async fn kill9(&mut self) {
        let pid = self.child.id().expect("running").to_string();
        std::process::Command::new("kill").args(["-KILL", &pid]).status().unwrap();
        let _ = within(self.child.wait()).await;
    }

    /// The gateway's working directory (where the default store file goes).
    pub fn dir(&self) -> &std::path::Path {
        &self._dir.0
    }

    /// Sends SIGTERM and waits for the exit code.
    pub async fn terminate(&mut self) -> i32 {
        let pid = self.child.id().expect("running").to_string();
        std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        within(self.child.wait()).await.unwrap().code().unwrap_or(-1)
    }

    /// The live sessions (polling the API until `pred` holds).
    pub async fn wait_sessions(&self, pred: impl Fn(&[serde_json::Value]) -> bool) -> Vec<serde_json::Value> {
        within(async {
            loop {
                let v: serde_json::Value = http_json(&self.api("/api/sessions")).await;
                let list = v["sessions"].as_array().cloned().unwrap_or_default();
                if pred(&list) {
                    return list;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
    }
}

/// A new, empty database on the test PostgreSQL (`WSGATE_TEST_POSTGRES`, which
/// `scripts/test` starts). Without it the test fails with a message saying so, unless
/// `WSGATE_SKIP_POSTGRES=1`.
pub async fn fresh_postgres_db() -> Option<String> {
    let Ok(base) = std::env::var("WSGATE_TEST_POSTGRES") else {
        if std::env::var("WSGATE_SKIP_POSTGRES").is_ok_and(|v| v == "1") {
            eprintln!("skipping: WSGATE_SKIP_POSTGRES=1");
            return None;
        }
        panic!(
            "WSGATE_TEST_POSTGRES is not set: run scripts/test (it starts PostgreSQL), or `eval \"$(scripts/pg-start)\"`"
        );
    };
    let (client, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let name = format!("wsgate_it_{}_{}", std::process::id(), fastrand_id());
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    let (prefix, _) = base.rsplit_once('/').unwrap();
    Some(format!("{prefix}/{name}"))
}

pub async fn http_json(url: &str) -> serde_json::Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// Opens a client connection.
pub async fn ws_connect(url: &str) -> WsStream<Transport> {
    ws_connect_with(ConnectRequest::new(url.parse().unwrap())).await
}

pub async fn ws_connect_with(req: ConnectRequest) -> WsStream<Transport> {
    let c = within(wsgate_protocol::connect(req)).await.expect("connect");
    WsStream::new(c.transport, Role::Client, WsConfig::default(), c.leftover)
}

/// The next data or close message (pings/pongs skipped unless asked for).
pub async fn recv(ws: &mut WsStream<Transport>) -> Message {
    let m = within(ws.recv()).await.expect("recv");
    if matches!(m, Message::Close(_)) {
        // Send the queued close reply now, as a real client does, so the proxy's close
        // handshake completes without waiting for its timeout.
        let _ = within(ws.flush()).await;
    }
    m
}

pub fn text(m: &Message) -> String {
    match m {
        Message::Text(b) => String::from_utf8(b.to_vec()).unwrap(),
        other => panic!("expected text, got {other:?}"),
    }
}

pub fn close_of(m: &Message) -> Option<CloseFrame> {
    match m {
        Message::Close(c) => c.clone(),
        other => panic!("expected close, got {other:?}"),
    }
}

/// Polls `f` until it returns Some (for state that converges, e.g. via the API).
pub async fn eventually<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    within(async {
        loop {
            if let Some(v) = f().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// Shared list for tests that collect values from a spawned task.
pub type Shared<T> = Arc<Mutex<Vec<T>>>;

/// One HTTP/1.1 exchange over a fresh connection, byte for byte as given: for requests
/// no well-behaved client would send (invalid UTF-8, unknown methods, bodies far over
/// a limit, lying content types). The request says `Connection: close`, so the
/// response ends at EOF.
pub struct RawRequest<'a> {
    pub method: &'a str,
    pub target: &'a str,
    pub headers: Vec<(&'a str, String)>,
    pub body: Vec<u8>,
    /// Send the body with `Transfer-Encoding: chunked` (in 64 KiB chunks) instead of
    /// `Content-Length`.
    pub chunked: bool,
}

impl<'a> RawRequest<'a> {
    pub fn new(method: &'a str, target: &'a str) -> Self {
        Self { method, target, headers: Vec::new(), body: Vec::new(), chunked: false }
    }

    pub fn header(mut self, name: &'a str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    pub fn json(self, body: impl Into<Vec<u8>>) -> Self {
        self.header("content-type", "application/json").body(body)
    }

    pub fn chunked(mut self) -> Self {
        self.chunked = true;
        self
    }

    /// Sends the whole request (failing the test if the server cuts the connection
    /// while it is still being written), then reads the whole response.
    pub async fn send(&self, addr: SocketAddr) -> RawResponse {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        within(async {
            let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.target);
            // The address connected to, unless the test gives its own Host.
            if !self.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
                head.push_str(&format!("host: {addr}\r\n"));
            }
            head.push_str("connection: close\r\n");
            for (k, v) in &self.headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            if self.chunked {
                head.push_str("transfer-encoding: chunked\r\n\r\n");
            } else {
                head.push_str(&format!("content-length: {}\r\n\r\n", self.body.len()));
            }
            let what = format!("{} {} ({} body bytes)", self.method, self.target, self.body.len());
            tcp.write_all(head.as_bytes()).await.unwrap_or_else(|e| panic!("{what}: writing the head: {e}"));
            if self.chunked {
                for chunk in self.body.chunks(64 << 10) {
                    tcp.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await.ok();
                    tcp.write_all(chunk).await.unwrap_or_else(|e| panic!("{what}: connection cut while sending: {e}"));
                    tcp.write_all(b"\r\n").await.ok();
                }
                tcp.write_all(b"0\r\n\r\n").await.unwrap_or_else(|e| panic!("{what}: connection cut at the end: {e}"));
            } else {
                tcp.write_all(&self.body).await.unwrap_or_else(|e| panic!("{what}: connection cut while sending: {e}"));
            }
            let mut raw = Vec::new();
            tcp.read_to_end(&mut raw).await.unwrap_or_else(|e| panic!("{what}: connection cut before the answer: {e}"));
            RawResponse::parse(&raw, self.method == "HEAD")
                .unwrap_or_else(|| panic!("{what}: not an HTTP response: {:?}", String::from_utf8_lossy(&raw)))
        })
        .await
    }
}

#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    fn parse(raw: &[u8], head_only: bool) -> Option<Self> {
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = std::str::from_utf8(&raw[..end]).ok()?;
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let rest = &raw[end + 4..];
        let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        let body = if head_only {
            Vec::new()
        } else if chunked {
            let mut body = Vec::new();
            let mut rest = rest;
            loop {
                let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
                let size = usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).ok()?.trim(), 16).ok()?;
                rest = &rest[line_end + 2..];
                if size == 0 {
                    break body;
                }
                body.extend_from_slice(rest.get(..size)?);
                rest = rest.get(size + 2..)?;
            }
        } else {
            rest.to_vec()
        };
        Some(Self { status, headers, body })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts the status and the `{"error": "<message>"}` body every API error has.
    pub fn assert_error(&self, status: u16, what: &str) {
        assert_eq!(self.status, status, "{what}: {:?}", String::from_utf8_lossy(&self.body));
        assert_eq!(self.header("content-type"), Some("application/json"), "{what}: content type");
        let message = self.json()["error"].as_str().map(str::to_owned);
        assert!(message.is_some_and(|m| !m.is_empty()), "{what}: no error message: {self:?}");
    }
}

/// A config file `wsgate.yaml` holding `yaml` in a fresh directory, and its path.
pub fn config_file(yaml: &str) -> (TempDir, String) {
    let dir = TempDir::new();
    let path = dir.0.join("wsgate.yaml");
    std::fs::write(&path, yaml).unwrap();
    let shown = path.display().to_string();
    (dir, shown)
}

/// Runs a Node program of the browser tests (`script`, relative to the repository
/// root) with `args`, within `secs`, and returns the JSON report it prints as its
/// last line; a failure shows its output and `context` (a gateway's log).
pub async fn node_report<I, S>(script: &str, args: I, secs: u64, context: &str) -> serde_json::Value
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(script);
    let mut cmd = Command::new("node");
    cmd.arg(path).args(args);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(secs), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{script} within {secs} s"))
        .expect("node runs (scripts/interop-setup installs playwright-core, axe-core and chromium)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} failed:\nstdout: {stdout}\nstderr: {stderr}\n{context}");
    let line = stdout.lines().rfind(|l| !l.trim().is_empty()).unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON report ({e}): {stdout}\nstderr: {stderr}"))
}

/// The gateway's Prometheus text.
pub async fn metrics(gw: &Gateway) -> String {
    within(client().get(gw.api("/metrics")).send()).await.unwrap().text().await.unwrap()
}

/// One series' value in Prometheus text (`name{labels}` as written).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}
