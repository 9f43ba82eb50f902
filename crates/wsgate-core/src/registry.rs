//! Live sessions, and a bounded memory of recently ended ones.
//!
//! The registry is how the control plane finds a session (to list it, show it, or
//! send it a command). It is a sharded map, so the per-connection hot path never
//! contends on a global lock; each entry's transition list sits behind its own short
//! mutex that is never held across an await. That list is bounded (`lifecycle`): a
//! session that reconnects forever keeps its first and latest steps and a count of
//! the ones between.

mod lifecycle;

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use serde::Serialize;

use self::lifecycle::KeptLifecycle;
pub use self::lifecycle::{LIFECYCLE_HEAD, LIFECYCLE_TAIL};
use crate::id::SessionId;
use crate::session::{CloseInfo, Counters, SessionInfo, SessionKind, State, Transition};

/// How many ended sessions are kept in memory for `GET /api/sessions`.
pub const DEFAULT_RECENT: usize = 1000;

/// Which peer a command addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Client,
    Upstream,
}

/// An operator's command to a live session.
#[derive(Debug)]
pub enum Command {
    /// Send a text (`binary == false`) or binary message to one side; the session
    /// answers `ack` (sent, or why not: see [`crate::InjectRefused`]).
    Inject { to: Target, payload: Bytes, binary: bool, ack: crate::command::InjectAck },
    /// Close both sides with this code and reason. `kind` says why when the gateway
    /// itself closes (a replaced session); an operator's close has none.
    Close { code: u16, reason: String, kind: Option<crate::ReasonKind> },
    /// Let go of the frame this session holds at an intercept breakpoint under `hold`
    /// (the id the intercept board gave it). The session answers `ack` with whether it
    /// still held it; only a proxy session ever holds frames, every other kind answers
    /// `false`.
    Release { hold: u64, verdict: crate::command::Verdict, ack: tokio::sync::oneshot::Sender<bool> },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("no live session with this id")]
    NotFound,
    #[error("the session's command queue is full; try again")]
    Busy,
    #[error("the session has no {0:?} side")]
    NoSuchSide(Target),
}

struct Entry {
    info: Arc<SessionInfo>,
    commands: crate::CommandSender,
    counters: Arc<Counters>,
    transitions: Mutex<KeptLifecycle>,
}

/// A session as the API shows it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionSnapshot {
    #[serde(flatten)]
    #[cfg_attr(feature = "openapi", schema(value_type = SessionInfo))]
    pub info: Arc<SessionInfo>,
    pub state: State,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subprotocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<DateTime<Utc>>,
    pub close: CloseInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    pub messages_in: u64,
    pub messages_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The lifecycle's steps, or for a long one (an outbound session reconnecting
    /// for days) its first [`LIFECYCLE_HEAD`] and last [`LIFECYCLE_TAIL`] steps.
    pub lifecycle: Vec<Transition>,
    /// Steps left out of `lifecycle`, between its first [`LIFECYCLE_HEAD`] and the
    /// rest (0 when it is whole). The store keeps every step.
    pub lifecycle_omitted: u64,
}

pub struct Registry {
    live: DashMap<SessionId, Entry>,
    recent: Mutex<VecDeque<SessionSnapshot>>,
    recent_capacity: usize,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("live", &self.live.len()).finish()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new(DEFAULT_RECENT)
    }
}

impl Registry {
    pub fn new(recent_capacity: usize) -> Self {
        Self { live: DashMap::new(), recent: Mutex::new(VecDeque::new()), recent_capacity }
    }

    pub(crate) fn insert(
        &self,
        info: Arc<SessionInfo>,
        commands: crate::CommandSender,
        counters: Arc<Counters>,
        first: Transition,
    ) {
        self.live
            .insert(info.id, Entry { info, commands, counters, transitions: Mutex::new(KeptLifecycle::new(first)) });
    }

    pub(crate) fn record(&self, id: SessionId, t: Transition) {
        if let Some(e) = self.live.get(&id) {
            lock(&e.transitions).push(t);
        }
    }

    pub(crate) fn finish(&self, id: SessionId) {
        // The move from `live` to `recent` happens under the `recent` lock, so a
        // reader that misses the session in `live` (removed) waits for that lock and
        // then finds it in `recent`: a session is never in neither. (Lock order:
        // `recent`, then a map shard; readers never hold a shard while locking `recent`.)
        let mut recent = lock(&self.recent);
        let Some((_, entry)) = self.live.remove(&id) else { return };
        let snap = snapshot(&entry);
        if recent.len() >= self.recent_capacity {
            recent.pop_front();
        }
        recent.push_back(snap);
    }

    pub fn live_count(&self) -> usize {
        self.live.len()
    }

    /// Live sessions, oldest first.
    pub fn live(&self) -> Vec<SessionSnapshot> {
        let mut v: Vec<_> = self.live.iter().map(|e| snapshot(e.value())).collect();
        v.sort_by_key(|s| s.info.id);
        v
    }

    /// Live and recently ended sessions, newest first.
    pub fn all(&self) -> Vec<SessionSnapshot> {
        let mut v = self.live();
        v.extend(lock(&self.recent).iter().cloned());
        v.sort_by_key(|s| std::cmp::Reverse(s.info.id));
        v
    }

    pub fn get(&self, id: SessionId) -> Option<SessionSnapshot> {
        if let Some(e) = self.live.get(&id) {
            return Some(snapshot(e.value()));
        }
        lock(&self.recent).iter().find(|s| s.info.id == id).cloned()
    }

    /// Ids of live sessions of `kind` whose path (without query) is `path`.
    pub fn live_on_path(&self, path: &str) -> Vec<SessionId> {
        self.live.iter().filter(|e| e.info.path_only() == path).map(|e| e.info.id).collect()
    }

    /// The kind of a live session, without snapshotting it.
    pub fn live_kind(&self, id: SessionId) -> Option<SessionKind> {
        self.live.get(&id).map(|e| e.info.kind)
    }

    pub fn live_of_kind(&self, kind: SessionKind) -> Vec<SessionId> {
        self.live.iter().filter(|e| e.info.kind == kind).map(|e| e.info.id).collect()
    }

    /// The kind and route of every live session (per-route metrics).
    pub fn live_routes(&self) -> Vec<(SessionKind, Arc<str>)> {
        self.live.iter().map(|e| (e.info.kind, e.info.route.clone())).collect()
    }

    /// Hands a command to a live session without waiting.
    pub fn command(&self, id: SessionId, cmd: Command) -> Result<(), CommandError> {
        let tx = self.live.get(&id).map(|e| e.commands.clone()).ok_or(CommandError::NotFound)?;
        tx.try_send(cmd).map_err(|e| match e {
            crate::command::SendError::Full => CommandError::Busy,
            crate::command::SendError::Closed => CommandError::NotFound,
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these short locks cannot leave the data
    // half-written in a way that matters more than losing the whole registry.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn snapshot(e: &Entry) -> SessionSnapshot {
    let (lifecycle, lifecycle_omitted) = {
        let kept = lock(&e.transitions);
        (kept.steps(), kept.omitted())
    };
    let last = lifecycle.last();
    let state = last.map(|t| t.state).unwrap_or(State::Requested);
    let upstream = lifecycle.iter().rev().find_map(|t| t.detail.upstream.clone());
    let subprotocol = lifecycle.iter().rev().find_map(|t| t.detail.subprotocol.clone());
    let (closed_at, close, failure) = match last {
        Some(t) if t.state.is_final() => (
            Some(t.at),
            CloseInfo {
                code: t.detail.close_code,
                reason: t.detail.close_reason.clone(),
                initiator: t.detail.initiator,
            },
            if t.state == State::Failed { t.detail.reason.clone() } else { None },
        ),
        _ => (None, CloseInfo::default(), None),
    };
    let c = &e.counters;
    SessionSnapshot {
        info: e.info.clone(),
        state,
        upstream,
        subprotocol,
        closed_at,
        close,
        failure,
        messages_in: c.messages_in.load(Ordering::Relaxed),
        messages_out: c.messages_out.load(Ordering::Relaxed),
        bytes_in: c.bytes_in.load(Ordering::Relaxed),
        bytes_out: c.bytes_out.load(Ordering::Relaxed),
        lifecycle,
        lifecycle_omitted,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::session::{SessionKind, TransitionDetail};

    fn step(state: State, attempt: u32) -> Transition {
        Transition { state, at: Utc::now(), detail: TransitionDetail { attempt: Some(attempt), ..Default::default() } }
    }

    fn attempt(t: &Transition) -> Option<u32> {
        t.detail.attempt
    }

    /// A live session of `kind` whose first step is REQUESTED (attempt 0).
    fn open(reg: &Registry, kind: SessionKind) -> SessionId {
        let info = Arc::new(SessionInfo {
            id: SessionId::new(),
            kind,
            route: kind.as_str().into(),
            path: "/".into(),
            client_addr: None,
            headers: Vec::new(),
            opened_at: Utc::now(),
            payloads: Default::default(),
        });
        let id = info.id;
        // The receiver is dropped: these tests send no commands.
        let (tx, _rx) = crate::Commands::channel(1);
        reg.insert(info, tx, Arc::default(), step(State::Requested, 0));
        id
    }

    /// An outbound session that reconnects forever keeps a bounded lifecycle: the
    /// first steps, the latest ones, and the count of those between.
    #[test]
    fn a_long_lifecycle_stays_bounded() {
        let reg = Registry::new(4);
        let id = open(&reg, SessionKind::Outbound);
        const STEPS: u32 = 10_000;
        for n in 1..=STEPS {
            reg.record(id, step(State::Connecting, n));
            let held = reg.live.get(&id).map(|e| lock(&e.transitions).held()).unwrap_or(0);
            assert!(held <= LIFECYCLE_HEAD + LIFECYCLE_TAIL, "{held} steps held after {n}");
        }
        reg.record(id, step(State::Failed, STEPS + 1));

        let snap = reg.get(id).expect("live");
        let total = u64::from(STEPS) + 2;
        assert_eq!(snap.lifecycle.len(), LIFECYCLE_HEAD + LIFECYCLE_TAIL);
        assert_eq!(snap.lifecycle_omitted, total - (LIFECYCLE_HEAD + LIFECYCLE_TAIL) as u64);
        // The first steps, in order: REQUESTED then attempts 1..
        let head: Vec<_> = snap.lifecycle[..LIFECYCLE_HEAD].iter().map(attempt).collect();
        assert_eq!(head, (0..LIFECYCLE_HEAD as u32).map(Some).collect::<Vec<_>>());
        assert_eq!(snap.lifecycle[0].state, State::Requested);
        // The latest ones, ending with the final step (which the snapshot's state follows).
        let tail: Vec<_> = snap.lifecycle[LIFECYCLE_HEAD..].iter().map(attempt).collect();
        let want: Vec<_> = (STEPS + 2 - LIFECYCLE_TAIL as u32..=STEPS + 1).map(Some).collect();
        assert_eq!(tail, want);
        assert_eq!(snap.state, State::Failed);

        // Ended, it is remembered the same way.
        reg.finish(id);
        let ended = reg.get(id).expect("recent");
        assert_eq!((ended.lifecycle.len(), ended.lifecycle_omitted), (snap.lifecycle.len(), snap.lifecycle_omitted));
    }

    #[test]
    fn a_short_lifecycle_is_whole() {
        let reg = Registry::new(4);
        let id = open(&reg, SessionKind::Proxy);
        let n = (LIFECYCLE_HEAD + LIFECYCLE_TAIL) as u32 - 1;
        for a in 1..=n {
            reg.record(id, step(State::Connecting, a));
        }
        let snap = reg.get(id).expect("live");
        assert_eq!(snap.lifecycle_omitted, 0);
        assert_eq!(snap.lifecycle.iter().map(attempt).collect::<Vec<_>>(), (0..=n).map(Some).collect::<Vec<_>>());
    }
}
