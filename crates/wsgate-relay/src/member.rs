//! One relay connection's behaviour on the shared server loop: what its client sends
//! goes to the hub (raw: to its room; envelope: commands), what the hub delivers to
//! its mailbox is written out (`poll_feed`/`on_feed`), heartbeats are ticks.
//!
//! Everything here is owned by the session's task; the hub sees the member only
//! through its [`Mailbox`].

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use wsgate_core::ErrorKind;
use wsgate_protocol::{CloseCode, Message};
use wsgate_session::{Behaviour, Outbox};

use crate::envelope::{self, AckInfo, ClientFrame, EnvelopeError, Id, Payload};
use crate::hub::{Hub, Member as HubMember};
use crate::mailbox::Taken;
use crate::rate::TokenBucket;
use crate::rooms::RoomPatterns;
use crate::stats::Clock;
use crate::{Protocol, RelaySettings};

/// Deliveries written per feed wake-up: a member with a deep queue still lets its
/// session task see commands and timers.
const FEED_BATCH: usize = 256;
/// Drops are reported in the session's history at most this often.
const DROP_REPORT_EVERY: Duration = Duration::from_secs(1);

/// Close code for a member whose queue overflowed under `overflow: disconnect`.
pub const CLOSE_SLOW: u16 = 1013;

pub struct Member {
    hub: Arc<Hub>,
    entry: Arc<HubMember>,
    settings: Arc<RelaySettings>,
    /// The room named by the request path.
    path_room: Arc<str>,
    rooms: Vec<Arc<str>>,
    /// The rooms its token allows (`None`: every room).
    allowed: Option<RoomPatterns>,
    taken: Taken,
    bucket: Option<TokenBucket>,
    bad_frames: u32,
    /// Pings sent without a pong since the last pong.
    unanswered: u32,
    next_ping: Option<Instant>,
    dropped_unreported: u64,
    last_drop_report: Option<Instant>,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member").field("session", &self.entry.session).field("rooms", &self.rooms).finish()
    }
}

impl Member {
    pub(crate) fn new(
        hub: Arc<Hub>,
        entry: Arc<HubMember>,
        settings: Arc<RelaySettings>,
        path: &str,
        allowed: Option<RoomPatterns>,
    ) -> Self {
        let bucket = settings.rate.map(|r| TokenBucket::new(r.per_second, r.burst));
        let next_ping = settings.heartbeat.map(|h| Instant::now() + h.interval);
        Self {
            hub,
            entry,
            settings,
            path_room: path.into(),
            rooms: Vec::new(),
            allowed,
            taken: Taken::default(),
            bucket,
            bad_frames: 0,
            unanswered: 0,
            next_ping,
            dropped_unreported: 0,
            last_drop_report: None,
        }
    }

    fn join(&mut self, room: &str) -> u64 {
        let offset = self.hub.join(&self.entry, room);
        if !self.rooms.iter().any(|r| &**r == room) {
            self.rooms.push(room.into());
        }
        offset
    }

    fn send_frame(out: &mut Outbox<'_>, b: Bytes) {
        out.send(Message::Text(b));
    }

    /// Publishes to `room`, skipping the sender unless it gets its own messages. When
    /// some member's queue is filling, this client's session lets the members' tasks
    /// run before it reads more: a fast publisher is slowed to what its room takes
    /// rather than losing messages to the overflow policy. A member that does not read
    /// at all is left to that policy.
    fn publish(
        &self,
        room: &str,
        payload: &Payload,
        timestamp: Option<i64>,
        out: &mut Outbox<'_>,
    ) -> crate::hub::Published {
        let me = self.entry.session;
        let skip = (!self.settings.echo_sender).then_some(me);
        // The recorder keeps the publication once, in the room's log; every member's
        // history refers to it.
        let p = if out.keeps_logs() {
            self.hub.publish(room, payload, Some(me), skip, timestamp, Some(&mut |e| out.log(e)))
        } else {
            self.hub.publish(room, payload, Some(me), skip, timestamp, None)
        };
        if p.congested {
            out.yield_to_others();
        }
        p
    }

    fn envelope(&mut self, msg: Message, out: &mut Outbox<'_>) {
        let frame = match &msg {
            Message::Text(b) => envelope::parse(b),
            _ => Err(envelope::Refused { id: None, error: EnvelopeError::Binary }),
        };
        match frame {
            Ok(f) => self.command(f, out),
            Err(r) => self.refuse(r.id.as_ref(), &r.error, out),
        }
    }

    fn refuse(&mut self, id: Option<&Id>, e: &EnvelopeError, out: &mut Outbox<'_>) {
        self.entry.stats.bad_frames.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self::send_frame(out, envelope::error(id, e));
        if !e.is_malformed() {
            return;
        }
        self.bad_frames += 1;
        out.error(ErrorKind::BadFrame, format!("refused an envelope frame: {e}"));
        if self.bad_frames >= self.settings.max_bad_frames {
            let reason = format!("{} malformed frames", self.bad_frames);
            out.close(CloseCode::POLICY, reason);
        }
    }

    fn allowed(&self, room: &str) -> Result<(), EnvelopeError> {
        match &self.allowed {
            Some(p) if !p.allows(room) => Err(EnvelopeError::Forbidden(room.into())),
            _ => Ok(()),
        }
    }

    fn command(&mut self, f: ClientFrame, out: &mut Outbox<'_>) {
        let ack = |out: &mut Outbox<'_>, id: &Option<Id>, info: AckInfo<'_>| {
            if let Some(id) = id {
                Self::send_frame(out, envelope::ack(id, info));
            }
        };
        match f {
            ClientFrame::Join { id, room } => {
                if let Err(e) = self.allowed(&room) {
                    return self.refuse(id.as_ref(), &e, out);
                }
                let offset = self.join(&room);
                ack(out, &id, AckInfo { room: Some(&room), offset: Some(offset), ..AckInfo::default() });
            }
            ClientFrame::Leave { id, room } => {
                if !self.hub.leave(&self.entry, &room) {
                    return self.refuse(id.as_ref(), &EnvelopeError::NotMember(room), out);
                }
                self.rooms.retain(|r| **r != *room);
                ack(out, &id, AckInfo { room: Some(&room), ..AckInfo::default() });
            }
            ClientFrame::Publish { id, room: Some(room), data, timestamp, .. } => {
                if let Err(e) = self.allowed(&room) {
                    return self.refuse(id.as_ref(), &e, out);
                }
                let p = self.publish(&room, &data, timestamp, out);
                ack(out, &id, AckInfo { room: Some(&room), offset: p.offset, delivered: Some(p.delivered) });
            }
            // WarpSocket's event without a room: to every room the client is in (each
            // one joined under the token's rules).
            ClientFrame::Publish { id, room: None, data, timestamp, .. } => {
                let mut delivered = 0;
                for room in &self.rooms {
                    delivered += self.publish(room, &data, timestamp, out).delivered;
                }
                ack(out, &id, AckInfo { delivered: Some(delivered), ..AckInfo::default() });
            }
            ClientFrame::Send { id, to, data, timestamp } => {
                let delivered = self.hub.send(to.ids(), &data, Some(self.entry.session), timestamp);
                ack(out, &id, AckInfo { delivered: Some(delivered), ..AckInfo::default() });
            }
            ClientFrame::Heartbeat { id } => Self::send_frame(out, envelope::heartbeat(id.as_ref())),
            ClientFrame::Ack { .. } => {}
        }
    }

    /// Drops since the last report, said in the session's history at most once a
    /// second (a flood of drops is one line a second, not one per message).
    fn report_drops(&mut self, dropped: u64, out: &mut Outbox<'_>) {
        self.dropped_unreported += dropped;
        if self.dropped_unreported == 0 {
            return;
        }
        let now = Instant::now();
        if self.last_drop_report.is_some_and(|t| now < t + DROP_REPORT_EVERY) {
            return;
        }
        self.last_drop_report = Some(now);
        let policy = self.settings.mailbox.overflow.as_str();
        let n = std::mem::take(&mut self.dropped_unreported);
        out.error(ErrorKind::SlowConsumer, format!("{n} messages dropped: queue full ({policy})"));
    }
}

impl Behaviour for Member {
    fn on_open(&mut self, out: &mut Outbox<'_>) {
        let room = self.path_room.clone();
        // An envelope client whose token does not allow its path's room starts in
        // no room (a raw one was refused at the upgrade).
        let path_allowed = self.allowed(&room).is_ok();
        if self.settings.protocol == Protocol::Raw || (self.settings.join_path_room && path_allowed) {
            self.join(&room);
        }
        if self.settings.protocol == Protocol::Envelope {
            Self::send_frame(out, envelope::welcome(self.entry.session, &self.rooms));
        }
    }

    fn on_message(&mut self, msg: Message, out: &mut Outbox<'_>) {
        use std::sync::atomic::Ordering::Relaxed;
        self.entry.stats.messages.fetch_add(1, Relaxed);
        if let Some(b) = &mut self.bucket
            && !b.take(Instant::now())
        {
            self.entry.stats.rate_limited.fetch_add(1, Relaxed);
            let rate = self.settings.rate.map_or(0.0, |r| r.per_second);
            return out.close(CloseCode::POLICY, format!("rate limit: more than {rate} messages/s"));
        }
        match self.settings.protocol {
            Protocol::Envelope => self.envelope(msg, out),
            Protocol::Raw => {
                let payload = match msg {
                    Message::Text(b) => Payload::Text(b),
                    Message::Binary(b) => Payload::Binary(b),
                    _ => return,
                };
                let room = self.path_room.clone();
                self.publish(&room, &payload, None, out);
            }
        }
    }

    fn poll_feed(&mut self, cx: &mut Context<'_>, congested: bool) -> Poll<()> {
        self.entry.mailbox.poll_ready(cx, congested)
    }

    fn on_feed(&mut self, out: &mut Outbox<'_>) {
        let mut taken = std::mem::take(&mut self.taken);
        // A member that is not reading is only told of drops and overflow.
        let batch = if out.buffered() >= wsgate_session::HIGH_WATER { 0 } else { FEED_BATCH };
        self.entry.mailbox.take(batch, &mut taken);
        // Fewer than asked for: the queue is empty now.
        let caught_up = taken.deliveries.len() < batch;
        let now = Clock::now();
        for d in taken.deliveries.drain(..) {
            self.entry.stats.fanout.observe(now.saturating_duration_since(d.published));
            let sent = match &d.logged {
                Some((log, offset)) => out.send_logged(d.msg, log, *offset),
                None => out.send(d.msg),
            };
            if !sent {
                break;
            }
        }
        let dropped = std::mem::take(&mut taken.dropped);
        let overflowed = std::mem::take(&mut taken.overflowed);
        // A member that caught up gives its batch's room back (a full batch is
        // 18 KiB, otherwise kept by every member that ever had a burst); one still
        // behind keeps it for the next.
        if caught_up && taken.deliveries.capacity() > 16 {
            taken.deliveries = Vec::new();
        }
        self.taken = taken;
        self.report_drops(dropped, out);
        if overflowed {
            let m = self.settings.mailbox;
            let why = format!("slow consumer: more than {} messages or {} bytes waiting", m.max_messages, m.max_bytes);
            out.error(ErrorKind::SlowConsumer, why.clone());
            out.close(CLOSE_SLOW, why);
        }
    }

    fn next_tick(&self) -> Option<Instant> {
        // Drops held back by the once-a-second report are said when it comes round.
        let report = self.last_drop_report.filter(|_| self.dropped_unreported > 0).map(|t| t + DROP_REPORT_EVERY);
        match (self.next_ping, report) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn on_tick(&mut self, out: &mut Outbox<'_>) {
        self.report_drops(0, out);
        let Some(h) = self.settings.heartbeat else { return };
        if self.next_ping.is_none_or(|t| Instant::now() < t) {
            return;
        }
        if self.unanswered >= h.misses {
            self.next_ping = None;
            let reason = format!("heartbeat timeout: no pong to {} pings", self.unanswered);
            return out.close(CloseCode::GOING_AWAY, reason);
        }
        out.ping(Bytes::new());
        self.unanswered += 1;
        self.next_ping = Some(Instant::now() + h.interval);
    }

    fn on_pong(&mut self, _out: &mut Outbox<'_>) {
        self.unanswered = 0;
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.hub.unregister(&self.entry, &self.rooms);
        let stats = &self.entry.stats;
        stats.connected.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        stats.disconnections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use tokio::net::{TcpListener, TcpStream};
    use tokio_util::sync::CancellationToken;
    use wsgate_core::{EventBus, Registry, SessionHandle, SessionId, SessionInfo, SessionKind, State};
    use wsgate_protocol::{CloseFrame, Role, Transport, WsConfig, WsStream};
    use wsgate_session::ServerConfig;

    use super::*;
    use crate::mailbox::Mailbox;
    use crate::{Heartbeat, RelaySettings};

    /// A relay member served over a real loopback connection, on paused time: the
    /// session's task (returning its final state) and the client's end.
    async fn member(settings: RelaySettings) -> (tokio::task::JoinHandle<State>, WsStream<TcpStream>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (ours, _) = listener.accept().await.unwrap();
        let info = SessionInfo {
            id: SessionId::new(),
            kind: SessionKind::Relay,
            route: "r".into(),
            path: "/hb".into(),
            client_addr: None,
            headers: Vec::new(),
            opened_at: chrono::Utc::now(),
            payloads: Default::default(),
        };
        let hub = Hub::new();
        let settings = Arc::new(settings);
        let entry = hub.register(HubMember {
            session: info.id,
            route: "r".into(),
            protocol: settings.protocol,
            mailbox: Mailbox::new(settings.mailbox),
            stats: hub.route(&"r".into()).stats.clone(),
        });
        let behaviour = Member::new(hub, entry, settings, "/hb", None);
        let (mut session, commands) = SessionHandle::open(info, EventBus::empty(), Arc::new(Registry::new(4)), 4);
        let ws = WsStream::new(Transport::Plain(ours), Role::Server, WsConfig::default(), Bytes::new());
        let cfg = ServerConfig { close_timeout: Duration::from_secs(5), idle_timeout: None, faults: None };
        let task = tokio::spawn(async move {
            wsgate_session::run(ws, &mut session, commands, behaviour, cfg, CancellationToken::new()).await;
            session.state()
        });
        (task, WsStream::new(peer, Role::Client, WsConfig::default(), Bytes::new()))
    }

    fn heartbeat(interval_secs: u64, misses: u32) -> RelaySettings {
        let interval = Duration::from_secs(interval_secs);
        RelaySettings { heartbeat: Some(Heartbeat { interval, misses }), ..RelaySettings::default() }
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_leaves_pings_unanswered_is_closed_after_the_misses() {
        let (task, mut client) = member(heartbeat(30, 2)).await;
        let start = tokio::time::Instant::now();
        // The client does not read (so it answers nothing) until the gateway gives up.
        let state = task.await.unwrap();
        assert_eq!(state, State::Disconnected);
        // Two pings (30 s, 60 s) unanswered, closed at the third tick (90 s), then the
        // close handshake's own deadline (5 s) since this client never replies.
        let took = start.elapsed();
        assert!(took >= Duration::from_secs(90) && took < Duration::from_secs(100), "{took:?}");
        let mut pings = 0;
        let close = loop {
            match client.recv().await {
                Ok(Message::Ping(_)) => pings += 1,
                Ok(Message::Close(c)) => break c,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(pings, 2);
        let CloseFrame { code, reason } = close.unwrap_or_else(|| CloseFrame::new(0, ""));
        assert_eq!((code, reason.as_str()), (CloseCode::GOING_AWAY, "heartbeat timeout: no pong to 2 pings"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_answers_stays() {
        let (task, mut client) = member(heartbeat(30, 2)).await;
        // Reading answers each ping (the stream's auto-pong); ten minutes of them.
        let reader = tokio::spawn(async move {
            let mut pings = 0;
            while pings < 20 {
                match client.recv().await {
                    Ok(Message::Ping(_)) => pings += 1,
                    other => panic!("{other:?}"),
                }
            }
            client
        });
        let mut client = reader.await.unwrap();
        assert!(!task.is_finished());
        client.send(Message::Close(Some(CloseFrame::new(1000, "")))).await.unwrap();
        assert_eq!(task.await.unwrap(), State::Disconnected);
    }
}
