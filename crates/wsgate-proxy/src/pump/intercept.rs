//! Intercept breakpoints in the pump (`wsgate-intercept`): a whole data message a
//! breakpoint matches is stopped in its destination side's [`Held`] queue, due when
//! the breakpoint's timeout runs out, and listed on the intercept board. Everything
//! after it to that side queues behind it (order kept); the other direction and
//! other sessions flow on. An operator's `Command::Release` forwards it, edits then
//! forwards it, or drops it; the timeout forwards it unchanged.
//!
//! A stopped frame skips the route's rules and faults: the operator decides what it
//! becomes. It is recorded when it leaves, marked `held` (and `rewritten` or
//! `dropped`), and so is everything that queued behind it (through [`Pump::send`],
//! whatever a rule or fault did to it), so history keeps the order the peer saw. Pings and pongs go round a stopped frame, so keepalives keep
//! the connection up while an operator decides.
//!
//! [`Held`]: wsgate_faults::Held

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use wsgate_core::{Mark, Marks, Verdict};
use wsgate_intercept::Breakpoint;
use wsgate_protocol::{Frame, OpCode};

use super::{Pump, Side, Who};

/// A frame waiting in a side's `held` queue, and what is left to do when it goes.
#[derive(Debug)]
pub(super) struct Out {
    pub(super) frame: Frame,
    pub(super) stage: Stage,
}

impl Out {
    pub(super) fn len(&self) -> usize {
        self.frame.payload.len()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// In history already (a fault's or rule's delay, or queued behind one).
    Recorded,
    /// Recorded when it leaves, with these marks: it queued behind a stopped frame.
    Record(Marks),
    /// Stopped at a breakpoint and listed on the board as `id`; `verdict` is set when
    /// an operator let it go (the marks it leaves with). Still `None` when it comes
    /// due: the timeout forwards it unchanged.
    Stop { id: u64, verdict: Option<Marks> },
}

fn held(m: Mark) -> Marks {
    Marks::from([Mark::Held, m])
}

impl Pump<'_> {
    /// Records `frame` from `from` and forwards it as it came. Every frame the pump
    /// forwards untouched goes through here.
    #[inline]
    pub(super) fn pass(&mut self, from: Who, frame: Frame, at: DateTime<Utc>) {
        self.send(from.other(), frame, Marks::NONE, None, at);
    }

    /// Records `frame`, with `marks`, as going to side `to`, and sends it there: now,
    /// or at `due` (a rule's or fault's delay); not at all when marked `dropped`.
    /// While a stopped frame waits ahead of it, it queues behind instead and is
    /// recorded when it leaves.
    #[inline]
    pub(super) fn send(&mut self, to: Who, frame: Frame, marks: Marks, due: Option<Instant>, at: DateTime<Utc>) {
        let side = self.side(to);
        if side.stops > 0 && !side.close_sent {
            return side.hold_until(due.unwrap_or_else(Instant::now), frame, Stage::Record(marks));
        }
        let direction = to.incoming_direction();
        self.session.frame_marked(direction, frame.opcode, frame.fin, &frame.payload, false, marks, at);
        let side = self.side(to);
        if side.close_sent || marks.contains(Mark::Dropped) {
            return;
        }
        match due {
            Some(due) => side.hold_until(due, frame, Stage::Recorded),
            None => side.forward(frame),
        }
    }

    /// Stops `frame` at breakpoint `bp`.
    pub(super) fn stop(&mut self, from: Who, frame: Frame, bp: &Breakpoint, at: DateTime<Utc>) {
        if self.sides(from).1.close_sent {
            // Never forwarded: nothing to hold.
            return self.pass(from, frame, at);
        }
        let id = self.session.id();
        let binary = frame.opcode == OpCode::Binary;
        let (hold, timeout) = self.intercepts.hold(bp, id, from.outgoing_direction(), binary, frame.payload.clone());
        let (_, dst) = self.sides(from);
        dst.stops += 1;
        dst.hold_until(Instant::now() + timeout, frame, Stage::Stop { id: hold, verdict: None });
    }

    /// Carries out an operator's verdict on stopped frame `id`; whether this session
    /// still held it.
    pub(super) fn release(&mut self, id: u64, verdict: Verdict) -> bool {
        let marks = match &verdict {
            Verdict::Forward => Marks::from(Mark::Held),
            Verdict::Edit { .. } => held(Mark::Rewritten),
            Verdict::Drop => held(Mark::Dropped),
        };
        let now = Instant::now();
        for side in [&mut self.client, &mut self.upstream] {
            let found = side.held.settle(now, Out::len, |out| match &mut out.stage {
                Stage::Stop { id: stopped, verdict: v @ None } if *stopped == id => {
                    *v = Some(marks);
                    if let Verdict::Edit { payload, binary } = &verdict {
                        let opcode = if *binary { OpCode::Binary } else { OpCode::Text };
                        out.frame = Frame::new(opcode, payload.clone());
                    }
                    true
                }
                _ => false,
            });
            if found {
                self.intercepts.unlist(id);
                return true;
            }
        }
        false
    }

    /// Lets every stopped frame go unchanged (the session is closing).
    pub(super) fn release_all(&mut self) {
        let now = Instant::now();
        for side in [&mut self.client, &mut self.upstream] {
            if side.stops == 0 {
                continue;
            }
            let intercepts = &self.intercepts;
            while side.held.settle(now, Out::len, |out| match &mut out.stage {
                Stage::Stop { id, verdict: v @ None } => {
                    intercepts.unlist(*id);
                    *v = Some(Marks::from(Mark::Held));
                    true
                }
                _ => false,
            }) {}
        }
    }

    /// Forgets what waits for `who`: it failed and will read nothing more.
    pub(super) fn discard_held(&mut self, who: Who) {
        let side = self.side(who);
        let held = std::mem::take(&mut side.held);
        side.stops = 0;
        for out in held.iter() {
            if let Stage::Stop { id, verdict: None } = out.stage {
                self.intercepts.unlist(id);
            }
        }
    }

    /// Sends on what is due in `who`'s queue, recording what was left to record;
    /// whether anything went.
    pub(super) fn drain_due(&mut self, who: Who, now: Instant) -> bool {
        let direction = who.incoming_direction();
        let side: &mut Side = match who {
            Who::Client => &mut self.client,
            Who::Upstream => &mut self.upstream,
        };
        let mut progressed = false;
        while let Some(Out { frame, stage }) = side.held.pop_due(now, Out::len) {
            progressed = true;
            let marks = match stage {
                Stage::Recorded => {
                    side.emit(&frame);
                    continue;
                }
                Stage::Record(marks) => marks,
                Stage::Stop { id, verdict } => {
                    side.stops -= 1;
                    if verdict.is_none() {
                        self.intercepts.unlist(id);
                    }
                    verdict.unwrap_or(Marks::from(Mark::Held))
                }
            };
            let at = self.session.frame_time();
            self.session.frame_marked(direction, frame.opcode, frame.fin, &frame.payload, false, marks, at);
            if !marks.contains(Mark::Dropped) {
                side.emit(&frame);
            }
        }
        progressed
    }
}
