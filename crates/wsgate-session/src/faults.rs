//! The served session's side of its route's faults (`wsgate-faults`): what the
//! behaviour sends the client, and what the client sends the behaviour, each message
//! decided on its own — dropped, duplicated, truncated, held back — and a disconnect
//! carried out when a fault says so. Every message a fault touched is recorded with
//! its marks. Injects and control frames are never faulted.
//!
//! Only a route whose faults were ever set pays anything: [`Faults::new`] is `None`
//! otherwise, and the loop's checks are one branch on that.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use wsgate_core::{Direction, Mark, Marks, SessionHandle};
use wsgate_faults::{FaultSwitch, Flow, Held, SessionFaults, cut};
use wsgate_protocol::{Message, Transport, WsStream};

use crate::behaviour::record_marked;

/// A served session's faults and what they hold.
#[derive(Debug)]
pub(crate) struct Faults {
    session: SessionFaults,
    /// To the client, already recorded; written when due.
    to_client: Held<Message>,
    /// From the client, already recorded; handed to the behaviour when due.
    from_client: Held<Message>,
    deadline: Option<Instant>,
    disconnect_pending: bool,
    disconnected: bool,
    /// Our close frame, waiting for what is held for the client to go first.
    pub(crate) close_after: Option<Message>,
}

/// How a fault ends the session.
pub(crate) enum Disconnect {
    Close(u16, String),
    Abrupt,
}

fn len(m: &Message) -> usize {
    match m {
        Message::Text(b) | Message::Binary(b) => b.len(),
        _ => 0,
    }
}

fn truncated(m: Message, bytes: usize) -> Message {
    match m {
        Message::Text(b) => Message::Text(cut(&b, bytes, true)),
        Message::Binary(b) => Message::Binary(cut(&b, bytes, false)),
        other => other,
    }
}

impl Faults {
    pub(crate) fn new(switch: Option<&Arc<FaultSwitch>>) -> Option<Box<Faults>> {
        let switch = switch.filter(|s| s.ever_set())?;
        let mut session = SessionFaults::new(switch.clone());
        let deadline = if session.active() { session.disconnect_at() } else { None };
        Some(Box::new(Faults {
            session,
            to_client: Held::default(),
            from_client: Held::default(),
            deadline,
            disconnect_pending: false,
            disconnected: false,
            close_after: None,
        }))
    }

    /// Decides a data message; the marks to record it with, how many copies go,
    /// the message (perhaps cut), and when (None: now).
    fn decide(&mut self, flow: Flow, m: Message) -> (Marks, usize, Message, Option<Instant>) {
        let d = self.session.decide(flow, len(&m), Instant::now());
        if !self.disconnected {
            self.deadline = self.session.disconnect_at();
            self.disconnect_pending |= d.disconnect;
        }
        let mut marks = Marks::from(Mark::Fault);
        if d.drop {
            return (marks.with(Mark::Dropped), 0, m, None);
        }
        let m = match d.truncate {
            Some(n) => {
                marks = marks.with(Mark::Rewritten);
                truncated(m, n)
            }
            None => m,
        };
        if d.hold_until.is_some() {
            marks = marks.with(Mark::Delayed);
        }
        if marks == Marks::from(Mark::Fault) && !d.duplicate {
            marks = Marks::NONE;
        }
        (marks, if d.duplicate { 2 } else { 1 }, m, d.hold_until)
    }

    /// A message the behaviour sends the client: written (fed) now, held, dropped or
    /// doubled. `false` once the stream is closing.
    pub(crate) fn send(
        &mut self,
        ws: &mut WsStream<Transport>,
        session: &mut SessionHandle,
        m: Message,
        at: DateTime<Utc>,
    ) -> bool {
        if !self.session.active() && self.to_client.is_empty() {
            return feed(ws, session, &m, Marks::NONE, at);
        }
        let (marks, copies, m, due) = self.decide(Flow::ToClient, m);
        if copies == 0 {
            record_marked(session, Direction::GatewayToClient, &m, false, marks, at);
            return true;
        }
        for copy in 0..copies {
            let marks = if copy == 1 { marks.with(Mark::Duplicate) } else { marks };
            match due {
                None if self.to_client.is_empty() => {
                    if !feed(ws, session, &m, marks, at) {
                        return false;
                    }
                }
                due => {
                    record_marked(session, Direction::GatewayToClient, &m, false, marks, at);
                    self.to_client.push(due.unwrap_or_else(Instant::now), len(&m), m.clone());
                }
            }
        }
        true
    }

    /// A message the client sent: recorded here (with the marks a fault gives it),
    /// and the copies to hand the behaviour now; held ones come from [`Faults::release`].
    pub(crate) fn received(
        &mut self,
        session: &mut SessionHandle,
        m: Message,
        at: DateTime<Utc>,
    ) -> [Option<Message>; 2] {
        if !self.session.active() && self.from_client.is_empty() {
            record_marked(session, Direction::ClientToGateway, &m, false, Marks::NONE, at);
            return [Some(m), None];
        }
        let (marks, copies, m, due) = self.decide(Flow::FromClient, m);
        record_marked(session, Direction::ClientToGateway, &m, false, marks, at);
        if copies == 0 {
            return [None, None];
        }
        if due.is_none() && self.from_client.is_empty() {
            return [Some(m.clone()), (copies == 2).then_some(m)];
        }
        let due = due.unwrap_or_else(Instant::now);
        for _ in 0..copies {
            self.from_client.push(due, len(&m), m.clone());
        }
        [None, None]
    }

    /// Bytes held for the client (they count towards the inject mark).
    pub(crate) fn held_for_client(&self) -> usize {
        self.to_client.bytes()
    }

    /// When [`Faults::release`] is next wanted.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        let now_if = |b: bool| b.then(Instant::now);
        [self.to_client.next_due(), self.from_client.next_due(), self.deadline, now_if(self.disconnect_pending)]
            .into_iter()
            .flatten()
            .min()
    }

    /// Writes what is due for the client and returns what is due for the behaviour;
    /// then a disconnect, when one is due and nothing is held for the client.
    pub(crate) fn release(
        &mut self,
        ws: &mut WsStream<Transport>,
        for_behaviour: &mut Vec<Message>,
    ) -> Option<Disconnect> {
        let now = Instant::now();
        while let Some(m) = self.to_client.pop_due(now, len) {
            let _ = ws.feed(&m);
        }
        if self.to_client.is_empty()
            && let Some(close) = self.close_after.take()
        {
            let _ = ws.feed(&close);
        }
        while let Some(m) = self.from_client.pop_due(now, len) {
            for_behaviour.push(m);
        }
        if self.deadline.is_some_and(|t| now >= t) {
            self.deadline = None;
            self.disconnect_pending = true;
        }
        if !self.disconnect_pending || !self.to_client.is_empty() || self.disconnected {
            return None;
        }
        self.disconnect_pending = false;
        self.disconnected = true;
        self.deadline = None;
        Some(match self.session.disconnect() {
            Some((code, reason)) => Disconnect::Close(code, reason),
            None => Disconnect::Abrupt,
        })
    }

    /// Whether a close frame must wait for held output (it then goes in
    /// [`Faults::close_after`]).
    pub(crate) fn holds_output(&self) -> bool {
        !self.to_client.is_empty()
    }
}

fn feed(
    ws: &mut WsStream<Transport>,
    session: &mut SessionHandle,
    m: &Message,
    marks: Marks,
    at: DateTime<Utc>,
) -> bool {
    if ws.feed(m).is_err() {
        return false;
    }
    record_marked(session, Direction::GatewayToClient, m, false, marks, at);
    true
}
