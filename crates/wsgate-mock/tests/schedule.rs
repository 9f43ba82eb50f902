//! A replay's schedule under paused time: each step goes out exactly when the script
//! says (from the session's start, divided by `--speed`), a wait holds the steps
//! after it only as long as it lasts, and a timeout acts on time — checked to the
//! millisecond with tokio's clock paused, so the test is exact and takes no
//! wall-clock time. The session runs over a real loopback connection, and the client
//! checks what it receives; the times are taken where the replay hands its output to
//! the connection (a wrapper around the behaviour), because with the clock paused
//! tokio may move time on before a task woken only by a socket runs.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wsgate_core::{EventBus, Registry, SessionHandle, SessionId, SessionInfo, SessionKind};
use wsgate_mock::script::Script;
use wsgate_mock::{Replay, ReplaySettings};
use wsgate_protocol::{Message, Role, Transport, WsConfig, WsStream};
use wsgate_session::{Behaviour, Outbox, ServerConfig};

/// When (ms from the session's start) each phase of the replay produced output, and
/// how much: `(ms, bytes queued, asked to close)`.
type Emitted = Arc<std::sync::Mutex<Vec<(u128, usize, bool)>>>;

/// The replay, with the time of each phase that sent something or closed.
struct Timed {
    inner: Replay,
    start: Instant,
    emitted: Emitted,
}

impl Timed {
    fn phase(&mut self, out: &mut Outbox<'_>, f: impl FnOnce(&mut Replay, &mut Outbox<'_>)) {
        let before = out.buffered();
        f(&mut self.inner, out);
        let (added, closing) = (out.buffered() - before, out.closing());
        if added > 0 || closing {
            self.emitted.lock().unwrap().push((self.start.elapsed().as_millis(), added, closing));
        }
    }
}

impl Behaviour for Timed {
    fn on_open(&mut self, out: &mut Outbox<'_>) {
        self.phase(out, |r, out| r.on_open(out));
    }
    fn on_message(&mut self, msg: Message, out: &mut Outbox<'_>) {
        self.phase(out, |r, out| r.on_message(msg, out));
    }
    fn next_tick(&self) -> Option<Instant> {
        self.inner.next_tick()
    }
    fn on_tick(&mut self, out: &mut Outbox<'_>) {
        self.phase(out, |r, out| r.on_tick(out));
    }
}

/// A client connected to a replay of `lines` at `speed`, and what the replay emitted when.
async fn replay(lines: &str, speed: f64) -> (WsStream<TcpStream>, Instant, Emitted) {
    let script = Script::parse("test.jsonl", lines.as_bytes(), &|_| None).expect("script");
    let settings = Arc::new(ReplaySettings { source: "test".into(), script, speed, looped: false, seed: Some(1) });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    let (ours, _) = listener.accept().await.unwrap();
    let info = SessionInfo {
        id: SessionId::new(),
        kind: SessionKind::Mock,
        route: "t".into(),
        path: "/".into(),
        client_addr: None,
        headers: Vec::new(),
        opened_at: chrono::Utc::now(),
        payloads: Default::default(),
    };
    let (mut session, commands) = SessionHandle::open(info, EventBus::empty(), Arc::new(Registry::new(4)), 4);
    let ws = WsStream::new(Transport::Plain(ours), Role::Server, WsConfig::default(), Bytes::new());
    let cfg = ServerConfig { close_timeout: Duration::from_secs(5), idle_timeout: None, faults: None };
    let start = Instant::now();
    let emitted = Emitted::default();
    let timed = Timed { inner: Replay::new(settings), start, emitted: emitted.clone() };
    tokio::spawn(async move {
        wsgate_session::run(ws, &mut session, commands, timed, cfg, CancellationToken::new()).await;
    });
    (WsStream::new(peer, Role::Client, WsConfig::default(), Bytes::new()), start, emitted)
}

/// The next text, or a close as `close CODE`.
async fn next(ws: &mut WsStream<TcpStream>) -> String {
    loop {
        match ws.recv().await.expect("a message") {
            Message::Text(t) => return String::from_utf8(t.to_vec()).unwrap(),
            Message::Close(c) => return format!("close {}", c.map_or(0, |c| c.code)),
            _ => {}
        }
    }
}

/// The replay's output so far came at these times (ms; each within the timer's 1 ms
/// granularity), and a close at the last one when `closed`.
fn assert_emitted(emitted: &Emitted, times: &[u128], closed: bool) {
    let got = emitted.lock().unwrap().clone();
    let at: Vec<u128> = got.iter().map(|e| e.0).collect();
    assert_eq!(at.len(), times.len(), "emitted at {at:?}, expected {times:?}");
    for (got, due) in at.iter().zip(times) {
        assert!((*due..=*due + 1).contains(got), "emitted at {at:?}, expected {times:?}");
    }
    assert_eq!(got.last().map(|e| e.2), Some(closed), "{got:?}");
}

#[tokio::test(start_paused = true)]
async fn steps_go_out_on_the_schedule_and_a_wait_holds_only_while_it_lasts() {
    let lines = r#"{"ts":0,"text":"a"}
{"ts":100,"text":"b"}
{"ts":250,"text":"c","waitFor":"^go$"}
{"ts":300,"text":"d"}
{"ts":1000,"text":"e","waitFor":"^never$","timeout":200,"onTimeout":"continue"}
{"ts":1500,"close":{"code":4000,"reason":"done"}}
"#;
    let (mut ws, start, emitted) = replay(lines, 1.0).await;
    assert_eq!((next(&mut ws).await, next(&mut ws).await), ("a".into(), "b".into()));
    // The client is late: c waits for it, and d (due at 300) comes right after.
    tokio::time::sleep_until(start + Duration::from_millis(400)).await;
    ws.send(Message::text("go")).await.unwrap();
    let rest = [next(&mut ws).await, next(&mut ws).await, next(&mut ws).await, next(&mut ws).await];
    assert_eq!(rest, ["c", "d", "e", "close 4000"]);
    // a at 0, b at 100; c and d together at 400 (when the client's message came);
    // e waits from its time (1000) for a message that never comes, and its 200 ms
    // timeout lets it go at 1200; the close keeps its own time, 1500.
    assert_emitted(&emitted, &[0, 100, 400, 1200, 1500], true);
}

#[tokio::test(start_paused = true)]
async fn speed_divides_the_schedule_and_an_early_client_is_not_a_different_conversation() {
    let lines = r#"{"ts":0,"text":"a"}
{"ts":200,"text":"b","waitFor":"^go$"}
{"ts":600,"text":"c"}
"#;
    let (mut ws, _start, emitted) = replay(lines, 2.0).await;
    // Sent before anything waits for it: kept for b's wait.
    ws.send(Message::text("go")).await.unwrap();
    assert_eq!([next(&mut ws).await, next(&mut ws).await, next(&mut ws).await], ["a", "b", "c"]);
    assert_emitted(&emitted, &[0, 100, 300], false);
}

#[tokio::test(start_paused = true)]
async fn a_timeout_that_closes_closes_on_time() {
    let lines = r#"{"ts":50,"text":"hello","waitFor":"$.ready","timeout":300,"onTimeout":{"close":4408,"reason":"too slow"}}
"#;
    let (mut ws, _start, emitted) = replay(lines, 1.0).await;
    assert_eq!(next(&mut ws).await, "close 4408");
    assert_emitted(&emitted, &[350], true);
}
