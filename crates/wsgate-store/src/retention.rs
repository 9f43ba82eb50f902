//! Retention: deletes old history in the background, a chunk per transaction, so the
//! recorder's writes slip in between and never stall behind a large delete.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::{Prune, Store, now};

#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Sessions that ended longer ago than this go, with their events and messages.
    pub max_age: Option<Duration>,
    /// At most this many messages are kept overall; the oldest go first.
    pub max_messages: Option<u64>,
    /// How often to look.
    pub every: Duration,
    /// Rows per delete transaction.
    pub chunk: usize,
}

impl Retention {
    pub fn is_off(&self) -> bool {
        self.max_age.is_none() && self.max_messages.is_none()
    }

    /// One full pass: chunks until nothing more is due. Returns (sessions, messages).
    pub async fn pass(&self, store: &dyn Store) -> Result<(u64, u64), crate::StoreError> {
        let (mut sessions, mut messages) = (0, 0);
        loop {
            let step = Prune {
                ended_before: self.max_age.and_then(|a| chrono::Duration::from_std(a).ok()).map(|a| now() - a),
                keep_messages: self.max_messages,
                chunk: self.chunk,
            };
            let done = store.prune(step).await?;
            sessions += done.sessions;
            messages += done.messages;
            if !done.maybe_more(self.chunk) {
                return Ok((sessions, messages));
            }
            // Let queued writes go first.
            tokio::task::yield_now().await;
        }
    }
}

/// Enforces `policy` now and then every `policy.every` until `stop`.
pub async fn run(store: Arc<dyn Store>, policy: Retention, stop: CancellationToken) {
    if policy.is_off() {
        return;
    }
    loop {
        match policy.pass(store.as_ref()).await {
            Ok((0, 0)) => {}
            Ok((sessions, messages)) => tracing::info!(sessions, messages, "retention deleted old history"),
            Err(e) => tracing::warn!(error = %e, "retention pass failed; will retry"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(policy.every) => {}
        }
    }
}
