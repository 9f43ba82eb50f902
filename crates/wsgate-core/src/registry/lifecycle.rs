//! A live session's lifecycle as the registry holds it: bounded.
//!
//! An outbound session that reconnects forever adds a step per attempt; kept whole,
//! its lifecycle would grow for as long as it runs. The registry keeps how it began
//! (the first [`LIFECYCLE_HEAD`] steps: the request, the first attempts) and what it
//! is doing now (the last [`LIFECYCLE_TAIL`]), and counts the steps dropped between
//! them. The store still records every step: that is history; this is a view.

use std::collections::VecDeque;

use crate::session::Transition;

/// Steps kept from the start of a lifecycle.
pub const LIFECYCLE_HEAD: usize = 8;
/// Steps kept from its end (the most recent).
pub const LIFECYCLE_TAIL: usize = 64;

/// The first [`LIFECYCLE_HEAD`] steps, the last [`LIFECYCLE_TAIL`], and how many
/// fell between them.
#[derive(Debug)]
pub(crate) struct KeptLifecycle {
    head: Vec<Transition>,
    /// Never longer than `LIFECYCLE_TAIL`: full, it drops its oldest before taking
    /// one, so it never reallocates either.
    tail: VecDeque<Transition>,
    omitted: u64,
}

impl KeptLifecycle {
    pub(crate) fn new(first: Transition) -> Self {
        let mut head = Vec::with_capacity(LIFECYCLE_HEAD);
        head.push(first);
        Self { head, tail: VecDeque::new(), omitted: 0 }
    }

    pub(crate) fn push(&mut self, t: Transition) {
        if self.head.len() < LIFECYCLE_HEAD {
            self.head.push(t);
            return;
        }
        if self.tail.len() == LIFECYCLE_TAIL {
            self.tail.pop_front();
            self.omitted += 1;
        } else if self.tail.capacity() == 0 {
            // Only sessions that get past the head pay for a tail, once.
            self.tail.reserve_exact(LIFECYCLE_TAIL);
        }
        self.tail.push_back(t);
    }

    /// The kept steps in order; the omitted ones, if any, were between the first
    /// `LIFECYCLE_HEAD` of these and the rest.
    pub(crate) fn steps(&self) -> Vec<Transition> {
        self.head.iter().chain(&self.tail).cloned().collect()
    }

    pub(crate) fn omitted(&self) -> u64 {
        self.omitted
    }

    /// Steps held in memory, counting spare capacity: what the bound is about.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.head.capacity() + self.tail.capacity()
    }
}
