//! Replay mode: each session plays a [`Script`] on its own clock. A step is due at
//! its `at` (divided by `--speed`) from the session's start — a schedule, so a slow
//! wait earlier does not push later steps back further than the wait itself — and
//! never before the step ahead of it is done. A step that waits holds the schedule
//! until a client message matches (or its timeout acts). Client messages that come
//! before anything waits for them are kept, in order, for the next wait: a client
//! quicker than the recording is not a different conversation.
//!
//! Everything else (reads, inject/close, idle, shutdown, the close handshake) is the
//! server loop's; the schedule is driven by ticks (`Behaviour::next_tick`), never by
//! sleeping.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::time::Instant;
use wsgate_protocol::Message;
use wsgate_session::{Behaviour, HIGH_WATER, Outbox};

use crate::script::{Action, OnTimeout, Script, Step, Wait};
use wsgate_rules::template::RenderContext;

/// Client messages kept for a wait that has not come yet; older ones go first.
const INBOX: usize = 1024;

/// How a replay route plays its script.
#[derive(Debug)]
pub struct ReplaySettings {
    /// Where the script came from (the file), for logs and the route table.
    pub source: String,
    pub script: Script,
    /// Schedule speed: 2.0 plays twice as fast. Waits' timeouts are not scaled.
    pub speed: f64,
    /// Start over after the last step instead of staying open, silent.
    pub looped: bool,
    /// Every session's random values (`{{uuid}}`, `{{randInt}}`) from this seed.
    pub seed: Option<u64>,
}

/// One session's place in the script.
#[derive(Debug)]
pub struct Replay {
    settings: Arc<ReplaySettings>,
    /// The current pass's start.
    start: Instant,
    next: usize,
    /// When the current step started waiting for a client message.
    waiting_since: Option<Instant>,
    inbox: VecDeque<Message>,
    last_match: Option<serde_json::Value>,
    rng: fastrand::Rng,
    sent: u64,
    done: bool,
}

impl Replay {
    pub fn new(settings: Arc<ReplaySettings>) -> Self {
        let rng = settings.seed.map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
        Self {
            settings,
            start: Instant::now(),
            next: 0,
            waiting_since: None,
            inbox: VecDeque::new(),
            last_match: None,
            rng,
            sent: 0,
            done: false,
        }
    }

    fn due(&self, step: &Step) -> Instant {
        self.start + step.at.div_f64(self.settings.speed)
    }

    /// Plays every step that is due and not waiting.
    fn advance(&mut self, out: &mut Outbox<'_>) {
        let settings = self.settings.clone();
        let steps = &settings.script.steps;
        while !self.done {
            let now = Instant::now();
            let Some(step) = steps.get(self.next) else {
                if settings.looped {
                    self.next = 0;
                    self.start = now;
                    continue;
                }
                self.done = true;
                return;
            };
            if now < self.due(step) {
                return;
            }
            if let Some(wait) = &step.wait {
                let since = *self.waiting_since.get_or_insert(now);
                if !self.take_match(wait) {
                    match wait.timeout {
                        Some(t) if now >= since + t => {
                            if let OnTimeout::Close { code, reason } = &wait.on_timeout {
                                out.close(*code, reason.clone());
                                self.done = true;
                                return;
                            }
                        }
                        _ => return,
                    }
                }
            }
            self.waiting_since = None;
            self.next += 1;
            match &step.action {
                Action::Nothing => {}
                Action::Text(t) => {
                    self.sent += 1;
                    let mut cx = RenderContext {
                        rng: &mut self.rng,
                        now: chrono::Utc::now(),
                        seq: self.sent,
                        last_match: self.last_match.as_ref(),
                        state: &[],
                        groups: None,
                    };
                    out.send(Message::text(t.render(&mut cx)));
                }
                Action::RecordedText(b) => {
                    self.sent += 1;
                    // A recorded payload cut at the store's cap may end inside a
                    // character; a text frame must be UTF-8 whole.
                    let msg = match std::str::from_utf8(b) {
                        Ok(_) => Message::Text(b.clone()),
                        Err(_) => Message::text(String::from_utf8_lossy(b).into_owned()),
                    };
                    out.send(msg);
                }
                Action::Binary(b) => {
                    self.sent += 1;
                    out.send(Message::Binary(b.clone()));
                }
                Action::Close { code, reason } => {
                    out.close(*code, reason.clone());
                    self.done = true;
                    return;
                }
            }
            if out.buffered() >= HIGH_WATER {
                // A script with thousands of steps due at once: let the loop write
                // what is queued, and come back on the next tick.
                out.yield_to_others();
                return;
            }
        }
    }

    /// Takes the first kept client message `wait` accepts (the ones before it are
    /// not what the script waits for, and are dropped).
    fn take_match(&mut self, wait: &Wait) -> bool {
        while let Some(msg) = self.inbox.pop_front() {
            let text = match &msg {
                Message::Text(b) | Message::Binary(b) => std::str::from_utf8(b).ok(),
                _ => None,
            };
            let Some(matcher) = &wait.matcher else {
                self.last_match = text.and_then(|t| serde_json::from_str(t).ok());
                return true;
            };
            if let Some(parsed) = text.and_then(|t| matcher.matches(t)) {
                self.last_match = parsed;
                return true;
            }
        }
        false
    }
}

impl Behaviour for Replay {
    fn on_open(&mut self, out: &mut Outbox<'_>) {
        self.start = Instant::now();
        self.advance(out);
    }

    fn on_message(&mut self, msg: Message, out: &mut Outbox<'_>) {
        if self.done {
            return;
        }
        if self.inbox.len() == INBOX {
            self.inbox.pop_front();
        }
        self.inbox.push_back(msg);
        self.advance(out);
    }

    fn next_tick(&self) -> Option<Instant> {
        if self.done {
            return None;
        }
        let step = self.settings.script.steps.get(self.next)?;
        match (self.waiting_since, step.wait.as_ref().and_then(|w| w.timeout)) {
            (Some(since), Some(t)) => Some(since + t),
            (Some(_), None) => None,
            // Not yet due, or due and to be looked at again after a yield (a time
            // in the past ticks at once).
            (None, _) => Some(self.due(step)),
        }
    }

    fn on_tick(&mut self, out: &mut Outbox<'_>) {
        self.advance(out);
    }
}
