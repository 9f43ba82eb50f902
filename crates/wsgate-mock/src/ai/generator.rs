//! One session's generator: a task of its own (spawned when the session opens, on the
//! gateway's tracker, so shutdown waits for its recording), because the HTTP answer
//! streams on its own time. It asks the endpoint, cuts the answer into events,
//! records them, and hands each to the session through a bounded channel — then how
//! the stream ends, as a close.
//!
//! The channel is the back-pressure: the session takes events at the rate, so the
//! generator reads the answer only as fast as events are sent (plus the channel's
//! few). When the session ends, its receiver is gone; the generator notices at once
//! (even mid-wait on the endpoint), stops reading, and finishes the recording with
//! what it generated.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use wsgate_core::SessionInfo;
use wsgate_protocol::CloseCode;

use crate::ai::answer::AnswerReader;
use crate::ai::client::{self, Shape};
use crate::ai::error::AiError;
use crate::ai::record::Recording;
use crate::ai::settings::AiSettings;

/// Events generated ahead of the session: enough that the next one is there when it
/// is due, few enough that a session the client leaves has not cost a long answer.
pub(crate) const FEED: usize = 16;

/// What the generator hands the session.
#[derive(Debug)]
pub(crate) enum Feed {
    /// The next event (a JSON object, as the model wrote it).
    Event(Bytes),
    /// The stream is over: close with this; `error` when it failed.
    Close { code: u16, reason: String, error: Option<AiError> },
}

/// How the stream ended, before it is a close.
enum Outcome {
    /// `count` events, or the model stopped with fewer (`generated`).
    Complete {
        generated: u32,
    },
    Failed(AiError),
    /// The session ended first: nothing more to send anyone.
    Gone,
}

/// Runs one session's generation to its end.
pub(crate) async fn run(settings: Arc<AiSettings>, session: SessionInfo, tx: mpsc::Sender<Feed>) {
    let mut recording = match &settings.record {
        None => None,
        Some(target) => match Recording::create(target.next_path(), &session, settings.interval).await {
            Ok(r) => Some(r),
            Err(e) => {
                let _ = tx.send(closing(Outcome::Failed(e), settings.count)).await;
                return;
            }
        },
    };
    let gone = tx.clone();
    let mut generated = 0u32;
    let outcome = tokio::select! {
        o = generate(&settings, &tx, &mut recording, &mut generated) => o,
        // The session ended: stop waiting on the endpoint at once.
        () = gone.closed() => Outcome::Gone,
    };
    let outcome = match outcome {
        Outcome::Gone => {
            tracing::debug!(session = %session.id, generated, "ai: the session ended before its stream");
            return;
        }
        o => o,
    };
    let mut feed = closing(outcome, settings.count);
    if let (Some(r), Feed::Close { code, reason, .. }) = (&mut recording, &feed)
        && let Err(e) = r.close(*code, reason).await
    {
        feed = closing(Outcome::Failed(e), settings.count);
    }
    if let Some(r) = &recording {
        tracing::info!(session = %session.id, file = %r.path().display(), generated, "ai: stream recorded");
    }
    let _ = tx.send(feed).await;
}

/// The close for an outcome: 1000 once every event is out, the failure's code else.
fn closing(outcome: Outcome, count: u32) -> Feed {
    match outcome {
        Outcome::Complete { generated } if generated >= count => {
            Feed::Close { code: CloseCode::NORMAL, reason: format!("generated {generated} events"), error: None }
        }
        Outcome::Complete { generated } => Feed::Close {
            code: CloseCode::NORMAL,
            reason: format!("the model stopped after {generated} of {count} events"),
            error: None,
        },
        Outcome::Failed(e) => Feed::Close { code: e.close_code(), reason: e.close_reason(), error: Some(e) },
        Outcome::Gone => Feed::Close { code: CloseCode::NORMAL, reason: String::new(), error: None },
    }
}

/// Asks, reads and hands over events until `count`, the answer's end, or a failure.
async fn generate(
    s: &AiSettings,
    tx: &mpsc::Sender<Feed>,
    recording: &mut Option<Recording>,
    generated: &mut u32,
) -> Outcome {
    let mut answer = match client::ask(s).await {
        Ok(a) => a,
        Err(e) => return Outcome::Failed(e),
    };
    let mut reader = AnswerReader::default();
    loop {
        let read = match answer.shape {
            Shape::Whole => match answer.whole_text().await {
                Ok(text) => reader.whole(&text),
                Err(e) => return Outcome::Failed(e),
            },
            Shape::Stream => match answer.chunk().await {
                Ok(Some(chunk)) => reader.push(&chunk),
                Ok(None) => reader.finish(),
                Err(e) => return Outcome::Failed(e),
            },
        };
        // The events before a fault still go out, then the fault.
        for event in read.events {
            if let Some(r) = recording
                && let Err(e) = r.event(&event).await
            {
                return Outcome::Failed(e);
            }
            if tx.send(Feed::Event(event)).await.is_err() {
                return Outcome::Gone;
            }
            *generated += 1;
            if *generated == s.count {
                // Enough: whatever else the model says is not read.
                return Outcome::Complete { generated: *generated };
            }
        }
        match read.outcome {
            Ok(false) => {}
            Ok(true) => return Outcome::Complete { generated: *generated },
            Err(e) => return Outcome::Failed(e),
        }
    }
}
