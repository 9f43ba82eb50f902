//! A member's outbound queue: what the hub has delivered to one connection and its
//! session task has not yet written.
//!
//! Publishers push (under the room's lock, so a room's order is every member's
//! order); the member's own task takes, on its own schedule, and writes. The queue
//! is bounded in messages and bytes, and what happens at the bound is the route's
//! [`Overflow`] policy — so a consumer that stops reading costs the others one
//! `push` each, never a wait.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::task::{Context, Poll};

use std::sync::Arc;

use futures_util::task::AtomicWaker;
use wsgate_core::SharedLog;
use wsgate_protocol::Message;

use crate::stats::Clock;

/// What a full queue does with the next delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// Drop the oldest waiting message to make room: a late consumer sees the latest.
    #[default]
    DropOldest,
    /// Drop the new message: a late consumer sees a gap at the end.
    DropNewest,
    /// Close the connection with 1013 (try again later).
    Disconnect,
}

impl Overflow {
    pub const ALL: [Self; 3] = [Self::DropOldest, Self::DropNewest, Self::Disconnect];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::DropOldest => "drop_oldest",
            Self::DropNewest => "drop_newest",
            Self::Disconnect => "disconnect",
        }
    }
}

/// A mailbox's bounds and overflow policy.
#[derive(Debug, Clone, Copy)]
pub struct MailboxLimits {
    pub max_messages: usize,
    pub max_bytes: usize,
    pub overflow: Overflow,
}

/// One delivery: the message as this member's protocol shows it (a shared `Bytes`),
/// when it was published (for the fan-out latency), and for a room's publication
/// the room's log and offset, which the member's history refers to instead of
/// keeping a copy.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub msg: Message,
    pub published: Clock,
    pub logged: Option<(Arc<SharedLog>, u64)>,
}

impl Delivery {
    fn len(&self) -> usize {
        match &self.msg {
            Message::Text(b) | Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => b.len(),
            Message::Close(_) => 0,
        }
    }
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// Queued after dropping this many older messages.
    DroppedOldest(usize),
    /// Not queued: the queue was full.
    DroppedNewest,
    /// Not queued: the queue was full and the member is to be disconnected.
    Overflowed,
    /// Not queued: the member has left.
    Gone,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Delivery>,
    bytes: usize,
    /// Drops since the member's task last looked (it reports them).
    dropped: u64,
    overflowed: bool,
    closed: bool,
}

/// A bounded, policy-driven queue with one consumer (the member's task).
pub struct Mailbox {
    limits: MailboxLimits,
    queue: Mutex<Queue>,
    waker: AtomicWaker,
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox").field("limits", &self.limits).field("depth", &self.depth()).finish()
    }
}

/// What the member's task takes in one go.
#[derive(Debug, Default)]
pub struct Taken {
    pub deliveries: Vec<Delivery>,
    /// Messages dropped since the last take.
    pub dropped: u64,
    /// The queue overflowed under [`Overflow::Disconnect`].
    pub overflowed: bool,
}

impl Mailbox {
    pub fn new(limits: MailboxLimits) -> Self {
        Self { limits, queue: Mutex::new(Queue::default()), waker: AtomicWaker::new() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // A panic elsewhere while holding it leaves a queue of plain data: use it.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Delivers one message, applying the overflow policy at the bound. Also says
    /// whether the queue is now at least half full (its member is falling behind).
    pub fn push(&self, d: Delivery) -> (Pushed, bool) {
        let len = d.len();
        let (outcome, filling) = {
            let mut q = self.lock();
            if q.closed || q.overflowed {
                return (Pushed::Gone, false);
            }
            let full = |q: &Queue| {
                q.items.len() >= self.limits.max_messages
                    || (q.bytes + len > self.limits.max_bytes && !q.items.is_empty())
            };
            let outcome = if !full(&q) {
                q.bytes += len;
                q.items.push_back(d);
                Pushed::Queued
            } else {
                match self.limits.overflow {
                    Overflow::DropNewest => {
                        q.dropped += 1;
                        Pushed::DroppedNewest
                    }
                    Overflow::Disconnect => {
                        q.overflowed = true;
                        q.items.clear();
                        q.bytes = 0;
                        Pushed::Overflowed
                    }
                    Overflow::DropOldest => {
                        let mut n = 0;
                        while full(&q) {
                            let Some(old) = q.items.pop_front() else { break };
                            q.bytes -= old.len();
                            n += 1;
                        }
                        q.bytes += len;
                        q.items.push_back(d);
                        q.dropped += n as u64;
                        Pushed::DroppedOldest(n)
                    }
                }
            };
            let filling =
                q.items.len() * 2 >= self.limits.max_messages || q.bytes.saturating_mul(2) >= self.limits.max_bytes;
            (outcome, filling)
        };
        self.waker.wake();
        (outcome, filling)
    }

    /// Ready when something waits: drops to report or an overflow, and deliveries
    /// unless `congested` (the member is not reading: they wait in the queue).
    pub fn poll_ready(&self, cx: &mut Context<'_>, congested: bool) -> Poll<()> {
        if self.has_news(congested) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        // A push between the check and the registration would be missed otherwise.
        if self.has_news(congested) { Poll::Ready(()) } else { Poll::Pending }
    }

    fn has_news(&self, congested: bool) -> bool {
        let q = self.lock();
        (!congested && !q.items.is_empty()) || q.dropped > 0 || q.overflowed
    }

    /// Takes up to `max` deliveries, and the drops and overflow to report.
    pub fn take(&self, max: usize, into: &mut Taken) {
        let mut q = self.lock();
        let n = max.min(q.items.len());
        let mut taken = 0;
        for d in q.items.drain(..n) {
            taken += d.len();
            into.deliveries.push(d);
        }
        q.bytes -= taken;
        into.dropped += std::mem::take(&mut q.dropped);
        into.overflowed |= q.overflowed;
    }

    /// Messages waiting.
    pub fn depth(&self) -> usize {
        self.lock().items.len()
    }

    /// The member has gone: later pushes are refused and what waits is freed.
    pub fn close(&self) {
        let mut q = self.lock();
        q.closed = true;
        q.items = VecDeque::new();
        q.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn d(s: &'static str) -> Delivery {
        Delivery { msg: Message::Text(Bytes::from_static(s.as_bytes())), published: Clock::now(), logged: None }
    }

    fn texts(t: &Taken) -> Vec<String> {
        t.deliveries
            .iter()
            .map(|d| match &d.msg {
                Message::Text(b) => String::from_utf8_lossy(b).into_owned(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    fn mailbox(overflow: Overflow) -> Mailbox {
        Mailbox::new(MailboxLimits { max_messages: 2, max_bytes: 1 << 20, overflow })
    }

    #[test]
    fn drop_oldest_keeps_the_latest() {
        let m = mailbox(Overflow::DropOldest);
        assert_eq!(m.push(d("a")).0, Pushed::Queued);
        assert_eq!(m.push(d("b")).0, Pushed::Queued);
        assert_eq!(m.push(d("c")).0, Pushed::DroppedOldest(1));
        let mut t = Taken::default();
        m.take(10, &mut t);
        assert_eq!((texts(&t), t.dropped, t.overflowed), (vec!["b".into(), "c".into()], 1, false));
    }

    #[test]
    fn drop_newest_keeps_the_first() {
        let m = mailbox(Overflow::DropNewest);
        m.push(d("a"));
        m.push(d("b"));
        assert_eq!(m.push(d("c")).0, Pushed::DroppedNewest);
        let mut t = Taken::default();
        m.take(10, &mut t);
        assert_eq!((texts(&t), t.dropped), (vec!["a".into(), "b".into()], 1));
    }

    #[test]
    fn disconnect_empties_and_refuses_more() {
        let m = mailbox(Overflow::Disconnect);
        m.push(d("a"));
        m.push(d("b"));
        assert_eq!(m.push(d("c")).0, Pushed::Overflowed);
        assert_eq!(m.push(d("d")).0, Pushed::Gone);
        let mut t = Taken::default();
        m.take(10, &mut t);
        assert!(t.deliveries.is_empty() && t.overflowed);
    }

    #[test]
    fn the_byte_bound_counts_but_one_message_always_fits() {
        let m = Mailbox::new(MailboxLimits { max_messages: 100, max_bytes: 3, overflow: Overflow::DropNewest });
        assert_eq!(m.push(d("abcdef")).0, Pushed::Queued);
        assert_eq!(m.push(d("g")).0, Pushed::DroppedNewest);
        let mut t = Taken::default();
        m.take(1, &mut t);
        assert_eq!(m.push(d("ab")).0, Pushed::Queued);
        assert_eq!(m.push(d("c")).0, Pushed::Queued);
        assert_eq!(m.push(d("d")).0, Pushed::DroppedNewest);
    }
}
