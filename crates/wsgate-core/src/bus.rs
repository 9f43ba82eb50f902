//! The event bus: fan-out of [`SessionEvent`]s to observers, each behind its own
//! bounded queue.
//!
//! Overflow policy: drop-newest for that observer only, counted. A slow observer
//! never slows traffic or another observer. The set of observers is fixed when the
//! bus is built, so emitting takes no lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::mpsc;

use crate::event::{MessageEvent, SessionEvent};

/// Default capacity of an observer's queue.
pub const DEFAULT_OBSERVER_CAPACITY: usize = 8192;

struct Slot {
    name: &'static str,
    tx: mpsc::Sender<SessionEvent>,
    dropped: AtomicU64,
    /// Whether the observer currently wants message events (the live stream does not
    /// while nobody is watching).
    wants_messages: Arc<AtomicBool>,
}

/// Fans events out to observers.
pub struct EventBus {
    slots: Vec<Slot>,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus").field("observers", &self.slots.iter().map(|s| s.name).collect::<Vec<_>>()).finish()
    }
}

/// What an observer reads from.
pub struct ObserverQueue {
    pub rx: mpsc::Receiver<SessionEvent>,
    /// Set to false to stop receiving message events (lifecycle and errors still come).
    pub wants_messages: Arc<AtomicBool>,
}

impl ObserverQueue {
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
    pub fn observer(&mut self, name: &'static str, capacity: usize) -> ObserverQueue {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let wants_messages = Arc::new(AtomicBool::new(true));
        self.slots.push(Slot { name, tx, dropped: AtomicU64::new(0), wants_messages: wants_messages.clone() });
        ObserverQueue { rx, wants_messages }
    }

    pub fn build(self) -> Arc<EventBus> {
        Arc::new(EventBus { slots: self.slots })
    }
}

impl EventBus {
    pub fn builder() -> EventBusBuilder {
        EventBusBuilder::default()
    }

    /// A bus with no observers (tests, tools).
    pub fn empty() -> Arc<Self> {
        Arc::new(Self { slots: Vec::new() })
    }

    /// Delivers to every observer; drops (and counts) where a queue is full.
    pub fn emit(&self, event: SessionEvent) {
        for slot in &self.slots {
            if let Err(mpsc::error::TrySendError::Full(_)) = slot.tx.try_send(event.clone()) {
                slot.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Delivers a message event to the observers that want message events.
    #[inline]
    pub fn emit_message(&self, event: MessageEvent) {
        for slot in &self.slots {
            if !slot.wants_messages.load(Ordering::Relaxed) {
                continue;
            }
            if let Err(mpsc::error::TrySendError::Full(_)) = slot.tx.try_send(SessionEvent::Message(event.clone())) {
                slot.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// `(observer name, events dropped so far)` for each observer.
    pub fn drops(&self) -> Vec<(&'static str, u64)> {
        self.slots.iter().map(|s| (s.name, s.dropped.load(Ordering::Relaxed))).collect()
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
}
