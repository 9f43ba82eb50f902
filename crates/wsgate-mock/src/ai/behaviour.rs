//! The session's side of a generated stream: the generator's events, sent to the
//! client at the route's rate, then its close.
//!
//! The first event goes as soon as it is generated; each next one an interval
//! (1 / rate) after the one before, or when it is generated if that is later — the
//! model's pace can slow the stream, never speed it past the rate. Sending is driven
//! by ticks (`next_tick`), never by sleeping. The close follows the last event at
//! once: 1000 after `count` events (or fewer, when the model stopped short: the
//! reason says how many), 1014 or 1011 with an `error` event when generation failed
//! (`AiError::close_code`). So a session never outlives its stream: a client reads
//! until the close. Client messages are recorded as usual and otherwise ignored.

use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use wsgate_core::{ErrorKind, SessionInfo};
use wsgate_protocol::Message;
use wsgate_session::{Behaviour, HIGH_WATER, Outbox};

use crate::ai::error::AiError;
use crate::ai::generator::{self, FEED, Feed};
use crate::ai::settings::AiSettings;

/// One session's generated stream.
#[derive(Debug)]
pub struct AiStream {
    settings: Arc<AiSettings>,
    /// Until `on_open` starts the generator.
    start: Option<(SessionInfo, TaskTracker)>,
    feed: Option<mpsc::Receiver<Feed>>,
    /// The generator's next item, taken off the channel and waiting for its time.
    next: Option<Feed>,
    /// When the next event may be sent.
    due: Instant,
    done: bool,
}

impl AiStream {
    /// A session's stream; its generator starts when the session opens, on `tracker`.
    pub fn new(settings: Arc<AiSettings>, session: &SessionInfo, tracker: TaskTracker) -> Self {
        Self {
            settings,
            start: Some((session.clone(), tracker)),
            feed: None,
            next: None,
            due: Instant::now(),
            done: false,
        }
    }

    /// Sends what is next if its time has come. `on_time`: the schedule brought us
    /// here (a tick), rather than the generator.
    fn send_due(&mut self, out: &mut Outbox<'_>, on_time: bool) {
        let Some(item) = self.next.take() else { return };
        match item {
            Feed::Event(text) => {
                let now = Instant::now();
                if now < self.due {
                    self.next = Some(Feed::Event(text));
                    return;
                }
                if out.buffered() >= HIGH_WATER {
                    // The client is not reading: hold the event one more interval
                    // rather than queue more for it.
                    self.next = Some(Feed::Event(text));
                    self.due = now + self.settings.interval;
                    return;
                }
                out.send(Message::Text(text));
                // From the schedule when on time (no drift from timer lateness), from
                // now when the event itself came late.
                let sent_at = if on_time { self.due } else { now };
                self.due = sent_at + self.settings.interval;
            }
            Feed::Close { code, reason, error } => {
                if let Some(e) = error {
                    out.error(ErrorKind::Generation, e.to_string());
                }
                out.close(code, reason);
                self.done = true;
                self.feed = None;
            }
        }
    }
}

impl Behaviour for AiStream {
    fn on_open(&mut self, _out: &mut Outbox<'_>) {
        let Some((session, tracker)) = self.start.take() else { return };
        let (tx, rx) = mpsc::channel(FEED);
        tracker.spawn(generator::run(self.settings.clone(), session, tx));
        self.feed = Some(rx);
        self.due = Instant::now();
    }

    fn on_message(&mut self, _msg: Message, _out: &mut Outbox<'_>) {}

    fn next_tick(&self) -> Option<Instant> {
        match &self.next {
            Some(Feed::Event(_)) if !self.done => Some(self.due),
            _ => None,
        }
    }

    fn on_tick(&mut self, out: &mut Outbox<'_>) {
        self.send_due(out, true);
    }

    fn poll_feed(&mut self, cx: &mut Context<'_>, congested: bool) -> Poll<()> {
        // One item at a time: while one waits for its tick (or for a congested client
        // to read), the channel holds the rest and the tick is the wake-up.
        if self.done || self.next.is_some() || congested {
            return Poll::Pending;
        }
        let Some(rx) = &mut self.feed else { return Poll::Pending };
        match rx.poll_recv(cx) {
            Poll::Ready(Some(item)) => self.next = Some(item),
            // The generator always ends with a close; a channel closed without one
            // means its task died.
            Poll::Ready(None) => {
                let e = AiError::Stopped;
                self.next = Some(Feed::Close { code: e.close_code(), reason: e.close_reason(), error: Some(e) });
            }
            Poll::Pending => return Poll::Pending,
        }
        Poll::Ready(())
    }

    fn on_feed(&mut self, out: &mut Outbox<'_>) {
        self.send_due(out, false);
    }
}
