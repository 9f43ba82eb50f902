//! Gateways sharing one store (one SQLite file, one PostgreSQL database) as real
//! processes: each holds a lease on its instance name, so restarting, killing or
//! starting one never closes another's live sessions; a second gateway under a
//! name already held is refused; a gateway that is gone has its sessions closed
//! by the next start of its name (at once) or by any running gateway (once its
//! lease has run out).

use std::time::{Duration, Instant};

use serde_json::Value;
use wsgate_protocol::{Message, Transport, WsStream};

use crate::support::*;

/// Short, so a lease runs out within a test; long enough that a loaded machine
/// still renews in time (every third of it).
const LEASE: &str = "2s";
const LEASE_TTL: Duration = Duration::from_secs(2);

/// A SQLite file outside every gateway's own directory.
fn shared_sqlite(dir: &TempDir) -> String {
    format!("sqlite://{}", dir.0.join("shared.db").display())
}

async fn proxy(up: &Upstream, store: &str, instance: Option<&str>) -> Gateway {
    let url = up.url();
    let mut args = vec!["--upstream", &url, "--store", store, "--instance-lease", LEASE];
    if let Some(name) = instance {
        args.extend(["--instance", name]);
    }
    Gateway::proxy(&args).await
}

/// A client session through `gw`, echoing, and its id.
async fn live_session(gw: &Gateway, path: &str) -> (WsStream<Transport>, String) {
    let mut ws = ws_connect(&gw.ws(path)).await;
    echoes(&mut ws, "hello").await;
    let list = gw.wait_sessions(|s| s.iter().any(|x| x["path"] == path && x["state"] == "CONNECTED")).await;
    let id = list.iter().find(|x| x["path"] == path).and_then(|x| x["id"].as_str()).unwrap().to_owned();
    (ws, id)
}

async fn echoes(ws: &mut WsStream<Transport>, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
    assert_eq!(crate::support::text(&recv(ws).await), text);
}

async fn session(gw: &Gateway, id: &str) -> Value {
    http_json(&gw.api(&format!("/api/sessions/{id}"))).await
}

/// Waits until `reader` (not the session's own gateway, so the answer comes from
/// the store) sees session `id` in `state`.
async fn stored_as(reader: &Gateway, id: &str, state: &str) -> Value {
    eventually(|| async {
        let s = session(reader, id).await;
        (s["state"] == state).then_some(s)
    })
    .await
}

/// Checks, for a whole lease and more (several renewals and restart-rule rounds of
/// every gateway), that session `id` stays CONNECTED in the store and live on its
/// own gateway, and that its client still gets echoes.
async fn stays_connected(owner: &Gateway, reader: &Gateway, id: &str, ws: &mut WsStream<Transport>) {
    let until = Instant::now() + LEASE_TTL + LEASE_TTL / 2;
    while Instant::now() < until {
        let stored = session(reader, id).await;
        assert_eq!(stored["state"], "CONNECTED", "closed in the store by another gateway: {stored}");
        let live = session(owner, id).await;
        assert_eq!((live["state"].as_str(), live["live"].as_bool()), (Some("CONNECTED"), Some(true)), "{live}");
        // An observation window, not synchronisation: nothing is awaited here.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    echoes(ws, "still here").await;
}

fn assert_gateway_stopped(s: &Value) {
    assert_eq!(s["state"], "DISCONNECTED", "{s}");
    assert_eq!(s["close"]["reason"], "gateway stopped", "{s}");
    assert_eq!(s["close"]["initiator"], "gateway", "{s}");
    assert_eq!(s["close"]["code"], 1006, "{s}");
}

/// Two gateways, instances `a` and `b`, on one store. `a` is killed and restarted
/// (its own old session is closed at once, `b`'s stays), then `b` is stopped and
/// restarted (`a`'s new session stays).
async fn two_instances_restart_in_either_order(store: &str) {
    let up = Upstream::echo().await;
    let mut a = proxy(&up, store, Some("a")).await;
    let mut b = proxy(&up, store, Some("b")).await;
    let (ws_a, id_a) = live_session(&a, "/a").await;
    let (mut ws_b, id_b) = live_session(&b, "/b").await;
    stored_as(&b, &id_a, "CONNECTED").await;
    stored_as(&a, &id_b, "CONNECTED").await;

    // Restart a after a crash.
    a.kill9().await;
    drop(ws_a);
    let a = proxy(&up, store, Some("a")).await;
    assert_gateway_stopped(&session(&a, &id_a).await);
    stays_connected(&b, &a, &id_b, &mut ws_b).await;

    // Then b, cleanly: a's new session is untouched.
    let (mut ws_a, id_a) = live_session(&a, "/a2").await;
    stored_as(&b, &id_a, "CONNECTED").await;
    // Its client answers the shutdown's close, as a real one does.
    let closed = tokio::spawn(async move { close_of(&recv(&mut ws_b).await).map(|c| c.code) });
    assert_eq!(b.terminate().await, 0);
    assert_eq!(closed.await.unwrap(), Some(1001));
    let b = proxy(&up, store, Some("b")).await;
    let s = stored_as(&b, &id_b, "DISCONNECTED").await;
    assert_eq!((s["close"]["code"].as_u64(), s["close"]["initiator"].as_str()), (Some(1001), Some("gateway")));
    stays_connected(&a, &b, &id_a, &mut ws_a).await;
}

#[tokio::test]
async fn instances_sqlite_restart_in_either_order_spares_the_other() {
    let dir = TempDir::new();
    two_instances_restart_in_either_order(&shared_sqlite(&dir)).await;
}

#[tokio::test]
async fn instances_postgres_restart_in_either_order_spares_the_other() {
    let Some(url) = fresh_postgres_db().await else { return };
    two_instances_restart_in_either_order(&url).await;
}

/// The bug leases fix: two gateways in one folder share the store and the default
/// instance name (the host name). The second is refused, naming the holder, and
/// the first keeps its session.
async fn same_name_is_refused(store: &str) {
    let up = Upstream::echo().await;
    let first = proxy(&up, store, None).await;
    let (mut ws, id) = live_session(&first, "/first").await;
    let dir = TempDir::new();
    let out = start_refused(&up, store, &[], &dir).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_owned();
    for part in [
        format!("instance {host:?} is in use by another running gateway"),
        format!("pid {}", first.pid()),
        "its lease expires at".to_owned(),
        "--instance".to_owned(),
        "another --store".to_owned(),
    ] {
        assert!(stderr.contains(&part), "{part:?} missing from:\n{stderr}");
    }
    let s = session(&first, &id).await;
    assert_eq!((s["state"].as_str(), s["live"].as_bool()), (Some("CONNECTED"), Some(true)), "{s}");
    echoes(&mut ws, "unharmed").await;
}

#[tokio::test]
async fn instances_sqlite_same_name_is_refused_while_held() {
    let dir = TempDir::new();
    same_name_is_refused(&shared_sqlite(&dir)).await;
}

#[tokio::test]
async fn instances_postgres_same_name_is_refused_while_held() {
    let Some(url) = fresh_postgres_db().await else { return };
    same_name_is_refused(&url).await;
}

/// A gateway killed with `kill -9`, under another name: a running gateway closes
/// its open session by itself (its process is gone from this host: no need to wait
/// for the lease to run out, and it never waits longer).
#[tokio::test]
async fn instances_killed_gateway_is_closed_by_a_running_one() {
    let dir = TempDir::new();
    let store = shared_sqlite(&dir);
    let up = Upstream::echo().await;
    let mut gone = proxy(&up, &store, Some("gone")).await;
    let watcher = proxy(&up, &store, Some("watcher")).await;
    let (_ws, id) = live_session(&gone, "/gone").await;
    stored_as(&watcher, &id, "CONNECTED").await;
    let killed = Instant::now();
    gone.kill9().await;
    let s = stored_as(&watcher, &id, "DISCONNECTED").await;
    assert_gateway_stopped(&s);
    assert!(killed.elapsed() < LEASE_TTL + LEASE_TTL / 2, "closed after {:?}", killed.elapsed());
    assert!(watcher.logs().contains("closed sessions of a gateway whose lease ran out"), "{}", watcher.logs());
}

/// A gateway that stalls (SIGSTOP: its process exists, it renews nothing): only
/// its lease running out frees it. Then a running gateway closes its session; and
/// when it wakes, it finds its lease lost, says so, and claims its name again.
#[tokio::test]
async fn instances_stalled_gateway_is_closed_once_its_lease_runs_out() {
    let dir = TempDir::new();
    let store = shared_sqlite(&dir);
    let up = Upstream::echo().await;
    let mut stalled = proxy(&up, &store, Some("stalled")).await;
    let watcher = proxy(&up, &store, Some("watcher")).await;
    let (_ws, id) = live_session(&stalled, "/stalled").await;
    stored_as(&watcher, &id, "CONNECTED").await;
    let pid = stalled.pid().to_string();
    std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    let stopped = Instant::now();
    let s = stored_as(&watcher, &id, "DISCONNECTED").await;
    assert_gateway_stopped(&s);
    // Its last renewal was at most a third of the lease before the stop.
    let waited = stopped.elapsed();
    assert!(waited >= LEASE_TTL * 2 / 3, "closed {waited:?} after the stall: the lease had not run out");
    std::process::Command::new("kill").args(["-CONT", &pid]).status().unwrap();
    eventually(|| async { stalled.logs().contains("claimed this instance again").then_some(()) }).await;
    assert!(stalled.logs().contains("the lease on this instance was lost"), "{}", stalled.logs());
    // It holds its name again: a new gateway under it is refused.
    let out = start_refused(&up, &store, &["--instance", "stalled"], &dir).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("pid {pid}")));
    assert_eq!(stalled.terminate().await, 0);
}

/// Runs a gateway that must be refused at start (exit 64, no ready line).
async fn start_refused(up: &Upstream, store: &str, extra: &[&str], dir: &TempDir) -> std::process::Output {
    let out = within(
        tokio::process::Command::new(bin())
            .args(["proxy", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--upstream", &up.url()])
            .args(["--store", store, "--instance-lease", LEASE])
            .args(extra)
            .current_dir(&dir.0)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(out.stdout.is_empty(), "no ready line: {}", String::from_utf8_lossy(&out.stdout));
    out
}
