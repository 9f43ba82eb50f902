//! The control plane over real sockets: a real HTTP/1.1 client (hyper) and real
//! WebSocket clients (wsgate-protocol) against `serve` on 127.0.0.1:0, with sessions
//! driven by hand through `SessionHandle` in place of a handler.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wsgate_control::{ControlConfig, ControlPlane, MAX_MESSAGE_BODY_BYTES, register_observers, serve};
use wsgate_core::{
    Command, Direction, ErrorKind, EventBus, InjectAck, Registry, SessionHandle, SessionId, SessionInfo, SessionKind,
    State, Target, TransitionDetail,
};
use wsgate_protocol::{
    CloseCode, CloseFrame, ConnectError, ConnectRequest, Frame, Message, OpCode, Role, Transport, WsConfig, WsStream,
    connect,
};

/// Upper bound for anything a test waits for. Generous: a loaded CI machine is slow,
/// and a passing test never waits this long.
const WAIT: Duration = Duration::from_secs(10);

async fn within<F: Future>(what: &str, f: F) -> F::Output {
    timeout(WAIT, f).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

struct Gateway {
    addr: SocketAddr,
    registry: Arc<Registry>,
    bus: Arc<EventBus>,
    cp: ControlPlane,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start(cfg: ControlConfig) -> Gateway {
    let mut builder = EventBus::builder();
    let observers = register_observers(&mut builder);
    let bus = builder.build();
    let registry = Arc::new(Registry::default());
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let cp = ControlPlane::start(cfg, registry.clone(), bus.clone(), observers, shutdown.clone(), &tracker);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(serve(listener, cp.router(), shutdown.clone()));
    Gateway { addr, registry, bus, cp, shutdown, tracker }
}

impl Gateway {
    /// A session whose injects are acknowledged at once (as a session task would),
    /// then handed to the test; `open_with_capacity` gives the raw queue.
    fn open(&self, kind: SessionKind, route: &str, path: &str) -> (SessionHandle, mpsc::Receiver<Command>) {
        let (session, mut raw) = self.open_with_capacity(kind, route, path, 16);
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            while let Some(cmd) = raw.recv().await {
                let cmd = match cmd {
                    Command::Inject { to, payload, binary, ack } => {
                        ack.send(Ok(()));
                        Command::Inject { to, payload, binary, ack: InjectAck::detached() }
                    }
                    other => other,
                };
                if tx.send(cmd).await.is_err() {
                    break;
                }
            }
        });
        (session, rx)
    }

    fn open_with_capacity(
        &self,
        kind: SessionKind,
        route: &str,
        path: &str,
        commands: usize,
    ) -> (SessionHandle, wsgate_core::Commands) {
        let info = SessionInfo {
            id: SessionId::new(),
            kind,
            route: route.into(),
            path: path.into(),
            client_addr: None,
            headers: vec![],
            opened_at: chrono::Utc::now(),
            payloads: Default::default(),
        };
        SessionHandle::open(info, self.bus.clone(), self.registry.clone(), commands)
    }

    async fn request(&self, method: Method, path: &str, headers: &[(&str, &str)], body: Bytes) -> Response {
        let stream = TcpStream::connect(self.addr).await.expect("connect");
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("HTTP handshake");
        tokio::spawn(conn);
        let mut req = http::Request::builder().method(method).uri(path).header(header::HOST, "localhost");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body)).expect("request");
        let res = within("response", sender.send_request(req)).await.expect("send request");
        let status = res.status();
        let headers = res.headers().clone();
        let body = within("body", res.into_body().collect()).await.expect("body").to_bytes();
        Response { status, headers, body }
    }

    async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path, &[], Bytes::new()).await
    }

    async fn post_json(&self, path: &str, body: &str) -> Response {
        self.request(Method::POST, path, &[("content-type", "application/json")], Bytes::from(body.to_owned())).await
    }

    async fn ws(&self, path: &str, headers: HeaderMap) -> Result<Ws, ConnectError> {
        let url = url::Url::parse(&format!("ws://{}{path}", self.addr)).expect("url");
        let mut req = ConnectRequest::new(url);
        req.headers = headers;
        req.timeout = WAIT;
        let c = connect(req).await?;
        Ok(Ws(WsStream::new(c.transport, Role::Client, WsConfig::default(), c.leftover)))
    }

    async fn metrics_until(&self, done: impl Fn(&str) -> bool) -> String {
        // Polls until the observer has caught up: the condition, not the interval,
        // is what the test waits for.
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        within("metrics", async {
            loop {
                tick.tick().await;
                let text = self.get("/metrics").await.text();
                if done(&text) {
                    return text;
                }
            }
        })
        .await
    }
}

struct Response {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Response {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// Asserts an error status with the JSON error shape.
    fn assert_error(&self, status: StatusCode) {
        assert_eq!(self.status, status, "body: {}", self.text());
        assert!(self.json()["error"].is_string(), "body: {}", self.text());
    }
}

struct Ws(WsStream<Transport>);

impl Ws {
    async fn send_json(&mut self, v: Value) {
        self.0.send(Message::text(v.to_string())).await.expect("send");
    }

    async fn recv(&mut self) -> Message {
        within("a WebSocket message", self.0.recv()).await.expect("recv")
    }

    async fn next_json(&mut self) -> Value {
        loop {
            match self.recv().await {
                Message::Text(t) => return serde_json::from_slice(&t).expect("JSON text message"),
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("expected a JSON text message, got {other:?}"),
            }
        }
    }

    /// Skips messages until one satisfies `pred` (events emitted before the
    /// subscription may still be in flight).
    async fn next_json_where(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            let v = self.next_json().await;
            if pred(&v) {
                return v;
            }
        }
    }

    async fn ack(&mut self, cmd: Value) -> Value {
        self.send_json(cmd).await;
        self.next_json_where(|v| v["type"] == "ack").await
    }
}

fn auth(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).expect("header"));
    h
}

async fn command(rx: &mut mpsc::Receiver<Command>) -> Command {
    within("a session command", rx.recv()).await.expect("command queue open")
}

fn assert_inject(cmd: Command, want_to: Target, want: &[u8], want_binary: bool) {
    match cmd {
        Command::Inject { to, payload, binary, .. } => {
            assert_eq!((to, &payload[..], binary), (want_to, want, want_binary));
        }
        other => panic!("expected an inject, got {other:?}"),
    }
}

fn assert_close(cmd: Command, want_code: u16, want_reason: &str) {
    match cmd {
        Command::Close { code, reason, .. } => assert_eq!((code, reason.as_str()), (want_code, want_reason)),
        other => panic!("expected a close, got {other:?}"),
    }
}

fn connected(connect_ms: f64) -> TransitionDetail {
    TransitionDetail { connect_ms: Some(connect_ms), upstream: Some("ws://up.example".into()), ..Default::default() }
}

#[tokio::test]
async fn health_ready_and_unknown_routes() {
    let gw = start(ControlConfig::default()).await;
    let r = gw.get("/healthz").await;
    assert_eq!((r.status, r.json()), (StatusCode::OK, json!({"status": "ok"})));

    let r = gw.get("/readyz").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["status"], "not_ready");
    gw.cp.set_ready(true);
    let r = gw.get("/readyz").await;
    assert_eq!((r.status, r.json()), (StatusCode::OK, json!({"status": "ready"})));

    gw.get("/nope").await.assert_error(StatusCode::NOT_FOUND);
    gw.request(Method::DELETE, "/healthz", &[], Bytes::new()).await.assert_error(StatusCode::METHOD_NOT_ALLOWED);
    // A plain GET on a WebSocket endpoint is not an upgrade.
    gw.get("/api/live").await.assert_error(StatusCode::UPGRADE_REQUIRED);
}

#[tokio::test]
async fn metrics_count_events() {
    let gw = start(ControlConfig::default()).await;
    let text = gw.get("/metrics").await.text();
    for name in [
        "wsgate_sessions_active",
        "wsgate_sessions_total",
        "wsgate_messages_total",
        "wsgate_message_bytes_total",
        "wsgate_upstream_connect_seconds",
        "wsgate_queue_dropped_total",
        "wsgate_observer_dropped_total",
        "wsgate_live_dropped_total",
    ] {
        assert!(text.contains(&format!("# TYPE {}", name.trim_end_matches("_total"))), "{name} missing:\n{text}");
    }

    let (_live, _rx) = gw.open(SessionKind::Proxy, "default", "/live");
    let (mut s, _srx) = gw.open(SessionKind::Proxy, "default", "/chat");
    s.transition(State::Connecting, TransitionDetail::default());
    s.transition(State::Connected, connected(1.5));
    s.frame(Direction::ClientToUpstream, &Frame::text("abc"), false);
    s.frame(Direction::UpstreamToClient, &Frame::binary(&b"12345"[..]), false);
    s.error(ErrorKind::QueueOverflow, "queue full: message dropped".into());
    s.error(ErrorKind::QueueOverflow, "queue full: message dropped".into());
    s.error(ErrorKind::QueueTimeout, "upstream did not connect in time: message dropped".into());
    s.error(ErrorKind::ResolverFallback, "not a queue drop".into());
    s.transition(State::Failed, TransitionDetail { reason: Some("boom".into()), ..Default::default() });
    drop(s);
    let (mut r, _rrx) = gw.open(SessionKind::Relay, "rooms", "/room");
    r.transition(State::Connected, TransitionDetail::default());
    r.transition(State::Disconnected, TransitionDetail::default());
    drop(r);

    let text =
        gw.metrics_until(|t| t.contains(r#"wsgate_sessions_total{kind="relay",outcome="disconnected"} 1"#)).await;
    for line in [
        r#"wsgate_sessions_active{kind="proxy"} 1"#,
        r#"wsgate_sessions_active{kind="relay"} 0"#,
        r#"wsgate_sessions_total{kind="proxy",outcome="failed"} 1"#,
        r#"wsgate_messages_total{direction="client_to_upstream"} 1"#,
        r#"wsgate_messages_total{direction="upstream_to_client"} 1"#,
        r#"wsgate_message_bytes_total{direction="client_to_upstream"} 3"#,
        r#"wsgate_message_bytes_total{direction="upstream_to_client"} 5"#,
        "wsgate_upstream_connect_seconds_count 1",
        r#"wsgate_upstream_connect_seconds_bucket{le="0.001"} 0"#,
        r#"wsgate_upstream_connect_seconds_bucket{le="0.0025"} 1"#,
        r#"wsgate_queue_dropped_total{reason="queue_overflow"} 2"#,
        r#"wsgate_queue_dropped_total{reason="queue_timeout"} 1"#,
        r#"wsgate_observer_dropped_total{observer="live"} 0"#,
        r#"wsgate_observer_dropped_total{observer="metrics"} 0"#,
        "wsgate_live_dropped_total 0",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
    }
    assert!(!text.contains("resolver"), "{text}");
}

#[tokio::test]
async fn sessions_list_filter_get() {
    let gw = start(ControlConfig::default()).await;
    let (mut a, _arx) = gw.open(SessionKind::Proxy, "api", "/chat?x=1");
    a.transition(State::Connected, connected(2.0));
    let (_b, _brx) = gw.open(SessionKind::Relay, "rooms", "/room");
    let (mut c, _crx) = gw.open(SessionKind::Proxy, "api", "/gone");
    c.transition(State::Disconnected, TransitionDetail { close_code: Some(1000), ..Default::default() });
    drop(c);

    let ids = |r: &Response| -> Vec<String> {
        r.json()["sessions"].as_array().expect("sessions array").iter().map(|s| s["id"].to_string()).collect()
    };
    let all = gw.get("/api/sessions").await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(ids(&all).len(), 3);
    // Newest first.
    assert_eq!(all.json()["sessions"][2]["id"], a.id().to_string());

    let r = gw.get("/api/sessions?state=connected").await;
    assert_eq!(ids(&r), vec![format!("\"{}\"", a.id())]);
    assert_eq!(r.json()["sessions"][0]["state"], "CONNECTED");
    assert_eq!(r.json()["sessions"][0]["upstream"], "ws://up.example");
    assert_eq!(ids(&gw.get("/api/sessions?kind=relay").await).len(), 1);
    assert_eq!(ids(&gw.get("/api/sessions?route=api").await).len(), 2);
    assert_eq!(ids(&gw.get("/api/sessions?state=DISCONNECTED&route=api").await).len(), 1);
    assert_eq!(ids(&gw.get("/api/sessions?limit=1").await).len(), 1);
    assert_eq!(ids(&gw.get(&format!("/api/sessions?before={}", a.id())).await).len(), 0);
    assert_eq!(ids(&gw.get("/api/sessions?state=&kind=").await).len(), 3);
    gw.get("/api/sessions?state=bogus").await.assert_error(StatusCode::BAD_REQUEST);
    gw.get("/api/sessions?kind=bogus").await.assert_error(StatusCode::BAD_REQUEST);
    gw.get("/api/sessions?limit=lots").await.assert_error(StatusCode::BAD_REQUEST);
    gw.get("/api/sessions?before=xyz").await.assert_error(StatusCode::BAD_REQUEST);

    let r = gw.get(&format!("/api/sessions/{}", a.id())).await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(
        (v["id"].as_str(), v["kind"].as_str(), v["path"].as_str()),
        (Some(&*a.id().to_string()), Some("proxy"), Some("/chat?x=1"))
    );
    assert_eq!(v["lifecycle"].as_array().map(Vec::len), Some(2));
    gw.get(&format!("/api/sessions/{}", SessionId::new())).await.assert_error(StatusCode::NOT_FOUND);
    gw.get("/api/sessions/not-an-id").await.assert_error(StatusCode::BAD_REQUEST);
}

/// A session that keeps reconnecting shows its first and latest steps, counts the
/// rest, and numbers its events by their place in the whole lifecycle.
#[tokio::test]
async fn a_long_lifecycle_is_shown_bounded() {
    let gw = start(ControlConfig::default()).await;
    let (mut s, _rx) = gw.open(SessionKind::Outbound, "outbound", "/feed");
    const ATTEMPTS: u32 = 200;
    for attempt in 1..=ATTEMPTS {
        s.transition(State::Connecting, TransitionDetail { attempt: Some(attempt), ..Default::default() });
    }
    let (head, tail) = (wsgate_core::registry::LIFECYCLE_HEAD, wsgate_core::registry::LIFECYCLE_TAIL);
    let total = ATTEMPTS as usize + 1;
    let omitted = total - head - tail;

    let v = gw.get(&format!("/api/sessions/{}", s.id())).await.json();
    let steps = v["lifecycle"].as_array().expect("lifecycle");
    assert_eq!((steps.len(), v["lifecycle_omitted"].as_u64()), (head + tail, Some(omitted as u64)));
    assert_eq!((steps[0]["state"].as_str(), steps[1]["attempt"].as_u64()), (Some("REQUESTED"), Some(1)));
    assert_eq!(steps[head + tail - 1]["attempt"].as_u64(), Some(u64::from(ATTEMPTS)));
    let listed = gw.get("/api/sessions").await.json();
    assert_eq!(listed["sessions"][0]["lifecycle_omitted"].as_u64(), Some(omitted as u64));

    let events = gw.get(&format!("/api/sessions/{}/events", s.id())).await.json();
    let seqs: Vec<_> = events["events"].as_array().expect("events").iter().map(|e| e["seq"].as_u64()).collect();
    let want: Vec<_> = (1..=head).chain(head + omitted + 1..=total).map(|n| Some(n as u64)).collect();
    assert_eq!(seqs, want);

    let (short, _rx) = gw.open(SessionKind::Proxy, "api", "/");
    let v = gw.get(&format!("/api/sessions/{}", short.id())).await.json();
    assert_eq!(v["lifecycle_omitted"].as_u64(), Some(0), "always there, 0 when whole");
}

#[tokio::test]
async fn inject_and_close_commands() {
    let gw = start(ControlConfig::default()).await;
    let (s, mut rx) = gw.open(SessionKind::Proxy, "default", "/chat");
    let inject = format!("/api/sessions/{}/inject", s.id());
    let close = format!("/api/sessions/{}/close", s.id());

    let r = gw.post_json(&inject, r#"{"to":"client","text":"hi"}"#).await;
    assert_eq!((r.status, r.json()), (StatusCode::ACCEPTED, json!({"status": "queued"})));
    assert_inject(command(&mut rx).await, Target::Client, b"hi", false);
    let r = gw.post_json(&inject, r#"{"to":"upstream","base64":"AAEC/w=="}"#).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_inject(command(&mut rx).await, Target::Upstream, &[0, 1, 2, 255], true);

    for bad in [
        r#"{"to":"client","text":"a","base64":"AA=="}"#,
        r#"{"to":"client"}"#,
        r#"{"to":"client","base64":"not base64!"}"#,
        r#"{"to":"sideways","text":"a"}"#,
        r#"{"text":"a"}"#,
        r#"{"to":"client","text":"a","extra":1}"#,
        r#"{"to":"client","text":"#,
        "junk",
        "",
        "[]",
    ] {
        gw.post_json(&inject, bad).await.assert_error(StatusCode::BAD_REQUEST);
    }
    gw.request(Method::POST, &inject, &[("content-type", "text/plain")], Bytes::from_static(b"hi"))
        .await
        .assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    gw.post_json(&format!("/api/sessions/{}/inject", SessionId::new()), r#"{"to":"client","text":"a"}"#)
        .await
        .assert_error(StatusCode::NOT_FOUND);
    gw.post_json("/api/sessions/nope/inject", r#"{"to":"client","text":"a"}"#)
        .await
        .assert_error(StatusCode::BAD_REQUEST);
    let huge = Bytes::from(vec![b' '; MAX_MESSAGE_BODY_BYTES + 1]);
    gw.request(Method::POST, &inject, &[("content-type", "application/json")], huge)
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE);

    // Close: an empty body means 1000 and no reason.
    let r = gw.request(Method::POST, &close, &[], Bytes::new()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    assert_close(command(&mut rx).await, 1000, "");
    let r = gw.post_json(&close, r#"{"code":4001,"reason":"bye"}"#).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_close(command(&mut rx).await, 4001, "bye");
    let long = format!(r#"{{"reason":"{}"}}"#, "x".repeat(124));
    for bad in [r#"{"code":1005}"#, r#"{"code":999}"#, r#"{"code":70000}"#, long.as_str(), "{"] {
        gw.post_json(&close, bad).await.assert_error(StatusCode::BAD_REQUEST);
    }
    assert!(rx.try_recv().is_err(), "rejected commands must not reach the session");

    // A full command queue is transient: 503 with Retry-After.
    let (busy, _busy_rx) = gw.open_with_capacity(SessionKind::Proxy, "default", "/busy", 1);
    let path = format!("/api/sessions/{}/inject", busy.id());
    assert_eq!(gw.post_json(&path, r#"{"to":"client","text":"1"}"#).await.status, StatusCode::ACCEPTED);
    let r = gw.post_json(&path, r#"{"to":"client","text":"2"}"#).await;
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers.get(header::RETRY_AFTER).map(|v| v.as_bytes()), Some(&b"1"[..]));
}

#[tokio::test]
async fn live_stream_status_then_events() {
    let gw = start(ControlConfig { payload_cap: 8, ..ControlConfig::default() }).await;
    let (mut s, _rx) = gw.open(SessionKind::Proxy, "default", "/chat?room=1");
    let (mut other, _orx) = gw.open(SessionKind::Proxy, "default", "/elsewhere");

    let mut ws = gw.ws(&format!("/api/live?session={}", s.id()), HeaderMap::new()).await.expect("live connect");
    let status = ws.next_json().await;
    assert_eq!(status["type"], "status");
    let sessions = status["sessions"].as_array().expect("sessions");
    assert_eq!(sessions.len(), 1, "{status}");
    assert_eq!(sessions[0]["id"], s.id().to_string());

    s.transition(State::Connecting, TransitionDetail::default());
    s.transition(State::Connected, connected(3.25));
    let ev = ws.next_json_where(|v| v["type"] == "lifecycle" && v["state"] == "CONNECTED").await;
    assert_eq!(ev["session"], s.id().to_string());
    assert_eq!((ev["kind"].as_str(), ev["route"].as_str()), (Some("proxy"), Some("default")));
    assert_eq!(ev["path"], "/chat?room=1");
    assert_eq!(ev["connect_ms"], 3.25);
    assert_eq!(ev["upstream"], "ws://up.example");
    assert!(ev["at"].is_string());

    // Another session's frame is filtered out; ours arrives cut to the cap.
    other.frame(Direction::ClientToUpstream, &Frame::text("not for this subscriber"), false);
    s.frame(Direction::ClientToUpstream, &Frame::text("hello world, long"), false);
    let ev = ws.next_json_where(|v| v["type"] != "lifecycle").await;
    assert_eq!(ev["type"], "message", "{ev}");
    assert_eq!(ev["session"], s.id().to_string());
    assert_eq!(ev["direction"], "client_to_upstream");
    assert_eq!((ev["opcode"].as_str(), ev["fin"].as_bool()), (Some("text"), Some(true)));
    assert_eq!((ev["size"].as_u64(), ev["text"].as_str()), (Some(17), Some("hello wo")));
    assert_eq!((ev["truncated"].as_bool(), ev["injected"].as_bool()), (Some(true), Some(false)));
    assert_eq!(ev["seq"], 1);
    assert!(ev.get("base64").is_none());

    s.frame(Direction::UpstreamToClient, &Frame::binary(vec![0u8, 1, 2, 255]), true);
    let ev = ws.next_json().await;
    assert_eq!((ev["opcode"].as_str(), ev["base64"].as_str()), (Some("binary"), Some("AAEC/w==")));
    assert_eq!((ev["truncated"].as_bool(), ev["injected"].as_bool()), (Some(false), Some(true)));
    assert_eq!(ev["direction"], "upstream_to_client");
    assert!(ev.get("text").is_none());

    s.frame(Direction::ClientToUpstream, &Frame::new(OpCode::Close, CloseFrame::new(4000, "done").encode()), false);
    let ev = ws.next_json().await;
    assert_eq!((ev["opcode"].as_str(), ev["close_code"].as_u64()), (Some("close"), Some(4000)));

    s.error(ErrorKind::QueueOverflow, "dropped one".into());
    let ev = ws.next_json().await;
    assert_eq!(
        ev,
        json!({"type": "error", "session": s.id().to_string(), "kind": "queue_overflow", "message": "dropped one"})
    );

    // Pings are answered.
    ws.0.send(Message::Ping(Bytes::from_static(b"p"))).await.expect("ping");
    assert_eq!(ws.recv().await, Message::Pong(Bytes::from_static(b"p")));

    // A path filter, and the close of the session.
    let mut by_path = gw.ws("/api/live?path=/chat", HeaderMap::new()).await.expect("live connect");
    let status = by_path.next_json().await;
    assert_eq!(status["sessions"].as_array().map(Vec::len), Some(1), "{status}");
    s.transition(State::Disconnected, TransitionDetail { close_code: Some(1000), ..Default::default() });
    let ev = by_path.next_json_where(|v| v["state"] == "DISCONNECTED").await;
    assert_eq!((ev["session"].as_str(), ev["close_code"].as_u64()), (Some(&*s.id().to_string()), Some(1000)));

    gw.get("/api/live?session=bad").await.assert_error(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn slow_live_subscribers_drop_and_count() {
    let gw = start(ControlConfig { live_queue: 1, ..ControlConfig::default() }).await;
    let (mut s, _rx) = gw.open(SessionKind::Proxy, "default", "/flood");
    let mut ws = gw.ws("/api/live", HeaderMap::new()).await.expect("live connect");
    assert_eq!(ws.next_json().await["type"], "status");
    // Emitted in one go, these reach the observer as batches far larger than the
    // subscriber's one-message queue.
    for _ in 0..500 {
        s.frame(Direction::ClientToUpstream, &Frame::text("x"), false);
    }
    let text = gw
        .metrics_until(|t| t.lines().any(|l| l.starts_with("wsgate_live_dropped_total ") && !l.ends_with(" 0")))
        .await;
    assert!(text.contains("wsgate_live_dropped_total"));
}

#[tokio::test]
async fn live_commands_including_multiplex_shapes() {
    let gw = start(ControlConfig::default()).await;
    let (a, mut arx) = gw.open(SessionKind::Proxy, "default", "/chat");
    let (b, mut brx) = gw.open(SessionKind::Proxy, "default", "/chat?user=b");
    let (_c, mut crx) = gw.open(SessionKind::Proxy, "default", "/other");
    let (_d, mut drx) = gw.open(SessionKind::Relay, "rooms", "/chat");

    let mut ws = gw.ws("/api/live", HeaderMap::new()).await.expect("live connect");
    assert_eq!(ws.next_json().await["sessions"].as_array().map(Vec::len), Some(4));

    let ack = ws.ack(json!({"type":"inject","session":a.id().to_string(),"to":"upstream","text":"x","id":"c1"})).await;
    assert_eq!(ack, json!({"type":"ack","ok":true,"sessions":1,"id":"c1"}));
    assert_inject(command(&mut arx).await, Target::Upstream, b"x", false);
    let ack = ws.ack(json!({"type":"inject","session":b.id().to_string(),"to":"client","base64":"AP8="})).await;
    assert_eq!(ack["ok"], true);
    assert_inject(command(&mut brx).await, Target::Client, &[0, 255], true);

    // websocket-multiplex: every session on the path (query ignored), any kind.
    let ack = ws.ack(json!({"type":"inject","target":"client:/chat","message":"hi all"})).await;
    assert_eq!(ack, json!({"type":"ack","ok":true,"sessions":3}));
    for rx in [&mut arx, &mut brx, &mut drx] {
        assert_inject(command(rx).await, Target::Client, b"hi all", false);
    }
    let ack = ws.ack(json!({"type":"inject","target":"upstream:/other","message":"u"})).await;
    assert_eq!(ack["sessions"], 1);
    assert_inject(command(&mut crx).await, Target::Upstream, b"u", false);
    // all-clients: every proxy session; a JSON message is sent as its JSON text.
    let ack = ws.ack(json!({"type":"inject","target":"all-clients","message":{"k":[1,2]}})).await;
    assert_eq!(ack["sessions"], 3);
    for rx in [&mut arx, &mut brx, &mut crx] {
        assert_inject(command(rx).await, Target::Client, br#"{"k":[1,2]}"#, false);
    }
    let ack = ws.ack(json!({"type":"inject","target":"all-upstreams","message":"up"})).await;
    assert_eq!(ack["sessions"], 3);
    for rx in [&mut arx, &mut brx, &mut crx] {
        assert_inject(command(rx).await, Target::Upstream, b"up", false);
    }
    assert!(drx.try_recv().is_err(), "all-* addresses proxy sessions only");

    let ack = ws.ack(json!({"type":"close","connectionId":"/other"})).await;
    assert_eq!(ack["sessions"], 1);
    assert_close(command(&mut crx).await, 1000, "");
    let ack = ws.ack(json!({"type":"close","session":a.id().to_string(),"code":4001,"reason":"bye"})).await;
    assert_eq!(ack["ok"], true);
    assert_close(command(&mut arx).await, 4001, "bye");

    // Malformed commands get an error ack and the connection stays up.
    for bad in [
        Message::text("{not json"),
        Message::text(r#"{"type":"dance"}"#),
        Message::text(r#"{"type":"inject","target":"sideways","message":"m"}"#),
        Message::text(r#"{"type":"close","session":"xyz"}"#),
        Message::text(r#"{"type":"close","session":"0190c3a0-0000-7000-8000-000000000000","code":1006}"#),
        Message::text(format!(r#"{{"type":"inject","session":"{}","to":"client"}}"#, b.id())),
        Message::Binary(Bytes::from_static(b"\x00")),
    ] {
        ws.0.send(bad.clone()).await.expect("send");
        let ack = ws.next_json_where(|v| v["type"] == "ack").await;
        assert_eq!(ack["ok"], false, "{bad:?} -> {ack}");
        assert!(ack["error"].is_string());
    }
    let ack = ws.ack(json!({"type":"inject","session":SessionId::new().to_string(),"to":"client","text":"x"})).await;
    assert_eq!(ack["ok"], false);
    let ack = ws.ack(json!({"type":"close","connectionId":"/chat"})).await;
    assert_eq!(ack["sessions"], 3);
}

#[tokio::test]
async fn taps_both_ways() {
    let gw = start(ControlConfig::default()).await;
    let (mut s, mut rx) = gw.open(SessionKind::Proxy, "default", "/chat?u=1");
    let (mut elsewhere, _erx) = gw.open(SessionKind::Proxy, "default", "/other");
    let mut client_tap = gw.ws("/client/chat", HeaderMap::new()).await.expect("client tap");
    let mut upstream_tap = gw.ws("/upstream/chat", HeaderMap::new()).await.expect("upstream tap");

    // Raw frames, opcode preserved, from the right side only: as in
    // websocket-multiplex, a side's tap carries what is sent to that side.
    elsewhere.frame(Direction::UpstreamToClient, &Frame::text("not on /chat"), false);
    s.frame(Direction::UpstreamToClient, &Frame::text("to-client"), false);
    s.frame(Direction::ClientToUpstream, &Frame::binary(vec![1u8, 2, 3]), false);
    assert_eq!(client_tap.recv().await, Message::Text(Bytes::from_static(b"to-client")));
    assert_eq!(upstream_tap.recv().await, Message::Binary(Bytes::from_static(&[1, 2, 3])));

    // Control frames are not tapped; fragments arrive as one message.
    s.frame(Direction::UpstreamToClient, &Frame::ping("p"), false);
    s.frame(Direction::UpstreamToClient, &Frame::text("hel").with_fin(false), false);
    s.frame(Direction::UpstreamToClient, &Frame::new(OpCode::Continuation, "lo"), false);
    assert_eq!(client_tap.recv().await, Message::Text(Bytes::from_static(b"hello")));
    // Payloads are not cut on taps.
    let big = "y".repeat(10_000);
    s.frame(Direction::ClientToUpstream, &Frame::text(big.clone()), false);
    assert_eq!(upstream_tap.recv().await, Message::Text(Bytes::from(big)));

    // Written into a tap: injected to that side of every session on the path.
    client_tap.0.send(Message::text("to-clients")).await.expect("send");
    assert_inject(command(&mut rx).await, Target::Client, b"to-clients", false);
    upstream_tap.0.send(Message::Binary(Bytes::from_static(&[9]))).await.expect("send");
    assert_inject(command(&mut rx).await, Target::Upstream, &[9], true);

    // A tap on `/`.
    let (mut root, _rrx) = gw.open(SessionKind::Proxy, "default", "/");
    let mut root_tap = gw.ws("/client", HeaderMap::new()).await.expect("root tap");
    root.frame(Direction::UpstreamToClient, &Frame::text("at root"), false);
    assert_eq!(root_tap.recv().await, Message::Text(Bytes::from_static(b"at root")));
}

#[tokio::test]
async fn admin_token_is_enforced() {
    let gw = start(ControlConfig { admin_token: Some("s3cret".into()), ..ControlConfig::default() }).await;
    assert_eq!(gw.get("/healthz").await.status, StatusCode::OK);
    assert_eq!(gw.get("/readyz").await.status, StatusCode::SERVICE_UNAVAILABLE);

    for path in ["/api/sessions", "/metrics", "/api/sessions?token=wrong"] {
        let r = gw.get(path).await;
        r.assert_error(StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers.get(header::WWW_AUTHENTICATE).map(|v| v.as_bytes()), Some(&b"Bearer"[..]), "{path}");
    }
    let r = gw.request(Method::GET, "/api/sessions", &[("authorization", "Bearer wrong")], Bytes::new()).await;
    r.assert_error(StatusCode::UNAUTHORIZED);
    let r = gw.request(Method::GET, "/api/sessions", &[("authorization", "Bearer s3cret")], Bytes::new()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(gw.get("/api/sessions?token=s3cret").await.status, StatusCode::OK);
    let r = gw.request(Method::GET, "/metrics", &[("authorization", "Bearer s3cret")], Bytes::new()).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = gw.request(Method::POST, "/api/sessions/x/close", &[], Bytes::new()).await;
    r.assert_error(StatusCode::UNAUTHORIZED);
    // Unknown routes stay 404 without a token.
    gw.get("/nope").await.assert_error(StatusCode::NOT_FOUND);

    for path in ["/api/live", "/client/chat", "/upstream/chat"] {
        match gw.ws(path, HeaderMap::new()).await {
            Err(ConnectError::Rejected { status, .. }) => assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}"),
            Err(e) => panic!("{path}: unexpected error {e}"),
            Ok(_) => panic!("{path}: connected without a token"),
        }
    }
    let mut ws = gw.ws("/api/live?token=s3cret", HeaderMap::new()).await.expect("live with ?token");
    assert_eq!(ws.next_json().await["type"], "status");
    let mut ws = gw.ws("/api/live", auth("s3cret")).await.expect("live with header");
    assert_eq!(ws.next_json().await["type"], "status");
    gw.ws("/client/chat?token=s3cret", HeaderMap::new()).await.expect("tap with ?token");
}

#[tokio::test]
async fn shutdown_closes_live_sockets_with_1001() {
    let gw = start(ControlConfig::default()).await;
    let mut ws = gw.ws("/api/live", HeaderMap::new()).await.expect("live connect");
    assert_eq!(ws.next_json().await["type"], "status");
    let mut tap = gw.ws("/upstream/x", HeaderMap::new()).await.expect("tap");
    gw.shutdown.cancel();
    assert_eq!(ws.recv().await, Message::Close(Some(CloseFrame::new(CloseCode::GOING_AWAY, "shutting down"))));
    assert!(matches!(tap.recv().await, Message::Close(Some(CloseFrame { code: CloseCode::GOING_AWAY, .. }))));
    ws.0.flush().await.expect("close reply");
    tap.0.flush().await.expect("close reply");
    gw.tracker.close();
    within("control-plane tasks to finish", gw.tracker.wait()).await;
}
