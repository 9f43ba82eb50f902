//! The message loop of a session wsgate answers itself.
//!
//! One task owns the client's connection and the session handle. Per wake-up it takes
//! shutdown, commands (inject, close), the idle and tick timers, and a burst of up to
//! [`BURST`] received messages, each handed to the [`Behaviour`]; output is queued
//! and written once per burst (`WsStream` flushes before it waits), so a pipelining
//! client costs one write per burst, not per message.
//!
//! Bounds: an inject is refused `busy` while [`HIGH_WATER`] bytes wait for the client
//! (it is not reading); a behaviour's replies are bounded by `WsStream`, which stops
//! decoding input while its output is not written. Under `--record strict` a session
//! with parked events stops reading until they are delivered.

use std::task::Poll;
use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wsgate_core::{Command, Direction, Ending, ErrorKind, Initiator, InjectRefused, ReasonKind, SessionHandle, Target};
use wsgate_protocol::{CloseCode, CloseFrame, Message, Transport, WsError, WsStream};

use crate::HIGH_WATER;
use crate::behaviour::{Behaviour, Outbox, record};
use crate::faults::{Disconnect, Faults};

/// Messages handled per wake-up before shutdown, commands and timers get a look in.
pub const BURST: usize = 64;

/// Why an inject "to the upstream" of a served session is refused.
const NO_UPSTREAM: &str = "wsgate answers this session itself, so it has no upstream: inject to \"client\"";

/// Timeouts of one served session.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// How long the close handshake may take once started.
    pub close_timeout: Duration,
    /// Close with 1001 "idle timeout" after this long without a message from the
    /// client; `None`: never.
    pub idle_timeout: Option<Duration>,
    /// The route's faults (`None`: a route kind faults do not apply to).
    pub faults: Option<std::sync::Arc<wsgate_faults::FaultSwitch>>,
}

/// The loop's state besides the connection.
struct Run<'s> {
    session: &'s mut SessionHandle,
    ending: Option<Ending>,
    closing: bool,
    /// A behaviour asked to let other tasks run before the next read.
    yield_now: bool,
    /// The route's faults, when it ever had any (`faults.rs`).
    faults: Option<Box<Faults>>,
    /// A fault dropped the connection: stop without a close handshake.
    abort: bool,
}

impl Run<'_> {
    /// Queues our close frame and notes who ended the session (the first one wins).
    fn start_close(&mut self, ws: &mut WsStream<Transport>, code: u16, reason: &str, by: Initiator) {
        self.ending.get_or_insert_with(|| Ending::closed(code, reason, by));
        let close = Message::Close(Some(CloseFrame::new(code, reason)));
        match self.faults.as_deref_mut().filter(|f| f.holds_output()) {
            // What a fault holds for the client was sent before this close.
            Some(f) => f.close_after = Some(close),
            None => {
                let _ = ws.feed(&close);
            }
        }
        self.closing = true;
    }

    fn command(&mut self, ws: &mut WsStream<Transport>, cmd: Command) {
        match cmd {
            Command::Inject { to: Target::Client, payload, binary, ack } => {
                let buffered = ws.buffered() + self.faults.as_ref().map_or(0, |f| f.held_for_client());
                if self.closing {
                    return ack.send(Err(InjectRefused::Closing { to: Target::Client }));
                }
                // The client is not reading: refuse rather than hold without bound.
                if buffered >= HIGH_WATER {
                    return ack.send(Err(InjectRefused::Busy { to: Target::Client, buffered }));
                }
                let m = if binary { Message::Binary(payload) } else { Message::Text(payload) };
                if ws.feed(&m).is_ok() {
                    record(self.session, Direction::GatewayToClient, &m, true, self.session.frame_time());
                }
                ack.send(Ok(()));
            }
            Command::Inject { to: Target::Upstream, ack, .. } => {
                ack.send(Err(InjectRefused::NoSuchSide { to: Target::Upstream, why: NO_UPSTREAM }));
            }
            Command::Close { code, reason, .. } => {
                if !self.closing {
                    self.start_close(ws, code, &reason, Initiator::Admin);
                }
            }
            // Only a proxy's pump holds frames at breakpoints.
            Command::Release { ack, .. } => {
                let _ = ack.send(false);
            }
        }
    }

    /// Runs a behaviour phase with an outbox; a close it asks for starts here.
    fn phase<B: Behaviour>(
        &mut self,
        ws: &mut WsStream<Transport>,
        b: &mut B,
        f: impl FnOnce(&mut B, &mut Outbox<'_>),
    ) {
        let at = self.session.frame_time();
        self.phase_at(ws, b, at, f);
    }

    /// [`Run::phase`] with the time already read (a received message's).
    fn phase_at<B: Behaviour>(
        &mut self,
        ws: &mut WsStream<Transport>,
        b: &mut B,
        at: chrono::DateTime<chrono::Utc>,
        f: impl FnOnce(&mut B, &mut Outbox<'_>),
    ) {
        let mut out =
            Outbox { ws, session: self.session, at, close: None, yield_now: false, faults: self.faults.as_deref_mut() };
        f(b, &mut out);
        self.yield_now |= out.yield_now;
        if let Some((code, reason)) = out.close.take()
            && !self.closing
        {
            self.start_close(ws, code, &reason, Initiator::Gateway);
        }
    }

    /// What the route's faults have due: held output written, held input handed to
    /// the behaviour, a disconnect carried out.
    fn fault_due<B: Behaviour>(&mut self, ws: &mut WsStream<Transport>, behaviour: &mut B) {
        let Some(f) = self.faults.as_deref_mut() else { return };
        let mut input = Vec::new();
        let disconnect = f.release(ws, &mut input);
        for m in input {
            if !self.closing {
                self.phase(ws, behaviour, |b, out| b.on_message(m, out));
            }
        }
        match disconnect {
            Some(Disconnect::Close(code, reason)) if !self.closing => {
                self.start_close(ws, code, &reason, Initiator::Gateway);
                if let Some(e) = &mut self.ending {
                    e.kind = Some(ReasonKind::Fault);
                }
            }
            Some(Disconnect::Abrupt) if self.ending.is_none() => {
                let mut e =
                    Ending::new(CloseCode::ABNORMAL, Some("fault: abrupt disconnect".into()), Initiator::Gateway);
                e.kind = Some(ReasonKind::Fault);
                self.ending = Some(e);
                self.abort = true;
            }
            _ => {}
        }
    }

    /// Handles one received message (or error); `true` ends the loop.
    async fn received<B: Behaviour>(
        &mut self,
        msg: Result<Message, WsError>,
        ws: &mut WsStream<Transport>,
        behaviour: &mut B,
    ) -> bool {
        match msg {
            Ok(m) => {
                let at = self.session.frame_time();
                let data = matches!(m, Message::Text(_) | Message::Binary(_));
                if data && let Some(f) = self.faults.as_deref_mut() {
                    // Recorded there, with what a fault did to it.
                    for m in f.received(self.session, m, at).into_iter().flatten() {
                        if !self.closing {
                            self.phase_at(ws, behaviour, at, |b, out| b.on_message(m, out));
                        }
                    }
                    return false;
                }
                record(self.session, Direction::ClientToGateway, &m, false, at);
                match m {
                    m @ (Message::Text(_) | Message::Binary(_)) if !self.closing => {
                        self.phase_at(ws, behaviour, at, |b, out| b.on_message(m, out));
                    }
                    Message::Pong(_) if !self.closing => {
                        self.phase_at(ws, behaviour, at, |b, out| b.on_pong(out));
                    }
                    Message::Close(c) if self.ending.is_none() => {
                        // The stream answers with the same code (RFC 6455 §5.5.1); record
                        // that reply, so the history holds both close frames.
                        let code = c.as_ref().map(|c| c.code).unwrap_or(CloseCode::NORMAL);
                        let reply = Message::Close(Some(CloseFrame::new(code, "")));
                        record(self.session, Direction::GatewayToClient, &reply, false, at);
                        self.ending = Some(Ending::new(
                            c.as_ref().map(|c| c.code).unwrap_or(CloseCode::NO_STATUS),
                            c.map(|c| c.reason),
                            Initiator::Client,
                        ));
                        self.closing = true;
                    }
                    _ => {}
                }
                false
            }
            Err(WsError::Closed) => true,
            Err(WsError::Protocol(e)) => {
                self.session.error(ErrorKind::Protocol, format!("client side: {e}"));
                self.ending.get_or_insert_with(|| Ending::new(e.close_code(), Some(e.to_string()), Initiator::Gateway));
                ws.flush_best_effort().await;
                true
            }
            Err(_) => {
                self.ending.get_or_insert_with(|| Ending::dropped(Initiator::Client));
                true
            }
        }
    }
}

/// What woke the loop on the connection's side.
enum Input {
    Received(Result<Message, WsError>),
    /// The behaviour's feed has news.
    Fed,
}

/// The client's next message, or the behaviour's feed being ready — in one future,
/// because both need the stream. The feed is told whether the client is congested
/// (its unwritten output at [`HIGH_WATER`]), and is polled again after the stream
/// has written (so a client that catches up is fed without another wake-up); never
/// once the session is closing. `feed_first` alternates which side goes first, so a
/// flooding client cannot starve its own deliveries, nor a busy feed its reads.
async fn next_input<B: Behaviour>(
    ws: &mut WsStream<Transport>,
    behaviour: &mut B,
    feeding: bool,
    feed_first: bool,
) -> Input {
    std::future::poll_fn(|cx| {
        fn fed<B: Behaviour>(ws: &WsStream<Transport>, b: &mut B, cx: &mut std::task::Context<'_>) -> bool {
            b.poll_feed(cx, ws.buffered() >= HIGH_WATER).is_ready()
        }
        if feeding && feed_first && fed(ws, behaviour, cx) {
            return Poll::Ready(Input::Fed);
        }
        match ws.poll_recv(cx) {
            Poll::Ready(m) => Poll::Ready(Input::Received(m)),
            Poll::Pending if feeding && fed(ws, behaviour, cx) => Poll::Ready(Input::Fed),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Serves one session (already CONNECTED) until it ends, then records its final
/// state ([`Ending::finish`]).
///
/// A plain fn returning an `async move` block rather than an `async fn`: an async
/// fn keeps each argument it rebinds (`mut ws`) twice in its state, as argument and
/// as local — 470 bytes of every idle session's task here — where the block uses
/// what it captured in place.
#[expect(clippy::manual_async_fn, reason = "an async fn would copy its arguments (see above)")]
pub fn run<B: Behaviour>(
    mut ws: WsStream<Transport>,
    session: &mut SessionHandle,
    mut commands: wsgate_core::Commands,
    mut behaviour: B,
    cfg: ServerConfig,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> {
    async move {
        let faults = Faults::new(cfg.faults.as_ref());
        let mut run = Run { session, ending: None, closing: false, yield_now: false, faults, abort: false };
        let mut commands_open = true;
        let mut feed_first = false;
        // One timer for whatever is due next — the close handshake's deadline while
        // closing, else the idle timeout or the behaviour's tick, whichever is sooner —
        // re-armed only when that changes: an idle session holds one timer, not three.
        let timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        let mut close_at = Instant::now();
        let mut last_activity = Instant::now();
        // When to look at the idle timeout next: moved on lazily, when it comes, rather
        // than the timer being reset for every message.
        let mut idle_due = cfg.idle_timeout.map(|d| last_activity + d);
        run.phase(&mut ws, &mut behaviour, |b, out| b.on_open(out));
        loop {
            let was_closing = run.closing;
            let tick = behaviour.next_tick();
            // A run of deliveries the recorder has not had yet goes to it this soon.
            let run_due = run.session.run_due().map(Instant::from_std);
            // Held output still goes out while closing (our close frame waits for it).
            let fault_due = run.faults.as_ref().and_then(|f| f.next_due());
            let due = if run.closing {
                [Some(close_at), fault_due].into_iter().flatten().min()
            } else {
                [idle_due, tick, run_due, fault_due].into_iter().flatten().min()
            };
            if due != armed {
                if let Some(t) = due {
                    timer.as_mut().reset(t);
                }
                armed = due;
            }
            tokio::select! {
                _ = shutdown.cancelled(), if !run.closing => {
                    run.start_close(&mut ws, CloseCode::GOING_AWAY, "gateway shutting down", Initiator::Gateway);
                }
                _ = &mut timer, if armed.is_some() => {
                    // Fired: re-armed from scratch on the next turn.
                    armed = None;
                    let now = Instant::now();
                    if fault_due.is_some_and(|t| now >= t) {
                        run.fault_due(&mut ws, &mut behaviour);
                        if run.abort {
                            break;
                        }
                    }
                    if was_closing {
                        if now >= close_at {
                            break;
                        }
                    } else if run.closing {
                        // A fault's disconnect just started the close: its deadline is
                        // set below.
                    } else if let Some(idle) = cfg.idle_timeout
                        && idle_due.is_some_and(|t| now >= t)
                    {
                        let due = last_activity + idle;
                        if now >= due {
                            run.start_close(&mut ws, CloseCode::GOING_AWAY, "idle timeout", Initiator::Gateway);
                        } else {
                            idle_due = Some(due);
                        }
                    } else if tick.is_some_and(|t| now >= t) {
                        run.phase(&mut ws, &mut behaviour, |b, out| b.on_tick(out));
                    }
                    if run_due.is_some_and(|t| now >= t) {
                        run.session.flush_run();
                    }
                }
                cmd = commands.recv(), if commands_open => match cmd {
                    Some(cmd) => run.command(&mut ws, cmd),
                    None => commands_open = false,
                },
                // Under `--record strict`, events the store could not take yet hold the
                // reads back until it can.
                _ = run.session.settle(), if run.session.has_pending() => {}
                input = next_input(&mut ws, &mut behaviour, !run.closing, feed_first), if !run.session.has_pending() => match input {
                    Input::Fed => {
                        feed_first = false;
                        run.phase(&mut ws, &mut behaviour, |b, out| b.on_feed(out));
                    }
                    Input::Received(msg) => {
                        feed_first = true;
                        if cfg.idle_timeout.is_some() {
                            last_activity = Instant::now();
                        }
                        // Then everything already buffered, without another trip through
                        // select!: a pipelining client's burst is answered in one wake-up.
                        let mut next = Some(msg);
                        let mut stop = false;
                        // Bounded, so shutdown and commands are still seen under a flood.
                        let mut budget = BURST;
                        while let Some(msg) = next.take() {
                            if run.received(msg, &mut ws, &mut behaviour).await {
                                stop = true;
                                break;
                            }
                            budget -= 1;
                            if run.session.has_pending() || budget == 0 || run.yield_now {
                                break;
                            }
                            next = ws.recv().now_or_never();
                        }
                        if stop {
                            break;
                        }
                    }
                },
            }
            if run.closing && !was_closing {
                close_at = Instant::now() + cfg.close_timeout;
            }
            if std::mem::take(&mut run.yield_now) {
                tokio::task::yield_now().await;
            }
        }
        let ending = run.ending.take().unwrap_or_else(Ending::unexplained);
        ending.finish(run.session).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use tokio::net::{TcpListener, TcpStream};
    use wsgate_core::{EventBus, InjectAck, Registry, SessionId, SessionInfo, SessionKind, State};
    use wsgate_protocol::{Role, WsConfig};

    use super::*;

    struct Echo;
    impl Behaviour for Echo {
        fn on_message(&mut self, msg: Message, out: &mut Outbox<'_>) {
            out.send(msg);
        }
    }

    /// A served session over a real loopback connection: its task (returning the
    /// final state), the registry and id to send it commands through (as the control
    /// plane does), and the client's end.
    async fn served(
        cfg: ServerConfig,
    ) -> (tokio::task::JoinHandle<State>, (Arc<Registry>, SessionId), WsStream<TcpStream>) {
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
        let registry = Arc::new(Registry::new(4));
        let (mut session, commands) = SessionHandle::open(info.clone(), EventBus::empty(), registry.clone(), 4);
        let ws = WsStream::new(Transport::Plain(ours), Role::Server, WsConfig::default(), Bytes::new());
        let task = tokio::spawn(async move {
            run(ws, &mut session, commands, Echo, cfg, CancellationToken::new()).await;
            session.state()
        });
        (task, (registry, info.id), WsStream::new(peer, Role::Client, WsConfig::default(), Bytes::new()))
    }

    async fn inject(to_session: &(Arc<Registry>, SessionId), to: Target, len: usize) -> Result<(), InjectRefused> {
        let (ack, reply) = InjectAck::channel();
        let cmd = Command::Inject { to, payload: Bytes::from(vec![b'x'; len]), binary: false, ack };
        to_session.0.command(to_session.1, cmd).unwrap();
        reply.await.unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_session_is_closed_with_1001() {
        let cfg = ServerConfig {
            close_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(30)),
            faults: None,
        };
        let (task, _session, mut client) = served(cfg).await;
        client.send(Message::text("hi")).await.unwrap();
        assert_eq!(client.recv().await.unwrap(), Message::text("hi"));
        match client.recv().await.unwrap() {
            Message::Close(Some(c)) => assert_eq!((c.code, c.reason.as_str()), (CloseCode::GOING_AWAY, "idle timeout")),
            other => panic!("expected the idle close, got {other:?}"),
        }
        // Our reply to the close goes out with the next read.
        assert!(matches!(client.recv().await, Err(WsError::Closed)));
        assert_eq!(task.await.unwrap(), State::Disconnected);
    }

    #[tokio::test]
    async fn injects_are_refused_when_the_client_does_not_read_or_the_side_is_missing() {
        let cfg = ServerConfig { close_timeout: Duration::from_secs(5), idle_timeout: None, faults: None };
        let (_task, session, _client) = served(cfg).await;
        assert!(matches!(inject(&session, Target::Upstream, 1).await, Err(InjectRefused::NoSuchSide { .. })));
        // The client never reads: the socket buffers fill, then the output reaches the mark.
        let mut accepted = 0usize;
        let refused = loop {
            match inject(&session, Target::Client, 64 << 10).await {
                Ok(()) => accepted += 1,
                Err(e) => break e,
            }
            assert!(accepted < 100_000, "never refused");
        };
        assert!(matches!(refused, InjectRefused::Busy { to: Target::Client, buffered } if buffered >= HIGH_WATER));
    }
}
