//! The hub: rooms and the members in them, shared by every relay route of a gateway
//! (and across reloads, so a route rebuilt by a reload keeps its rooms).
//!
//! Sharded by room name: a publication locks its own room only, so rooms fan out in
//! parallel on as many cores as there are. Within a room the lock is held while the
//! offset is taken and the message is pushed to every member's [`Mailbox`] — a push
//! is a short queue operation, never a socket write — which makes the room's order
//! every member's order. The message is encoded once per protocol present in the
//! room and shared (`Bytes`) by every member that speaks it.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

use dashmap::DashMap;
use wsgate_core::{LogEntry, SessionId, SharedLog};
use wsgate_protocol::Message;

use crate::Protocol;
use crate::envelope::{self, Payload};
use crate::mailbox::{Delivery, Mailbox, Pushed};
use crate::stats::{Clock, RouteStats};

const SHARDS: usize = 64;

/// One shard: its rooms by name.
type Shard = Mutex<HashMap<Arc<str>, Arc<Room>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data behind every lock here: a panic elsewhere leaves it usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A connected relay client as the hub knows it.
#[derive(Debug)]
pub struct Member {
    pub session: SessionId,
    pub route: Arc<str>,
    pub protocol: Protocol,
    pub mailbox: Mailbox,
    pub stats: Arc<RouteStats>,
}

#[derive(Default)]
struct RoomState {
    /// The last publication's offset (the first is 1).
    offset: u64,
    /// The room's log per protocol (raw and envelope members receive different
    /// bytes), made when the first publication in that protocol is.
    logs: [Option<Arc<SharedLog>>; 2],
    members: Vec<Arc<Member>>,
    index: HashMap<SessionId, usize>,
    /// Removed from its shard once empty: a join that raced with the removal retries.
    dead: bool,
}

struct Room {
    name: Arc<str>,
    state: Mutex<RoomState>,
    deliveries: AtomicU64,
}

/// A room as `GET /api/rooms` shows it.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = Room))]
pub struct RoomSummary {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub room: Arc<str>,
    /// Members now.
    pub members: usize,
    /// The last publication's offset (1 for the first; 0 before any).
    pub offset: u64,
    /// Messages queued for its members since it was made.
    pub deliveries: u64,
}

/// One member of a room as `GET /api/rooms/{room}` shows it.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = RoomMember))]
pub struct MemberSummary {
    /// The member's session (`/api/sessions/{id}`; the envelope's connection id).
    pub session_id: SessionId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub route: Arc<str>,
    pub protocol: Protocol,
    /// Messages waiting in its queue.
    pub queued: usize,
}

/// A room with its members, as `GET /api/rooms/{room}` shows it.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoomDetail {
    #[serde(flatten)]
    pub summary: RoomSummary,
    pub member_list: Vec<MemberSummary>,
}

/// What one publication did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Its offset in the room (`None`: the room had no members, so it does not exist).
    pub offset: Option<u64>,
    /// Members it was queued for.
    pub delivered: usize,
    /// Some member's queue is at least half full: the publisher should let members
    /// drain ([`wsgate_session::Outbox::yield_to_others`]) before it publishes more.
    pub congested: bool,
}

/// Per relay route: its counters and its clients per IP address, kept across reloads.
#[derive(Debug, Default)]
pub struct RouteState {
    pub stats: Arc<RouteStats>,
    per_ip: DashMap<IpAddr, usize>,
}

/// A held per-IP slot; released when dropped (with the session).
#[derive(Debug)]
pub struct IpSlot {
    route: Arc<RouteState>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if let dashmap::Entry::Occupied(mut e) = self.route.per_ip.entry(self.ip) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }
}

impl RouteState {
    /// Takes a slot for `ip` unless it already has `max`.
    pub fn claim_ip(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let mut n = self.per_ip.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot { route: self.clone(), ip })
    }
}

/// Rooms, members and per-route state of every relay route in one gateway.
pub struct Hub {
    shards: Box<[Shard]>,
    hasher: RandomState,
    members: DashMap<SessionId, Arc<Member>>,
    routes: DashMap<Arc<str>, Arc<RouteState>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("members", &self.members.len()).finish_non_exhaustive()
    }
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            members: DashMap::new(),
            routes: DashMap::new(),
        }
    }
}

impl Hub {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn shard(&self, room: &str) -> &Shard {
        let i = self.hasher.hash_one(room) as usize % SHARDS;
        &self.shards[i]
    }

    fn find(&self, room: &str) -> Option<Arc<Room>> {
        lock(self.shard(room)).get(room).cloned()
    }

    /// The state of relay route `name`, made on first use.
    pub fn route(&self, name: &Arc<str>) -> Arc<RouteState> {
        self.routes.entry(name.clone()).or_default().clone()
    }

    /// Every relay route's counters, by name.
    pub fn route_stats(&self) -> Vec<(Arc<str>, Arc<RouteStats>)> {
        let mut v: Vec<_> = self.routes.iter().map(|e| (e.key().clone(), e.value().stats.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Adds a connected client to the directory (for unicast and inspection).
    pub fn register(&self, member: Member) -> Arc<Member> {
        let m = Arc::new(member);
        self.members.insert(m.session, m.clone());
        m
    }

    /// Removes a client from every room in `rooms` and from the directory; its queue
    /// is freed and refuses later deliveries.
    pub fn unregister(&self, member: &Member, rooms: &[Arc<str>]) {
        for r in rooms {
            self.leave(member, r);
        }
        self.members.remove(&member.session);
        member.mailbox.close();
    }

    /// Puts `member` in `room` (made if new); its offset now. Joining twice is one
    /// membership.
    pub fn join(&self, member: &Arc<Member>, room: &str) -> u64 {
        loop {
            let r = {
                let mut shard = lock(self.shard(room));
                shard
                    .entry(room.into())
                    .or_insert_with(|| {
                        Arc::new(Room { name: room.into(), state: Mutex::default(), deliveries: AtomicU64::new(0) })
                    })
                    .clone()
            };
            let mut st = lock(&r.state);
            if st.dead {
                continue;
            }
            if !st.index.contains_key(&member.session) {
                let i = st.members.len();
                st.members.push(member.clone());
                st.index.insert(member.session, i);
            }
            return st.offset;
        }
    }

    /// Takes `member` out of `room`; `false` if it was not in it. An emptied room is
    /// removed (its offsets start again from 1 if it is used again).
    pub fn leave(&self, member: &Member, room: &str) -> bool {
        let Some(r) = self.find(room) else { return false };
        let empty = {
            let mut st = lock(&r.state);
            let Some(i) = st.index.remove(&member.session) else { return false };
            st.members.swap_remove(i);
            if let Some(moved) = st.members.get(i) {
                let id = moved.session;
                st.index.insert(id, i);
            }
            st.members.is_empty()
        };
        if empty {
            let mut shard = lock(self.shard(room));
            let mut st = lock(&r.state);
            // Someone may have joined between the two locks.
            if st.members.is_empty() && !st.dead {
                st.dead = true;
                shard.remove(room);
            }
        }
        true
    }

    /// Publishes to every member of `room` but `skip` (the sender, when it does not
    /// get its own messages back). With `keep`, each rendering of the publication
    /// (raw, envelope) is handed to it once as an entry of the room's log: what the
    /// recorder stores for every member's history.
    pub fn publish(
        &self,
        room: &str,
        payload: &Payload,
        from: Option<SessionId>,
        skip: Option<SessionId>,
        timestamp: Option<i64>,
        keep: Option<&mut dyn FnMut(LogEntry)>,
    ) -> Published {
        let Some(r) = self.find(room) else { return Published { offset: None, delivered: 0, congested: false } };
        let published = Clock::now();
        let mut st = lock(&r.state);
        if st.dead {
            return Published { offset: None, delivered: 0, congested: false };
        }
        st.offset += 1;
        let offset = st.offset;
        let mut encoded = Encoded::default();
        let mut tally = Tally::default();
        let RoomState { members, logs, .. } = &mut *st;
        for m in members.iter() {
            if Some(m.session) == skip {
                continue;
            }
            let (msg, log) = encoded.get(
                m.protocol,
                || envelope::publication(&r.name, offset, from, payload, timestamp),
                payload,
                || logs[m.protocol as usize].get_or_insert_with(|| SharedLog::new(r.name.clone())).clone(),
            );
            tally.count(m, m.mailbox.push(Delivery { msg, published, logged: Some((log, offset)) }));
        }
        drop(st);
        r.deliveries.fetch_add(tally.delivered as u64, Relaxed);
        tally.flush();
        if let Some(keep) = keep {
            let at = chrono::Utc::now();
            for (msg, log) in [encoded.raw, encoded.envelope].into_iter().flatten() {
                let (opcode, payload) = msg.to_parts();
                keep(LogEntry { log, offset, opcode, payload, at });
            }
        }
        Published { offset: Some(offset), delivered: tally.delivered, congested: tally.congested }
    }

    /// Sends to each connection in `to` that is connected (unicast, or a group);
    /// how many it was queued for.
    pub fn send(&self, to: &[SessionId], payload: &Payload, from: Option<SessionId>, timestamp: Option<i64>) -> usize {
        let published = Clock::now();
        let mut encoded = Encoded::default();
        let mut tally = Tally::default();
        for id in to {
            let Some(m) = self.members.get(id).map(|m| m.clone()) else { continue };
            let msg = encoded.get_unlogged(m.protocol, || envelope::direct(from, payload, timestamp), payload);
            tally.count(&m, m.mailbox.push(Delivery { msg, published, logged: None }));
        }
        tally.flush();
        tally.delivered
    }

    /// Every room, by name.
    pub fn rooms(&self) -> Vec<RoomSummary> {
        let rooms: Vec<Arc<Room>> =
            self.shards.iter().flat_map(|s| lock(s).values().cloned().collect::<Vec<_>>()).collect();
        let mut v: Vec<_> = rooms.iter().map(|r| summary(r, &lock(&r.state))).collect();
        v.sort_by(|a, b| a.room.cmp(&b.room));
        v
    }

    /// One room with its members.
    pub fn room(&self, name: &str) -> Option<RoomDetail> {
        let r = self.find(name)?;
        let st = lock(&r.state);
        let member_list = st
            .members
            .iter()
            .map(|m| MemberSummary {
                session_id: m.session,
                route: m.route.clone(),
                protocol: m.protocol,
                queued: m.mailbox.depth(),
            })
            .collect();
        Some(RoomDetail { summary: summary(&r, &st), member_list })
    }

    /// Messages waiting in every member's queue (a gauge).
    pub fn queued(&self) -> usize {
        self.members.iter().map(|m| m.mailbox.depth()).sum()
    }
}

fn summary(r: &Room, st: &RoomState) -> RoomSummary {
    RoomSummary {
        room: r.name.clone(),
        members: st.members.len(),
        offset: st.offset,
        deliveries: r.deliveries.load(Relaxed),
    }
}

/// A message encoded at most once per protocol, with the log it goes in (`T`: the
/// room's log for a publication, nothing for a direct send).
struct Encoded<T = Arc<SharedLog>> {
    raw: Option<(Message, T)>,
    envelope: Option<(Message, T)>,
}

impl<T> Default for Encoded<T> {
    fn default() -> Self {
        Self { raw: None, envelope: None }
    }
}

impl<T: Clone> Encoded<T> {
    fn get(
        &mut self,
        protocol: Protocol,
        envelope: impl FnOnce() -> bytes::Bytes,
        payload: &Payload,
        log: impl FnOnce() -> T,
    ) -> (Message, T) {
        match protocol {
            Protocol::Raw => self.raw.get_or_insert_with(|| (payload.raw(), log())).clone(),
            Protocol::Envelope => self.envelope.get_or_insert_with(|| (Message::Text(envelope()), log())).clone(),
        }
    }
}

impl Encoded<()> {
    fn get_unlogged(
        &mut self,
        protocol: Protocol,
        envelope: impl FnOnce() -> bytes::Bytes,
        payload: &Payload,
    ) -> Message {
        self.get(protocol, envelope, payload, || ()).0
    }
}

/// Counts a fan-out's outcomes, adding to each route's counters once per run of
/// members of the same route rather than once per member.
#[derive(Default)]
struct Tally {
    delivered: usize,
    congested: bool,
    run: Option<(Arc<RouteStats>, [u64; 4])>,
}

impl Tally {
    fn count(&mut self, m: &Member, (pushed, filling): (Pushed, bool)) {
        self.congested |= filling;
        if !matches!(&self.run, Some((s, _)) if Arc::ptr_eq(s, &m.stats)) {
            self.flush();
            self.run = Some((m.stats.clone(), [0; 4]));
        }
        let Some((_, c)) = &mut self.run else { return };
        match pushed {
            Pushed::Queued => c[0] += 1,
            Pushed::DroppedOldest(n) => {
                c[0] += 1;
                c[1] += n as u64;
            }
            Pushed::DroppedNewest => c[2] += 1,
            Pushed::Overflowed => c[3] += 1,
            Pushed::Gone => {}
        }
        if matches!(pushed, Pushed::Queued | Pushed::DroppedOldest(_)) {
            self.delivered += 1;
        }
    }

    fn flush(&mut self) {
        if let Some((s, [queued, oldest, newest, overflowed])) = self.run.take() {
            s.deliveries.fetch_add(queued, Relaxed);
            s.dropped_oldest.fetch_add(oldest, Relaxed);
            s.dropped_newest.fetch_add(newest, Relaxed);
            s.slow_disconnects.fetch_add(overflowed, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use Message;
    use bytes::Bytes;

    use super::*;
    use crate::Overflow;
    use crate::mailbox::{MailboxLimits, Taken};

    fn member(hub: &Hub, protocol: Protocol) -> Arc<Member> {
        let limits = MailboxLimits { max_messages: 8, max_bytes: 1 << 20, overflow: Overflow::DropOldest };
        hub.register(Member {
            session: SessionId::new(),
            route: "r".into(),
            protocol,
            mailbox: Mailbox::new(limits),
            stats: hub.route(&"r".into()).stats.clone(),
        })
    }

    fn taken(m: &Member) -> Vec<Message> {
        let mut t = Taken::default();
        m.mailbox.take(100, &mut t);
        t.deliveries.into_iter().map(|d| d.msg).collect()
    }

    #[test]
    fn rooms_are_isolated_and_offsets_count_per_room() {
        let hub = Hub::default();
        let (a, b) = (member(&hub, Protocol::Raw), member(&hub, Protocol::Raw));
        hub.join(&a, "/one");
        hub.join(&b, "/two");
        let text = Payload::Text(Bytes::from_static(b"hi"));
        assert_eq!(hub.publish("/one", &text, None, None, None, None).offset, Some(1));
        assert_eq!(hub.publish("/one", &text, None, None, None, None).offset, Some(2));
        assert_eq!(hub.publish("/two", &text, None, None, None, None).offset, Some(1));
        assert_eq!(taken(&a).len(), 2);
        assert_eq!(taken(&b), vec![Message::Text(Bytes::from_static(b"hi"))]);
        assert_eq!(
            hub.publish("/none", &text, None, None, None, None),
            Published { offset: None, delivered: 0, congested: false }
        );
    }

    #[test]
    fn an_emptied_room_is_removed_and_a_rejoin_works() {
        let hub = Hub::default();
        let a = member(&hub, Protocol::Raw);
        hub.join(&a, "/r");
        hub.join(&a, "/r");
        assert_eq!(hub.room("/r").map(|r| r.summary.members), Some(1));
        assert!(hub.leave(&a, "/r"));
        assert!(!hub.leave(&a, "/r"));
        assert!(hub.rooms().is_empty());
        hub.join(&a, "/r");
        assert_eq!(hub.rooms().len(), 1);
    }

    #[test]
    fn swap_remove_keeps_the_index_true() {
        let hub = Hub::default();
        let ms: Vec<_> = (0..5).map(|_| member(&hub, Protocol::Raw)).collect();
        for m in &ms {
            hub.join(m, "/r");
        }
        hub.leave(&ms[1], "/r");
        hub.leave(&ms[4], "/r");
        hub.leave(&ms[0], "/r");
        let left: Vec<_> =
            hub.room("/r").map(|r| r.member_list.iter().map(|m| m.session_id).collect()).unwrap_or_default();
        assert_eq!(left.len(), 2);
        assert!(left.contains(&ms[2].session) && left.contains(&ms[3].session));
        hub.leave(&ms[3], "/r");
        hub.leave(&ms[2], "/r");
        assert!(hub.rooms().is_empty());
    }

    #[test]
    fn unicast_reaches_only_its_target_and_skip_skips_the_sender() {
        let hub = Hub::default();
        let (a, b) = (member(&hub, Protocol::Raw), member(&hub, Protocol::Envelope));
        hub.join(&a, "/r");
        hub.join(&b, "/r");
        let p = Payload::Text(Bytes::from_static(b"x"));
        assert_eq!(hub.publish("/r", &p, Some(a.session), Some(a.session), None, None).delivered, 1);
        assert!(taken(&a).is_empty());
        assert_eq!(taken(&b).len(), 1);
        assert_eq!(hub.send(&[b.session, SessionId::new()], &p, Some(a.session), None), 1);
        let Message::Text(env) = &taken(&b)[0] else { panic!("text expected") };
        let v: serde_json::Value = serde_json::from_slice(env).unwrap_or_default();
        assert_eq!((v["type"].as_str(), v["data"].as_str()), (Some("event"), Some("x")));
    }
}
