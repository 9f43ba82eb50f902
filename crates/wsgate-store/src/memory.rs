//! The in-memory store, for unit tests and `--store memory://`: the same behaviour as
//! the SQL backends, behind one short lock that is never held across an await.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use wsgate_core::{Initiator, SessionId, State};

use crate::lease::{Claimed, Lease, LeaseHolder};
use crate::model::{EventKind, EventRow, LogEntryRow, MessageRow, Prune, Pruned, RunRow, SessionQuery, SessionRow};
use crate::{Batch, ORPHAN_REASON, Store, StoreError, shared};

#[derive(Debug, Default)]
struct Inner {
    sessions: BTreeMap<SessionId, SessionRow>,
    events: BTreeMap<(SessionId, u32), EventRow>,
    /// Keyed by insertion order, like the SQL backends' message ids.
    messages: BTreeMap<u64, MessageRow>,
    next_message: u64,
    /// Shared logs' entries by (log, offset).
    log_entries: BTreeMap<(uuid::Uuid, u64), LogEntryRow>,
    runs: BTreeMap<(SessionId, u64), RunRow>,
    /// By instance name.
    leases: BTreeMap<String, LeaseHolder>,
}

impl Inner {
    /// Closes the open sessions `which` picks (the restart rule's changes, which the
    /// SQL backends make in SQL).
    fn close_open(&mut self, which: impl Fn(&SessionRow) -> bool) -> u64 {
        let open: Vec<SessionId> =
            self.sessions.values().filter(|s| s.closed_at.is_none() && which(s)).map(|s| s.id).collect();
        for id in &open {
            let msgs: Vec<MessageRow> = self.messages.values().filter(|m| m.session_id == *id).cloned().collect();
            let last_event = self.events.range((*id, 0)..=(*id, u32::MAX)).next_back().map(|(_, e)| (e.seq, e.at));
            let at = msgs.iter().map(|m| m.at).chain(last_event.map(|e| e.1)).max().unwrap_or_else(crate::now);
            let seq = last_event.map(|e| e.0).unwrap_or(0) + 1;
            let Some(s) = self.sessions.get_mut(id) else { continue };
            close_as_orphan(s, at, &msgs);
            self.events.insert(
                (*id, seq),
                EventRow {
                    session_id: *id,
                    seq,
                    at,
                    kind: EventKind::Lifecycle,
                    state: Some(State::Disconnected),
                    error_kind: None,
                    detail: orphan_detail(),
                },
            );
        }
        open.len() as u64
    }

    /// [`Store::close_expired`] under the lock.
    fn close_expired(&mut self, asker: &Lease) -> Result<u64, StoreError> {
        if self.leases.get(&asker.instance).is_none_or(|l| l.run != asker.run) {
            return Err(StoreError::LeaseLost { instance: asker.instance.clone() });
        }
        let now = crate::now();
        self.leases.retain(|_, l| !l.is_gone(now, asker));
        let live: HashSet<String> = self.leases.keys().cloned().collect();
        Ok(self.close_open(|s| !live.contains(&s.instance)))
    }
}

#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    async fn write(&self, batch: Batch) -> Result<(), StoreError> {
        let mut g = self.lock();
        for s in batch.sessions {
            g.sessions.insert(s.id, s);
        }
        for e in batch.events {
            g.events.insert((e.session_id, e.seq), e);
        }
        for m in batch.messages {
            g.next_message += 1;
            let id = g.next_message;
            g.messages.insert(id, m);
        }
        for e in batch.log_entries {
            g.log_entries.entry((e.log, e.offset)).or_insert(e);
        }
        for r in batch.runs {
            g.runs.insert((r.session_id, r.first_seq), r);
        }
        Ok(())
    }

    async fn sessions(&self, q: &SessionQuery) -> Result<Vec<SessionRow>, StoreError> {
        let g = self.lock();
        Ok(g.sessions.values().rev().filter(|s| q.matches(s)).take(q.limit).cloned().collect())
    }

    async fn session(&self, id: SessionId) -> Result<Option<SessionRow>, StoreError> {
        Ok(self.lock().sessions.get(&id).cloned())
    }

    async fn events(&self, id: SessionId) -> Result<Vec<EventRow>, StoreError> {
        let g = self.lock();
        Ok(g.events.range((id, 0)..=(id, u32::MAX)).map(|(_, e)| e.clone()).collect())
    }

    async fn messages(&self, id: SessionId, after_seq: u64, limit: usize) -> Result<Vec<MessageRow>, StoreError> {
        let g = self.lock();
        let mut v: Vec<_> = g.messages.values().filter(|m| m.session_id == id && m.seq > after_seq).cloned().collect();
        v.sort_by_key(|m| m.seq);
        v.truncate(limit);
        let runs = g.runs.range((id, 0)..=(id, u64::MAX)).map(|(_, r)| r.clone()).collect();
        let mut delivered = Vec::new();
        for run in shared::clip(runs, after_seq, limit) {
            let (first, last) = shared::offsets(&run);
            let entries = g.log_entries.range((run.log, first)..=(run.log, last)).map(|(_, e)| e.clone());
            delivered.extend(shared::expand(&run, entries));
        }
        Ok(shared::merge(v, delivered, limit))
    }

    async fn claim(&self, lease: &Lease) -> Result<Claimed, StoreError> {
        let mut g = self.lock();
        let now = crate::now();
        let replaced = g.leases.get(&lease.instance).cloned();
        if let Some(holder) = replaced.as_ref().filter(|h| h.run != lease.run && !h.is_gone(now, lease)) {
            return Err(StoreError::InstanceBusy { holder: Box::new(holder.clone()) });
        }
        let mut closed = g.close_open(|s| s.instance == lease.instance);
        g.leases.insert(lease.instance.clone(), lease.held_until(now));
        closed += g.close_expired(lease)?;
        Ok(Claimed { closed, replaced: replaced.filter(|h| h.run != lease.run) })
    }

    async fn renew(&self, lease: &Lease) -> Result<(), StoreError> {
        let mut g = self.lock();
        match g.leases.get_mut(&lease.instance).filter(|l| l.run == lease.run) {
            Some(l) => {
                l.expires_at = crate::now() + lease.ttl;
                Ok(())
            }
            None => Err(StoreError::LeaseLost { instance: lease.instance.clone() }),
        }
    }

    async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        let mut g = self.lock();
        if g.leases.get(&lease.instance).is_some_and(|l| l.run == lease.run) {
            g.leases.remove(&lease.instance);
        }
        Ok(())
    }

    async fn close_expired(&self, asker: &Lease) -> Result<u64, StoreError> {
        self.lock().close_expired(asker)
    }

    async fn prune(&self, p: Prune) -> Result<Pruned, StoreError> {
        let mut g = self.lock();
        let mut out = Pruned::default();
        if let Some(cutoff) = p.ended_before {
            let old: Vec<SessionId> = g
                .sessions
                .values()
                .filter(|s| s.closed_at.is_some_and(|t| t < cutoff))
                .take(p.chunk)
                .map(|s| s.id)
                .collect();
            for id in &old {
                g.sessions.remove(id);
                g.events.retain(|(s, _), _| s != id);
                let before = g.messages.len();
                g.messages.retain(|_, m| m.session_id != *id);
                out.messages += (before - g.messages.len()) as u64;
                g.runs.retain(|(s, _), _| s != id);
            }
            out.sessions = old.len() as u64;
            // Entries go once old and no kept run refers to them.
            let g = &mut *g;
            let before = g.log_entries.len();
            let runs = &g.runs;
            g.log_entries.retain(|(log, offset), e| {
                e.at >= cutoff
                    || runs
                        .values()
                        .any(|r| r.log == *log && (r.first_offset..r.first_offset + r.count).contains(offset))
            });
            out.messages += (before - g.log_entries.len()) as u64;
        }
        if let Some(keep) = p.keep_messages {
            let excess = (g.messages.len() as u64).saturating_sub(keep).min(p.chunk as u64);
            for _ in 0..excess {
                g.messages.pop_first();
            }
            out.messages += excess;
            let excess = (g.log_entries.len() as u64).saturating_sub(keep).min(p.chunk as u64);
            let mut oldest: Vec<_> = g.log_entries.values().map(|e| (e.at, e.log, e.offset)).collect();
            oldest.sort();
            for (_, log, offset) in oldest.into_iter().take(excess as usize) {
                g.log_entries.remove(&(log, offset));
            }
            out.messages += excess;
        }
        Ok(out)
    }
}

/// The restart rule's changes to a session row (the SQL backends do the same in SQL).
fn close_as_orphan(s: &mut SessionRow, at: chrono::DateTime<chrono::Utc>, msgs: &[MessageRow]) {
    s.state = State::Disconnected;
    s.closed_at = Some(at);
    s.close_code = Some(wsgate_protocol::CloseCode::ABNORMAL);
    s.close_reason = Some(ORPHAN_REASON.into());
    s.initiator = Some(Initiator::Gateway);
    for m in msgs {
        if m.direction.is_inbound() {
            s.messages_in += 1;
            s.bytes_in += m.size;
        } else {
            s.messages_out += 1;
            s.bytes_out += m.size;
        }
    }
}

/// The detail of the DISCONNECTED event the restart rule adds.
pub(crate) fn orphan_detail() -> serde_json::Value {
    serde_json::json!({
        "reason": ORPHAN_REASON,
        "close_code": wsgate_protocol::CloseCode::ABNORMAL,
        "initiator": "gateway",
    })
}
