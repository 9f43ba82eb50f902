//! The crash promise of history, on the real binary and a real store: a gateway
//! killed with `kill -9` while it records busy sessions loses at most the batch it
//! was writing. The store opens cleanly on the next start, every frame committed
//! before the kill is there, and each session's history is a gap-free prefix of
//! what its client sent and received, in order.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;
use wsgate_protocol::Message;

use crate::support::*;

const CLIENTS: usize = 4;

/// Message `n` of client `i`: padded so that a batch of a few dozen frames is big
/// enough for SQLite to put its payloads in a payload file (64 KiB and up), the
/// path busy traffic takes.
fn text(i: usize, n: u64) -> String {
    format!("c{i}:{n}:{}", "x".repeat(2048))
}

/// `wsgate_store_rows_total` on `gw`'s metrics.
async fn rows_committed(gw: &Gateway) -> u64 {
    let body = reqwest::get(gw.api("/metrics")).await.unwrap().text().await.unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix("wsgate_store_rows_total "))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

/// A client that sends [`text`] and reads the echo, for as long as it can; how
/// many round trips it finished.
async fn busy_client(gw_ws: String, i: usize, running: Arc<AtomicBool>) -> u64 {
    let mut ws = ws_connect(&gw_ws).await;
    let mut n = 0u64;
    while running.load(Ordering::Relaxed) {
        if ws.send(Message::text(text(i, n))).await.is_err() {
            break;
        }
        match ws.recv().await {
            Ok(Message::Text(_)) => n += 1,
            _ => break,
        }
    }
    n
}

/// Every stored message of session `id`, paging through `/messages`.
async fn all_messages(gw: &Gateway, id: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = http_json(&gw.api(&format!("/api/sessions/{id}/messages?after_seq={after}&limit=1000"))).await;
        out.extend(page["messages"].as_array().cloned().unwrap_or_default());
        match page["next_after_seq"].as_u64() {
            Some(n) => after = n,
            None => return out,
        }
    }
}

async fn kill9_mid_batch_keeps_what_was_committed(store: &str) {
    let up = Upstream::echo().await;
    let url = up.url();
    // Strict: no frame is dropped by choice, so whatever is missing after the crash
    // was lost by it, and the history must be a prefix.
    let args = ["--upstream", &url, "--store", store, "--record", "strict", "--instance", "crash"];
    let mut gw = Gateway::proxy(&args).await;
    let running = Arc::new(AtomicBool::new(true));
    let clients: Vec<_> =
        (0..CLIENTS).map(|i| tokio::spawn(busy_client(gw.ws(&format!("/c{i}")), i, running.clone()))).collect();
    let live = gw.wait_sessions(|s| s.iter().filter(|x| x["state"] == "CONNECTED").count() == CLIENTS).await;
    let ids: HashMap<String, String> =
        live.iter().map(|s| (s["path"].as_str().unwrap().to_owned(), s["id"].as_str().unwrap().to_owned())).collect();
    // Several batches committed, and traffic still flowing: the kill lands while a
    // batch is being built or written.
    let committed = eventually(|| async {
        let rows = rows_committed(&gw).await;
        (rows >= 4000).then_some(rows)
    })
    .await;
    gw.kill9().await;
    running.store(false, Ordering::Relaxed);
    let mut sent = Vec::new();
    for c in clients {
        sent.push(c.await.unwrap());
    }

    // The same instance again: the store opens, and the restart rule closes the
    // killed run's sessions.
    let gw = Gateway::proxy(&args).await;
    let mut stored_total = 0u64;
    for i in 0..CLIENTS {
        let id = &ids[&format!("/c{i}")];
        let s = http_json(&gw.api(&format!("/api/sessions/{id}"))).await;
        assert_eq!(s["state"], "DISCONNECTED", "{s}");
        assert_eq!(s["close"]["reason"], "gateway stopped", "{s}");
        let msgs = all_messages(&gw, id).await;
        stored_total += msgs.len() as u64;
        let seqs: Vec<u64> = msgs.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (1..=msgs.len() as u64).collect::<Vec<_>>(), "session {i}: seqs with gaps");
        for dir in ["client_to_upstream", "upstream_to_client"] {
            let texts: Vec<&str> =
                msgs.iter().filter(|m| m["dir"] == dir).map(|m| m["text"].as_str().unwrap()).collect();
            let expected: Vec<String> = (0..texts.len() as u64).map(|n| text(i, n)).collect();
            assert_eq!(texts, expected, "session {i}, {dir}: not a prefix of what was sent, in order");
            // Sent, or at most one in flight when the gateway died.
            assert!(texts.len() as u64 <= sent[i] + 1, "session {i}: {} stored, {} sent", texts.len(), sent[i]);
        }
        // Its totals are those of what was stored, not of a lost batch.
        let in_out = s["messages_in"].as_u64().unwrap() + s["messages_out"].as_u64().unwrap();
        assert_eq!(in_out, msgs.len() as u64, "{s}");
    }
    // The rows committed before the kill are messages, plus, per session, its row and
    // its three lifecycle events so far (REQUESTED, CONNECTING, CONNECTED).
    let committed_messages = committed - 4 * CLIENTS as u64;
    assert!(
        stored_total >= committed_messages,
        "{stored_total} stored, {committed_messages} committed before the kill"
    );
}

#[tokio::test]
async fn crash_sqlite_kill9_mid_batch_keeps_what_was_committed() {
    let dir = TempDir::new();
    kill9_mid_batch_keeps_what_was_committed(&format!("sqlite://{}", dir.0.join("crash.db").display())).await;
    let files = std::fs::read_dir(dir.0.join("crash.db-payloads")).map(|d| d.count()).unwrap_or(0);
    assert!(files > 0, "busy batches went to payload files (the path under test)");
}

#[tokio::test]
async fn crash_postgres_kill9_mid_batch_keeps_what_was_committed() {
    let Some(url) = fresh_postgres_db().await else { return };
    kill9_mid_batch_keeps_what_was_committed(&url).await;
}
