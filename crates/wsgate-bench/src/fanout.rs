//! `wsgate bench fanout`: one publisher, many subscribers, every delivery checked.
//!
//! The run goes in three steps, none of which sleeps to wait for the server:
//! 1. connect every subscriber, then the publisher;
//! 2. *sync*: the publisher sends untimed messages marked [`SYNC_PREFIX`], one every
//!    [`SYNC_EVERY`], until every subscriber has received one — proof that the server
//!    has registered them all, so the measured messages are not lost to a subscriber
//!    that was still joining;
//! 3. publish the measured messages, each carrying its seq and send time. Every
//!    subscriber checks each delivery byte for byte, records its latency and marks the
//!    seq in its own bitset (duplicates and losses are exact). A subscriber is done
//!    when it has every seq; stragglers get `--settle-timeout` after the last publish.
//!
//! A broadcast server may send the publisher its own messages back; the publisher
//! reads and discards them (it must keep reading, or a server that blocks on a full
//! socket would stall everyone).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt as _;
use hdrhistogram::Histogram;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use wsgate_protocol::{CloseCode, Message};

use crate::args::{self, FanoutArgs};
use crate::connector::{self, CLOSE_TIMEOUT, ConnectStats, Dialer, Ws};
use crate::error::BenchError;
use crate::payload::{BINARY_HEADER, Pattern, TEXT_HEADER};
use crate::progress::{Progress, RateMeter, Slot, Slots, Tally, short_rate};
use crate::report::{BenchKind, LatencyStats, MAX_SAMPLES, Summary, latency_histogram, merge, record};

/// Marks a sync message. Cannot be mistaken for a measured payload: a text header is
/// hex digits, and a binary one would need a seq near 2^62.
pub(crate) const SYNC_PREFIX: &[u8] = b"wsgate-bench-sync ";
/// How often a sync message is published until every subscriber has one.
const SYNC_EVERY: Duration = Duration::from_millis(20);
/// Messages fed before one flush when publishing as fast as possible.
const PUBLISH_BURST: u64 = 32;
/// Stream id of the publisher in payloads.
const PUBLISHER: u64 = 0;
/// Most messages a run may publish (seqs are tracked in a bitset per subscriber).
const MAX_MESSAGES: u64 = 1 << 32;
/// Most publications whose slowest delivery is tracked (8 bytes each); longer runs
/// report only the per-delivery latency.
const MAX_LAST_TRACKED: u64 = 1 << 22;
/// Most memory all subscribers' bitsets may take together.
const MAX_SEEN_BYTES: u64 = 2 << 30;

/// What all subscribers share: read-only after the start, except the sync tally.
#[derive(Debug)]
struct Shared {
    pattern: Pattern,
    messages: u64,
    epoch: Instant,
    subscribers: usize,
    synced: Tally,
    sync_seen: Notify,
    /// Per publication, its slowest delivery so far in µs, plus one (0: none yet):
    /// publish → last subscriber.
    last: Box<[AtomicU64]>,
}

/// What one subscriber measured.
#[derive(Debug)]
struct SubOutcome {
    received: u64,
    unique: u64,
    duplicates: u64,
    errors: u64,
    bytes: u64,
    disconnected: bool,
    latency: Histogram<u64>,
    last_delivery: Option<Instant>,
    samples: Vec<String>,
}

/// What the publisher did.
#[derive(Debug, Default)]
struct Published {
    sent: u64,
    first: Option<Instant>,
    interrupted: bool,
    failed: Option<String>,
}

pub(crate) async fn run(a: FanoutArgs, shutdown: CancellationToken) -> Result<Summary, BenchError> {
    args::target("URL", &a.url)?;
    let publish_url = a.publish_url.clone().unwrap_or_else(|| a.url.clone());
    args::target("--publish-url", &publish_url)?;
    let subscribers = args::count("--subscribers", a.subscribers, args::MAX_CONNECTIONS)?;
    if a.messages == 0 || a.messages > MAX_MESSAGES {
        return Err(BenchError::invalid("--messages", format!("must be between 1 and {MAX_MESSAGES}")));
    }
    let seen_bytes = a.messages.div_ceil(64) * 8 * subscribers as u64;
    if seen_bytes > MAX_SEEN_BYTES {
        return Err(BenchError::invalid(
            "--messages",
            format!(
                "tracking which of {} messages each of {subscribers} subscribers received takes {} MiB (limit {} MiB): \
                 publish fewer messages or use fewer subscribers",
                a.messages,
                seen_bytes >> 20,
                MAX_SEEN_BYTES >> 20
            ),
        ));
    }
    let size = args::size("--size", a.size, if a.binary { BINARY_HEADER } else { TEXT_HEADER })?;
    let pattern = Pattern::new(size, !a.binary);
    let rate = a.rate.map(|r| args::rate("--rate", r)).transpose()?;
    let settle = args::seconds("--settle-timeout", a.settle_timeout)?;
    let sync_timeout = args::positive_seconds("--connect-timeout", a.connect.connect_timeout)?;
    connector::check_fd_budget("--subscribers", subscribers + 1)?;
    let sub_dialer = Arc::new(Dialer::new(&a.url, &a.connect, a.source_ips)?);
    let pub_dialer = Dialer::new(&publish_url, &a.connect, None)?;

    let mut stats = ConnectStats::new();
    let mut subs = Vec::with_capacity(subscribers);
    let finished =
        connector::open_all(&sub_dialer, subscribers, None, &mut stats, &shutdown, |_, ws| subs.extend(ws)).await?;
    stats.require_some(&a.url)?;
    let mut summary = Summary::new(BenchKind::Fanout, &a.url, subscribers, size);
    stats.apply(&mut summary);
    summary.peak_connections = stats.connected;
    if !finished {
        summary.interrupted = true;
        connector::close_all(subs).await;
        return Ok(summary);
    }
    let mut publisher = match pub_dialer.open(0).await {
        Ok(ws) => ws,
        Err(source) => {
            connector::close_all(subs).await;
            return Err(BenchError::Publisher {
                url: publish_url.to_string(),
                kind: source.kind(),
                source: Box::new(source),
            });
        }
    };

    let shared = Arc::new(Shared {
        pattern,
        messages: a.messages,
        epoch: Instant::now(),
        subscribers: subs.len(),
        synced: Tally::default(),
        sync_seen: Notify::new(),
        last: if a.messages <= MAX_LAST_TRACKED {
            (0..a.messages).map(|_| AtomicU64::new(0)).collect()
        } else {
            Box::default()
        },
    });
    summary.expected = Some(a.messages * subs.len() as u64);
    summary.target_rate = rate;
    // Ends the subscribers: after the settle timeout, or on shutdown (it is a child).
    let settled = shutdown.child_token();
    let slots = Slots::new(subs.len());
    let mut workers = JoinSet::new();
    for (i, ws) in subs.into_iter().enumerate() {
        // A token per subscriber, so their pending `cancelled()` polls do not contend
        // for one token's lock.
        let (shared, slots, stop) = (Arc::clone(&shared), Arc::clone(&slots), settled.child_token());
        workers.spawn(async move { subscribe(i, ws, &shared, slots.get(i), &stop).await });
    }

    // 2. Sync.
    let synced = sync(&mut publisher, &shared, sync_timeout, &shutdown).await;
    if synced == 0 && !shutdown.is_cancelled() {
        settled.cancel();
        while workers.join_next().await.is_some() {}
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, publisher.close(CloseCode::NORMAL, "")).await;
        return Err(BenchError::NoDelivery { url: a.url.to_string(), waited_s: sync_timeout.as_secs_f64() });
    }
    let unsynced = shared.subscribers as u64 - synced;
    if unsynced > 0 && !shutdown.is_cancelled() {
        summary.sample(|| {
            format!(
                "{unsynced} of {} subscribers never received a sync message; their deliveries count as lost",
                shared.subscribers
            )
        });
    }

    // 3. Publish, then give stragglers the settle timeout while the publisher keeps
    // reading (and answering pings).
    let progress = start_progress(!a.no_progress, summary.expected.unwrap_or(0), &slots);
    let published = if shutdown.is_cancelled() {
        Published { interrupted: true, ..Published::default() }
    } else {
        publish(&mut publisher, &shared, rate, &shutdown).await
    };
    if let Some(e) = &published.failed {
        summary.sample(|| format!("publisher: {e}"));
    }
    let mut collected = Vec::with_capacity(shared.subscribers);
    let stragglers = async {
        let _ = tokio::time::timeout(settle, async {
            // Subscribers that have every message end on their own.
            while !workers.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    joined = workers.join_next() => if let Some(joined) = joined { collected.push(joined) },
                }
            }
        })
        .await;
        settled.cancel();
        while let Some(joined) = workers.join_next().await {
            collected.push(joined);
        }
    };
    let drained = CancellationToken::new();
    tokio::join!(
        async {
            stragglers.await;
            drained.cancel();
        },
        drain_until(&mut publisher, &drained)
    );
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, publisher.close(CloseCode::NORMAL, "")).await;
    progress.finish().await;

    let mut latency = latency_histogram(1);
    let mut unique = 0u64;
    let mut last_delivery: Option<Instant> = None;
    for joined in collected {
        let Ok(o) = joined else {
            summary.disconnects += 1;
            continue;
        };
        summary.messages_received += o.received;
        summary.duplicates += o.duplicates;
        summary.errors += o.errors;
        summary.bytes += o.bytes;
        summary.disconnects += u64::from(o.disconnected);
        unique += o.unique;
        merge(&mut latency, &o.latency);
        last_delivery = last_delivery.max(o.last_delivery);
        for s in o.samples {
            summary.sample(|| s);
        }
    }
    summary.messages_sent = published.sent;
    summary.bytes_sent = published.sent * size as u64;
    summary.interrupted = published.interrupted || shutdown.is_cancelled();
    let missing = (published.sent * shared.subscribers as u64).saturating_sub(unique);
    if summary.interrupted {
        // Stopped before the settle timeout: what had not arrived yet was not waited
        // for, which is not the same as lost (the echo bench counts it the same way).
        if missing > 0 {
            summary.sample(|| format!("interrupted with {missing} deliveries outstanding (not counted as lost)"));
        }
    } else {
        summary.lost = missing;
    }
    summary.latency_us = LatencyStats::from_histogram(&latency);
    if !shared.last.is_empty() {
        let mut last = latency_histogram(1);
        for slowest in shared.last.iter().map(|v| v.load(Ordering::Relaxed)).filter(|v| *v > 0) {
            record(&mut last, slowest - 1);
        }
        summary.last_delivery_us = Some(LatencyStats::from_histogram(&last));
    }
    let elapsed = match (published.first, last_delivery) {
        (Some(first), Some(last)) => last.saturating_duration_since(first).as_secs_f64(),
        _ => 0.0,
    };
    summary.set_elapsed(elapsed, summary.messages_received);
    Ok(summary)
}

fn start_progress(enabled: bool, expected: u64, slots: &Arc<Slots>) -> Progress {
    let slots = Arc::clone(slots);
    let mut meter = RateMeter::new();
    Progress::start(
        enabled,
        Some(expected),
        "{spinner} [{elapsed_precise}] [{wide_bar}] {pos}/{len} deliveries · {msg}",
        move |bar| {
            let n = slots.total();
            bar.set_position(n);
            bar.set_message(format!("{}/s", short_rate(meter.update(n))));
        },
    )
}

fn data_message(text: bool, payload: Bytes) -> Message {
    if text { Message::Text(payload) } else { Message::Binary(payload) }
}

/// Publishes sync messages until every subscriber has seen one, the timeout passes or
/// the run is interrupted. Returns how many subscribers synced.
async fn sync(publisher: &mut Ws, shared: &Shared, timeout: Duration, shutdown: &CancellationToken) -> u64 {
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut every = tokio::time::interval(SYNC_EVERY);
    every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut n = 0u64;
    while shared.synced.get() < shared.subscribers as u64 {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = &mut deadline => break,
            _ = shared.sync_seen.notified() => {}
            _ = every.tick() => {
                let mut m = BytesMut::from(SYNC_PREFIX);
                m.extend_from_slice(n.to_string().as_bytes());
                n += 1;
                if publisher.feed(&data_message(shared.pattern.is_text(), m.freeze())).is_err() {
                    break;
                }
            }
            // Reading flushes what was fed, and drains the server's copies to us.
            r = publisher.recv() => if r.is_err() { break },
        }
    }
    shared.synced.get()
}

/// Publishes the measured messages.
async fn publish(publisher: &mut Ws, shared: &Shared, rate: Option<f64>, shutdown: &CancellationToken) -> Published {
    let mut done = Published::default();
    let mut scratch = BytesMut::with_capacity(shared.pattern.size());
    let text = shared.pattern.is_text();
    let mut feed = |ws: &mut Ws, done: &mut Published, at: Instant| -> bool {
        let ts = at.saturating_duration_since(shared.epoch).as_nanos() as u64;
        shared.pattern.write(&mut scratch, PUBLISHER, done.sent, ts);
        if let Err(e) = ws.feed(&data_message(text, scratch.split().freeze())) {
            done.failed = Some(e.to_string());
            return false;
        }
        done.first.get_or_insert(at);
        done.sent += 1;
        true
    };

    match rate {
        Some(r) => {
            let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / r));
            // After a stall, catch up: the rate is a total, not a best effort.
            ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
            while done.sent < shared.messages {
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => {
                        done.interrupted = true;
                        break;
                    }
                    // Reading flushes what was fed (one write per wake-up).
                    r = publisher.recv() => if let Err(e) = r {
                        done.failed = Some(e.to_string());
                        break;
                    },
                    // Stamped when fed, not when due: the publisher never waits for
                    // the server before feeding (open loop, nothing to omit), so the
                    // only lateness would be our timer's 1 ms granularity.
                    _ = ticks.tick() => if !feed(publisher, &mut done, Instant::now()) { break },
                }
            }
            let _ = publisher.flush().await;
        }
        None => {
            while done.sent < shared.messages {
                let at = Instant::now();
                let burst = PUBLISH_BURST.min(shared.messages - done.sent);
                let mut ok = true;
                for _ in 0..burst {
                    ok = feed(publisher, &mut done, at);
                    if !ok {
                        break;
                    }
                }
                let flushed = tokio::select! {
                    _ = shutdown.cancelled() => {
                        done.interrupted = true;
                        break;
                    }
                    r = publisher.flush() => r,
                };
                if let Err(e) = flushed {
                    done.failed = Some(e.to_string());
                    break;
                }
                if !ok || !drain_ready(publisher) {
                    break;
                }
            }
        }
    }
    done
}

/// Reads whatever the publisher has been sent without waiting. Returns false if the
/// connection ended.
fn drain_ready(publisher: &mut Ws) -> bool {
    /// Bounded so a flood of copies cannot starve publishing.
    const MAX_READS: usize = 1024;
    for _ in 0..MAX_READS {
        match publisher.recv().now_or_never() {
            None => return true,
            Some(Ok(_)) => {}
            Some(Err(_)) => return false,
        }
    }
    true
}

/// Keeps reading the publisher's connection (answering pings, discarding its own
/// messages) until `stop`.
async fn drain_until(publisher: &mut Ws, stop: &CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            r = publisher.recv() => if r.is_err() { return },
        }
    }
}

/// One subscriber's loop.
async fn subscribe(index: usize, mut ws: Ws, shared: &Shared, progress: &Slot, stop: &CancellationToken) -> SubOutcome {
    let mut out = SubOutcome {
        received: 0,
        unique: 0,
        duplicates: 0,
        errors: 0,
        bytes: 0,
        disconnected: false,
        latency: latency_histogram(shared.subscribers),
        last_delivery: None,
        samples: Vec::new(),
    };
    let mut seen = vec![0u64; shared.messages.div_ceil(64) as usize];
    let mut synced = false;
    let text = shared.pattern.is_text();
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    while out.unique < shared.messages {
        let received = tokio::select! {
            biased;
            _ = &mut stopped => break,
            r = ws.recv() => r,
        };
        let (payload, got_text) = match received {
            Ok(Message::Text(b)) => (b, true),
            Ok(Message::Binary(b)) => (b, false),
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(Message::Close(frame)) => {
                out.disconnected = true;
                sample(&mut out, || format!("subscriber {index}: server closed it ({frame:?})"));
                break;
            }
            Err(e) => {
                out.disconnected = true;
                sample(&mut out, || format!("subscriber {index}: {e}"));
                break;
            }
        };
        let now = Instant::now();
        if payload.starts_with(SYNC_PREFIX) {
            if !synced {
                synced = true;
                shared.synced.add(1);
                shared.sync_seen.notify_one();
            }
            continue;
        }
        let Some((seq, ts)) = shared.pattern.parse_header(&payload).filter(|(seq, _)| *seq < shared.messages) else {
            out.errors += 1;
            sample(&mut out, || {
                format!("subscriber {index}: a {}-byte message that is not one of the publisher's", payload.len())
            });
            continue;
        };
        if got_text != text {
            out.errors += 1;
            sample(&mut out, || format!("subscriber {index}, message {seq}: opcode changed in delivery"));
        } else if let Err(m) = shared.pattern.verify(&payload, PUBLISHER, seq, ts) {
            out.errors += 1;
            sample(&mut out, || format!("subscriber {index}, message {seq}: {m}"));
        }
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if seen[word] & bit != 0 {
            out.duplicates += 1;
        } else {
            seen[word] |= bit;
            out.unique += 1;
        }
        out.received += 1;
        out.bytes += payload.len() as u64;
        let now_ns = now.saturating_duration_since(shared.epoch).as_nanos() as u64;
        let us = now_ns.saturating_sub(ts) / 1_000;
        record(&mut out.latency, us);
        if let Some(slowest) = shared.last.get(seq as usize) {
            slowest.fetch_max(us + 1, Ordering::Relaxed);
        }
        out.last_delivery = Some(now);
        progress.set(out.received);
    }
    if out.disconnected {
        ws.flush_best_effort().await;
    } else {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.close(CloseCode::NORMAL, "")).await;
    }
    out
}

fn sample(out: &mut SubOutcome, what: impl FnOnce() -> String) {
    if out.samples.len() < MAX_SAMPLES {
        out.samples.push(what());
    }
}
