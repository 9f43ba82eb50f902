//! What the pump does to a whole data message besides forwarding it: the route's
//! rules (`wsgate-rules`) — rewrite, drop, delay, answer in place, close — then its
//! faults (`wsgate-faults`) — drop, duplicate, truncate, hold back (latency,
//! throttle), disconnect. Each message a rule or fault touched is recorded with its
//! marks (`rule`/`fault` and what it did), so the live stream and history show it.
//!
//! Held frames wait in their destination side's [`Held`] queue; everything after
//! them to that side queues behind (order is kept), and their bytes count towards
//! the backpressure mark.

use std::future::Future as _;
use std::task::Context;

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use wsgate_core::{Ending, Initiator, Mark, Marks, ReasonKind};
use wsgate_faults::{Flow, cut};
use wsgate_protocol::{CloseCode, Frame, OpCode};
use wsgate_rules::{Flow as RuleFlow, Forward};

use super::{Pump, Who};

impl Pump<'_> {
    /// A whole data message from `from`, when the route has rules: the first rule that
    /// matches acts on it (no match: on to the faults, or forwarded as it came).
    pub(super) fn apply_rules(&mut self, from: Who, mut frame: Frame, at: DateTime<Utc>) {
        let flow = match from {
            Who::Client => RuleFlow::ToUpstream,
            Who::Upstream => RuleFlow::ToClient,
        };
        let binary = frame.opcode == OpCode::Binary;
        let Some(t) = self.rules.as_mut().map(|c| c.transform(flow, binary, &frame.payload)) else { return };
        if !t.applied() {
            if self.faults.active() {
                return self.shape(from, frame, at, Marks::NONE);
            }
            return self.pass(from, frame, at);
        }
        let to = from.other();
        let mut marks = Marks::from(Mark::Rule);
        let now = Instant::now();
        match t.forward {
            Forward::Drop => self.send(to, frame, marks.with(Mark::Dropped), None, at),
            forward => {
                if let Forward::Replace(payload) = forward {
                    frame.payload = payload;
                    marks = marks.with(Mark::Rewritten);
                }
                match t.delay {
                    Some(d) => self.send(to, frame, marks.with(Mark::Delayed), Some(now + d), at),
                    None if self.faults.active() => self.shape(from, frame, at, marks),
                    None => self.send(to, frame, marks, None, at),
                }
            }
        }
        // Answers in place go back to the sender, each at its delay, behind anything
        // already held for it; none to a sender we are closing.
        for a in t.answers {
            if self.side(from).close_sent {
                break;
            }
            let opcode = if a.binary { OpCode::Binary } else { OpCode::Text };
            let answer = Frame::new(opcode, a.payload);
            let due = (!a.delay.is_zero()).then(|| now + a.delay);
            self.send(from, answer, Marks::from([Mark::Rule, Mark::Answer]), due, at);
        }
        if let Some((code, reason)) = t.close {
            self.gateway_close(code, &reason, Initiator::Gateway);
        }
    }

    /// A whole data message from `from`, while faults are active; `marks` are what a
    /// rule did to it already.
    pub(super) fn shape(&mut self, from: Who, mut frame: Frame, at: DateTime<Utc>, base: Marks) {
        let flow = match from {
            Who::Client => Flow::FromClient,
            Who::Upstream => Flow::ToClient,
        };
        let now = Instant::now();
        let d = self.faults.decide(flow, frame.payload.len(), now);
        if !self.fault_disconnected {
            // The faults may have changed since the last message.
            self.fault_deadline = self.faults.disconnect_at();
            self.disconnect_pending |= d.disconnect;
        }
        let mut marks = base.with(Mark::Fault);
        if d.drop {
            return self.send(from.other(), frame, marks.with(Mark::Dropped), None, at);
        }
        if let Some(n) = d.truncate {
            frame.payload = cut(&frame.payload, n, frame.opcode == OpCode::Text);
            marks = marks.with(Mark::Rewritten);
        }
        if d.hold_until.is_some() {
            marks = marks.with(Mark::Delayed);
        }
        if marks == base.with(Mark::Fault) && !d.duplicate {
            // Only counted towards a disconnect: no fault touched the message itself.
            marks = base;
        }
        if d.duplicate {
            self.send(from.other(), frame.clone(), marks, d.hold_until, at);
            marks = marks.with(Mark::Duplicate);
        }
        self.send(from.other(), frame, marks, d.hold_until, at);
    }

    /// Delivers held frames that are due (`intercept.rs` records those it must) and
    /// carries out a fault's disconnect, then
    /// arms the timer for what comes next. Nothing to do (the usual case) costs a few
    /// comparisons.
    pub(super) fn poll_faults(&mut self, cx: &mut Context<'_>) -> bool {
        let holding = !self.client.held.is_empty() || !self.upstream.held.is_empty();
        if !holding && !self.disconnect_pending && self.fault_deadline.is_none() {
            return false;
        }
        let now = Instant::now();
        let mut progressed = false;
        for who in [Who::Client, Who::Upstream] {
            progressed |= self.drain_due(who, now);
        }
        if self.fault_deadline.is_some_and(|t| now >= t) {
            self.fault_deadline = None;
            self.disconnect_pending = true;
        }
        if self.disconnect_pending && self.client.held.is_empty() && self.upstream.held.is_empty() {
            self.disconnect_pending = false;
            self.fault_disconnect();
            progressed = true;
        }
        let next = [self.client.held.next_due(), self.upstream.held.next_due(), self.fault_deadline];
        if let Some(due) = next.into_iter().flatten().min() {
            let timer = self.fault_timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
            if timer.deadline() != due {
                timer.as_mut().reset(due);
            }
            progressed |= timer.as_mut().poll(cx).is_ready();
        }
        progressed
    }

    /// Ends the session as the route's disconnect fault says: with a close frame and
    /// its code to both sides, or abruptly (both connections dropped without one).
    fn fault_disconnect(&mut self) {
        if std::mem::replace(&mut self.fault_disconnected, true) || self.ending.is_some() {
            return;
        }
        self.fault_deadline = None;
        match self.faults.disconnect() {
            Some((code, reason)) => {
                self.gateway_close(code, &reason, Initiator::Gateway);
                if let Some(e) = &mut self.ending {
                    e.kind = Some(ReasonKind::Fault);
                }
            }
            None => {
                let mut ending =
                    Ending::new(CloseCode::ABNORMAL, Some("fault: abrupt disconnect".into()), Initiator::Gateway);
                ending.kind = Some(ReasonKind::Fault);
                self.ending = Some(ending);
                self.abort = true;
                for side in [&mut self.client, &mut self.upstream] {
                    // Nothing more reaches either peer, not even what was written:
                    // the connections are dropped as they are.
                    side.wr.clear();
                    side.read_done = true;
                }
            }
        }
    }
}
