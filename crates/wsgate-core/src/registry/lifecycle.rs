//! A live session's lifecycle as the registry holds it: bounded.
//!
//! An outbound session that reconnects forever adds a step per attempt; kept whole,
//! its lifecycle would grow for as long as it runs. The registry keeps how it began
//! (the first [`LIFECYCLE_HEAD`] steps: the request, the first attempts) and what it
//! is doing now (the last [`LIFECYCLE_TAIL`]), and counts the steps dropped between
//! them. The store still records every step: that is history; this is a view.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};

use crate::session::{State, Transition, TransitionDetail};

/// Steps kept from the start of a lifecycle.
pub const LIFECYCLE_HEAD: usize = 8;
/// Steps kept from its end (the most recent).
pub const LIFECYCLE_TAIL: usize = 64;

/// The first [`LIFECYCLE_HEAD`] steps, the last [`LIFECYCLE_TAIL`], and how many
/// fell between them.
#[derive(Debug)]
pub(crate) struct KeptLifecycle {
    head: Vec<Step>,
    /// Never longer than `LIFECYCLE_TAIL`: full, it drops its oldest before taking
    /// one, so it never reallocates either.
    tail: VecDeque<Step>,
    omitted: u64,
}

/// A [`Transition`] as kept here: 24 bytes, its detail boxed only when it says
/// something. Most steps say nothing beyond their state and time (an idle relay
/// session's REQUESTED and CONNECTED), and every live session holds its steps: kept
/// whole, they cost 192 bytes each.
#[derive(Debug)]
struct Step {
    state: State,
    at: DateTime<Utc>,
    detail: Option<Box<TransitionDetail>>,
}

impl Step {
    fn pack(t: Transition) -> Self {
        let detail = (t.detail != TransitionDetail::default()).then(|| Box::new(t.detail));
        Self { state: t.state, at: t.at, detail }
    }

    fn unpack(&self) -> Transition {
        let detail = self.detail.as_deref().cloned().unwrap_or_default();
        Transition { state: self.state, at: self.at, detail }
    }
}

impl KeptLifecycle {
    pub(crate) fn new(first: Transition) -> Self {
        // Room for REQUESTED and CONNECTED, all most live sessions ever have: a head
        // reserved whole (of steps kept as `Transition`s) cost every idle connection
        // 1.6 KiB.
        let mut head = Vec::with_capacity(2);
        head.push(Step::pack(first));
        Self { head, tail: VecDeque::new(), omitted: 0 }
    }

    pub(crate) fn push(&mut self, t: Transition) {
        let t = Step::pack(t);
        if self.head.len() < LIFECYCLE_HEAD {
            if self.head.len() == self.head.capacity() {
                self.head.reserve_exact(2);
            }
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
        self.head.iter().chain(&self.tail).map(Step::unpack).collect()
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
