//! Moves frames between a client and its upstream until both close handshakes finish.
//!
//! One task per session owns both connections and polls them from a single state
//! machine (like `tokio::io::copy_bidirectional`), rather than two tasks joined by
//! channels: it needs no locks or splits, batches every frame decoded from one read
//! into one write, and an idle session costs only its two sockets and this struct —
//! both read buffers are released whenever they are empty.
//!
//! Faithfulness rules:
//! - data frames are forwarded one by one, so fragments stay fragments and opcodes
//!   never change;
//! - pings and pongs are forwarded, never answered here: the peer answers;
//! - a close frame is forwarded with its code and reason; the session is over when both
//!   sides have sent and received one. A side that vanishes without a close frame
//!   makes the proxy drop the other side the same way (1006 is not sendable);
//! - a side that breaks the protocol or exceeds the size limit is failed with the
//!   RFC's close code (1002, 1007, 1009) and its connection shut down as soon as that
//!   close frame is written; the other side gets 1001;
//! - message-level checks (UTF-8 of text, the order of fragments) are the endpoints'
//!   to make: such frames are forwarded, and the endpoint's close code relayed.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use chrono::{DateTime, Utc};
use tokio::io::AsyncWrite;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use wsgate_core::{
    Command, Direction, Ending, ErrorKind, Initiator, InjectAck, InjectRefused, Marks, SessionHandle, Target,
};
use wsgate_faults::{FaultSwitch, Held, SessionFaults};
use wsgate_intercept::{RouteIntercepts, SessionIntercepts};
use wsgate_protocol::deflate::{DeflateParams, Deflater, Inflater};
use wsgate_protocol::frame::random_mask;
use wsgate_protocol::io::{poll_fill, release_if_empty};
use wsgate_protocol::{CloseCode, CloseFrame, Decoder, Frame, OpCode, ProtocolError, Role, Transport, encode_frame};

/// Output queued for one side above which we stop reading the other side
/// (backpressure instead of buffering without bound), and at which an inject to that
/// side is refused `busy`: the mark every served session shares.
pub use wsgate_core::HIGH_WATER;

mod intercept;
mod shaping;

use intercept::{Out, Stage};

/// One connection of the pair.
pub struct Side {
    io: Transport,
    rd: BytesMut,
    wr: BytesMut,
    decoder: Decoder,
    /// We are this side's client, so frames to it are masked.
    masks: bool,
    /// Nothing more will be read: EOF, I/O error, protocol error, or its close frame.
    read_done: bool,
    write_failed: bool,
    /// Failed for breaking the protocol: its TCP is shut down as soon as our close
    /// frame is written, not when the whole session ends.
    shutdown_pending: bool,
    close_sent: bool,
    close_received: bool,
    /// Bytes of the message this side is currently sending (size limit).
    msg_bytes: usize,
    /// A fragmented message forwarded *to* this side is still open: injected messages
    /// must wait for it, or they would land between its fragments.
    out_open: bool,
    deferred: VecDeque<Frame>,
    /// permessage-deflate negotiated with this side: our compressor for what we send
    /// it, and the inflater for what it sends. Each side negotiates on its own, so the
    /// proxy always sees (and reports) plaintext.
    deflate: Option<Box<(Deflater, Inflater)>>,
    /// The message this side is sending is compressed.
    inflating: bool,
    /// The message we are forwarding to this side is being compressed.
    deflating: bool,
    /// Frames to this side held back by latency or throttling (`shaping.rs`) or at
    /// an intercept breakpoint (`intercept.rs`); while any are, every frame to this
    /// side queues behind them.
    held: Held<Out>,
    /// Frames in `held` stopped at a breakpoint: while there are any, what queues
    /// behind them is recorded when it leaves, so history keeps the order the peer sees.
    stops: usize,
}

impl Side {
    /// The client's connection (we are its server).
    pub fn client(
        io: Transport,
        leftover: bytes::Bytes,
        max_message: usize,
        deflate: Option<(DeflateParams, u32)>,
    ) -> Self {
        Self::new(io, leftover, Role::Server, max_message, deflate)
    }

    /// The upstream connection (we are its client).
    pub fn upstream(
        io: Transport,
        leftover: bytes::Bytes,
        max_message: usize,
        deflate: Option<(DeflateParams, u32)>,
    ) -> Self {
        Self::new(io, leftover, Role::Client, max_message, deflate)
    }

    fn new(
        io: Transport,
        leftover: bytes::Bytes,
        role: Role,
        max_message: usize,
        deflate: Option<(DeflateParams, u32)>,
    ) -> Self {
        let deflate = deflate.map(|(p, level)| Box::new(p.codecs(role == Role::Server, level)));
        Self {
            io,
            rd: BytesMut::from(&leftover[..]),
            wr: BytesMut::new(),
            decoder: Decoder::new(role, max_message).allow_rsv1(deflate.is_some()),
            masks: role == Role::Client,
            read_done: false,
            write_failed: false,
            shutdown_pending: false,
            close_sent: false,
            close_received: false,
            msg_bytes: 0,
            out_open: false,
            deferred: VecDeque::new(),
            deflate,
            inflating: false,
            deflating: false,
            held: Held::default(),
            stops: 0,
        }
    }

    /// Bytes waiting to go to this side, held or queued: the backpressure mark's measure.
    fn waiting(&self) -> usize {
        self.wr.len() + self.held.bytes()
    }

    /// Queues a frame being forwarded to this side, keeping a fragmented message's
    /// frames together (injects wait for its end).
    fn emit(&mut self, frame: &Frame) {
        match frame.opcode {
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                self.push_data(frame.fin, frame.opcode, &frame.payload);
                self.out_open = !frame.fin;
                if frame.fin {
                    while let Some(f) = self.deferred.pop_front() {
                        self.push_data(true, f.opcode, &f.payload);
                    }
                }
            }
            _ => self.push(true, frame.opcode, &frame.payload),
        }
    }

    /// Forwards `frame` (already recorded) to this side now, or behind the frames
    /// held for it.
    fn forward(&mut self, frame: Frame) {
        if self.held.is_empty() {
            self.emit(&frame);
        } else {
            self.hold_until(Instant::now(), frame, Stage::Recorded);
        }
    }

    /// Queues `frame` in `held` until `due` (or until what is ahead of it has gone).
    fn hold_until(&mut self, due: Instant, frame: Frame, stage: Stage) {
        let len = frame.payload.len();
        self.held.push(due, len, Out { frame, stage });
    }

    /// Queues a control frame (never compressed).
    fn push(&mut self, fin: bool, opcode: OpCode, payload: &[u8]) {
        let mask = self.masks.then(random_mask);
        encode_frame(&mut self.wr, (fin, false, opcode), payload, mask);
    }

    /// Queues a data frame of plaintext, compressing it when this side negotiated
    /// permessage-deflate (RSV1 on the message's first frame only).
    fn push_data(&mut self, fin: bool, opcode: OpCode, plaintext: &[u8]) {
        let first = opcode != OpCode::Continuation;
        if first {
            self.deflating = self.deflate.is_some();
        }
        let mask = self.masks.then(random_mask);
        match self.deflate.as_mut().filter(|_| self.deflating) {
            Some(d) => {
                let compressed = d.0.compress(plaintext, fin);
                encode_frame(&mut self.wr, (fin, first, opcode), &compressed, mask);
            }
            None => encode_frame(&mut self.wr, (fin, false, opcode), plaintext, mask),
        }
    }

    /// The plaintext of a data frame this side sent (inflated if its message is
    /// compressed), within `limit` bytes.
    fn plaintext(&mut self, frame: &Frame, limit: usize) -> Result<bytes::Bytes, ProtocolError> {
        if frame.opcode != OpCode::Continuation {
            self.inflating = frame.rsv1;
        }
        if !self.inflating {
            return Ok(frame.payload.clone());
        }
        let d = self.deflate.as_mut().ok_or(ProtocolError::ReservedBits)?;
        let mut out = BytesMut::new();
        d.1.inflate(&frame.payload, frame.fin, &mut out, limit)?;
        Ok(out.freeze())
    }

    /// Queues a close frame of our own (once).
    fn send_close(&mut self, code: u16, reason: &str) {
        if !self.close_sent {
            self.close_sent = true;
            // Behind any frames a fault holds for this side: they were sent before it.
            self.forward(Frame::new(OpCode::Close, CloseFrame::new(code, reason).encode()));
        }
    }

    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.wr.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.wr))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.wr.advance(n);
        }
        release_if_empty(&mut self.wr);
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// Handed back to the early-accept phase, which reads the client before an
    /// upstream exists.
    pub(crate) fn poll_next_frame(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Frame>, ProtocolError>> {
        loop {
            match self.decoder.decode(&mut self.rd)? {
                Some(frame) => {
                    release_if_empty(&mut self.rd);
                    return Poll::Ready(Ok(Some(frame)));
                }
                None => match poll_fill(&mut self.io, cx, &mut self.rd) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Ok(None)),
                    Poll::Ready(Ok(_)) => {}
                    Poll::Pending => return Poll::Pending,
                },
            }
        }
    }

    /// Writes a frame straight away (early phase: closing or answering the client
    /// before a pump exists).
    pub(crate) async fn write_now(&mut self, frame: &Frame) -> io::Result<()> {
        self.push(frame.fin, frame.opcode, &frame.payload);
        if frame.opcode == OpCode::Close {
            self.close_sent = true;
        }
        poll_fn(|cx| self.poll_write_out(cx)).await
    }

    /// Queues a data frame towards this side (early-phase queue flush).
    pub(crate) fn queue_frame(&mut self, frame: &Frame) {
        self.push_data(frame.fin, frame.opcode, &frame.payload);
        if matches!(frame.opcode, OpCode::Text | OpCode::Binary | OpCode::Continuation) {
            self.out_open = !frame.fin;
        }
    }

    pub(crate) fn mark_close_received(&mut self) {
        self.close_received = true;
        self.read_done = true;
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Who {
    Client,
    Upstream,
}

impl Who {
    fn outgoing_direction(self) -> Direction {
        match self {
            Who::Client => Direction::ClientToUpstream,
            Who::Upstream => Direction::UpstreamToClient,
        }
    }
    /// The direction of what is sent to this side.
    fn incoming_direction(self) -> Direction {
        self.other().outgoing_direction()
    }
    fn other(self) -> Who {
        match self {
            Who::Client => Who::Upstream,
            Who::Upstream => Who::Client,
        }
    }
    fn initiator(self) -> Initiator {
        match self {
            Who::Client => Initiator::Client,
            Who::Upstream => Initiator::Upstream,
        }
    }
}

/// Timeouts and limits of one pump.
#[derive(Clone)]
pub struct PumpConfig {
    pub max_message_size: usize,
    /// The route's faults (`wsgate-faults`), switched at run time.
    pub faults: Arc<FaultSwitch>,
    /// The route's intercept breakpoints (`wsgate-intercept`), armed at run time.
    pub intercepts: Arc<RouteIntercepts>,
    /// The route's rules (`wsgate-rules`), transforming what it forwards.
    pub rules: Option<Arc<wsgate_rules::Rules>>,
    /// Their random values' seed.
    pub seed: Option<u64>,
    pub idle_timeout: Option<Duration>,
    pub close_timeout: Duration,
}

pub struct Pump<'a> {
    client: Side,
    upstream: Side,
    session: &'a mut SessionHandle,
    commands: wsgate_core::Commands,
    cfg: PumpConfig,
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    shutting_down: bool,
    commands_closed: bool,
    close_deadline: Option<Pin<Box<Sleep>>>,
    idle: Option<Pin<Box<Sleep>>>,
    last_activity: Instant,
    /// How the session ended (the first one to say wins), for its final transition.
    ending: Option<Ending>,
    /// A side vanished or broke: stop once pending output is flushed.
    abort: bool,
    /// The route's faults as this session applies them (`shaping.rs`).
    faults: SessionFaults,
    /// Due when the next held frame is, or a fault's timed disconnect.
    fault_timer: Option<Pin<Box<Sleep>>>,
    /// A fault's timed disconnect, while it is to come.
    fault_deadline: Option<Instant>,
    /// A fault's disconnect waits for the held frames to go out.
    disconnect_pending: bool,
    /// A fault's disconnect happened (once per session).
    fault_disconnected: bool,
    /// The route's rules as this session runs them (`shaping.rs`); `None`: no rules.
    rules: Option<Box<wsgate_rules::Conversation>>,
    /// The route's breakpoints as this session checks them (`intercept.rs`).
    intercepts: SessionIntercepts,
}

impl<'a> Pump<'a> {
    pub fn new(
        client: Side,
        upstream: Side,
        session: &'a mut SessionHandle,
        commands: wsgate_core::Commands,
        cfg: PumpConfig,
        shutdown: CancellationToken,
    ) -> Self {
        let idle = cfg.idle_timeout.map(|d| Box::pin(tokio::time::sleep(d)));
        let mut faults = SessionFaults::new(cfg.faults.clone());
        let fault_deadline = if faults.active() { faults.disconnect_at() } else { None };
        let rules = cfg.rules.clone().map(|r| Box::new(wsgate_rules::Conversation::new(r, cfg.seed)));
        let intercepts = SessionIntercepts::new(cfg.intercepts.clone());
        Self {
            client,
            upstream,
            session,
            commands,
            cfg,
            shutdown: Box::pin(shutdown.cancelled_owned()),
            shutting_down: false,
            commands_closed: false,
            close_deadline: None,
            idle,
            last_activity: Instant::now(),
            ending: None,
            abort: false,
            faults,
            fault_timer: None,
            fault_deadline,
            disconnect_pending: false,
            fault_disconnected: false,
            rules,
            intercepts,
        }
    }

    /// Runs until both sides are closed, then records the session's final state.
    pub async fn run(mut self) {
        poll_fn(|cx| self.poll_run(cx)).await;
        // Frames still held at breakpoints go with the session.
        self.intercepts.end(self.session.id());
        shutdown_quietly(&mut self.upstream).await;
        shutdown_quietly(&mut self.client).await;
        self.ending.take().unwrap_or_else(Ending::unexplained).finish(self.session).await;
    }

    fn sides(&mut self, from: Who) -> (&mut Side, &mut Side) {
        match from {
            Who::Client => (&mut self.client, &mut self.upstream),
            Who::Upstream => (&mut self.upstream, &mut self.client),
        }
    }

    fn side(&mut self, who: Who) -> &mut Side {
        self.sides(who).0
    }

    fn finished(&self) -> bool {
        let closed = |s: &Side| s.close_sent && s.close_received;
        let flushed = |s: &Side| (s.wr.is_empty() && (s.held.is_empty() || self.abort)) || s.write_failed;
        (closed(&self.client) && closed(&self.upstream) || self.abort)
            && flushed(&self.client)
            && flushed(&self.upstream)
    }

    fn arm_close_deadline(&mut self) {
        if self.close_deadline.is_none() {
            self.close_deadline = Some(Box::pin(tokio::time::sleep(self.cfg.close_timeout)));
        }
    }

    fn note_end(&mut self, code: u16, reason: Option<String>, initiator: Initiator) {
        self.ending.get_or_insert_with(|| Ending::new(code, reason, initiator));
    }

    /// Closes both sides with our own close frames (admin close, shutdown, idle).
    fn gateway_close(&mut self, code: u16, reason: &str, initiator: Initiator) {
        // Frames held at breakpoints go first, unchanged, as their timeout would send
        // them: the close then follows at once instead of waiting for an operator.
        self.release_all();
        self.note_end(code, Some(reason.to_owned()), initiator);
        self.client.send_close(code, reason);
        self.upstream.send_close(code, reason);
        self.arm_close_deadline();
    }

    /// Fails `who` for breaking the protocol (or a limit); the other side is told
    /// we are going away.
    fn fail(&mut self, who: Who, err: &ProtocolError) {
        let code = err.close_code();
        let reason = err.to_string();
        self.session.error(ErrorKind::Protocol, format!("{who:?} side: {reason}"));
        self.note_end(code, Some(reason.clone()), Initiator::Gateway);
        // It will not read what a fault or a breakpoint held for it.
        self.discard_held(who);
        let (bad, other) = self.sides(who);
        bad.send_close(code, &reason);
        bad.mark_close_received();
        // RFC 6455 §7.1.7: failing a connection closes it. Nothing more will be read
        // from this side, so it need not wait for the other side's close handshake
        // (up to `close_timeout`) to see its connection end.
        bad.shutdown_pending = true;
        let note = match who {
            Who::Client => "client failed the WebSocket protocol",
            Who::Upstream => "upstream failed the WebSocket protocol",
        };
        other.send_close(CloseCode::GOING_AWAY, note);
        self.arm_close_deadline();
    }

    fn inject(&mut self, to: Target, payload: bytes::Bytes, binary: bool, ack: InjectAck) {
        let (who, direction) = match to {
            Target::Client => (Who::Client, Direction::UpstreamToClient),
            Target::Upstream => (Who::Upstream, Direction::ClientToUpstream),
        };
        let opcode = if binary { OpCode::Binary } else { OpCode::Text };
        let side = self.side(who);
        if side.close_sent {
            return ack.send(Err(InjectRefused::Closing { to }));
        }
        // The same mark that stops forwarding to this side: a peer that is not
        // reading cannot make the gateway hold more than that plus one message.
        let buffered = side.waiting() + side.deferred.iter().map(|f| f.payload.len()).sum::<usize>();
        if buffered >= HIGH_WATER {
            return ack.send(Err(InjectRefused::Busy { to, buffered }));
        }
        ack.send(Ok(()));
        let frame = Frame::new(opcode, payload);
        if side.out_open {
            side.deferred.push_back(frame.clone());
        } else {
            side.push_data(true, opcode, &frame.payload);
        }
        self.session.frame(direction, &frame, true);
    }

    /// Handles one frame read from `from` at `at` (the time of the read it came in).
    fn on_frame(&mut self, from: Who, mut frame: Frame, at: DateTime<Utc>) {
        let direction = from.outgoing_direction();
        let max = self.cfg.max_message_size;
        if frame.rsv1 && frame.opcode != OpCode::Text && frame.opcode != OpCode::Binary {
            return self.fail(from, &ProtocolError::MisplacedRsv1);
        }
        match frame.opcode {
            OpCode::Close => {
                let parsed = match CloseFrame::parse(&frame.payload) {
                    Ok(p) => p,
                    Err(e) => return self.fail(from, &e),
                };
                let (code, reason) = match parsed {
                    Some(c) => (c.code, Some(c.reason)),
                    None => (CloseCode::NO_STATUS, None),
                };
                self.note_end(code, reason, from.initiator());
                self.pass(from, frame, at);
                let (src, dst) = self.sides(from);
                src.mark_close_received();
                dst.close_sent = true;
                self.arm_close_deadline();
            }
            OpCode::Ping | OpCode::Pong => {
                let (_, dst) = self.sides(from);
                if dst.stops > 0 && !dst.close_sent {
                    // Keepalives go round a frame an operator is deciding on (control
                    // frames may come between any two frames): a peer's ping timeout
                    // must not end the session while someone reads.
                    self.session.frame_at(direction, &frame, false, at);
                    return self.sides(from).1.emit(&frame);
                }
                self.pass(from, frame, at)
            }
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                let (src, _) = self.sides(from);
                if frame.opcode != OpCode::Continuation {
                    src.msg_bytes = 0;
                }
                match src.plaintext(&frame, max.saturating_sub(src.msg_bytes)) {
                    Ok(p) => frame.payload = p,
                    Err(e) => return self.fail(from, &e),
                }
                src.msg_bytes += frame.payload.len();
                if src.msg_bytes > max {
                    let size = src.msg_bytes;
                    return self.fail(from, &ProtocolError::MessageTooLarge { size, limit: max });
                }
                frame.rsv1 = false;
                // Breakpoints, rules and faults act on whole messages; a fragmented one
                // goes as it came.
                if frame.fin && frame.opcode != OpCode::Continuation {
                    if let Some(bp) = self.intercepts.check(direction, &frame.payload) {
                        return self.stop(from, frame, &bp, at);
                    }
                    if self.rules.is_some() {
                        return self.apply_rules(from, frame, at);
                    }
                    if self.faults.active() {
                        return self.shape(from, frame, at, Marks::NONE);
                    }
                }
                self.pass(from, frame, at);
            }
        }
    }

    /// Reads and forwards what `from` has sent, as far as backpressure allows.
    fn read_side(&mut self, from: Who, cx: &mut Context<'_>) -> bool {
        let mut progressed = false;
        // One clock read per burst, shared by every frame decoded in it.
        let mut at: Option<DateTime<Utc>> = None;
        loop {
            // Under `--record strict` a frame the store could not take yet holds the
            // reads back (the poll registers our waker for when it can).
            if self.session.poll_settle(cx).is_pending() {
                return progressed;
            }
            let (src, dst) = self.sides(from);
            if src.read_done || dst.waiting() >= HIGH_WATER {
                return progressed;
            }
            match src.decoder.decode(&mut src.rd) {
                Ok(Some(frame)) => {
                    progressed = true;
                    let now = match at {
                        Some(t) => t,
                        None => {
                            self.last_activity = Instant::now();
                            *at.insert(Utc::now())
                        }
                    };
                    self.on_frame(from, frame, now);
                }
                Ok(None) => {
                    release_if_empty(&mut src.rd);
                    match poll_fill(&mut src.io, cx, &mut src.rd) {
                        Poll::Pending => return progressed,
                        Poll::Ready(Ok(n)) if n > 0 => progressed = true,
                        Poll::Ready(_) => {
                            // EOF or reset without a close frame (or after we sent ours).
                            src.read_done = true;
                            if src.close_sent {
                                src.close_received = true;
                            } else {
                                self.ending.get_or_insert_with(|| Ending::dropped(from.initiator()));
                                self.abort = true;
                            }
                            return true;
                        }
                    }
                }
                Err(e) => {
                    self.fail(from, &e);
                    return true;
                }
            }
        }
    }

    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let mut progressed = false;

            while !self.commands_closed {
                match self.commands.poll_recv(cx) {
                    Poll::Ready(Some(Command::Inject { to, payload, binary, ack })) => {
                        self.inject(to, payload, binary, ack)
                    }
                    Poll::Ready(Some(Command::Close { code, reason, kind })) => {
                        // The gateway's own reason (a replaced session) is the gateway's
                        // doing; any other close command is an operator's.
                        let initiator = if kind.is_some() { Initiator::Gateway } else { Initiator::Admin };
                        let first = self.ending.is_none();
                        self.gateway_close(code, &reason, initiator);
                        // Only when this close is what ends the session.
                        if let (true, Some(ending)) = (first, &mut self.ending) {
                            ending.kind = kind;
                        }
                    }
                    Poll::Ready(Some(Command::Release { hold, verdict, ack })) => {
                        let _ = ack.send(self.release(hold, verdict));
                    }
                    Poll::Ready(None) => self.commands_closed = true,
                    Poll::Pending => break,
                }
                progressed = true;
            }

            if !self.shutting_down && self.shutdown.as_mut().poll(cx).is_ready() {
                self.shutting_down = true;
                self.gateway_close(CloseCode::GOING_AWAY, "gateway shutting down", Initiator::Gateway);
                progressed = true;
            }

            for who in [Who::Client, Who::Upstream] {
                let side = self.side(who);
                if !side.wr.is_empty() && !side.write_failed {
                    let before = side.wr.len();
                    match side.poll_write_out(cx) {
                        Poll::Ready(Ok(())) => progressed = true,
                        Poll::Ready(Err(_)) => {
                            side.write_failed = true;
                            side.read_done = true;
                            self.abort = true;
                            progressed = true;
                        }
                        Poll::Pending => progressed |= self.side(who).wr.len() != before,
                    }
                }
                let side = self.side(who);
                if side.shutdown_pending
                    && (side.wr.is_empty() || side.write_failed)
                    && Pin::new(&mut side.io).poll_shutdown(cx).is_ready()
                {
                    side.shutdown_pending = false;
                    progressed = true;
                }
            }

            progressed |= self.read_side(Who::Client, cx);
            progressed |= self.read_side(Who::Upstream, cx);
            progressed |= self.poll_faults(cx);

            if self.finished() {
                return Poll::Ready(());
            }
            if let Some(d) = self.close_deadline.as_mut()
                && d.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(());
            }
            if let Some(timeout) = self.cfg.idle_timeout
                && let Some(idle) = self.idle.as_mut()
                && idle.as_mut().poll(cx).is_ready()
            {
                let due = self.last_activity + timeout;
                if Instant::now() >= due {
                    self.idle = None;
                    self.gateway_close(CloseCode::GOING_AWAY, "idle timeout", Initiator::Gateway);
                } else {
                    idle.as_mut().reset(due);
                }
                progressed = true;
            }
            if !progressed {
                return Poll::Pending;
            }
        }
    }
}

/// Sends TCP FIN (and TLS close_notify) without letting a stuck peer hold the task.
async fn shutdown_quietly(side: &mut Side) {
    let _ = tokio::time::timeout(Duration::from_millis(200), tokio::io::AsyncWriteExt::shutdown(&mut side.io)).await;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use wsgate_core::{EventBus, Registry, SessionId, SessionInfo, SessionKind};

    use super::*;

    /// A connected TCP pair: (the pump's end, the peer's end).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (ours, _) = listener.accept().await.unwrap();
        (ours, peer)
    }

    #[tokio::test]
    async fn a_failed_side_is_closed_without_waiting_for_the_other_sides_close() {
        let (client_io, mut client) = pair().await;
        let (upstream_io, mut upstream) = pair().await;
        let info = SessionInfo {
            id: SessionId::new(),
            kind: SessionKind::Proxy,
            route: "default".into(),
            path: "/".into(),
            client_addr: None,
            headers: Vec::new(),
            opened_at: Utc::now(),
            payloads: Default::default(),
        };
        let (mut session, commands) = SessionHandle::open(info, EventBus::empty(), Arc::new(Registry::new(4)), 4);
        // A close timeout far beyond the test's deadline: only failing closes the upstream.
        let cfg = PumpConfig {
            max_message_size: 1024,
            idle_timeout: None,
            close_timeout: Duration::from_secs(600),
            faults: Arc::default(),
            intercepts: Arc::default(),
            rules: None,
            seed: None,
        };
        let pump = tokio::spawn(async move {
            let client = Side::client(Transport::Plain(client_io), Bytes::new(), 1024, None);
            let upstream = Side::upstream(Transport::Plain(upstream_io), Bytes::new(), 1024, None);
            Pump::new(client, upstream, &mut session, commands, cfg, CancellationToken::new()).run().await;
        });

        // The upstream sends reserved opcode 0x3: it gets 1002, then its connection ends,
        // although the client has not answered the proxy's 1001 yet.
        upstream.write_all(&[0x83, 0x00]).await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), upstream.read_to_end(&mut got))
            .await
            .expect("the failed upstream's connection ends")
            .unwrap();
        let mut buf = BytesMut::from(&got[..]);
        let close = Decoder::new(Role::Server, 1024).decode(&mut buf).unwrap().unwrap();
        assert_eq!(CloseFrame::parse(&close.payload).unwrap().map(|c| c.code), Some(CloseCode::PROTOCOL));

        // The client got 1001 and is still waited for; its answer ends the session.
        let mut got = BytesMut::new();
        let close = loop {
            if let Some(f) = Decoder::new(Role::Client, 1024).decode(&mut got).unwrap() {
                break f;
            }
            client.read_buf(&mut got).await.unwrap();
        };
        assert_eq!(CloseFrame::parse(&close.payload).unwrap().map(|c| c.code), Some(CloseCode::GOING_AWAY));
        let mut answer = BytesMut::new();
        encode_frame(&mut answer, (true, false, OpCode::Close), &close.payload, Some(random_mask()));
        client.write_all(&answer).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), pump).await.expect("the session ends").unwrap();
    }
}
