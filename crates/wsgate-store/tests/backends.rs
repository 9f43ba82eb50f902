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
use wsgate_store::{Batch, EventKind, MessageRow, SessionQuery, SessionRow, Store, StoreUrl};

enum Backend {
    Memory,
    Sqlite,
    Postgres,
}

struct Fixture {
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

async fn fixture(b: Backend) -> Option<Fixture> {
    match b {
        Backend::Memory => Some(Fixture { store: wsgate_store::open(&StoreUrl::Memory).await.unwrap(), _dir: None }),
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url = StoreUrl::Sqlite(dir.path().join("history/wsgate.db"));
            Some(Fixture { store: wsgate_store::open(&url).await.unwrap(), _dir: Some(dir) })
        }
        Backend::Postgres => {
            let url = fresh_postgres_db().await?;
            Some(Fixture { store: wsgate_store::open(&StoreUrl::Postgres(url)).await.unwrap(), _dir: None })
        }
    }
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
    let queue = b.observer_with("store", 1024, Overflow::Wait);
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
    s.error("queue_overflow", "dropped 3 queued messages".into());
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
            s.transition(State::Failed, TransitionDetail { reason_kind: Some("refused"), ..Default::default() });
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

async fn restart_rule_closes_only_own_orphans(b: Backend) {
    let Some(f) = fixture(b).await else { return };
    let rec = record(&f.store, "a", 1024);
    let mut mine = rec.open(info(SessionKind::Proxy, "chat", "/chat"));
    mine.transition(State::Connected, TransitionDetail::default());
    mine.frame(Direction::ClientToUpstream, &Frame::text("one"), false);
    mine.frame(Direction::UpstreamToClient, &Frame::text("two!"), false);
    let mine_id = mine.id();
    std::mem::forget(mine); // a crash: no final event ever comes
    rec.finish().await;
    let other = record(&f.store, "b", 1024);
    let theirs = other.open(info(SessionKind::Proxy, "chat", "/chat"));
    let theirs_id = theirs.id();
    std::mem::forget(theirs);
    other.finish().await;

    assert_eq!(f.store.close_orphans("a").await.unwrap(), 1);
    assert_eq!(f.store.close_orphans("a").await.unwrap(), 0, "idempotent");
    let row = f.store.session(mine_id).await.unwrap().unwrap();
    assert_eq!(row.state, State::Disconnected);
    assert_eq!(row.initiator, Some(Initiator::Gateway));
    assert_eq!(row.close_reason.as_deref(), Some("gateway stopped"));
    assert_eq!((row.messages_in, row.messages_out, row.bytes_in, row.bytes_out), (1, 1, 3, 4));
    let events = f.store.events(mine_id).await.unwrap();
    let last = events.last().unwrap();
    assert_eq!((last.seq, last.state), (3, Some(State::Disconnected)));
    assert_eq!(last.detail["reason"], "gateway stopped");
    assert_eq!(f.store.messages(mine_id, 0, 10).await.unwrap().len(), 2, "committed messages kept");
    let theirs = f.store.session(theirs_id).await.unwrap().unwrap();
    assert_eq!(theirs.state, State::Requested, "another instance's session is left alone");
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

fn session_row(instance: &str, path: &str) -> SessionRow {
    SessionRow {
        id: wsgate_core::SessionId::new(),
        instance: instance.into(),
        kind: SessionKind::Proxy,
        route: "r".into(),
        path: path.into(),
        client_addr: None,
        headers: Vec::new(),
        subprotocol: None,
        upstream: None,
        state: State::Connected,
        opened_at: chrono::Utc::now(),
        closed_at: None,
        close_code: None,
        close_reason: None,
        initiator: None,
        failure: None,
        failure_kind: None,
        http_status: None,
        messages_in: 0,
        messages_out: 0,
        bytes_in: 0,
        bytes_out: 0,
        messages_dropped: 0,
    }
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
    restart_rule_closes_only_own_orphans,
    retention_by_age_and_count,
    interleaved_sessions_read_back_in_order
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
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(version, 2);
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
    // About 250 bytes of table and index per row: ~75 MiB of WAL if nothing copied
    // it back, against 16 MiB between checkpoints.
    const N: u64 = 300_000;
    let frame = Frame::binary(Bytes::from(vec![7u8; 200]));
    for _ in 0..N {
        s.frame(Direction::ClientToUpstream, &frame, false);
        s.settle().await;
    }
    drop(s);
    rec.finish().await;
    // The file keeps the size it grew to, so this bounds the WAL over the whole run.
    let wal = std::fs::metadata(dir.path().join("w.db-wal")).map(|m| m.len()).unwrap_or(0);
    assert!(wal < 48 << 20, "WAL grew to {} MiB", wal >> 20);
    let last = store.messages(id, N - 1, 10).await.unwrap();
    assert_eq!(last.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![N]);
}
