//! Rules mode: each client message is answered by the first rule that matches it
//! (`wsgate_rules::Conversation`, one per session, with its own state): messages
//! back, each at its delay; a message to the route's other sessions; a close.
//!
//! Delays are a per-session schedule driven by ticks (`Behaviour::next_tick`), never
//! by sleeping, and bounded ([`PENDING`]). A broadcast goes through the route's hub,
//! a bounded `tokio::sync::broadcast` channel ([`BROADCAST_QUEUE`]) that every
//! session of the route reads through `poll_feed`/`on_feed`; a session that does not
//! keep up loses the oldest messages, and each loss is an `error` event on it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::ReusableBoxFuture;
use wsgate_core::{ErrorKind, SessionId, SessionInfo};
use wsgate_protocol::Message;
use wsgate_rules::{Answer, Conversation, Rules};
use wsgate_session::{Behaviour, HIGH_WATER, Outbox};

/// Answers (and closes) one session has waiting for their delay; more are dropped,
/// each drop an `error` event.
pub const PENDING: usize = 1024;

/// Broadcasts a route keeps for its slowest session; beyond it that session loses the
/// oldest (reported on it).
pub const BROADCAST_QUEUE: usize = 1024;

/// Broadcasts one `on_feed` writes at most, so a busy route does not keep one
/// session from reading its own client.
const FEED_BURST: usize = 64;

/// How a rules route answers: the rules, the seed, and the route's broadcast hub.
#[derive(Debug)]
pub struct RulesSettings {
    pub rules: Arc<Rules>,
    /// Every session's random values (`{{uuid}}`, `{{randInt}}`) from this seed.
    pub seed: Option<u64>,
    hub: broadcast::Sender<Arc<Shout>>,
}

impl RulesSettings {
    pub fn new(rules: Arc<Rules>, seed: Option<u64>) -> Self {
        let (hub, _) = broadcast::channel(BROADCAST_QUEUE);
        Self { rules, seed, hub }
    }
}

/// A broadcast: who sent it (not sent back to them) and the message.
#[derive(Debug)]
struct Shout {
    from: SessionId,
    msg: Message,
}

type Received = (Result<Arc<Shout>, broadcast::error::RecvError>, broadcast::Receiver<Arc<Shout>>);

async fn receive(mut rx: broadcast::Receiver<Arc<Shout>>) -> Received {
    (rx.recv().await, rx)
}

#[derive(Debug)]
enum Due {
    Send(Message),
    Close(u16, String),
}

/// One session of a rules route.
pub struct RulesBehaviour {
    settings: Arc<RulesSettings>,
    me: SessionId,
    conversation: Conversation,
    /// Answers and closes waiting for their time, earliest first.
    pending: VecDeque<(Instant, Due)>,
    /// The hub's next message; the receiver lives in the future while it waits.
    feed: ReusableBoxFuture<'static, Received>,
    /// What the feed gave, until `on_feed` takes it.
    fed: Option<Received>,
    closing: bool,
}

impl std::fmt::Debug for RulesBehaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RulesBehaviour").field("pending", &self.pending.len()).finish()
    }
}

impl RulesBehaviour {
    pub fn new(settings: Arc<RulesSettings>, info: &SessionInfo) -> Self {
        let conversation = Conversation::new(settings.rules.clone(), settings.seed);
        let feed = ReusableBoxFuture::new(receive(settings.hub.subscribe()));
        Self { me: info.id, settings, conversation, pending: VecDeque::new(), feed, fed: None, closing: false }
    }

    /// Queues `due` at `at`, after everything due at or before it (so one reaction's
    /// answers keep their order). `false` when [`PENDING`] are waiting already.
    fn schedule(&mut self, at: Instant, due: Due) -> bool {
        if self.pending.len() >= PENDING {
            return false;
        }
        let i = self.pending.partition_point(|(t, _)| *t <= at);
        self.pending.insert(i, (at, due));
        true
    }

    /// Sends what is due, in order, until the client's queue is full.
    fn flush(&mut self, out: &mut Outbox<'_>) {
        let now = Instant::now();
        while let Some((at, _)) = self.pending.front() {
            if *at > now || self.closing {
                return;
            }
            if out.buffered() >= HIGH_WATER {
                // Come back on the next tick (already due: at once) once the loop
                // has written some of it.
                out.yield_to_others();
                return;
            }
            match self.pending.pop_front() {
                Some((_, Due::Send(msg))) => {
                    out.send(msg);
                }
                Some((_, Due::Close(code, reason))) => {
                    out.close(code, reason);
                    self.closing = true;
                    self.pending.clear();
                }
                None => return,
            }
        }
    }
}

fn message(a: &Answer) -> Message {
    if a.binary { Message::Binary(a.payload.clone()) } else { Message::Text(a.payload.clone()) }
}

impl Behaviour for RulesBehaviour {
    fn on_message(&mut self, msg: Message, out: &mut Outbox<'_>) {
        let (binary, payload): (bool, Bytes) = match msg {
            Message::Text(b) => (false, b),
            Message::Binary(b) => (true, b),
            _ => return,
        };
        if self.closing {
            return;
        }
        let reaction = self.conversation.on_client(binary, &payload);
        if let Some(b) = &reaction.broadcast {
            // No receivers is no one else on the route: nothing to do.
            let _ = self.settings.hub.send(Arc::new(Shout { from: self.me, msg: message(b) }));
        }
        let now = Instant::now();
        let mut last = now;
        let mut dropped = 0usize;
        for a in &reaction.respond {
            last = now + a.delay;
            if !self.schedule(last, Due::Send(message(a))) {
                dropped += 1;
            }
        }
        if let Some((code, reason)) = reaction.close
            && !self.schedule(last, Due::Close(code, reason.clone()))
        {
            // A close must not be lost to a full schedule: it ends the session now.
            out.close(code, reason);
            self.closing = true;
            self.pending.clear();
        }
        if dropped > 0 {
            let rule = reaction.rule.as_deref().unwrap_or("?");
            out.error(
                ErrorKind::QueueOverflow,
                format!("{dropped} answers of rule {rule:?} dropped: {PENDING} answers already wait for their delay"),
            );
        }
        self.flush(out);
    }

    fn next_tick(&self) -> Option<Instant> {
        if self.closing {
            return None;
        }
        self.pending.front().map(|(at, _)| *at)
    }

    fn on_tick(&mut self, out: &mut Outbox<'_>) {
        self.flush(out);
    }

    fn poll_feed(&mut self, cx: &mut Context<'_>, congested: bool) -> Poll<()> {
        if self.fed.is_some() {
            return Poll::Ready(());
        }
        if congested {
            // The hub holds what comes meanwhile; a client that stays behind loses
            // the oldest, reported when it catches up.
            return Poll::Pending;
        }
        match self.feed.poll(cx) {
            Poll::Ready(received) => {
                self.fed = Some(received);
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn on_feed(&mut self, out: &mut Outbox<'_>) {
        let Some((first, mut rx)) = self.fed.take() else { return };
        let mut next = Some(first);
        let mut handled = 0;
        while let Some(received) = next.take() {
            match received {
                Ok(shout) => {
                    if shout.from != self.me && !self.closing {
                        out.send(shout.msg.clone());
                    }
                }
                Err(broadcast::error::RecvError::Lagged(lost)) => out.error(
                    ErrorKind::SlowConsumer,
                    format!(
                        "{lost} broadcasts to this session were lost: it did not read them in time (a route keeps \
                         {BROADCAST_QUEUE})"
                    ),
                ),
                // The settings hold the sender, and outlive every session.
                Err(broadcast::error::RecvError::Closed) => return,
            }
            handled += 1;
            if handled < FEED_BURST && out.buffered() < HIGH_WATER {
                next = match rx.try_recv() {
                    Ok(shout) => Some(Ok(shout)),
                    Err(broadcast::error::TryRecvError::Lagged(n)) => Some(Err(broadcast::error::RecvError::Lagged(n))),
                    Err(_) => None,
                };
            }
        }
        self.feed.set(receive(rx));
    }
}
