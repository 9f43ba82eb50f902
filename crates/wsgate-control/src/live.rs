//! The live observer: one task reads the bus's `live` queue and fans each event out
//! to the connected `/api/live` subscribers (as JSON, serialized once per event) and
//! raw taps (as the frames themselves).
//!
//! Each subscriber has its own bounded queue ([`crate::ControlConfig::live_queue`]);
//! when it is full the newest message is dropped for that subscriber only and counted
//! in `wsgate_live_dropped_total`, so a slow dashboard never slows the others, the
//! observer, or traffic. While nobody is subscribed the observer switches message
//! events off at the bus (`wants_messages`), so the hot path does not even clone them.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wsgate_core::{Direction, MessageEvent, ObserverQueue, SessionEvent, SessionId, SessionInfo};
use wsgate_protocol::{Message, OpCode};

use crate::{event_json, master};

/// Most events taken from the bus queue per wake-up.
pub const OBSERVER_BATCH: usize = 256;
/// Largest message a tap reassembles from fragments; a longer one is dropped for
/// the taps (and counted), since a tap must send whole messages: fragments of
/// different sessions cannot be interleaved on one WebSocket.
pub const TAP_MAX_MESSAGE: usize = 16 << 20;

/// Which sessions an `/api/live` subscriber watches. Unset fields match everything.
#[derive(Debug, Clone, Default)]
pub struct LiveFilter {
    pub session: Option<SessionId>,
    /// A prefix of the path and query (`wsgate_core::path_filter`: the rule every
    /// path filter follows).
    pub path: Option<String>,
    pub route: Option<String>,
}

impl LiveFilter {
    pub fn matches(&self, info: &SessionInfo) -> bool {
        self.session.is_none_or(|s| s == info.id)
            && self.route.as_deref().is_none_or(|r| r == &*info.route)
            && self.path.as_deref().is_none_or(|p| wsgate_core::path_matches(p, &info.path))
    }
}

/// Which side of a path a tap watches (websocket-multiplex's `/client/..` and
/// `/upstream/..`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapSide {
    /// Frames sent to the clients (`upstream_to_client`, and `gateway_to_client` for
    /// sessions the gateway terminates); frames written into the tap go to clients
    /// too. A side's tap is that side's wire: what websocket-multiplex's test suite
    /// asserts (`/upstream/p` hears what the client sends, `/client/p` what the
    /// upstream sends).
    Client,
    /// Frames sent to the upstreams (`client_to_upstream`, `client_to_gateway`);
    /// frames written into the tap go to upstreams.
    Upstream,
}

impl TapSide {
    fn sees(self, direction: Direction) -> bool {
        direction.is_inbound() == (self == Self::Upstream)
    }
}

#[derive(Debug, Clone)]
pub struct TapFilter {
    /// A path without query.
    pub path: String,
    pub side: TapSide,
}

#[derive(Debug, Clone)]
pub enum Filter {
    Live(LiveFilter),
    Tap(TapFilter),
    /// A websocket-multiplex master connection on `/` ([`crate::master`]): every
    /// proxy session, in its shapes.
    Master,
}

struct Subscriber {
    id: u64,
    filter: Filter,
    tx: mpsc::Sender<Message>,
    /// A master connection is greeted with its status once its socket is open
    /// ([`Subscription::open`]): the status then says what is true when the
    /// connection starts, as websocket-multiplex's does. Until then it is skipped by
    /// events, which that status will include.
    open: AtomicBool,
}

/// The registry of subscribers, shared by the observer task and the connections.
pub(crate) struct LiveHub {
    /// Copy-on-write: connections come and go rarely, events flow constantly, so the
    /// observer takes one cheap `Arc` clone per batch instead of locking per event.
    subscribers: Mutex<Arc<[Arc<Subscriber>]>>,
    next_id: AtomicU64,
    wants_messages: Arc<AtomicBool>,
    queue_capacity: usize,
    payload_cap: usize,
    dropped: Counter,
    /// Wakes the observer when a master connection subscribes: its status is queued
    /// by the observer, in order with events, even while no event flows.
    greet: tokio::sync::Notify,
}

/// A subscriber's end: its queue, and its place in the hub until dropped.
pub(crate) struct Subscription {
    hub: Arc<LiveHub>,
    id: u64,
    pub(crate) rx: mpsc::Receiver<Message>,
}

impl Subscription {
    /// The subscriber's socket is open: a master connection gets its status now.
    pub(crate) fn open(&self) {
        if let Some(s) = self.hub.snapshot().iter().find(|s| s.id == self.id) {
            s.open.store(true, Ordering::Relaxed);
        }
        self.hub.greet.notify_one();
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.id);
    }
}

impl LiveHub {
    pub(crate) fn new(
        wants_messages: Arc<AtomicBool>,
        queue_capacity: usize,
        payload_cap: usize,
        dropped: Counter,
    ) -> Self {
        Self {
            subscribers: Mutex::new(Arc::from(Vec::new())),
            next_id: AtomicU64::new(1),
            wants_messages,
            queue_capacity: queue_capacity.max(1),
            payload_cap,
            dropped,
            greet: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Arc<[Arc<Subscriber>]>> {
        // The guarded value is replaced whole, never left half-written.
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a subscriber. Everything emitted after this returns reaches its queue
    /// (space permitting), so a snapshot taken afterwards misses nothing.
    pub(crate) fn subscribe(self: &Arc<Self>, filter: Filter) -> Subscription {
        let (tx, rx) = mpsc::channel(self.queue_capacity);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut subs = self.lock();
        let mut next: Vec<_> = subs.iter().cloned().collect();
        let open = AtomicBool::new(!matches!(filter, Filter::Master));
        next.push(Arc::new(Subscriber { id, filter, tx, open }));
        *subs = Arc::from(next);
        self.wants_messages.store(true, Ordering::Relaxed);
        drop(subs);
        Subscription { hub: self.clone(), id, rx }
    }

    fn unsubscribe(&self, id: u64) {
        let mut subs = self.lock();
        let next: Vec<_> = subs.iter().filter(|s| s.id != id).cloned().collect();
        // Updated under the lock so a concurrent subscribe cannot be overwritten
        // with a stale "nobody is watching".
        self.wants_messages.store(!next.is_empty(), Ordering::Relaxed);
        *subs = Arc::from(next);
    }

    fn snapshot(&self) -> Arc<[Arc<Subscriber>]> {
        self.lock().clone()
    }

    /// Hands `msg` to every master connection (a notification of the control plane's
    /// own, such as `connection-closed-by-master`), under the same bound as events.
    pub(crate) fn broadcast_master(&self, msg: Bytes) {
        for sub in self.snapshot().iter().filter(|s| matches!(s.filter, Filter::Master)) {
            if let Err(mpsc::error::TrySendError::Full(_)) = sub.tx.try_send(Message::Text(msg.clone())) {
                self.dropped.inc();
            }
        }
    }

    /// Queues the status for master connections that have not had it, and forgets
    /// those that left. `greeted` (observer-owned) maps each greeted connection to the
    /// sessions its status listed before they were announced.
    fn greet(&self, subs: &[Arc<Subscriber>], tracker: &master::Tracker, greeted: &mut Greeted) {
        greeted.retain(|id, _| subs.iter().any(|s| s.id == *id));
        for sub in subs.iter().filter(|s| matches!(s.filter, Filter::Master)) {
            if greeted.contains_key(&sub.id) || !sub.open.load(Ordering::Relaxed) {
                continue;
            }
            let (status, listed) = tracker.status();
            if let Err(mpsc::error::TrySendError::Full(_)) = sub.tx.try_send(Message::Text(status)) {
                self.dropped.inc();
            }
            greeted.insert(sub.id, listed);
        }
    }

    /// Delivers one event to every matching subscriber. `step` is what the event
    /// means for master connections, decided by the observer's [`master::Tracker`].
    fn dispatch(
        &self,
        subs: &[Arc<Subscriber>],
        ev: &SessionEvent,
        taps: &mut TapAssembler,
        step: master::Step,
        greeted: &mut Greeted,
    ) {
        if let SessionEvent::Lifecycle { info, transition } = ev
            && transition.state.is_final()
        {
            taps.forget(info.id);
        }
        // Shared logs and delivery runs go to the recorder only; this observer gets
        // each delivery as a message.
        let Some(info) = ev.info() else { return };
        if matches!(ev, SessionEvent::Delivered(_)) {
            return;
        }
        // Each computed at most once per event, however many subscribers share it.
        let mut json: Option<Option<Bytes>> = None;
        let mut tapped: Option<Option<Message>> = None;
        let mut mastered: Option<Vec<(Bytes, master::Audience)>> = None;
        for sub in subs {
            let out = match &sub.filter {
                Filter::Live(f) => {
                    if !f.matches(info) {
                        continue;
                    }
                    match json.get_or_insert_with(|| event_json::event(ev, self.payload_cap)) {
                        Some(b) => Message::Text(b.clone()),
                        None => continue,
                    }
                }
                Filter::Master => {
                    let out = mastered.get_or_insert_with(|| {
                        // The whole message this frame completes, shared with the taps.
                        let whole = match ev {
                            SessionEvent::Message(m) if !m.injected => {
                                tapped.get_or_insert_with(|| taps.push(m)).as_ref()
                            }
                            _ => None,
                        };
                        master::render(ev, step, whole)
                    });
                    let mut listed = greeted.get_mut(&sub.id);
                    for (b, audience) in out.iter() {
                        let to_this = match audience {
                            master::Audience::All => true,
                            master::Audience::NotListed(id) => !listed.as_mut().is_some_and(|l| l.contains(id)),
                            master::Audience::OnlyListed(id) => listed.as_mut().is_some_and(|l| l.contains(id)),
                        };
                        if let master::Audience::NotListed(id) | master::Audience::OnlyListed(id) = audience
                            && let Some(l) = listed.as_mut()
                        {
                            l.remove(id);
                        }
                        if !to_this {
                            continue;
                        }
                        if let Err(mpsc::error::TrySendError::Full(_)) = sub.tx.try_send(Message::Text(b.clone())) {
                            self.dropped.inc();
                        }
                    }
                    continue;
                }
                Filter::Tap(t) => {
                    let SessionEvent::Message(m) = ev else { continue };
                    if !t.side.sees(m.direction) || t.path != m.info.path_only() {
                        continue;
                    }
                    match tapped.get_or_insert_with(|| taps.push(m)) {
                        Some(msg) => msg.clone(),
                        None => continue,
                    }
                }
            };
            if let Err(mpsc::error::TrySendError::Full(_)) = sub.tx.try_send(out) {
                self.dropped.inc();
            }
        }
    }
}

/// Turns frames into whole messages for taps, per session and direction.
struct TapAssembler {
    partial: HashMap<(SessionId, Direction), (OpCode, BytesMut)>,
    dropped: Counter,
}

impl TapAssembler {
    fn new(dropped: Counter) -> Self {
        Self { partial: HashMap::new(), dropped }
    }

    /// The whole message this frame completes, if any. Control frames are not tapped:
    /// websocket-multiplex taps carry data only.
    fn push(&mut self, m: &MessageEvent) -> Option<Message> {
        let key = (m.info.id, m.direction);
        match m.opcode {
            OpCode::Text | OpCode::Binary if m.fin => {
                // A new message also discards a fragment left over from a message whose
                // tail the bus dropped.
                self.partial.remove(&key);
                Some(whole(m.opcode, m.payload.clone()))
            }
            OpCode::Text | OpCode::Binary => {
                if m.payload.len() > TAP_MAX_MESSAGE {
                    self.partial.remove(&key);
                    self.dropped.inc();
                } else {
                    self.partial.insert(key, (m.opcode, BytesMut::from(&m.payload[..])));
                }
                None
            }
            OpCode::Continuation => {
                // No start seen (the tap joined mid-message, or the bus dropped it).
                let Entry::Occupied(mut e) = self.partial.entry(key) else { return None };
                if e.get().1.len() + m.payload.len() > TAP_MAX_MESSAGE {
                    e.remove();
                    self.dropped.inc();
                    return None;
                }
                e.get_mut().1.extend_from_slice(&m.payload);
                if !m.fin {
                    return None;
                }
                let (opcode, buf) = e.remove();
                Some(whole(opcode, buf.freeze()))
            }
            OpCode::Close | OpCode::Ping | OpCode::Pong => None,
        }
    }

    fn forget(&mut self, session: SessionId) {
        self.partial.retain(|(s, _), _| *s != session);
    }
}

fn whole(opcode: OpCode, payload: Bytes) -> Message {
    if opcode == OpCode::Text { Message::Text(payload) } else { Message::Binary(payload) }
}

/// The observer task: drains the `live` queue in batches until shutdown.
/// Master connections greeted with their status, each with the sessions it listed
/// that were not announced yet.
type Greeted = HashMap<u64, HashSet<SessionId>>;

/// The observer task: drains the `live` queue in batches until shutdown, and greets
/// each new master connection with its status, in order with the events.
pub(crate) async fn run_observer(hub: Arc<LiveHub>, mut queue: ObserverQueue, shutdown: CancellationToken) {
    let mut taps = TapAssembler::new(hub.dropped.clone());
    // Follows every proxy session's lifecycle whether or not anyone watches, so a
    // master connection opened later starts from the truth.
    let mut master = master::Tracker::default();
    let mut greeted = Greeted::new();
    let mut batch = Vec::with_capacity(OBSERVER_BATCH);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = hub.greet.notified() => {}
            n = queue.rx.recv_many(&mut batch, OBSERVER_BATCH) => {
                if n == 0 {
                    return; // the bus is gone
                }
            }
        }
        // A greeting must reflect what is already queued: take it too.
        while batch.len() < OBSERVER_BATCH {
            let Ok(ev) = queue.rx.try_recv() else { break };
            batch.push(ev);
        }
        let subs = hub.snapshot();
        if subs.is_empty() {
            // Nobody to deliver to; half-assembled tap messages are useless now.
            taps.partial.clear();
            for ev in batch.drain(..) {
                master.step(&ev);
            }
            continue;
        }
        // Master connections not greeted yet get these events through their status.
        let ready: Vec<_> = subs
            .iter()
            .filter(|s| !matches!(s.filter, Filter::Master) || greeted.contains_key(&s.id))
            .cloned()
            .collect();
        for ev in batch.drain(..) {
            let step = master.step(&ev);
            hub.dispatch(&ready, &ev, &mut taps, step, &mut greeted);
        }
        hub.greet(&subs, &master, &mut greeted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_events_flow_only_while_someone_watches() {
        let wants = Arc::new(AtomicBool::new(false));
        let hub = Arc::new(LiveHub::new(wants.clone(), 4, 64, Counter::default()));
        let a = hub.subscribe(Filter::Live(LiveFilter::default()));
        assert!(wants.load(Ordering::Relaxed));
        let b = hub.subscribe(Filter::Tap(TapFilter { path: "/chat".into(), side: TapSide::Client }));
        drop(a);
        assert!(wants.load(Ordering::Relaxed));
        drop(b);
        assert!(!wants.load(Ordering::Relaxed));
        assert!(hub.snapshot().is_empty());
    }

    #[test]
    fn tap_sides() {
        assert!(TapSide::Upstream.sees(Direction::ClientToUpstream));
        assert!(TapSide::Upstream.sees(Direction::ClientToGateway));
        assert!(!TapSide::Upstream.sees(Direction::UpstreamToClient));
        assert!(TapSide::Client.sees(Direction::UpstreamToClient));
        assert!(TapSide::Client.sees(Direction::GatewayToClient));
    }
}
