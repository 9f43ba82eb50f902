//! `tt-schedule URL --script FILE [--clients N] [--concurrency C] [--grace S]`: how
//! late a replay mock's messages arrive against their schedule, over many clients,
//! through a WebSocket client wsgate did not write (tokio-tungstenite).
//!
//! The script is the one `wsgate mock --replay` plays: one `{"ts":MS,"text":...}` line
//! per message, each message's text itself `{"ts":MS,"n":N}` — its own time and its
//! place in the script. N clients connect, at most C handshakes at a time. For every
//! message, lateness = arrival − (the client's session start + ts).
//!
//! The session's start: the mock starts a session's schedule when it is CONNECTED,
//! right after it wrote the 101, a moment a client cannot see. Two stand-ins bound it:
//! the moment the 101 was read (after the mock's start, so lateness against it is
//! less than the real one by the time the 101 took to be read, and can look early:
//! `lateness_from_101_ms`, `early`, the per-second timeline; issue 12's definition)
//! and the moment the upgrade request left (before the mock's start, so lateness
//! against it is never less than the real one: `lateness_ms`, `steady_lateness_ms`,
//! an upper bound that also counts a connect storm's queueing before the session
//! existed). The two differ by the handshake's round trip (`handshake_ms`). Each
//! message's lateness less its client's least (`relative_lateness_ms`) cancels the
//! skew, which is constant per client.
//!
//! A client closes once it has every message of the script (each checked: `n` in
//! order, `ts` the script's), or `--grace` seconds after the script's last time;
//! what has not come then is lost. It prints one JSON object (lateness p50, p99,
//! p99.9, max in ms; `lost`; the client's CPU time and its runtime's own timer lag,
//! so a saturated client shows) and
//! exits 1 on any failed connection, loss, mismatch or disconnect.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use clap::Parser;
use futures_util::StreamExt as _;
use hdrhistogram::Histogram;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// A handshake (TCP connect and upgrade) that takes longer failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the close handshake may take.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Error descriptions kept in the summary.
const MAX_SAMPLES: usize = 10;

#[derive(Debug, Parser)]
#[command(name = "tt-schedule", about = "Schedule lateness of a replay mock, over many tokio-tungstenite clients")]
struct Args {
    /// ws:// URL of a `wsgate mock --replay` endpoint.
    url: String,
    /// The script the mock plays (to know how many messages come, and when).
    #[arg(long)]
    script: PathBuf,
    /// Clients, each playing the whole script.
    #[arg(short, long, default_value_t = 1000)]
    clients: usize,
    /// Handshakes in progress at once.
    #[arg(long, default_value_t = 100)]
    concurrency: usize,
    /// Seconds after the script's last time a client still waits for what is missing.
    #[arg(long, default_value_t = 10.0)]
    grace: f64,
    /// The lateness, in ms, the per-second timeline counts messages beyond.
    #[arg(long, default_value_t = 5.0)]
    late_ms: f64,
    /// Runtime worker threads (default: the CPUs this process may run on; 1 runs a
    /// single-threaded runtime).
    #[arg(long)]
    threads: Option<usize>,
}

/// A script line (only its time matters here).
#[derive(Deserialize)]
struct Line {
    #[serde(default)]
    ts: f64,
}

/// A message's text: its time in the script and its place.
#[derive(Deserialize)]
struct Stamp {
    ts: f64,
    n: u64,
}

fn ms_to_us(ms: f64) -> u64 {
    (ms * 1000.0).round() as u64
}

/// Each line's time, in microseconds from the session's start, in script order.
fn read_schedule(path: &PathBuf) -> Result<Vec<u64>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut times = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("//") || line.starts_with('#') {
            continue;
        }
        let l: Line = serde_json::from_str(line).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))?;
        times.push(ms_to_us(l.ts));
    }
    if times.is_empty() {
        return Err(format!("{}: no lines", path.display()));
    }
    Ok(times)
}

/// Microseconds, 1 µs to 10 minutes, three significant digits. Fixed bounds, so
/// `saturating_record` never clamps what a run can see (a histogram that grows to
/// fit starts at 2 048 and clamps there instead of growing).
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

/// What one client saw.
#[derive(Debug)]
struct Outcome {
    connected: bool,
    /// Microseconds from the upgrade request's sending to the 101's reading.
    handshake_us: u64,
    received: u64,
    /// Messages whose `n` or `ts` was not the next of the script, or not a stamp.
    mismatches: u64,
    /// Messages that arrived before their time counted from the 101's reading
    /// (recorded in `lateness_101` as 0).
    early: u64,
    /// The most negative of those, in microseconds (0 if none was early).
    earliest_us: i64,
    disconnected: bool,
    close_failed: bool,
    /// Against the start taken as the upgrade request left: never less than the
    /// real lateness.
    lateness: Histogram<u64>,
    /// Against the start taken as the 101 was read: at most the handshake less.
    lateness_101: Histogram<u64>,
    /// `lateness` of the messages that arrived once every client had connected.
    steady: Histogram<u64>,
    /// Every message's `lateness`, in order: less the client's smallest, it is free
    /// of the start's skew (see `relative`).
    all: Vec<u32>,
    samples: Vec<String>,
}

impl Outcome {
    fn sample(&mut self, what: impl FnOnce() -> String) {
        if self.samples.len() < MAX_SAMPLES {
            self.samples.push(what());
        }
    }
}

/// tokio-tungstenite zero-fills its whole read buffer (128 KiB by default) before
/// every socket read; these messages are 30 bytes, so 4 KiB is plenty and keeps the
/// client from spending its core clearing memory.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4 << 10).write_buffer_size(4 << 10)
}

/// What every client shares: the connect gate and the run's timeline.
struct Shared {
    url: Arc<str>,
    schedule: Arc<[u64]>,
    grace: Duration,
    gate: Semaphore,
    clients: usize,
    connected: AtomicUsize,
    /// Clients whose task has ended.
    finished: AtomicUsize,
    /// Set once every client has connected: the connect storm is over.
    all_connected: AtomicBool,
    epoch: Instant,
    /// Per second of the run (from `epoch`), by arrival: the most late message's
    /// lateness from the 101 in microseconds, and how many were later than `late_us`.
    worst: Box<[AtomicU64]>,
    over: Box<[AtomicU64]>,
    /// Per second: the client runtime's own worst timer lag, in microseconds.
    lag: Box<[AtomicU64]>,
    late_us: u64,
}

impl Shared {
    fn note(&self, now: Instant, late_us: u64) {
        let second = (now.saturating_duration_since(self.epoch).as_secs() as usize).min(self.worst.len() - 1);
        self.worst[second].fetch_max(late_us, Ordering::Relaxed);
        if late_us > self.late_us {
            self.over[second].fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn client(id: usize, shared: Arc<Shared>) -> Outcome {
    let Shared { url, schedule, grace, .. } = &*shared;
    let grace = *grace;
    let mut out = Outcome {
        connected: false,
        handshake_us: 0,
        received: 0,
        mismatches: 0,
        early: 0,
        earliest_us: 0,
        disconnected: false,
        close_failed: false,
        lateness: histogram(),
        lateness_101: histogram(),
        steady: histogram(),
        all: Vec::with_capacity(shared.schedule.len()),
        samples: Vec::new(),
    };
    let permit = shared.gate.acquire().await.expect("the gate is never closed");
    // The TCP connect first, so the session's start can be taken as the upgrade
    // request leaves (see the top of this file).
    let handshake = async {
        let request = (&*url).into_client_request()?;
        let host = request.uri().host().unwrap_or("127.0.0.1").to_owned();
        let port = request.uri().port_u16().unwrap_or(80);
        let tcp = TcpStream::connect((host.as_str(), port)).await?;
        tcp.set_nodelay(true)?;
        let sent = Instant::now();
        let (ws, _response) = tokio_tungstenite::client_async_with_config(request, tcp, Some(ws_config())).await?;
        Ok::<_, tokio_tungstenite::tungstenite::Error>((ws, sent, Instant::now()))
    };
    let (mut ws, start, upgraded) = match timeout(CONNECT_TIMEOUT, handshake).await {
        Ok(Ok(connected)) => connected,
        Ok(Err(e)) => {
            out.sample(|| format!("client {id}: connect: {e}"));
            return out;
        }
        Err(_) => {
            out.sample(|| format!("client {id}: no handshake within {CONNECT_TIMEOUT:?}"));
            return out;
        }
    };
    drop(permit);
    out.connected = true;
    if shared.connected.fetch_add(1, Ordering::Relaxed) + 1 == shared.clients {
        shared.all_connected.store(true, Ordering::Relaxed);
    }
    out.handshake_us = upgraded.duration_since(start).as_micros() as u64;
    let last = *schedule.last().expect("the schedule is not empty");
    let deadline = start + Duration::from_micros(last) + grace;
    while (out.received as usize) < schedule.len() {
        let m = match timeout_at(deadline, ws.next()).await {
            Err(_) => {
                let missing = schedule.len() as u64 - out.received;
                out.sample(|| format!("client {id}: {missing} messages missing {grace:?} after the last one's time"));
                break;
            }
            Ok(m) => m,
        };
        let text = match m {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Binary(_))) => {
                out.mismatches += 1;
                out.sample(|| format!("client {id}: a binary message"));
                continue;
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Close(f))) => {
                out.disconnected = true;
                out.sample(|| format!("client {id}: the server closed the session ({f:?})"));
                return out;
            }
            Some(Err(e)) => {
                out.disconnected = true;
                out.sample(|| format!("client {id}: {e}"));
                return out;
            }
            None => {
                out.disconnected = true;
                out.sample(|| format!("client {id}: the stream ended"));
                return out;
            }
        };
        // Read the clock first: parsing is ours, not the mock's.
        let now = Instant::now();
        let seq = out.received;
        out.received += 1;
        let stamp = match serde_json::from_str::<Stamp>(text.as_str()) {
            Ok(s) => s,
            Err(e) => {
                out.mismatches += 1;
                out.sample(|| format!("client {id}, message {seq}: not a stamp ({e}): {}", text.as_str()));
                continue;
            }
        };
        let ts = ms_to_us(stamp.ts);
        if stamp.n != seq || schedule.get(seq as usize) != Some(&ts) {
            out.mismatches += 1;
            out.sample(|| format!("client {id}, message {seq}: got n={} ts={}ms", stamp.n, stamp.ts));
        }
        let due = start + Duration::from_micros(ts);
        // Never negative: `start` is before the mock's own.
        let late_us = now.saturating_duration_since(due).as_micros() as u64;
        out.lateness.saturating_record(late_us);
        out.all.push(late_us.min(u64::from(u32::MAX)) as u32);
        if shared.all_connected.load(Ordering::Relaxed) {
            out.steady.saturating_record(late_us);
        }
        // The same against the 101's arrival, which is after the mock's start: this
        // one can be early, by up to the time the 101 took to be read.
        let due = upgraded + Duration::from_micros(ts);
        if now < due {
            out.early += 1;
            out.earliest_us = out.earliest_us.min(-(due.duration_since(now).as_micros() as i64));
        }
        let late_101_us = now.saturating_duration_since(due).as_micros() as u64;
        out.lateness_101.saturating_record(late_101_us);
        shared.note(now, late_101_us);
    }
    let close = async {
        let bye = CloseFrame { code: CloseCode::Normal, reason: Utf8Bytes::from_static("") };
        ws.close(Some(bye)).await?;
        while let Some(m) = ws.next().await {
            m?;
        }
        Ok::<(), tokio_tungstenite::tungstenite::Error>(())
    };
    match timeout(CLOSE_WAIT, close).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            out.close_failed = true;
            out.sample(|| format!("client {id}: close handshake: {e}"));
        }
        Err(_) => {
            out.close_failed = true;
            out.sample(|| format!("client {id}: no close answer within {CLOSE_WAIT:?}"));
        }
    }
    out
}

/// This process's CPU time (user + system) in seconds, from `/proc/self/stat`
/// (Linux, 100 ticks a second); `None` elsewhere.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (u64, u64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
    Some((utime + stime) as f64 / 100.0)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.clients == 0 || args.concurrency == 0 {
        eprintln!("tt-schedule: --clients and --concurrency must be at least 1");
        return ExitCode::from(2);
    }
    if !(args.grace >= 0.0 && args.grace.is_finite()) {
        eprintln!("tt-schedule: --grace must be 0 or more seconds");
        return ExitCode::from(2);
    }
    let schedule: Arc<[u64]> = match read_schedule(&args.script) {
        Ok(s) => s.into(),
        Err(e) => {
            eprintln!("tt-schedule: {e}");
            return ExitCode::from(2);
        }
    };
    let threads =
        args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get));
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tt-schedule: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (summary, failures) = rt.block_on(run(args, schedule, threads));
    println!("{summary}");
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("tt-schedule: FAILED: {}", failures.join(", "));
        ExitCode::FAILURE
    }
}

async fn run(args: Args, schedule: Arc<[u64]>, threads: usize) -> (serde_json::Value, Vec<String>) {
    let grace = Duration::from_secs_f64(args.grace);
    // Long enough for the connects, the script and its grace.
    let seconds = 60 + (schedule.last().copied().unwrap_or(0) / 1_000_000) as usize + grace.as_secs() as usize;
    let cpu_before = cpu_seconds();
    let began = Instant::now();
    let shared = Arc::new(Shared {
        url: args.url.as_str().into(),
        schedule: schedule.clone(),
        grace,
        gate: Semaphore::new(args.concurrency),
        clients: args.clients,
        connected: AtomicUsize::new(0),
        finished: AtomicUsize::new(0),
        all_connected: AtomicBool::new(false),
        epoch: began,
        worst: (0..seconds).map(|_| AtomicU64::new(0)).collect(),
        over: (0..seconds).map(|_| AtomicU64::new(0)).collect(),
        lag: (0..seconds).map(|_| AtomicU64::new(0)).collect(),
        late_us: ms_to_us(args.late_ms),
    });
    // The client's own health: how late a 1 ms sleep on its runtime wakes. A busy
    // client reads late, and that would count against the mock.
    let probe = tokio::spawn({
        let shared = shared.clone();
        async move {
            let mut lag = histogram();
            while shared.finished.load(Ordering::Relaxed) < shared.clients {
                let due = Instant::now() + Duration::from_millis(1);
                tokio::time::sleep_until(due).await;
                let now = Instant::now();
                let late = now.saturating_duration_since(due).as_micros() as u64;
                lag.saturating_record(late);
                let second = (due.saturating_duration_since(shared.epoch).as_secs() as usize).min(shared.lag.len() - 1);
                shared.lag[second].fetch_max(late, Ordering::Relaxed);
            }
            lag
        }
    });
    let mut clients = JoinSet::new();
    for id in 0..args.clients {
        clients.spawn(client(id, shared.clone()));
    }
    let (mut connected, mut received, mut mismatches, mut early) = (0u64, 0u64, 0u64, 0u64);
    let (mut disconnects, mut close_errors, mut earliest_us) = (0u64, 0u64, 0i64);
    let mut lateness = histogram();
    let mut lateness_101 = histogram();
    let mut steady = histogram();
    let mut relative = histogram();
    let mut handshakes = histogram();
    let mut samples = Vec::new();
    while let Some(joined) = clients.join_next().await {
        shared.finished.fetch_add(1, Ordering::Relaxed);
        let o = match joined {
            Ok(o) => o,
            Err(e) => {
                disconnects += 1;
                samples.push(format!("a client task failed: {e}"));
                continue;
            }
        };
        if o.connected {
            connected += 1;
            handshakes.saturating_record(o.handshake_us);
        }
        received += o.received;
        mismatches += o.mismatches;
        early += o.early;
        earliest_us = earliest_us.min(o.earliest_us);
        disconnects += u64::from(o.disconnected);
        close_errors += u64::from(o.close_failed);
        let _ = lateness.add(&o.lateness);
        let _ = lateness_101.add(&o.lateness_101);
        let _ = steady.add(&o.steady);
        let least = o.all.iter().copied().min().unwrap_or(0);
        for &l in &o.all {
            relative.saturating_record(u64::from(l - least));
        }
        for s in o.samples {
            if samples.len() < MAX_SAMPLES {
                samples.push(s);
            }
        }
    }
    let wall_s = began.elapsed().as_secs_f64();
    let lag = probe.await.unwrap_or_else(|_| histogram());
    let cpu_s = cpu_before.zip(cpu_seconds()).map(|(a, b)| b - a);
    let connect_errors = args.clients as u64 - connected;
    let expected = args.clients as u64 * schedule.len() as u64;
    let lost = expected.saturating_sub(received);

    let mut failures = Vec::new();
    for (n, what) in [
        (connect_errors, "clients failed to connect"),
        (lost, "messages lost"),
        (mismatches, "messages out of order or not the script's"),
        (disconnects, "clients disconnected during the run"),
        (close_errors, "close handshakes failed"),
    ] {
        if n > 0 {
            failures.push(format!("{n} {what}"));
        }
    }
    let ms = |us: u64| us as f64 / 1000.0;
    let q = |h: &Histogram<u64>, q: f64| if h.is_empty() { 0.0 } else { ms(h.value_at_quantile(q)) };
    let summary = serde_json::json!({
        "kind": "schedule",
        "client": "tokio-tungstenite 0.30",
        "url": args.url,
        "clients": args.clients,
        "connected": connected,
        "connect_errors": connect_errors,
        "concurrency": args.concurrency,
        "handshake_ms": { "p50": q(&handshakes, 0.5), "p99": q(&handshakes, 0.99), "max": ms(handshakes.max()) },
        "script_lines": schedule.len(),
        "script_last_ms": ms(*schedule.last().unwrap_or(&0)),
        "messages_expected": expected,
        "messages_received": received,
        "lost": lost,
        "mismatches": mismatches,
        "disconnects": disconnects,
        "close_errors": close_errors,
        "lateness_ms": {
            "count": lateness.len(),
            "p50": q(&lateness, 0.50),
            "p90": q(&lateness, 0.90),
            "p99": q(&lateness, 0.99),
            "p999": q(&lateness, 0.999),
            "max": ms(lateness.max()),
            "mean": (lateness.mean()).round() / 1000.0,
        },
        "lateness_from_101_ms": {
            "p50": q(&lateness_101, 0.50),
            "p99": q(&lateness_101, 0.99),
            "p999": q(&lateness_101, 0.999),
            "max": ms(lateness_101.max()),
        },
        // Each message's lateness less its client's smallest: the skew of the start
        // (a constant per client) cancels; what is left understates the real
        // lateness by the client's best message's, which a timer of 1 ms keeps
        // around a ms.
        "relative_lateness_ms": {
            "p50": q(&relative, 0.50),
            "p99": q(&relative, 0.99),
            "p999": q(&relative, 0.999),
            "max": ms(relative.max()),
        },
        "steady_lateness_ms": {
            "count": steady.len(),
            "p50": q(&steady, 0.50),
            "p99": q(&steady, 0.99),
            "p999": q(&steady, 0.999),
            "max": ms(steady.max()),
        },
        "by_second": {
            "late_ms": args.late_ms,
            "worst_ms": shared.worst.iter().map(|w| ms(w.load(Ordering::Relaxed))).collect::<Vec<_>>(),
            "over": shared.over.iter().map(|o| o.load(Ordering::Relaxed)).collect::<Vec<_>>(),
            "client_lag_ms": shared.lag.iter().map(|l| ms(l.load(Ordering::Relaxed))).collect::<Vec<_>>(),
        },
        "early": early,
        "earliest_ms": earliest_us as f64 / 1000.0,
        "wall_s": wall_s,
        "client_threads": threads,
        "client_timer_lag_ms": { "p50": q(&lag, 0.5), "p99": q(&lag, 0.99), "p999": q(&lag, 0.999), "max": ms(lag.max()) },
        "client_cpu_s": cpu_s,
        "samples": samples,
    });
    (summary, failures)
}
