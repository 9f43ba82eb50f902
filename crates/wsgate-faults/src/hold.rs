//! Messages held back by latency or throttling (or, in the proxy, at an intercept
//! breakpoint): a queue per direction, in order, each with the time it is due. Only
//! the front is ever taken, so order is kept whatever the due times: a message due
//! early waits for those ahead of it. Its bytes count towards the handler's
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
    /// has gone if that is later.
    pub fn push(&mut self, due: Instant, len: usize, item: T) {
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

    /// Makes the first item `pick` accepts (and may change) due by `now`; whether
    /// there was one. `len` measures an item as `push` was told, before and after.
    pub fn settle(&mut self, now: Instant, len: impl Fn(&T) -> usize, mut pick: impl FnMut(&mut T) -> bool) -> bool {
        for (due, item) in self.queue.iter_mut() {
            let before = len(item);
            if pick(item) {
                self.bytes = self.bytes - before + len(item);
                *due = (*due).min(now);
                return true;
            }
        }
        false
    }

    /// Every item, front first.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.queue.iter().map(|(_, item)| item)
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
