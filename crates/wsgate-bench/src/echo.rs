//! `wsgate bench echo`: round trips against an echo endpoint.
//!
//! Every connection is one task that owns its socket, its in-flight queue and its
//! latency histogram, and shares nothing with the others while it runs (the progress
//! bar reads a counter only that task writes). Each echo is checked byte for byte
//! against the payload regenerated from (connection, seq, send time), so a server that
//! corrupts, reorders, drops or cross-wires messages shows up as errors or loss.
//!
//! Closed loop (default): a connection keeps `K` messages in flight and sends the next
//! one as each echo arrives. Open loop (`--rate`): sends follow a per-connection
//! schedule, and latency counts from each message's *scheduled* time, so a server
//! stall shows up as the latency every waiting message saw rather than as fewer,
//! fast-looking samples (coordinated omission). The one delay taken out is the bench's
//! own: the time it held a message that could have gone (its timer has 1 ms
//! granularity), which is not the server's latency. See [`Lag`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use tokio::task::JoinSet;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use wsgate_protocol::{CloseCode, Message};

use crate::args::{self, EchoArgs};
use crate::connector::{self, CLOSE_TIMEOUT, ConnectStats, Dialer, Ws};
use crate::error::BenchError;
use crate::payload::Pattern;
use crate::progress::{Progress, RateMeter, Slot, Slots, short_rate};
use crate::report::{BenchKind, LatencyStats, MAX_SAMPLES, Summary, latency_histogram, merge, record};

/// Messages per connection when neither `--messages` nor `--duration` is given.
const DEFAULT_MESSAGES: u64 = 10_000;
/// Deepest pipeline accepted.
const MAX_IN_FLIGHT: usize = 65_536;
/// After `--duration` ends, how long outstanding echoes are waited for before they
/// count as lost.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What every connection of a run does, decided once before the first send.
#[derive(Debug)]
struct Plan {
    pattern: Pattern,
    in_flight: usize,
    /// Measured messages per connection, when the run is by count.
    messages: Option<u64>,
    /// When sending stops, when the run is by duration.
    stop_at: Option<Instant>,
    /// Time between one connection's sends with `--rate`.
    period: Option<Duration>,
    /// Timestamps in payloads are nanoseconds since this instant.
    epoch: Instant,
    /// Messages scheduled before this (the warm-up) are not measured.
    measure_from: Instant,
    connections: usize,
}

impl Plan {
    fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_nanos() as u64
    }
}

/// What one connection measured.
#[derive(Debug)]
struct Outcome {
    sent: u64,
    received: u64,
    bytes_sent: u64,
    bytes: u64,
    errors: u64,
    lost: u64,
    disconnected: bool,
    interrupted: bool,
    latency: Histogram<u64>,
    samples: Vec<String>,
    last_reply: Option<Instant>,
}

pub(crate) async fn run(a: EchoArgs, shutdown: CancellationToken) -> Result<Summary, BenchError> {
    args::target("URL", &a.url)?;
    let connections = args::count("--connections", a.connections, args::MAX_CONNECTIONS)?;
    let size = args::size("--size", a.size, 0)?;
    let in_flight = args::count("--in-flight", a.in_flight, MAX_IN_FLIGHT)?;
    let messages = match (a.messages, a.duration) {
        (Some(0), _) => return Err(BenchError::invalid("--messages", "must be at least 1")),
        (Some(n), _) => Some(n),
        (None, Some(_)) => None,
        (None, None) => Some(DEFAULT_MESSAGES),
    };
    let duration = a.duration.map(|d| args::positive_seconds("--duration", d)).transpose()?;
    let warmup = a.warmup.map(|w| args::seconds("--warmup", w)).transpose()?.unwrap_or_default();
    let rate = a.rate.map(|r| args::rate("--rate", r)).transpose()?;
    connector::check_fd_budget("--connections", connections)?;
    let dialer = Arc::new(Dialer::new(&a.url, &a.connect, a.source_ips)?);

    // Connect everything first, so the load starts at once on every connection and
    // handshakes are not measured as round trips.
    let mut stats = ConnectStats::new();
    let mut conns = Vec::with_capacity(connections);
    let finished = connector::open_all(&dialer, connections, None, &mut stats, &shutdown, |i, ws| {
        conns.extend(ws.map(|w| (i, w)))
    })
    .await?;
    stats.require_some(&a.url)?;
    let mut summary = Summary::new(BenchKind::Echo, &a.url, connections, size);
    stats.apply(&mut summary);
    summary.peak_connections = stats.connected;
    if !finished {
        summary.interrupted = true;
        connector::close_all(conns.into_iter().map(|(_, ws)| ws)).await;
        return Ok(summary);
    }

    let epoch = Instant::now();
    let measure_from = epoch + warmup;
    let plan = Arc::new(Plan {
        pattern: Pattern::new(size, !a.binary),
        in_flight,
        messages,
        stop_at: duration.map(|d| measure_from + d),
        period: rate.map(|r| Duration::from_secs_f64(conns.len() as f64 / r)),
        epoch,
        measure_from,
        connections: conns.len(),
    });
    summary.expected = messages.map(|n| n * conns.len() as u64);
    summary.target_rate = rate;

    let slots = Slots::new(conns.len());
    let progress = start_progress(!a.no_progress, &plan, &slots, summary.expected);
    let mut workers = JoinSet::new();
    for (slot, (index, ws)) in conns.into_iter().enumerate() {
        // A token per connection: a pending `cancelled()` takes its token's lock on
        // every poll, and one token shared by every connection would make that a
        // contended lock on the hot path.
        let (plan, slots, stop) = (Arc::clone(&plan), Arc::clone(&slots), shutdown.child_token());
        workers.spawn(async move { drive(index, slot, ws, &plan, slots.get(slot), &stop).await });
    }

    let mut latency = latency_histogram(1);
    let mut last_reply: Option<Instant> = None;
    while let Some(joined) = workers.join_next().await {
        let Ok(o) = joined else {
            // A panicking worker is a bench bug; count the connection as lost to the run.
            summary.disconnects += 1;
            continue;
        };
        summary.messages_sent += o.sent;
        summary.messages_received += o.received;
        summary.bytes_sent += o.bytes_sent;
        summary.bytes += o.bytes;
        summary.errors += o.errors;
        summary.lost += o.lost;
        summary.disconnects += u64::from(o.disconnected);
        summary.interrupted |= o.interrupted;
        merge(&mut latency, &o.latency);
        for s in o.samples {
            summary.sample(|| s);
        }
        last_reply = last_reply.max(o.last_reply);
    }
    progress.finish().await;

    let end = last_reply.unwrap_or_else(Instant::now);
    summary.set_elapsed(end.saturating_duration_since(plan.measure_from).as_secs_f64(), summary.messages_received);
    summary.latency_us = LatencyStats::from_histogram(&latency);
    Ok(summary)
}

fn start_progress(enabled: bool, plan: &Arc<Plan>, slots: &Arc<Slots>, expected: Option<u64>) -> Progress {
    let slots = Arc::clone(slots);
    let mut meter = RateMeter::new();
    match expected {
        Some(total) => Progress::start(
            enabled,
            Some(total),
            "{spinner} [{elapsed_precise}] [{wide_bar}] {pos}/{len} echoes · {msg}",
            move |bar| {
                let n = slots.total();
                bar.set_position(n);
                bar.set_message(format!("{} msgs/s", short_rate(meter.update(n))));
            },
        ),
        None => {
            let start = plan.epoch;
            let end = plan.stop_at.unwrap_or(plan.epoch);
            let total_ms = end.saturating_duration_since(start).as_millis() as u64;
            Progress::start(enabled, Some(total_ms), "{spinner} [{elapsed_precise}] [{wide_bar}] {msg}", move |bar| {
                let n = slots.total();
                bar.set_position((start.elapsed().as_millis() as u64).min(total_ms));
                bar.set_message(format!("{n} echoes · {} msgs/s", short_rate(meter.update(n))));
            })
        }
    }
}

/// A message in flight.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    seq: u64,
    /// When its latency counts from (ns since the epoch); also in its payload.
    ts: u64,
    /// Sent after the warm-up.
    measured: bool,
    /// How long the bench held it after it could have been sent (see [`Lag`]).
    lag: Duration,
}

/// Open-loop accounting of the bench's own delays.
///
/// A message due at `t` can go once a pipeline slot is free, at `free`. If it goes
/// later still, at `now`, the bench held it for `now - max(t, free)`: a timer that fired
/// late, a busy runtime. That lag is not the server's, so latency counts from
/// `t + lag`: a message that waited for a slot (the server had not answered earlier
/// ones) still counts the wait, one that had room counts from when it was sent.
///
/// A held message also comes back later and frees its slot later; the slot is taken to
/// have been free from `echo - lag`, so the bench's lag is not passed on to the next
/// message as if the server had caused it.
#[derive(Debug)]
struct Lag {
    /// Since when a pipeline slot has been free; `None` while the pipeline is full.
    room_since: Option<Instant>,
}

impl Lag {
    /// The lag of a message due at `due` and sent at `now`.
    fn of(&self, due: Instant, now: Instant) -> Duration {
        let free = self.room_since.map_or(due, |f| f.max(due));
        now.saturating_duration_since(free)
    }

    fn on_echo(&mut self, at: Instant, echoed: &InFlight) {
        self.room_since.get_or_insert(at.checked_sub(echoed.lag).unwrap_or(at));
    }

    fn on_send(&mut self, in_flight: usize, max: usize) {
        if in_flight >= max {
            self.room_since = None;
        }
    }
}

/// One connection's loop.
async fn drive(
    index: usize,
    slot: usize,
    mut ws: Ws,
    plan: &Plan,
    progress: &Slot,
    shutdown: &CancellationToken,
) -> Outcome {
    let stream = index as u64;
    let text = plan.pattern.is_text();
    let mut out = Outcome {
        sent: 0,
        received: 0,
        bytes_sent: 0,
        bytes: 0,
        errors: 0,
        lost: 0,
        disconnected: false,
        interrupted: false,
        latency: latency_histogram(plan.connections),
        samples: Vec::new(),
        last_reply: None,
    };
    let mut in_flight: VecDeque<InFlight> = VecDeque::with_capacity(plan.in_flight);
    // Payloads are built in this buffer; once the frame encoder has copied one, the
    // allocation is unique again and the next message reuses it.
    let mut scratch = BytesMut::with_capacity(plan.pattern.size());
    let mut seq = 0u64;
    let mut sending = true;
    let mut draining = false;
    let mut echoed_at: Option<Instant> = None;
    let mut lag = Lag { room_since: Some(plan.epoch) };

    // Open loop: this connection's schedule, its phase staggered so connections do not
    // all send in the same instant.
    let mut ticker: Option<Interval> = plan.period.map(|p| {
        let phase = p.mul_f64(slot as f64 / plan.connections as f64);
        let mut t = tokio::time::interval_at(plan.epoch + phase, p);
        // Ticks missed while the pipeline was full fire as soon as it frees up, each
        // with its own scheduled time: late messages are sent late and measured from
        // when they were due.
        t.set_missed_tick_behavior(MissedTickBehavior::Burst);
        t
    });
    let far = plan.epoch + Duration::from_secs(86_400 * 365);
    let deadline = tokio::time::sleep_until(plan.stop_at.unwrap_or(far));
    tokio::pin!(deadline);
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);

    loop {
        if ticker.is_none() && sending {
            // Closed loop: top the pipeline up. One timestamp per burst — the burst
            // goes out in one write when `recv` next waits for the socket.
            // The echo that freed the slot was timestamped a moment ago: the sends it
            // triggers reuse that reading rather than take another.
            let mut now = echoed_at.take();
            while in_flight.len() < plan.in_flight {
                if !more_to_send(plan, &out) {
                    sending = false;
                    break;
                }
                let at = *now.get_or_insert_with(Instant::now);
                if !send(&mut ws, plan, stream, &mut seq, at, Duration::ZERO, &mut scratch, &mut in_flight, &mut out) {
                    out.disconnected = true;
                    break;
                }
            }
            if out.disconnected {
                break;
            }
        }
        if !sending && in_flight.is_empty() {
            break;
        }
        let can_tick = sending && in_flight.len() < plan.in_flight;
        tokio::select! {
            biased;
            _ = &mut cancelled => {
                out.interrupted = true;
                break;
            }
            _ = &mut deadline, if plan.stop_at.is_some() => {
                if draining {
                    // Outstanding echoes did not come back in time.
                    out.lost += in_flight.iter().filter(|m| m.measured).count() as u64;
                    in_flight.clear();
                    break;
                }
                sending = false;
                draining = true;
                deadline.as_mut().reset(Instant::now() + DRAIN_TIMEOUT);
            }
            received = ws.recv() => match received {
                Ok(Message::Text(b)) => {
                    let at = on_echo(b, true, text, plan, stream, &mut in_flight, &mut out, progress, &mut lag);
                    echoed_at = Some(at);
                }
                Ok(Message::Binary(b)) => {
                    let at = on_echo(b, false, text, plan, stream, &mut in_flight, &mut out, progress, &mut lag);
                    echoed_at = Some(at);
                }
                Ok(Message::Ping(_) | Message::Pong(_)) => {}
                Ok(Message::Close(frame)) => {
                    if !in_flight.is_empty() || sending {
                        out.disconnected = true;
                        sample(&mut out, || format!("connection {index}: server closed it ({frame:?}) with {} messages unanswered", in_flight.len()));
                    }
                    break;
                }
                Err(e) => {
                    out.disconnected = true;
                    sample(&mut out, || format!("connection {index}: {e}"));
                    break;
                }
            },
            tick = async {
                match ticker.as_mut() {
                    Some(t) => t.tick().await,
                    None => std::future::pending().await,
                }
            }, if can_tick => {
                let held = lag.of(tick, Instant::now());
                if !more_to_send(plan, &out) {
                    sending = false;
                } else if !send(&mut ws, plan, stream, &mut seq, tick + held, held, &mut scratch, &mut in_flight, &mut out) {
                    out.disconnected = true;
                    break;
                }
                lag.on_send(in_flight.len(), plan.in_flight);
            }
        }
    }
    if out.disconnected {
        out.lost += in_flight.iter().filter(|m| m.measured).count() as u64;
        ws.flush_best_effort().await;
    } else {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.close(CloseCode::NORMAL, "")).await;
    }
    progress.set(out.received);
    out
}

/// Whether the run wants another message from this connection.
fn more_to_send(plan: &Plan, out: &Outcome) -> bool {
    match plan.messages {
        Some(n) => out.sent < n,
        // By duration: the deadline branch stops sending.
        None => true,
    }
}

/// Queues message `seq`, its latency to count from `at`. Returns false if the
/// connection is closed.
#[allow(clippy::too_many_arguments)]
#[inline]
fn send(
    ws: &mut Ws,
    plan: &Plan,
    stream: u64,
    seq: &mut u64,
    at: Instant,
    lag: Duration,
    scratch: &mut BytesMut,
    in_flight: &mut VecDeque<InFlight>,
    out: &mut Outcome,
) -> bool {
    let ts = plan.ns(at);
    plan.pattern.write(scratch, stream, *seq, ts);
    let payload = scratch.split().freeze();
    let msg = if plan.pattern.is_text() { Message::Text(payload) } else { Message::Binary(payload) };
    if ws.feed(&msg).is_err() {
        return false;
    }
    let measured = at >= plan.measure_from;
    in_flight.push_back(InFlight { seq: *seq, ts, measured, lag });
    *seq += 1;
    if measured {
        out.sent += 1;
        out.bytes_sent += plan.pattern.size() as u64;
    }
    true
}

/// Checks one echo against the oldest message in flight and measures it. Returns
/// when it arrived.
#[allow(clippy::too_many_arguments)]
#[inline]
fn on_echo(
    got: Bytes,
    got_text: bool,
    text: bool,
    plan: &Plan,
    stream: u64,
    in_flight: &mut VecDeque<InFlight>,
    out: &mut Outcome,
    progress: &Slot,
    lag: &mut Lag,
) -> Instant {
    let now = Instant::now();
    let Some(echoed) = in_flight.pop_front() else {
        out.errors += 1;
        sample(out, || format!("connection {stream}: a message arrived with none in flight ({} bytes)", got.len()));
        return now;
    };
    lag.on_echo(now, &echoed);
    let InFlight { seq, ts, measured, .. } = echoed;
    if got_text != text {
        out.errors += 1;
        let (sent, came) = if text { ("text", "binary") } else { ("binary", "text") };
        sample(out, || format!("connection {stream}, message {seq}: sent as {sent}, echoed as {came}"));
    } else if let Err(m) = plan.pattern.verify(&got, stream, seq, ts) {
        out.errors += 1;
        sample(out, || format!("connection {stream}, message {seq}: {m}"));
    }
    if measured {
        out.received += 1;
        out.bytes += got.len() as u64;
        let rtt_ns = plan.ns(now).saturating_sub(ts);
        record(&mut out.latency, rtt_ns / 1_000);
        out.last_reply = Some(now);
        progress.set(out.received);
    }
    now
}

fn sample(out: &mut Outcome, what: impl FnOnce() -> String) {
    if out.samples.len() < MAX_SAMPLES {
        out.samples.push(what());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` tenths of a millisecond.
    fn tenths(n: u64) -> Duration {
        Duration::from_micros(n * 100)
    }

    #[test]
    fn own_timer_lag_is_not_latency_but_waiting_for_the_server_is() {
        let t0 = Instant::now();
        let mut lag = Lag { room_since: Some(t0) };

        // A is due at 0 and our timer fires at 1.0 ms with the pipeline (K = 1) empty:
        // all 1.0 ms are ours.
        let a_lag = lag.of(t0, t0 + tenths(10));
        assert_eq!(a_lag, tenths(10));
        lag.on_send(1, 1);
        assert_eq!(lag.room_since, None);
        // A's echo comes 0.1 ms after it was sent: the slot would have been free at
        // 0.1 ms had A gone on time.
        let a = InFlight { seq: 0, ts: 0, measured: true, lag: a_lag };
        lag.on_echo(t0 + tenths(11), &a);
        assert_eq!(lag.room_since, Some(t0 + tenths(1)));
        // B, due at 0.8 ms and sent at 1.1 ms, is late only because of our timer.
        assert_eq!(lag.of(t0 + tenths(8), t0 + tenths(11)), tenths(3));
        lag.on_send(1, 1);

        // The server stalls: C, sent on time at 2 ms, comes back at 30 ms. D, due at
        // 2.8 ms, could not go before 30 ms: it counts the 27.2 ms it waited.
        let c = InFlight { seq: 2, ts: 0, measured: true, lag: Duration::ZERO };
        lag.on_echo(t0 + tenths(300), &c);
        let d_due = t0 + tenths(28);
        let d_lag = lag.of(d_due, t0 + tenths(300));
        assert_eq!(d_lag, Duration::ZERO);
        assert_eq!(d_due + d_lag, d_due, "latency counts from when D was due");
    }
}
