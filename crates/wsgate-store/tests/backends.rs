//! The same behaviour checks against every backend: memory, a real SQLite file and a
//! real PostgreSQL (`WSGATE_TEST_POSTGRES`, which `scripts/test` starts; without it the
//! PostgreSQL tests fail with a message saying so, unless `WSGATE_SKIP_POSTGRES=1`).

#![allow(clippy::unwrap_used)]
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use wsgate_core::{
    Direction, EventBus, Initiator, Overflow, Registry, SessionHandle, SessionInfo, SessionKind, State,
    TransitionDetail,
};
use wsgate_protocol::{Frame, OpCode};
use wsgate_store::recorder::{self, RecorderConfig, RecorderStats};
use wsgate_store::retention::Retention;
use wsgate_store::{Batch, EventKind, Lease, MessageRow, SessionQuery, SessionRow, Store, StoreError, StoreUrl};

mod common;
use common::session_row;

enum Backend {
    Memory,
    Sqlite,
    Postgres,
}

struct Fixture {
    store: Arc<dyn Store>,
    url: StoreUrl,
    _dir: Option<tempfile::TempDir>,
}

impl Fixture {
    /// Another handle on the same history, as another gateway process has (its own
    /// connections); the memory store has only the one.
    async fn another(&self) -> Arc<dyn Store> {
        match self.url {
            StoreUrl::Memory => self.store.clone(),
            _ => wsgate_store::open(&self.url).await.unwrap(),
        }
    }
}

async fn fixture(b: Backend) -> Option<Fixture> {
    let (url, dir) = match b {
        Backend::Memory => (StoreUrl::Memory, None),
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            (StoreUrl::Sqlite(dir.path().join("history/wsgate.db")), Some(dir))
        }
        Backend::Postgres => (StoreUrl::Postgres(fresh_postgres_db().await?), None),
    };
    Some(Fixture { store: wsgate_store::open(&url).await.unwrap(), url, _dir: dir })
}

/// A new, empty database on the test PostgreSQL, so tests never see each other's rows.
pub async fn fresh_postgres_db() -> Option<String> {
    let Ok(base) = std::env::var("WSGATE_TEST_POSTGRES") else {
        if std::env::var("WSGATE_SKIP_POSTGRES").is_ok_and(|v| v == "1") {
            eprintln!("skipping: WSGATE_SKIP_POSTGRES=1");
            return None;
        }
        panic!(
            "WSGATE_TEST_POSTGRES is not set: run scripts/test (it starts PostgreSQL), or `eval \"$(scripts/pg-start)\"`"
        );
    };
    let (client, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let name = format!("wsgate_test_{}", uuid::Uuid::now_v7().simple());
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    let (prefix, _) = base.rsplit_once('/').unwrap();
    Some(format!("{prefix}/{name}"))
}

fn info(kind: SessionKind, route: &str, path: &str) -> SessionInfo {
    SessionInfo {
        id: wsgate_core::SessionId::new(),
        kind,
        route: route.into(),
        path: path.into(),
        client_addr: Some("127.0.0.1:5555".parse().unwrap()),
        headers: vec![
            ("authorization".into(), "Bearer secret".into()),
            ("cookie".into(), "sid=1".into()),
            ("x-api-key".into(), "k".into()),
            ("user-agent".into(), "test".into()),
        ],
        opened_at: chrono::Utc::now(),
        payloads: Default::default(),
    }
}

/// A bus with the recorder on it, as the gateway wires it.
struct Recording {
    bus: Arc<EventBus>,
    registry: Arc<Registry>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn record(store: &Arc<dyn Store>, instance: &str, cap: usize) -> Recording {
    let mut b = EventBus::builder();
    let queue = b.log_keeper("store", 1024, Overflow::Wait);
    let bus = b.build();
    let stop = CancellationToken::new();
    let cfg = RecorderConfig {
        instance: instance.into(),
        payload_cap: cap,
        redact: vec!["X-Api-Key".into()],
        ..Default::default()
    };
    let task = tokio::spawn(recorder::run(store.clone(), queue, cfg, Arc::new(RecorderStats::default()), stop.clone()));
    Recording { bus, registry: Arc::new(Registry::default()), stop, task }
}

impl Recording {
    fn open(&self, info: SessionInfo) -> SessionHandle {
        SessionHandle::open(info, self.bus.clone(), self.registry.clone(), 4).0
    }
    async fn finish(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }
}

async fn full_session_round_trips(b: Backend) {
    let Some(f) = fixture(b).await else { return };
    let rec = record(&f.store, "a", 16);
    let mut s = rec.open(info(SessionKind::Proxy, "chat", "/chat?room=1"));
    let id = s.id();
    s.transition(State::Connecting, TransitionDetail { upstream: Some("ws://up/chat".into()), ..Default::default() });
    s.transition(State::Connected, TransitionDetail { subprotocol: Some("v1".into()), ..Default::default() });
    s.frame(Direction::ClientToUpstream, &Frame::text("hello"), false);
    s.frame(Direction::UpstreamToClient, &Frame::binary(Bytes::from_static(&[0, 159, 255, 1])), false);
    s.frame(Direction::UpstreamToClient, &Frame::text("x".repeat(100)), true);
    s.error(wsgate_core::ErrorKind::QueueOverflow, "dropped 3 queued messages".into());
    s.frame(Direction::ClientToUpstream, &Frame::new(OpCode::Close, Bytes::from_static(b"\x0f\xa1bye")), false);
    s.transition(
        State::Disconnected,
        TransitionDetail {
            close_code: Some(4001),
            close_reason: Some("bye".into()),
            initiator: Some(Initiator::Client),
            ..Default::default()
        },
    );
    drop(s);
    rec.finish().await;

    let row = f.store.session(id).await.unwrap().expect("session stored");
    assert_eq!(row.state, State::Disconnected);
    assert_eq!((row.kind, row.route.as_str(), row.path.as_str()), (SessionKind::Proxy, "chat", "/chat?room=1"));
    assert_eq!(row.client_addr.as_deref(), Some("127.0.0.1:5555"));
    assert_eq!(row.upstream.as_deref(), Some("ws://up/chat"));
    assert_eq!(row.subprotocol.as_deref(), Some("v1"));
    assert_eq!((row.close_code, row.close_reason.as_deref()), (Some(4001), Some("bye")));
    assert_eq!(row.initiator, Some(Initiator::Client));
    assert_eq!((row.messages_in, row.messages_out, row.bytes_in, row.bytes_out), (2, 2, 10, 104));
    assert_eq!(row.messages_dropped, 0);
    let h = |n: &str| row.headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    assert_eq!(h("authorization"), Some("[redacted]"));
    assert_eq!(h("cookie"), Some("[redacted]"));
    assert_eq!(h("x-api-key"), Some("[redacted]"), "configured header redacted");
    assert_eq!(h("user-agent"), Some("test"));
    assert!(row.closed_at.is_some_and(|c| c >= row.opened_at));

    let events = f.store.events(id).await.unwrap();
    let steps: Vec<_> = events.iter().map(|e| (e.seq, e.kind, e.state)).collect();
    assert_eq!(
        steps,
        vec![
            (1, EventKind::Lifecycle, Some(State::Requested)),
            (2, EventKind::Lifecycle, Some(State::Connecting)),
            (3, EventKind::Lifecycle, Some(State::Connected)),
            (4, EventKind::Error, None),
            (5, EventKind::Lifecycle, Some(State::Disconnected)),
        ]
    );
    assert_eq!(events[3].error_kind.as_deref(), Some("queue_overflow"));
    assert_eq!(events[3].detail["message"], "dropped 3 queued messages");
    assert_eq!(events[4].detail["close_code"], 4001);
    assert_eq!(events[4].detail["initiator"], "client");

    let msgs = f.store.messages(id, 0, 100).await.unwrap();
    assert_eq!(msgs.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert_eq!((msgs[0].opcode, &msgs[0].payload[..]), (1, &b"hello"[..]));
    assert_eq!((msgs[1].opcode, &msgs[1].payload[..]), (2, &[0u8, 159, 255, 1][..]), "binary kept as bytes");
    assert_eq!(msgs[1].direction, Direction::UpstreamToClient);
    assert!(msgs[2].injected && msgs[2].truncated, "cut at the 16-byte cap");
    assert_eq!((msgs[2].size, msgs[2].payload.len()), (100, 16));
    assert_eq!((msgs[3].opcode, &msgs[3].payload[..]), (8, &b"\x0f\xa1bye"[..]));
    let page = f.store.messages(id, 2, 1).await.unwrap();
    assert_eq!(page.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![3]);
}

async fn filters_and_pagination(b: Backend) {
    let Some(f) = fixture(b).await else { return };
    let rec = record(&f.store, "a", 1024);
    let mut ids = Vec::new();
    for i in 0..7 {
        let (kind, route) = if i % 2 == 0 { (SessionKind::Proxy, "chat") } else { (SessionKind::Mock, "echo") };
        let mut s = rec.open(info(kind, route, &format!("/{route}/{i}")));
        ids.push(s.id());
        if i < 5 {
            s.transition(State::Disconnected, TransitionDetail::default());
        } else {
            s.transition(
                State::Failed,
                TransitionDetail { reason_kind: Some(wsgate_core::ReasonKind::Refused), ..Default::default() },
            );
        }
    }
    // One still open at the end.
    let open = rec.open(info(SessionKind::Outbound, "outbound", "/live"));
    let open_id = open.id();
    std::mem::forget(open); // keep it open without a final event
    rec.finish().await;

    let all = |q: SessionQuery| {
        let store = f.store.clone();
        async move { store.sessions(&q).await.unwrap().iter().map(|s| s.id).collect::<Vec<_>>() }
    };
    let newest_first: Vec<_> = std::iter::once(open_id).chain(ids.iter().rev().copied()).collect();
    assert_eq!(all(SessionQuery { limit: 100, ..Default::default() }).await, newest_first);
    // Cursor pagination: pages of 3 that together are the whole list, no repeats.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = all(SessionQuery { limit: 3, before, ..Default::default() }).await;
        if page.is_empty() {
            break;
        }
        before = page.last().copied();
        seen.extend(page);
    }
    assert_eq!(seen, newest_first);
    let kinds = all(SessionQuery { kind: Some(SessionKind::Mock), limit: 100, ..Default::default() }).await;
    assert_eq!(kinds, vec![ids[5], ids[3], ids[1]]);
    let route = all(SessionQuery { route: Some("chat".into()), limit: 100, ..Default::default() }).await;
    assert_eq!(route, vec![ids[6], ids[4], ids[2], ids[0]]);
    let failed = all(SessionQuery { states: vec![State::Failed], limit: 100, ..Default::default() }).await;
    assert_eq!(failed, vec![ids[6], ids[5]]);
    let live = all(SessionQuery { states: vec![State::Requested], limit: 100, ..Default::default() }).await;
    assert_eq!(live, vec![open_id]);
    let prefix = all(SessionQuery { path_prefix: Some("/echo/".into()), limit: 100, ..Default::default() }).await;
    assert_eq!(prefix, vec![ids[5], ids[3], ids[1]]);
    let none = all(SessionQuery { path_prefix: Some("/ech%".into()), limit: 100, ..Default::default() }).await;
    assert!(none.is_empty(), "a prefix is literal, not a pattern");
    let future = chrono::Utc::now() + chrono::Duration::hours(1);
    assert!(all(SessionQuery { since: Some(future), limit: 100, ..Default::default() }).await.is_empty());
    assert_eq!(all(SessionQuery { until: Some(future), limit: 100, ..Default::default() }).await.len(), 8);
}

/// A lease held by a gateway on another host: only its expiry can free it.
fn remote_lease(instance: &str, ttl: Duration) -> Lease {
    Lease { host: "elsewhere.example".into(), pid: 4242, ..Lease::new(instance, ttl) }
}

/// A lease of another gateway running on this host: a live process that is not
/// this one (leases with this process's pid are all one process's runs, and an
/// earlier run of a live process is gone).
fn neighbour_lease(instance: &str) -> Lease {
    Lease { pid: std::os::unix::process::parent_id(), ..Lease::new(instance, HOUR) }
}

/// The pid of a process of this host that has ended (spawned, waited for).
fn ended_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

const HOUR: Duration = Duration::from_secs(3600);

/// Writes an open session of `instance` with one message each way.
async fn open_session(store: &Arc<dyn Store>, instance: &str) -> wsgate_core::SessionId {
    let row = session_row(instance, "/open");
    let id = row.id;
    store.write(Batch { sessions: vec![row], ..Default::default() }).await.unwrap();
    let messages = vec![message_row(id, 1), message_row(id, 2)];
    store.write(Batch { messages, ..Default::default() }).await.unwrap();
    id
}

async fn state_of(store: &Arc<dyn Store>, id: wsgate_core::SessionId) -> State {
    store.session(id).await.unwrap().unwrap().state
}

/// The restart rule: a claim closes the instance's own sessions left open by its
/// last run and those of instances with no lease (written before leases), never
/// those of an instance whose lease is live.
async fn restart_rule_spares_live_leases(b: Backend) {
    let Some(f) = fixture(b).await else { return };
    let theirs_lease = remote_lease("b", HOUR);
    f.store.claim(&theirs_lease).await.unwrap();
    let rec = record(&f.store, "a", 1024);
    let mut mine = rec.open(info(SessionKind::Proxy, "chat", "/chat"));
    mine.transition(State::Connected, TransitionDetail::default());
    mine.frame(Direction::ClientToUpstream, &Frame::text("one"), false);
    mine.frame(Direction::UpstreamToClient, &Frame::text("two!"), false);
    let mine_id = mine.id();
    std::mem::forget(mine); // a crash: no final event ever comes
    rec.finish().await;
    let theirs = open_session(&f.store, "b").await;
    let legacy = open_session(&f.store, "before-leases").await;

    let me = Lease::new("a", HOUR);
    let claimed = f.store.claim(&me).await.unwrap();
    assert_eq!(claimed.closed, 2, "its own and the legacy one");
    assert_eq!(claimed.replaced, None, "\"a\" had no lease");
    assert_eq!(f.store.close_expired(&me).await.unwrap(), 0, "idempotent");
    let row = f.store.session(mine_id).await.unwrap().unwrap();
    assert_eq!(row.state, State::Disconnected);
    assert_eq!(row.initiator, Some(Initiator::Gateway));
    assert_eq!(row.close_code, Some(1006));
    assert_eq!(row.close_reason.as_deref(), Some("gateway stopped"));
    assert_eq!((row.messages_in, row.messages_out, row.bytes_in, row.bytes_out), (1, 1, 3, 4));
    let events = f.store.events(mine_id).await.unwrap();
    let last = events.last().unwrap();
    assert_eq!((last.seq, last.state), (3, Some(State::Disconnected)));
    assert_eq!(last.detail["reason"], "gateway stopped");
    assert_eq!(f.store.messages(mine_id, 0, 10).await.unwrap().len(), 2, "committed messages kept");
    assert_eq!(state_of(&f.store, legacy).await, State::Disconnected);
    assert_eq!(state_of(&f.store, theirs).await, State::Connected, "a live lease's session is left alone");
}

/// A held name refuses a second run, saying who holds it, until it is released.
async fn a_held_instance_refuses_another_run(b: Backend) {
    let Some(f) = fixture(b).await else { return };
    let first = remote_lease("i", HOUR);
    f.store.claim(&first).await.unwrap();
    let second = Lease::new("i", HOUR);
    match f.store.claim(&second).await {
        Err(StoreError::InstanceBusy { holder }) => {
            assert_eq!((holder.instance.as_str(), holder.host.as_str(), holder.pid), ("i", "elsewhere.example", 4242));
            assert_eq!(holder.run, first.run);
            assert!(holder.expires_at > chrono::Utc::now() + chrono::Duration::minutes(59), "{holder:?}");
            let message = StoreError::InstanceBusy { holder }.to_string();
            assert!(message.contains("\"i\"") && message.contains("elsewhere.example") && message.contains("4242"));
        }
        other => panic!("expected InstanceBusy, got {other:?}"),
    }
    assert!(matches!(f.store.close_expired(&second).await, Err(StoreError::LeaseLost { .. })), "holds nothing");
    f.store.claim(&neighbour_lease("j")).await.unwrap();
    f.store.renew(&first).await.unwrap();
    f.store.claim(&first).await.unwrap();
    f.store.release(&first).await.unwrap();
    let claimed = f.store.claim(&second).await.unwrap();
    assert_eq!(claimed.replaced, None, "released, not replaced");
    assert!(matches!(f.store.renew(&first).await, Err(StoreError::LeaseLost { .. })));
    f.store.release(&first).await.unwrap();
    assert!(matches!(f.store.claim(&first).await, Err(StoreError::InstanceBusy { .. })), "a stale release is a no-op");
}

/// A lease not renewed expires: its name is free again, and any running gateway's
/// close_expired closes its sessions.
async fn an_expired_lease_frees_its_name_and_sessions(b: Backend) {
    let Some(f) = fixture(b).await else { return };
    let ttl = Duration::from_millis(500);
    let stale = remote_lease("b", ttl);
    f.store.claim(&stale).await.unwrap();
    let theirs = open_session(&f.store, "b").await;
    let me = Lease::new("a", HOUR);
    f.store.claim(&me).await.unwrap();
    let renewed = std::time::Instant::now();
    f.store.renew(&stale).await.unwrap();
    assert_eq!(f.store.close_expired(&me).await.unwrap(), 0);
    assert_eq!(state_of(&f.store, theirs).await, State::Connected);
    assert!(matches!(f.store.claim(&neighbour_lease("b")).await, Err(StoreError::InstanceBusy { .. })));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match f.store.close_expired(&me).await.unwrap() {
            0 => assert!(std::time::Instant::now() < deadline, "the lease never expired"),
            n => {
                assert_eq!(n, 1);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Expiry is on the store's clock (PostgreSQL's own), so allow it a little skew.
    assert!(renewed.elapsed() >= ttl - Duration::from_millis(100), "closed after {:?}", renewed.elapsed());
    let row = f.store.session(theirs).await.unwrap().unwrap();
    assert_eq!((row.state, row.close_reason.as_deref()), (State::Disconnected, Some("gateway stopped")));
    assert_eq!((row.messages_in, row.messages_out), (1, 1));
    assert!(matches!(f.store.renew(&stale).await, Err(StoreError::LeaseLost { .. })), "the lease was dropped");
    assert_eq!(f.store.claim(&neighbour_lease("b")).await.unwrap().replaced, None);
    f.store.renew(&me).await.unwrap();
}

/// A lease whose process on this host has ended is gone at once (a `kill -9`, then
/// a restart), whatever its expiry; on another host only the expiry counts.
async fn an_ended_process_lease_is_gone_at_once(b: Backend) {
    let Some(f) = fixture(b).await else { return };
    let crashed = Lease { pid: ended_pid(), ..Lease::new("i", HOUR) };
    f.store.claim(&crashed).await.unwrap();
    let left_open = open_session(&f.store, "i").await;
    let other_host = Lease { host: "elsewhere.example".into(), ..Lease::new("i", HOUR) };
    assert!(matches!(f.store.claim(&other_host).await, Err(StoreError::InstanceBusy { .. })));
    let restart = Lease::new("i", HOUR);
    let claimed = f.store.claim(&restart).await.unwrap();
    assert_eq!(claimed.closed, 1);
    assert_eq!(claimed.replaced.map(|h| (h.run, h.pid)), Some((crashed.run, crashed.pid)));
    assert_eq!(state_of(&f.store, left_open).await, State::Disconnected);
    // Another instance of this host, killed: closed by the next close_expired.
    let killed = Lease { pid: ended_pid(), ..Lease::new("k", HOUR) };
    f.store.claim(&killed).await.unwrap();
    let theirs = open_session(&f.store, "k").await;
    assert_eq!(f.store.close_expired(&restart).await.unwrap(), 1);
    assert_eq!(state_of(&f.store, theirs).await, State::Disconnected);
}

/// Gateways starting together (each with its own connections): one wins the name.
async fn concurrent_claims_have_one_winner(b: Backend) {
    let Some(f) = fixture(b).await else { return };
    let stores = [f.store.clone(), f.another().await, f.another().await];
    let claims = (0..9).map(|i| {
        let store = stores[i % stores.len()].clone();
        let lease = Lease { host: format!("host-{i}"), ..Lease::new("race", HOUR) };
        async move { store.claim(&lease).await }
    });
    let results = futures_util::future::join_all(claims).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    let busy = results.iter().filter(|r| matches!(r, Err(StoreError::InstanceBusy { .. }))).count();
    assert_eq!((won, busy), (1, 8), "{results:?}");
}

async fn retention_by_age_and_count(b: Backend) {
    let Some(f) = fixture(b).await else { return };
    let rec = record(&f.store, "a", 1024);
    let mut old = rec.open(info(SessionKind::Mock, "echo", "/old"));
    for i in 0..30 {
        old.frame(Direction::ClientToGateway, &Frame::text(format!("m{i}")), false);
    }
    old.transition(State::Disconnected, TransitionDetail::default());
    let old_id = old.id();
    drop(old);
    let mut live = rec.open(info(SessionKind::Mock, "echo", "/live"));
    for i in 0..30 {
        live.frame(Direction::ClientToGateway, &Frame::text(format!("n{i}")), false);
    }
    let live_id = live.id();
    std::mem::forget(live);
    rec.finish().await;

    // By count: keep the newest 40 of 60 messages, in chunks of 7.
    let by_count = Retention { max_age: None, max_messages: Some(40), every: Duration::from_secs(60), chunk: 7 };
    assert_eq!(by_count.pass(f.store.as_ref()).await.unwrap(), (0, 20));
    assert_eq!(f.store.messages(old_id, 0, 100).await.unwrap().first().map(|m| m.seq), Some(21));
    assert_eq!(f.store.messages(live_id, 0, 100).await.unwrap().len(), 30);
    // By age: an ended session older than the cutoff goes whole; an open one stays.
    tokio::time::sleep(Duration::from_millis(5)).await; // let "now" pass the close time (a time threshold, not sync)
    let by_age =
        Retention { max_age: Some(Duration::ZERO), max_messages: None, every: Duration::from_secs(60), chunk: 4 };
    assert_eq!(by_age.pass(f.store.as_ref()).await.unwrap(), (1, 10));
    assert!(f.store.session(old_id).await.unwrap().is_none());
    assert!(f.store.events(old_id).await.unwrap().is_empty());
    assert!(f.store.session(live_id).await.unwrap().is_some());
}

fn message_row(session_id: wsgate_core::SessionId, seq: u64) -> MessageRow {
    let payload = Bytes::from(format!("{session_id}#{seq}"));
    MessageRow {
        session_id,
        seq,
        direction: if seq.is_multiple_of(2) { Direction::UpstreamToClient } else { Direction::ClientToUpstream },
        opcode: 1,
        fin: true,
        size: payload.len() as u64,
        at: chrono::Utc::now(),
        injected: false,
        marks: wsgate_core::Marks::NONE,
        truncated: false,
        payload,
    }
}

/// Sessions whose messages interleave within and across batches, some with gaps in
/// their sequence (dropped messages), read back page by page: every page holds only
/// that session's messages, in order, and together they are all of them.
async fn interleaved_sessions_read_back_in_order(b: Backend) {
    let Some(f) = fixture(b).await else { return };
    let sessions: Vec<SessionRow> = (0..4).map(|i| session_row("a", &format!("/s{i}"))).collect();
    let ids: Vec<_> = sessions.iter().map(|s| s.id).collect();
    f.store.write(Batch { sessions, ..Default::default() }).await.unwrap();
    let mut next = vec![1u64; ids.len()];
    let mut written: Vec<Vec<u64>> = vec![Vec::new(); ids.len()];
    for batch in 0..6 {
        let mut messages = Vec::new();
        for step in 0..50 {
            // Session 3 is quiet in odd batches; session 2 skips every fifth seq.
            let i = (step * 7 + batch) % ids.len();
            if i == 3 && batch % 2 == 1 {
                continue;
            }
            if i == 2 && next[i].is_multiple_of(5) {
                next[i] += 1;
            }
            messages.push(message_row(ids[i], next[i]));
            written[i].push(next[i]);
            next[i] += 1;
        }
        f.store.write(Batch { messages, ..Default::default() }).await.unwrap();
    }
    for (i, id) in ids.iter().enumerate() {
        for limit in [1, 7, 1000] {
            let mut seen = Vec::new();
            let mut after = 0;
            loop {
                let page = f.store.messages(*id, after, limit).await.unwrap();
                assert!(page.len() <= limit);
                let Some(last) = page.last() else { break };
                after = last.seq;
                for m in &page {
                    assert_eq!(m.session_id, *id);
                    assert_eq!(&m.payload[..], format!("{id}#{}", m.seq).as_bytes(), "session {i}'s own row");
                }
                seen.extend(page.iter().map(|m| m.seq));
            }
            assert_eq!(seen, written[i], "session {i}, pages of {limit}");
        }
        // A page may start inside a gap or past the end.
        let gap = f.store.messages(ids[2], 4, 2).await.unwrap();
        assert_eq!(gap.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![6, 7]);
        assert!(f.store.messages(*id, next[i], 10).await.unwrap().is_empty());
        assert!(f.store.messages(*id, u64::MAX, 10).await.unwrap().is_empty(), "a cursor past i64 is past the end");
    }
}

/// A relay room's publications stored once and read back through each member's
/// history: runs broken by a drop and by the member's own message, pages starting
/// inside a run, the payload cap, and retention keeping entries a kept session
/// still refers to.
async fn shared_log_deliveries_read_back_as_messages(b: Backend) {
    let Some(f) = fixture(b).await else { return };
    let rec = record(&f.store, "a", 8);
    let log = wsgate_core::SharedLog::new("/room".into());
    let at = chrono::Utc::now();
    let payload = |o: u64| Bytes::from(if o == 4 { "long publication".to_owned() } else { format!("p{o}") });
    for o in 1..=5 {
        let e = wsgate_core::LogEntry { log: log.clone(), offset: o, opcode: OpCode::Text, payload: payload(o), at };
        rec.bus.emit_shared(wsgate_core::SessionEvent::Logged(e), None);
    }
    let mut a = rec.open(info(SessionKind::Relay, "relay", "/room"));
    let mut m = rec.open(info(SessionKind::Relay, "relay", "/room"));
    a.frame(Direction::ClientToGateway, &Frame::text("hello"), false);
    for o in [1, 2, 4, 5] {
        // Offset 3 was dropped from a's queue.
        a.delivered(&log, o, OpCode::Text, &payload(o), at);
    }
    for o in 1..=5 {
        m.delivered(&log, o, OpCode::Text, &payload(o), at);
        if o == 2 {
            m.frame(Direction::ClientToGateway, &Frame::text("mine"), false);
        }
    }
    a.transition(State::Disconnected, TransitionDetail::default());
    let (a_id, m_id) = (a.id(), m.id());
    drop(a);
    m.flush_run();
    std::mem::forget(m);
    rec.finish().await;

    let read = |id, after, limit| {
        let store = f.store.clone();
        async move { store.messages(id, after, limit).await.unwrap() }
    };
    let all = read(a_id, 0, 100).await;
    let shown: Vec<_> =
        all.iter().map(|m| (m.seq, m.direction, String::from_utf8_lossy(&m.payload).into_owned())).collect();
    let out = Direction::GatewayToClient;
    assert_eq!(
        shown,
        vec![
            (1, Direction::ClientToGateway, "hello".to_owned()),
            (2, out, "p1".into()),
            (3, out, "p2".into()),
            (4, out, "long pub".into()),
            (5, out, "p5".into()),
        ]
    );
    assert!(all[3].truncated && all[3].size == 16, "cut at the cap once, for every member");
    let row = f.store.session(a_id).await.unwrap().unwrap();
    assert_eq!((row.messages_out, row.messages_dropped), (4, 0));
    for limit in [1, 2, 100] {
        let (mut after, mut seqs) = (0, Vec::new());
        loop {
            let page = read(m_id, after, limit).await;
            let Some(last) = page.last() else { break };
            after = last.seq;
            seqs.extend(page.iter().map(|m| (m.seq, m.direction)));
        }
        assert_eq!(seqs, vec![(1, out), (2, out), (3, Direction::ClientToGateway), (4, out), (5, out), (6, out)]);
    }
    assert_eq!(&read(m_id, 4, 1).await[0].payload[..], b"long pub", "a page starting inside a run");

    // a ended and goes; the entries m's runs refer to stay, though as old.
    tokio::time::sleep(Duration::from_millis(5)).await; // let "now" pass the close time (a time threshold, not sync)
    let by_age =
        Retention { max_age: Some(Duration::ZERO), max_messages: None, every: Duration::from_secs(60), chunk: 100 };
    by_age.pass(f.store.as_ref()).await.unwrap();
    assert!(f.store.session(a_id).await.unwrap().is_none());
    assert_eq!(read(m_id, 0, 100).await.len(), 6);
}

/// Each payload policy stores what it says: `headers` the size and flags without the
/// payload, `sample:2` every other message whole; `full` everything up to the cap.
async fn payload_policies_store_what_they_say(b: Backend) {
    let Some(f) = fixture(b).await else { return };
    let rec = record(&f.store, "a", 1024);
    let mut ids = Vec::new();
    for policy in ["full", "headers", "sample:2"] {
        let mut i = info(SessionKind::Mock, "echo", "/p");
        i.payloads = policy.parse().unwrap();
        let mut s = rec.open(i);
        for n in 0..4 {
            s.frame(Direction::ClientToGateway, &Frame::text(format!("message {n}")), false);
        }
        s.transition(State::Disconnected, TransitionDetail::default());
        ids.push(s.id());
    }
    rec.finish().await;
    let shown = |m: &MessageRow| (m.seq, m.size, m.truncated, String::from_utf8_lossy(&m.payload).into_owned());
    let read = |i: usize| {
        let (store, id) = (f.store.clone(), ids[i]);
        async move { store.messages(id, 0, 10).await.unwrap().iter().map(shown).collect::<Vec<_>>() }
    };
    let whole = |n: u64| (n + 1, 9, false, format!("message {n}"));
    let headers = |n: u64| (n + 1, 9, true, String::new());
    assert_eq!(read(0).await, [whole(0), whole(1), whole(2), whole(3)]);
    assert_eq!(read(1).await, [headers(0), headers(1), headers(2), headers(3)]);
    assert_eq!(read(2).await, [whole(0), headers(1), whole(2), headers(3)]);
    let row = f.store.session(ids[1]).await.unwrap().unwrap();
    assert_eq!((row.messages_in, row.bytes_in, row.messages_dropped), (4, 36, 0), "headers are not drops");
}

/// The cap, byte-exact, in one segment: nothing at it or under it is cut; one byte
/// over is cut to the cap and flagged, with its full size kept; an empty frame is
/// an empty frame.
async fn payloads_at_and_over_the_cap(b: Backend) {
    let Some(f) = fixture(b).await else { return };
    let rec = record(&f.store, "a", 16);
    let mut s = rec.open(info(SessionKind::Proxy, "cap", "/cap"));
    let id = s.id();
    s.transition(State::Connecting, TransitionDetail::default());
    s.transition(State::Connected, TransitionDetail::default());
    let sizes = [0usize, 15, 16, 17, 65_536];
    for (i, n) in sizes.iter().enumerate() {
        let payload = Bytes::from((0..*n).map(|b| (b % 251) as u8).collect::<Vec<_>>());
        let frame =
            if i % 2 == 0 { Frame::binary(payload) } else { Frame::text(String::from_utf8(vec![b'a'; *n]).unwrap()) };
        s.frame(Direction::UpstreamToClient, &frame, false);
    }
    drop(s);
    rec.finish().await;
    let msgs = f.store.messages(id, 0, 100).await.unwrap();
    assert_eq!(msgs.len(), sizes.len());
    for (m, n) in msgs.iter().zip(sizes) {
        assert_eq!(m.size, n as u64, "full size kept");
        assert_eq!(m.payload.len(), n.min(16), "{n} bytes stored as {}", m.payload.len());
        assert_eq!(m.truncated, n > 16, "{n} bytes: truncated flag");
    }
    assert_eq!(&msgs[2].payload[..], &(0..16u8).collect::<Vec<_>>()[..], "at the cap: every byte");
    assert_eq!(&msgs[3].payload[..], &[b'a'; 16][..], "over the cap: the first 16 bytes");
}

macro_rules! backends {
    ($($name:ident),* $(,)?) => {
        mod memory { $( #[tokio::test] async fn $name() { super::$name(super::Backend::Memory).await } )* }
        mod sqlite { $( #[tokio::test] async fn $name() { super::$name(super::Backend::Sqlite).await } )* }
        mod postgres { $( #[tokio::test] async fn $name() { super::$name(super::Backend::Postgres).await } )* }
    };
}

backends!(
    full_session_round_trips,
    filters_and_pagination,
    restart_rule_spares_live_leases,
    a_held_instance_refuses_another_run,
    an_expired_lease_frees_its_name_and_sessions,
    an_ended_process_lease_is_gone_at_once,
    concurrent_claims_have_one_winner,
    retention_by_age_and_count,
    interleaved_sessions_read_back_in_order,
    shared_log_deliveries_read_back_as_messages,
    payload_policies_store_what_they_say,
    payloads_at_and_over_the_cap
);

#[tokio::test]
async fn sqlite_reopens_an_existing_file_and_refuses_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    let url = StoreUrl::Sqlite(path.clone());
    drop(wsgate_store::open(&url).await.unwrap());
    drop(wsgate_store::open(&url).await.unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = wsgate_store::open(&url).await.unwrap_err().to_string();
    assert!(err.contains("newer than this wsgate knows"), "{err}");
}

/// A history written by schema 1 (one index entry per message) is migrated in place:
/// its messages read back as before, and new ones follow them.
#[tokio::test]
async fn sqlite_migrates_a_schema_1_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    let row = session_row("a", "/old");
    let id = row.id;
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(include_str!("../src/sqlite/0001_init.sql")).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO sessions (sid, id, instance, kind, route, path, headers, state, opened_at)
             VALUES (7, ?1, 'a', 'proxy', 'r', '/old', '[]', 'CONNECTED', 0)",
            [id.as_uuid().into_bytes()],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO sessions (sid, id, instance, kind, route, path, headers, state, opened_at)
             VALUES (8, ?1, 'a', 'proxy', 'r', '/other', '[]', 'CONNECTED', 0)",
            [wsgate_core::SessionId::new().as_uuid().into_bytes()],
        )
        .unwrap();
        // Interleaved with another session, as schema 1 wrote them.
        for seq in 1..=20 {
            for sid in [7, 8] {
                conn.execute(
                    "INSERT INTO messages (sid, seq, direction, opcode, fin, size, at, injected, truncated, payload)
                     VALUES (?1, ?2, 'client_to_upstream', 1, 1, 1, 0, 0, 0, ?3)",
                    rusqlite::params![sid, seq, format!("{sid}/{seq}").into_bytes()],
                )
                .unwrap();
            }
        }
    }
    let store = wsgate_store::open(&StoreUrl::Sqlite(path.clone())).await.unwrap();
    let seqs = |page: Vec<MessageRow>| page.iter().map(|m| m.seq).collect::<Vec<_>>();
    let old = store.messages(id, 5, 3).await.unwrap();
    assert_eq!(seqs(old.clone()), vec![6, 7, 8]);
    assert_eq!(&old[0].payload[..], b"7/6");
    assert_eq!(old[0].direction, Direction::ClientToUpstream, "text direction carried over as its code");
    store
        .write(Batch { messages: (21..=25).map(|s| message_row(id, s)).collect(), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(seqs(store.messages(id, 18, 100).await.unwrap()), vec![19, 20, 21, 22, 23, 24, 25]);
    // Retention by count spans both layouts: the old rows go first (40 + 5 stored,
    // keep 10), then the segment is cut rather than dropped whole (keep 3).
    let keep = |n| Retention { max_age: None, max_messages: Some(n), every: Duration::from_secs(60), chunk: 100 };
    assert_eq!(keep(10).pass(store.as_ref()).await.unwrap(), (0, 35));
    assert_eq!(seqs(store.messages(id, 0, 100).await.unwrap()), vec![19, 20, 21, 22, 23, 24, 25]);
    assert_eq!(keep(3).pass(store.as_ref()).await.unwrap(), (0, 7));
    let left = store.messages(id, 0, 100).await.unwrap();
    assert_eq!(seqs(left.clone()), vec![23, 24, 25]);
    let want = message_row(id, 23);
    assert_eq!(MessageRow { at: want.at, ..left[0].clone() }, want, "a cut segment keeps its frames whole");
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(version, 6);
}

/// A history from before leases (SQLite schema 2) migrates in place; a session it
/// left open has no lease, so the first claim closes it.
#[tokio::test]
async fn sqlite_migrates_a_schema_2_history_to_leases() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    let id = wsgate_core::SessionId::new();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(include_str!("../src/sqlite/0001_init.sql")).unwrap();
        conn.execute_batch(include_str!("../src/sqlite/0002_message_spans.sql")).unwrap();
        conn.pragma_update(None, "user_version", 2).unwrap();
        conn.execute(
            "INSERT INTO sessions (id, instance, kind, route, path, headers, state, opened_at)
             VALUES (?1, 'old-host', 'proxy', 'r', '/old', '[]', 'CONNECTED', 0)",
            [id.as_uuid().into_bytes()],
        )
        .unwrap();
    }
    let store = wsgate_store::open(&StoreUrl::Sqlite(path.clone())).await.unwrap();
    assert_eq!(store.claim(&Lease::new("new", HOUR)).await.unwrap().closed, 1);
    let row = store.session(id).await.unwrap().unwrap();
    assert_eq!((row.state, row.close_reason.as_deref()), (State::Disconnected, Some("gateway stopped")));
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(version, 6);
}

/// The same for a PostgreSQL history at schema 1.
#[tokio::test]
async fn postgres_migrates_a_schema_1_history_to_leases() {
    let Some(url) = fresh_postgres_db().await else { return };
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client.batch_execute("CREATE TABLE wsgate_schema (version integer NOT NULL)").await.unwrap();
    client.batch_execute(include_str!("../src/postgres/0001_init.sql")).await.unwrap();
    client.batch_execute("INSERT INTO wsgate_schema (version) VALUES (1)").await.unwrap();
    let id = wsgate_core::SessionId::new();
    client
        .execute(
            "INSERT INTO sessions (id, instance, kind, route, path, headers, state, opened_at)
             VALUES ($1, 'old-host', 'proxy', 'r', '/old', '[]', 'CONNECTED', 0)",
            &[&id.as_uuid()],
        )
        .await
        .unwrap();
    let store = wsgate_store::open(&StoreUrl::Postgres(url)).await.unwrap();
    assert_eq!(store.claim(&Lease::new("new", HOUR)).await.unwrap().closed, 1);
    let row = store.session(id).await.unwrap().unwrap();
    assert_eq!((row.state, row.close_reason.as_deref()), (State::Disconnected, Some("gateway stopped")));
    let version: i32 = client.query_one("SELECT max(version) FROM wsgate_schema", &[]).await.unwrap().get(0);
    assert_eq!(version, 4);
}

/// A PostgreSQL history at schema 3 (a row per message) migrates in place: its rows
/// read back as before and new frames, written as segments, follow them; the restart
/// rule counts both, and retention by count takes the old rows first, then cuts the
/// segment rather than dropping it whole.
#[tokio::test]
async fn postgres_migrates_a_schema_3_history_to_segments() {
    let Some(url) = fresh_postgres_db().await else { return };
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client.batch_execute("CREATE TABLE wsgate_schema (version integer NOT NULL)").await.unwrap();
    client.batch_execute(include_str!("../src/postgres/0001_init.sql")).await.unwrap();
    client.batch_execute(include_str!("../src/postgres/0002_instance_leases.sql")).await.unwrap();
    client.batch_execute(include_str!("../src/postgres/0003_shared_logs.sql")).await.unwrap();
    client.batch_execute("INSERT INTO wsgate_schema (version) VALUES (1), (2), (3)").await.unwrap();
    let (id, other) = (wsgate_core::SessionId::new(), wsgate_core::SessionId::new());
    for (sid, path) in [(id, "/old"), (other, "/other")] {
        client
            .execute(
                "INSERT INTO sessions (id, instance, kind, route, path, headers, state, opened_at)
                 VALUES ($1, 'a', 'proxy', 'r', $2, '[]', 'CONNECTED', 0)",
                &[&sid.as_uuid(), &path],
            )
            .await
            .unwrap();
    }
    // Interleaved with another session, as schema 3 wrote them.
    for seq in 1..=20i64 {
        for sid in [id, other] {
            let direction = if seq % 2 == 0 { "upstream_to_client" } else { "client_to_upstream" };
            client
                .execute(
                    "INSERT INTO messages (session_id, seq, direction, opcode, fin, size, at, injected, truncated, payload)
                     VALUES ($1, $2, $3, 1, true, 1, $2, false, false, $4)",
                    &[&sid.as_uuid(), &seq, &direction, &format!("{sid}/{seq}").into_bytes()],
                )
                .await
                .unwrap();
        }
    }
    let store = wsgate_store::open(&StoreUrl::Postgres(url)).await.unwrap();
    let version: i32 = client.query_one("SELECT max(version) FROM wsgate_schema", &[]).await.unwrap().get(0);
    assert_eq!(version, 4);
    let seqs = |page: &[MessageRow]| page.iter().map(|m| m.seq).collect::<Vec<_>>();
    let old = store.messages(id, 5, 3).await.unwrap();
    assert_eq!(seqs(&old), vec![6, 7, 8]);
    assert_eq!((&old[0].payload[..], old[0].direction), (format!("{id}/6").as_bytes(), Direction::UpstreamToClient));
    store
        .write(Batch { messages: (21..=25).map(|s| message_row(id, s)).collect(), ..Default::default() })
        .await
        .unwrap();
    for limit in [1, 3, 100] {
        let (mut after, mut seen) = (0, Vec::new());
        loop {
            let page = store.messages(id, after, limit).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.seq;
            seen.extend(seqs(&page));
        }
        assert_eq!(seen, (1..=25).collect::<Vec<_>>(), "pages of {limit} across both layouts");
    }
    assert_eq!(seqs(&store.messages(id, 18, 4).await.unwrap()), vec![19, 20, 21, 22]);
    assert_eq!(&store.messages(id, 22, 1).await.unwrap()[0].payload[..], format!("{id}#23").as_bytes());

    // The restart rule counts the rows and the segment: 13 frames in and 12 out.
    assert_eq!(store.claim(&Lease::new("a", HOUR)).await.unwrap().closed, 2);
    let row = store.session(id).await.unwrap().unwrap();
    let seg_in: u64 = [21, 23, 25].map(|s| message_row(id, s).size).iter().sum();
    let seg_out: u64 = [22, 24].map(|s| message_row(id, s).size).iter().sum();
    assert_eq!((row.messages_in, row.messages_out), (13, 12));
    assert_eq!((row.bytes_in, row.bytes_out), (10 + seg_in, 10 + seg_out));

    // Retention by count: the old rows go first (40 + 5 stored, keep 10), then the
    // segment is cut rather than dropped whole (keep 3).
    let keep = |n| Retention { max_age: None, max_messages: Some(n), every: Duration::from_secs(60), chunk: 100 };
    assert_eq!(keep(10).pass(store.as_ref()).await.unwrap(), (0, 35));
    assert_eq!(seqs(&store.messages(id, 0, 100).await.unwrap()), vec![19, 20, 21, 22, 23, 24, 25]);
    assert_eq!(keep(3).pass(store.as_ref()).await.unwrap(), (0, 7));
    let left = store.messages(id, 0, 100).await.unwrap();
    assert_eq!(seqs(&left), vec![23, 24, 25]);
    let want = message_row(id, 23);
    assert_eq!(MessageRow { at: want.at, ..left[0].clone() }, want, "a cut segment keeps its frames whole");
    let row = client
        .query_one("SELECT first_seq, last_seq, frames, msgs_in, msgs_out FROM message_segments", &[])
        .await
        .unwrap();
    let totals: (i64, i64, i64, i64, i64) = (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    assert_eq!(totals, (23, 25, 3, 2, 1), "the cut segment's totals are its frames'");
}

/// A damaged segment (its index cut short, or its count not its index's) is an
/// error to the reader and to retention, never a panic or a guess.
#[tokio::test]
async fn postgres_reports_a_damaged_segment() {
    let Some(f) = fixture(Backend::Postgres).await else { return };
    let StoreUrl::Postgres(url) = &f.url else { unreachable!() };
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let s = session_row("a", "/d");
    let id = s.id;
    f.store.write(Batch { sessions: vec![s], ..Default::default() }).await.unwrap();
    let messages = (1..=4).map(|seq| message_row(id, seq)).collect();
    f.store.write(Batch { messages, ..Default::default() }).await.unwrap();
    client.batch_execute("UPDATE message_segments SET frames = 9").await.unwrap();
    let keep = Retention { max_age: None, max_messages: Some(1), every: Duration::from_secs(60), chunk: 100 };
    assert!(matches!(keep.pass(f.store.as_ref()).await, Err(StoreError::Corrupt(_))), "count and index disagree");
    client.batch_execute("UPDATE message_segments SET idx = substring(idx FROM 1 FOR 3)").await.unwrap();
    assert!(matches!(f.store.messages(id, 0, 10).await, Err(StoreError::Corrupt(_))));
}

/// Sustained writes: the checkpointer and the writer share the checkpoint work
/// (`sqlite.rs`), and between them the WAL must start over rather than grow with
/// everything written; every row is still there.
#[tokio::test]
async fn sqlite_wal_stays_bounded_under_sustained_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    let store = wsgate_store::open(&StoreUrl::Sqlite(path.clone())).await.unwrap();
    let rec = record(&store, "a", 1024);
    let mut s = rec.open(info(SessionKind::Proxy, "bulk", "/bulk"));
    let id = s.id();
    s.transition(State::Connecting, TransitionDetail::default());
    s.transition(State::Connected, TransitionDetail::default());
    // About 210 bytes of segment per frame: ~200 MiB of WAL if nothing copied it
    // back, against 64 MiB between checkpoints.
    const N: u64 = 1_000_000;
    let frame = Frame::binary(Bytes::from(vec![7u8; 200]));
    for _ in 0..N {
        s.frame(Direction::ClientToUpstream, &frame, false);
        s.settle().await;
    }
    drop(s);
    rec.finish().await;
    // The file keeps the size it grew to, so this bounds the WAL over the whole run.
    let wal = std::fs::metadata(dir.path().join("w.db-wal")).map(|m| m.len()).unwrap_or(0);
    assert!(wal < 160 << 20, "WAL grew to {} MiB", wal >> 20);
    let last = store.messages(id, N - 1, 10).await.unwrap();
    assert_eq!(last.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![N]);
}

/// Two stores on one SQLite file, as two gateways in one folder have: they open
/// (and migrate) it together, then write, prune and close at once; nothing fails
/// with SQLITE_BUSY.
#[tokio::test]
async fn sqlite_two_stores_share_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = StoreUrl::Sqlite(dir.path().join("shared.db"));
    let (a, b) = tokio::join!(wsgate_store::open(&url), wsgate_store::open(&url));
    let (a, b) = (a.unwrap(), b.unwrap());
    let work = |store: Arc<dyn Store>, instance: &'static str| async move {
        let sessions: Vec<SessionRow> = (0..4).map(|i| session_row(instance, &format!("/{i}"))).collect();
        let ids: Vec<_> = sessions.iter().map(|s| s.id).collect();
        store.write(Batch { sessions, ..Default::default() }).await.unwrap();
        for round in 0..200u64 {
            // A session that ended, for retention to delete while the other store writes.
            let mut gone = session_row(instance, "/gone");
            gone.closed_at = Some(chrono::Utc::now() - chrono::Duration::hours(1));
            let gone_id = gone.id;
            store.write(Batch { sessions: vec![gone], ..Default::default() }).await.unwrap();
            let messages = ids.iter().chain([&gone_id]).map(|id| message_row(*id, round + 1)).collect();
            store.write(Batch { messages, ..Default::default() }).await.unwrap();
            let p = wsgate_store::Prune { ended_before: Some(chrono::Utc::now()), keep_messages: None, chunk: 1000 };
            store.prune(p).await.unwrap();
        }
        ids
    };
    let (ia, ib) = tokio::join!(work(a.clone(), "a"), work(b.clone(), "b"));
    for id in ia.iter().chain(&ib) {
        assert_eq!(a.messages(*id, 0, 1000).await.unwrap().len(), 200);
        assert_eq!(b.messages(*id, 0, 1000).await.unwrap().len(), 200);
    }
}

/// A batch whose frames of one session are out of order (which the recorder never
/// sends) is stored in order rather than refused or stored as a damaged segment.
#[tokio::test]
async fn sqlite_orders_a_batch_that_comes_out_of_order() {
    orders_a_batch_that_comes_out_of_order(Backend::Sqlite).await
}

#[tokio::test]
async fn postgres_orders_a_batch_that_comes_out_of_order() {
    orders_a_batch_that_comes_out_of_order(Backend::Postgres).await
}

async fn orders_a_batch_that_comes_out_of_order(b: Backend) {
    let Some(f) = fixture(b).await else { return };
    let s = session_row("a", "/o");
    let id = s.id;
    f.store.write(Batch { sessions: vec![s], ..Default::default() }).await.unwrap();
    let messages = [3, 1, 2, 2].into_iter().map(|seq| message_row(id, seq)).collect();
    f.store.write(Batch { messages, ..Default::default() }).await.unwrap();
    let seqs: Vec<_> = f.store.messages(id, 0, 10).await.unwrap().iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [1, 2, 3]);
}
