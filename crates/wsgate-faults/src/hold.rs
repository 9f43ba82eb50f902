//! Messages held back by latency or throttling: a queue per direction, in order, each
//! with the time it is due. A later message is never due before an earlier one, so
//! a handler only ever looks at the front. Its bytes count towards the handler's
//! backpressure mark like bytes waiting to be written, so a slow fault cannot make
//! the gateway hold more than a fast peer would.

use std::collections::VecDeque;

use tokio::time::Instant;

#[derive(Debug)]
pub struct Held<T> {
    queue: VecDeque<(Instant, T)>,
    bytes: usize,
}

impl<T> Default for Held<T> {
    fn default() -> Self {
        Self { queue: VecDeque::new(), bytes: 0 }
    }
}

impl<T> Held<T> {
    /// Holds `item` (`len` payload bytes) until `due`, or until what is ahead of it
    /// is due if that is later.
    pub fn push(&mut self, due: Instant, len: usize, item: T) {
        let due = self.queue.back().map_or(due, |(d, _)| due.max(*d));
        self.bytes += len;
        self.queue.push_back((due, item));
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Payload bytes held.
    #[inline]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// When the front is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.queue.front().map(|(d, _)| *d)
    }

    /// The front, if it is due by `now`; `len` is what was given to `push`.
    pub fn pop_due(&mut self, now: Instant, len: impl Fn(&T) -> usize) -> Option<T> {
        if self.queue.front().is_some_and(|(d, _)| *d <= now) {
            let (_, item) = self.queue.pop_front()?;
            self.bytes -= len(&item);
            return Some(item);
        }
        None
    }
}
