//! The event bus: fan-out of [`SessionEvent`]s to observers, each behind its own
//! bounded queue.
//!
//! Each observer picks what happens when its queue is full ([`Overflow`]). The
//! default is drop-newest for that observer only, counted: a slow observer never
//! slows traffic or another observer. An observer that must not lose events (the
//! store under `--record strict`) makes the *emitting session* wait instead: the
//! event is parked in the session's [`Pending`] queue and the session's handler stops
//! reading from its sockets until [`Pending::poll_settle`] has delivered it. The set
//! of observers is fixed when the bus is built, so emitting takes no lock.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::{PollSemaphore, PollSender};

use crate::event::{Direction, MessageEvent, SessionEvent};

/// Default capacity of an observer's queue.
pub const DEFAULT_OBSERVER_CAPACITY: usize = 8192;

/// What happens to an event an observer's full queue cannot take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Drop it for this observer and count the drop (live stream, metrics).
    DropNewest,
    /// Drop message events (counted), but lifecycle and error events wait in the
    /// emitting session: a history with gaps in its messages is still a history, one
    /// without the session's end is wrong (the store under `--record drop`).
    DropMessages,
    /// Every event waits; the emitting session's traffic pauses until there is room
    /// (the store under `--record strict`).
    Wait,
}

struct Slot {
    name: &'static str,
    tx: mpsc::Sender<SessionEvent>,
    overflow: Overflow,
    dropped: AtomicU64,
    /// Whether the observer currently wants message events (the live stream does not
    /// while nobody is watching).
    wants_messages: Arc<AtomicBool>,
    /// It keeps shared logs ([`crate::SharedLog`]): it takes a session's deliveries
    /// from them as runs ([`SessionEvent::Delivered`]) and each log entry once
    /// ([`SessionEvent::Logged`]), never a message event per delivery.
    takes_runs: bool,
    budget: Option<Budget>,
}

/// A bound on the payload bytes an observer's queue holds, on top of its bound in
/// events: 65 536 queued 64-byte frames are 4 MiB, but 65 536 queued 64 KiB frames
/// are 4 GiB, and each keeps its read buffer alive, so the proxy allocates afresh
/// for every read. An event that does not fit is full-queue overflow, under the
/// observer's policy. Counted in KiB, rounded up, so that a permit count fits
/// `acquire_many`'s `u32` for any payload.
#[derive(Clone)]
struct Budget {
    kib: Arc<Semaphore>,
    total: u32,
}

impl Budget {
    fn new(bytes: usize) -> Self {
        let total = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX).max(1);
        Self { kib: Arc::new(Semaphore::new(total as usize)), total }
    }

    /// What `event` costs; never more than the whole budget, so that one event
    /// larger than it still goes through alone rather than never.
    fn cost(&self, event: &SessionEvent) -> u32 {
        let bytes = match event {
            SessionEvent::Message(m) => m.payload.len(),
            SessionEvent::Queue(q) => q.payload.len(),
            SessionEvent::Logged(e) => e.payload.len(),
            SessionEvent::Lifecycle { .. } | SessionEvent::Error { .. } | SessionEvent::Delivered(_) => 0,
        };
        u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX).min(self.total)
    }

    /// Takes `cost` now, if it is free.
    fn try_take(&self, cost: u32) -> bool {
        cost == 0 || self.kib.try_acquire_many(cost).map(|p| p.forget()).is_ok()
    }

    fn give_back(&self, cost: u32) {
        if cost > 0 {
            self.kib.add_permits(cost as usize);
        }
    }
}

/// Fans events out to observers.
pub struct EventBus {
    slots: Vec<Slot>,
    traffic: Traffic,
}

/// Frames and payload bytes seen on every session, by direction: the message
/// metrics. Counted here, in the emitting session, rather than by an observer, so
/// counting a frame costs two atomic adds instead of an event through a queue.
#[derive(Debug, Default)]
struct Traffic {
    messages: [AtomicU64; Direction::ALL.len()],
    bytes: [AtomicU64; Direction::ALL.len()],
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus").field("observers", &self.slots.iter().map(|s| s.name).collect::<Vec<_>>()).finish()
    }
}

/// What an observer reads from.
pub struct ObserverQueue {
    /// An observer with a payload budget takes events through [`Self::recv_many`]
    /// and [`Self::try_recv`], which give the budget back.
    pub rx: mpsc::Receiver<SessionEvent>,
    /// Set to false to stop receiving message events (lifecycle and errors still come).
    pub wants_messages: Arc<AtomicBool>,
    budget: Option<Budget>,
}

impl ObserverQueue {
    /// Like [`mpsc::Receiver::recv_many`], giving back the payload budget of what it
    /// took: the events are the observer's now, and it bounds what it keeps itself.
    pub async fn recv_many(&mut self, buf: &mut Vec<SessionEvent>, limit: usize) -> usize {
        let start = buf.len();
        let n = self.rx.recv_many(buf, limit).await;
        self.give_back(&buf[start..]);
        n
    }

    /// Like [`mpsc::Receiver::try_recv`], giving back the payload budget.
    pub fn try_recv(&mut self) -> Result<SessionEvent, mpsc::error::TryRecvError> {
        let ev = self.rx.try_recv()?;
        self.give_back(std::slice::from_ref(&ev));
        Ok(ev)
    }

    fn give_back(&self, events: &[SessionEvent]) {
        if let Some(b) = &self.budget {
            let cost: u64 = events.iter().map(|e| u64::from(b.cost(e))).sum();
            // Never more than was ever taken at once: the budget's total.
            b.give_back(cost.min(u64::from(u32::MAX)) as u32);
        }
    }

    /// Hands queued events to `handle` in batches of at most `batch` until `stop`
    /// completes or the bus is dropped. Batching is why observers keep up: one wake-up
    /// drains a burst. `handle` must empty the batch it is given.
    pub async fn drain_batches<F>(&mut self, batch: usize, stop: impl std::future::Future<Output = ()>, mut handle: F)
    where
        F: FnMut(&mut Vec<SessionEvent>),
    {
        let mut buf = Vec::with_capacity(batch);
        tokio::pin!(stop);
        loop {
            let n = tokio::select! {
                biased;
                _ = &mut stop => return,
                n = self.rx.recv_many(&mut buf, batch) => n,
            };
            if n == 0 {
                return; // the bus is gone
            }
            handle(&mut buf);
            buf.clear();
        }
    }
}

#[derive(Default)]
pub struct EventBusBuilder {
    slots: Vec<Slot>,
}

impl EventBusBuilder {
    /// Adds an observer with a queue of `capacity` events.
    /// Adds an observer with a queue of `capacity` events that drops what does not fit.
    pub fn observer(&mut self, name: &'static str, capacity: usize) -> ObserverQueue {
        self.observer_with(name, capacity, Overflow::DropNewest)
    }

    /// Adds an observer with its own overflow policy.
    pub fn observer_with(&mut self, name: &'static str, capacity: usize, overflow: Overflow) -> ObserverQueue {
        self.add(name, capacity, overflow, false, None)
    }

    /// Adds an observer that keeps shared logs (the recorder): deliveries from a
    /// [`crate::SharedLog`] reach it as runs and log entries, not one by one.
    pub fn log_keeper(&mut self, name: &'static str, capacity: usize, overflow: Overflow) -> ObserverQueue {
        self.add(name, capacity, overflow, true, None)
    }

    /// A log keeper whose queue also holds at most `payload_bytes` of payload (see
    /// `Budget`); it must take events through [`ObserverQueue::recv_many`] and
    /// [`ObserverQueue::try_recv`].
    pub fn bounded_log_keeper(
        &mut self,
        name: &'static str,
        capacity: usize,
        payload_bytes: usize,
        overflow: Overflow,
    ) -> ObserverQueue {
        self.add(name, capacity, overflow, true, Some(Budget::new(payload_bytes)))
    }

    fn add(
        &mut self,
        name: &'static str,
        capacity: usize,
        overflow: Overflow,
        takes_runs: bool,
        budget: Option<Budget>,
    ) -> ObserverQueue {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let wants_messages = Arc::new(AtomicBool::new(true));
        self.slots.push(Slot {
            name,
            tx,
            overflow,
            dropped: AtomicU64::new(0),
            wants_messages: wants_messages.clone(),
            takes_runs,
            budget: budget.clone(),
        });
        ObserverQueue { rx, wants_messages, budget }
    }

    pub fn build(self) -> Arc<EventBus> {
        Arc::new(EventBus { slots: self.slots, traffic: Traffic::default() })
    }
}

impl EventBus {
    pub fn builder() -> EventBusBuilder {
        EventBusBuilder::default()
    }

    /// A bus with no observers (tests, tools).
    pub fn empty() -> Arc<Self> {
        Arc::new(Self { slots: Vec::new(), traffic: Traffic::default() })
    }

    /// Delivers to every observer; drops (and counts) where a queue is full, whatever
    /// the observer's policy. For tools and tests with no session to park events in.
    pub fn emit(&self, event: SessionEvent) {
        for slot in &self.slots {
            if let Err(mpsc::error::TrySendError::Full(_)) = slot.tx.try_send(event.clone()) {
                slot.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Delivers a lifecycle or error event; where a waiting observer's queue is full
    /// the event is parked in `pending`.
    pub fn emit_or_park(&self, event: SessionEvent, pending: &mut Pending) {
        self.fan_out(event, pending, false, |_| true);
    }

    /// Offers `event` to each observer `to` picks: a clone to each but the last,
    /// which takes the event itself. With one observer wanting messages (the store,
    /// nobody watching live) a frame's event is then never cloned: a clone and its
    /// drop were two atomic updates of the session and two of the payload's buffer
    /// per frame, the latter on the recorder's thread.
    #[inline]
    fn fan_out(&self, event: SessionEvent, pending: &mut Pending, message: bool, to: impl Fn(&Slot) -> bool) {
        let mut last: Option<usize> = None;
        for (i, slot) in self.slots.iter().enumerate() {
            if to(slot) {
                if let Some(prev) = last {
                    self.offer(prev, event.clone(), pending, message);
                }
                last = Some(i);
            }
        }
        if let Some(i) = last {
            self.offer(i, event, pending, message);
        }
    }

    /// Counts a frame in the traffic totals ([`EventBus::traffic`]).
    #[inline]
    pub fn count_frame(&self, direction: Direction, bytes: u64) {
        let i = direction.index();
        self.traffic.messages[i].fetch_add(1, Ordering::Relaxed);
        self.traffic.bytes[i].fetch_add(bytes, Ordering::Relaxed);
    }

    /// Frames and payload bytes counted so far in `direction`.
    pub fn traffic(&self, direction: Direction) -> (u64, u64) {
        let i = direction.index();
        (self.traffic.messages[i].load(Ordering::Relaxed), self.traffic.bytes[i].load(Ordering::Relaxed))
    }

    /// Whether any observer wants message events now: when none does, a session
    /// need not build them (nor read the clock for them).
    #[inline]
    pub fn wants_messages(&self) -> bool {
        self.slots.iter().any(|s| s.wants_messages.load(Ordering::Relaxed))
    }

    /// Whether an observer that shows deliveries one by one wants message events now.
    #[inline]
    pub fn wants_deliveries(&self) -> bool {
        self.slots.iter().any(|s| !s.takes_runs && s.wants_messages.load(Ordering::Relaxed))
    }

    /// Whether a shared-log keeper wants message events now.
    #[inline]
    pub fn wants_runs(&self) -> bool {
        self.slots.iter().any(|s| s.takes_runs && s.wants_messages.load(Ordering::Relaxed))
    }

    /// Delivers one delivery from a shared log, as a message event, to the observers
    /// that show deliveries one by one (not the log keepers, which get runs).
    #[inline]
    pub fn emit_delivery(&self, event: MessageEvent, pending: &mut Pending) {
        self.fan_out(SessionEvent::Message(event), pending, true, |slot| {
            !slot.takes_runs && slot.wants_messages.load(Ordering::Relaxed)
        });
    }

    /// Delivers a shared-log event ([`SessionEvent::Logged`], [`SessionEvent::Delivered`])
    /// to the log keepers, under the message events' policy; parked in `pending` where
    /// the policy waits, dropped and counted where there is no session to park in.
    pub fn emit_shared(&self, event: SessionEvent, pending: Option<&mut Pending>) {
        let mut scratch = Pending::default();
        let pending = pending.unwrap_or(&mut scratch);
        self.fan_out(event, pending, true, |slot| slot.takes_runs && slot.wants_messages.load(Ordering::Relaxed));
        for (slot, _) in scratch.drain() {
            self.slots[slot].dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Delivers a message event to the observers that want message events.
    #[inline]
    pub fn emit_message(&self, event: MessageEvent, pending: &mut Pending) {
        self.emit_payload(SessionEvent::Message(event), pending);
    }

    /// Delivers an event that carries a payload (a message, a queued message's fate)
    /// to the observers that want message events, under the message events' policy.
    #[inline]
    pub fn emit_payload(&self, event: SessionEvent, pending: &mut Pending) {
        self.fan_out(event, pending, true, |slot| slot.wants_messages.load(Ordering::Relaxed));
    }

    #[inline]
    fn offer(&self, i: usize, event: SessionEvent, pending: &mut Pending, message: bool) {
        let slot = &self.slots[i];
        let parks = match slot.overflow {
            Overflow::DropNewest => false,
            Overflow::DropMessages => !message,
            Overflow::Wait => true,
        };
        // Events already parked for this observer go first: order within a session
        // is part of what the observer records, so nothing may overtake them (a
        // message that cannot wait is dropped instead).
        if pending.holds(i) {
            if parks {
                pending.park(i, event);
            } else {
                slot.dropped.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        let cost = slot.budget.as_ref().map_or(0, |b| b.cost(&event));
        if cost > 0 && !slot.budget.as_ref().is_some_and(|b| b.try_take(cost)) {
            if parks {
                pending.park(i, event);
            } else {
                slot.dropped.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        match slot.tx.try_send(event) {
            Ok(()) => {}
            Err(e) => {
                if let Some(b) = &slot.budget {
                    b.give_back(cost);
                }
                match e {
                    mpsc::error::TrySendError::Closed(_) => {}
                    mpsc::error::TrySendError::Full(ev) if parks => pending.park(i, ev),
                    mpsc::error::TrySendError::Full(_) => {
                        slot.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    /// `(observer name, events dropped so far)` for each observer.
    pub fn drops(&self) -> Vec<(&'static str, u64)> {
        self.slots.iter().map(|s| (s.name, s.dropped.load(Ordering::Relaxed))).collect()
    }
}

/// Events a session emitted that a waiting observer could not take yet, in order.
/// Owned by the session's handle, so parking takes no lock. Bounded in practice by
/// the handlers: they stop reading while anything is parked (see
/// [`crate::SessionHandle::poll_settle`]), so at most one read's worth of frames waits.
///
/// Boxed, and made only when something is parked (`--record strict` with a full
/// recorder): every live session holds one, and an empty one inline cost 80 bytes.
#[derive(Default)]
pub struct Pending(Option<Box<Parked>>);

#[derive(Default)]
struct Parked {
    queue: VecDeque<(usize, SessionEvent)>,
    /// Per observer: how many of its events are parked.
    held: Vec<u32>,
    /// Per observer: a reusable sender for waiting on room, made on first use.
    senders: Vec<Option<PollSender<SessionEvent>>>,
    /// Per observer with a payload budget: waiting on it, made on first use.
    budgets: Vec<Option<PollSemaphore>>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("events", &self.len()).finish()
    }
}

impl Pending {
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|p| p.queue.is_empty())
    }

    fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |p| p.queue.len())
    }

    #[inline]
    fn holds(&self, slot: usize) -> bool {
        self.0.as_ref().is_some_and(|p| p.held.get(slot).is_some_and(|n| *n > 0))
    }

    fn park(&mut self, slot: usize, event: SessionEvent) {
        let p = self.0.get_or_insert_with(Box::default);
        if p.held.len() <= slot {
            p.held.resize(slot + 1, 0);
        }
        p.held[slot] += 1;
        p.queue.push_back((slot, event));
    }

    /// Delivers parked events in order; `Ready` once none is left.
    pub fn poll_settle(&mut self, bus: &EventBus, cx: &mut Context<'_>) -> Poll<()> {
        let Some(p) = self.0.as_deref_mut() else { return Poll::Ready(()) };
        p.poll_settle(bus, cx)
    }

    /// Hands what is still parked to a task that delivers it, for a session that ends
    /// before it could wait (its handle is being dropped). Without a runtime (a
    /// test or tool tearing down) the events are dropped and counted.
    pub(crate) fn hand_off(&mut self, bus: &Arc<EventBus>) {
        if let Some(p) = self.0.take() {
            p.hand_off(bus);
        }
    }

    /// Takes what is parked (events that had nowhere to wait: counted as dropped).
    fn drain(&mut self) -> impl Iterator<Item = (usize, SessionEvent)> {
        self.0.take().into_iter().flat_map(|p| p.queue)
    }
}

impl Parked {
    fn poll_settle(&mut self, bus: &EventBus, cx: &mut Context<'_>) -> Poll<()> {
        while let Some((slot, _)) = self.queue.front() {
            let slot = *slot;
            if self.senders.len() <= slot {
                self.senders.resize_with(slot + 1, || None);
            }
            let sender = self.senders[slot].get_or_insert_with(|| PollSender::new(bus.slots[slot].tx.clone()));
            let ready = sender.poll_reserve(cx);
            if ready.is_pending() {
                return Poll::Pending;
            }
            // Room in the queue is reserved (kept across polls); then room in the
            // payload budget, waited for the same way.
            if let (Some(budget), Some((_, event)), Poll::Ready(Ok(()))) =
                (&bus.slots[slot].budget, self.queue.front(), &ready)
            {
                let cost = budget.cost(event);
                if cost > 0 {
                    if self.budgets.len() <= slot {
                        self.budgets.resize_with(slot + 1, || None);
                    }
                    let wait = self.budgets[slot].get_or_insert_with(|| PollSemaphore::new(budget.kib.clone()));
                    match wait.poll_acquire_many(cx, cost) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Some(permit)) => permit.forget(),
                        // Never closed: the bus owns the semaphore.
                        Poll::Ready(None) => {}
                    }
                }
            }
            let Some((_, event)) = self.queue.pop_front() else { break };
            self.held[slot] -= 1;
            // A closed queue (observer gone at shutdown) has nobody left to wait for.
            if matches!(ready, Poll::Ready(Ok(()))) {
                let _ = sender.send_item(event);
            }
        }
        Poll::Ready(())
    }

    fn hand_off(self, bus: &Arc<EventBus>) {
        if self.queue.is_empty() {
            return;
        }
        let queue = self.queue;
        let bus = bus.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    for (slot, event) in queue {
                        let slot = &bus.slots[slot];
                        if let Some(b) = &slot.budget
                            && let Ok(permit) = b.kib.acquire_many(b.cost(&event)).await
                        {
                            permit.forget();
                        }
                        let _ = slot.tx.send(event).await;
                    }
                });
            }
            Err(_) => {
                for (slot, _) in queue {
                    bus.slots[slot].dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::SessionId;
    use crate::session::{SessionInfo, SessionKind, State, Transition, TransitionDetail};

    fn ev() -> SessionEvent {
        let info = Arc::new(SessionInfo {
            id: SessionId::new(),
            kind: SessionKind::Proxy,
            route: "default".into(),
            path: "/".into(),
            client_addr: None,
            headers: vec![],
            opened_at: chrono::Utc::now(),
            payloads: Default::default(),
        });
        SessionEvent::Lifecycle {
            info,
            transition: Transition {
                state: State::Requested,
                at: chrono::Utc::now(),
                detail: TransitionDetail::default(),
            },
        }
    }

    #[tokio::test]
    async fn full_queue_drops_and_counts_without_blocking_others() {
        let mut b = EventBus::builder();
        let mut slow = b.observer("slow", 2);
        let mut fast = b.observer("fast", 100);
        let bus = b.build();
        for _ in 0..5 {
            bus.emit(ev());
        }
        assert_eq!(bus.drops(), vec![("slow", 3), ("fast", 0)]);
        let mut n = 0;
        while fast.rx.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, 5);
        assert!(slow.rx.try_recv().is_ok());
    }

    #[tokio::test]
    async fn waiting_observer_parks_in_order_and_settles_when_drained() {
        let mut b = EventBus::builder();
        let mut strict = b.observer_with("strict", 2, Overflow::Wait);
        let mut lossy = b.observer_with("lossy", 2, Overflow::DropMessages);
        let bus = b.build();
        let mut pending = Pending::default();
        for _ in 0..5 {
            bus.emit_or_park(ev(), &mut pending);
        }
        // strict parked 3, lossy parked 3 (lifecycle events are kept); nothing dropped.
        assert_eq!(pending.len(), 6);
        assert_eq!(bus.drops(), vec![("strict", 0), ("lossy", 0)]);
        let (mut got_strict, mut got_lossy) = (0, 0);
        while got_strict < 5 || got_lossy < 5 {
            let settled = std::future::poll_fn(|cx| Poll::Ready(pending.poll_settle(&bus, cx))).await;
            while strict.rx.try_recv().is_ok() {
                got_strict += 1;
            }
            while lossy.rx.try_recv().is_ok() {
                got_lossy += 1;
            }
            if settled.is_ready() {
                break;
            }
        }
        assert!(pending.is_empty());
        assert_eq!((got_strict, got_lossy), (5, 5));
    }

    fn message(len: usize) -> MessageEvent {
        let SessionEvent::Lifecycle { info, .. } = ev() else { unreachable!() };
        MessageEvent {
            info,
            seq: 1,
            direction: Direction::ClientToUpstream,
            opcode: wsgate_protocol::OpCode::Binary,
            fin: true,
            payload: bytes::Bytes::from(vec![0u8; len]),
            injected: false,
            marks: crate::Marks::NONE,
            at: chrono::Utc::now(),
        }
    }

    #[tokio::test]
    async fn payload_budget_drops_large_messages_until_the_observer_takes_them() {
        let mut b = EventBus::builder();
        let mut q = b.bounded_log_keeper("store", 1000, 100 * 1024, Overflow::DropMessages);
        let bus = b.build();
        let mut pending = Pending::default();
        // Room for 100 KiB: three of 40 KiB do not fit, the third is dropped; a
        // lifecycle event (no payload) still goes.
        for _ in 0..3 {
            bus.emit_message(message(40 * 1024), &mut pending);
        }
        bus.emit_or_park(ev(), &mut pending);
        assert!(pending.is_empty());
        assert_eq!(bus.drops(), vec![("store", 1)]);
        let mut got = Vec::new();
        assert_eq!(q.recv_many(&mut got, 10).await, 3);
        // Taken: the budget is free again.
        for _ in 0..2 {
            bus.emit_message(message(40 * 1024), &mut pending);
        }
        assert_eq!(bus.drops(), vec![("store", 1)]);
        // One larger than the whole budget goes alone, never stuck.
        while q.try_recv().is_ok() {}
        bus.emit_message(message(1 << 20), &mut pending);
        assert!(q.try_recv().is_ok());
    }

    #[tokio::test]
    async fn payload_budget_makes_a_waiting_observer_park_until_it_has_room() {
        let mut b = EventBus::builder();
        let mut q = b.bounded_log_keeper("store", 1000, 64 * 1024, Overflow::Wait);
        let bus = b.build();
        let mut pending = Pending::default();
        for _ in 0..4 {
            bus.emit_message(message(30 * 1024), &mut pending);
        }
        // Two fit; two wait, in order, and nothing is lost.
        assert_eq!(pending.len(), 2);
        let once = std::future::poll_fn(|cx| Poll::Ready(pending.poll_settle(&bus, cx))).await;
        assert!(once.is_pending());
        let mut got = Vec::new();
        q.recv_many(&mut got, 10).await;
        assert_eq!(got.len(), 2);
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            std::future::poll_fn(|cx| pending.poll_settle(&bus, cx)),
        )
        .await
        .expect("settles once the observer took its events");
        q.recv_many(&mut got, 10).await;
        assert_eq!(got.len(), 4);
        assert_eq!(bus.drops(), vec![("store", 0)]);
    }
}
