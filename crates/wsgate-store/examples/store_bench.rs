//! Measures how many message rows per second a store backend commits, through the
//! same `Store::write` batches the recorder sends (16 384 rows per transaction, or `BATCH`,
//! payloads of 64–256 bytes, 100 sessions interleaved, or one session with `SESSIONS=1`),
//! then how long the API's reads take on the first session: its first page and a
//! page from its middle (100 messages each).
//!
//! The payloads are runs of one byte unless `RANDOM_PAYLOADS=1`: a backend that
//! compresses what it stores (PostgreSQL compresses a segment's payloads) then pays
//! for data it cannot shrink, as with encrypted or already compressed traffic.
//!
//! Before the clock, WARMUP batches (default 16) are written (see below).
//!
//! Usage: cargo run --release -p wsgate-store --example store_bench -- STORE_URL [ROWS]

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use bytes::Bytes;
use wsgate_core::{Direction, SessionId, SessionKind, State};
use wsgate_store::recorder::RecorderConfig;
use wsgate_store::{Batch, MessageRow, SessionRow, StoreUrl};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url: StoreUrl = args.next().expect("usage: store_bench STORE_URL [ROWS]").parse().expect("store URL");
    let rows: usize = args.next().map(|n| n.parse().expect("ROWS")).unwrap_or(1_000_000);
    let store = wsgate_store::open(&url).await.expect("open store");
    let now = wsgate_store::now();
    let n_sessions: usize = std::env::var("SESSIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(100).max(1);
    let sessions: Vec<SessionRow> = (0..n_sessions)
        .map(|i| SessionRow {
            id: SessionId::new(),
            instance: "bench".into(),
            kind: SessionKind::Proxy,
            route: "bench".into(),
            path: format!("/bench/{i}"),
            client_addr: None,
            headers: vec![],
            subprotocol: None,
            upstream: None,
            state: State::Connected,
            opened_at: now,
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
        })
        .collect();
    let ids: Vec<SessionId> = sessions.iter().map(|s| s.id).collect();
    store.write(Batch { sessions, ..Default::default() }).await.expect("write sessions");
    // The recorder's own batch size unless BATCH says otherwise: its batches close at
    // that many rows when traffic is heavy, which is when the writer's speed matters.
    let batch_rows =
        std::env::var("BATCH").ok().and_then(|v| v.parse().ok()).unwrap_or(RecorderConfig::default().batch_rows).max(1);
    let random = std::env::var("RANDOM_PAYLOADS").is_ok_and(|v| v == "1");
    // xorshift64: a fixed seed, so every run stores the same bytes.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut byte = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as u8
    };
    // Random ones do not repeat within a batch, or they would compress after all.
    let payloads: Vec<Bytes> = (0..if random { batch_rows } else { 4 })
        .map(|i| {
            let len = 64 + 64 * (i % 4);
            Bytes::from(if random { (0..len).map(|_| byte()).collect() } else { vec![b'x'; len] })
        })
        .collect();
    let mut seq = vec![0u64; ids.len()];
    // A warm-up before the clock (WARMUP batches, default 16): the first writes to a
    // new file also grow it and its WAL, which a running gateway's writer has long
    // done; like the other benches' warm-up second, this measures the steady state.
    let warmup: usize = std::env::var("WARMUP").ok().and_then(|v| v.parse().ok()).unwrap_or(16);
    let total = rows + warmup * batch_rows;
    // Batches are built before the clock starts: this measures the store, not the builder.
    let mut batches: Vec<Batch> = (0..total.div_ceil(batch_rows))
        .map(|b| Batch {
            messages: (0..batch_rows.min(total - b * batch_rows))
                .map(|i| {
                    let s = (b * batch_rows + i) % ids.len();
                    seq[s] += 1;
                    let payload = payloads[i % payloads.len()].clone();
                    MessageRow {
                        session_id: ids[s],
                        seq: seq[s],
                        direction: if i % 2 == 0 { Direction::ClientToUpstream } else { Direction::UpstreamToClient },
                        opcode: 1,
                        fin: true,
                        size: payload.len() as u64,
                        at: now,
                        injected: false,
                        marks: wsgate_core::Marks::NONE,
                        truncated: false,
                        payload,
                    }
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    for batch in batches.drain(..warmup) {
        store.write(batch).await.expect("write a warm-up batch");
    }
    let start = Instant::now();
    for batch in batches {
        store.write(batch).await.expect("write batch");
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "store {}: {rows} message rows in {secs:.2} s = {:.0} rows/s (batches of {batch_rows}, payloads 64-256 B{}, \
         {n_sessions} sessions)",
        url,
        rows as f64 / secs,
        if random { " random" } else { "" },
    );
    let frames = seq[0];
    let mut took = Vec::new();
    for after in [0, frames / 2] {
        let t = Instant::now();
        let page = store.messages(ids[0], after, 100).await.expect("read a page");
        took.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(page.first().map(|m| m.seq), Some(after + 1), "the page starts where asked");
    }
    let (first, middle) = (took[0], took[1]);
    println!("reads of a {frames}-frame session: first page {first:.2} ms, a page from its middle {middle:.2} ms");
}
