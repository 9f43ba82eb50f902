//! `tt-load URL [-c N] [-k K] [-s S] [--duration D] [--warmup W] [--binary]`: echo
//! round trips through a WebSocket client wsgate did not write (tokio-tungstenite).
//!
//! `wsgate bench echo` and wsgate's servers share one codec, so a mistake in it is
//! made on both ends and cancels out (a 101 that tungstenite refuses went unnoticed
//! that way). This client measures the same thing with tungstenite's handshake,
//! framing and masking: N connections, K messages in flight on each, S-byte payloads,
//! for D seconds after a W-second warm-up; every echo checked byte for byte. It prints
//! one JSON object shaped like `wsgate bench echo --json` (`msgs_per_sec`,
//! `latency_us.p50/p99`, `errors`, `lost`) and exits 1 on any error, loss or failed
//! connection.

mod conn;
mod payload;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::conn::{MAX_SAMPLES, Plan};

/// A handshake (TCP connect and upgrade) that takes longer failed: a server that
/// accepts and never answers must fail the run, not hang it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
use crate::payload::Pattern;

#[derive(Debug, Parser)]
#[command(name = "tt-load", about = "Echo load through tokio-tungstenite, verified byte for byte")]
struct Args {
    /// ws:// URL of an echo endpoint.
    url: String,
    /// Connections.
    #[arg(short, long, default_value_t = 64)]
    connections: usize,
    /// Messages in flight per connection.
    #[arg(short = 'k', long, default_value_t = 1)]
    in_flight: usize,
    /// Payload size in bytes.
    #[arg(short, long, default_value_t = 64)]
    size: usize,
    /// Seconds of measured load.
    #[arg(short, long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Binary messages (default: text).
    #[arg(long)]
    binary: bool,
    /// Runtime worker threads (default: the CPUs this process may run on; 1 runs a
    /// single-threaded runtime).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.connections == 0 || args.in_flight == 0 {
        eprintln!("tt-load: --connections and --in-flight must be at least 1");
        return ExitCode::from(2);
    }
    if !(args.duration > 0.0 && args.duration.is_finite() && args.warmup >= 0.0 && args.warmup.is_finite()) {
        eprintln!("tt-load: --duration must be > 0 and --warmup >= 0 seconds");
        return ExitCode::from(2);
    }
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
            eprintln!("tt-load: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (summary, failures) = rt.block_on(run(args));
    println!("{summary}");
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("tt-load: FAILED: {}", failures.join(", "));
        ExitCode::FAILURE
    }
}

/// tokio-tungstenite's defaults are sized for a few busy connections: a 128 KiB read
/// buffer allocated up front per connection — and zero-filled up to that size before
/// every socket read, whatever arrives — and a 128 KiB write buffer that only goes
/// out once full or flushed. Here both hold one full pipeline (K frames of S bytes
/// plus headers), at least 4 KiB: a burst of K messages leaves in one write at the
/// flush, K echoes arrive in one read, and a read does not clear 128 KiB to take in
/// 70 bytes. The unlimited `max_write_buffer_size` stays: at most K messages are ever
/// queued.
fn ws_config(size: usize, in_flight: usize) -> WebSocketConfig {
    let pipeline = in_flight.saturating_mul(size + 14);
    let buffer = pipeline.checked_next_power_of_two().unwrap_or(usize::MAX).clamp(4 << 10, 128 << 10);
    WebSocketConfig::default().read_buffer_size(buffer).write_buffer_size(buffer)
}

async fn run(args: Args) -> (serde_json::Value, Vec<String>) {
    let config = ws_config(args.size, args.in_flight);
    let mut samples = Vec::new();
    let mut conns = Vec::with_capacity(args.connections);
    let mut connect_errors = 0u64;
    let connect_started = Instant::now();
    // Everything connects first, so handshakes are not measured as round trips.
    for _ in 0..args.connections {
        let handshake = tokio_tungstenite::connect_async_with_config(args.url.as_str(), Some(config), true);
        let failure = match tokio::time::timeout(CONNECT_TIMEOUT, handshake).await {
            Ok(Ok((ws, _response))) => {
                conns.push(ws);
                continue;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no handshake within {CONNECT_TIMEOUT:?}"),
        };
        connect_errors += 1;
        if samples.len() < MAX_SAMPLES {
            samples.push(format!("connect: {failure}"));
        }
    }
    let connect_s = connect_started.elapsed().as_secs_f64();
    let connected = conns.len() as u64;

    let epoch = Instant::now();
    let measure_from = epoch + Duration::from_secs_f64(args.warmup);
    let plan = Arc::new(Plan {
        pattern: Pattern::new(args.size, !args.binary),
        in_flight: args.in_flight,
        epoch,
        measure_from,
        stop_at: measure_from + Duration::from_secs_f64(args.duration),
    });
    let mut workers = JoinSet::new();
    for (i, ws) in conns.into_iter().enumerate() {
        let plan = Arc::clone(&plan);
        workers.spawn(async move { conn::run(i as u64, ws, &plan).await });
    }

    let (mut sent, mut echoed, mut measured, mut bytes) = (0u64, 0u64, 0u64, 0u64);
    let (mut mismatches, mut disconnects, mut close_errors) = (0u64, 0u64, 0u64);
    let mut latency = conn::histogram();
    let mut last_echo: Option<Instant> = None;
    while let Some(joined) = workers.join_next().await {
        let o = match joined {
            Ok(o) => o,
            Err(e) => {
                disconnects += 1;
                samples.push(format!("a connection task failed: {e}"));
                continue;
            }
        };
        sent += o.sent;
        echoed += o.echoed;
        measured += o.measured;
        bytes += o.bytes;
        mismatches += o.mismatches;
        disconnects += u64::from(o.disconnected);
        close_errors += u64::from(o.close_failed);
        let _ = latency.add(&o.latency);
        last_echo = last_echo.max(o.last_echo);
        for s in o.samples {
            if samples.len() < MAX_SAMPLES {
                samples.push(s);
            }
        }
    }
    let lost = sent.saturating_sub(echoed);
    let elapsed = last_echo.map_or(0.0, |t| t.saturating_duration_since(measure_from).as_secs_f64());
    let per_sec = |n: f64| if elapsed > 0.0 { n / elapsed } else { 0.0 };
    let quantile = |q: f64| if latency.is_empty() { 0 } else { latency.value_at_quantile(q) };

    let mut failures = Vec::new();
    for (n, what) in [
        (connect_errors, "connections failed"),
        (mismatches, "echoes differed from what was sent"),
        (lost, "messages lost"),
        (disconnects, "connections failed during the run"),
        (close_errors, "close handshakes failed"),
    ] {
        if n > 0 {
            failures.push(format!("{n} {what}"));
        }
    }
    if measured == 0 && failures.is_empty() {
        failures.push("no echo was measured".to_owned());
    }
    let summary = serde_json::json!({
        "kind": "echo",
        "client": "tokio-tungstenite 0.30",
        "url": args.url,
        "connections": args.connections,
        "connected": connected,
        "connect_errors": connect_errors,
        "connect_s": connect_s,
        "in_flight": args.in_flight,
        "size": args.size,
        "binary": args.binary,
        "warmup_s": args.warmup,
        "duration_s": args.duration,
        "read_buffer_size": config.read_buffer_size,
        "write_buffer_size": config.write_buffer_size,
        "messages_sent": sent,
        "messages_received": echoed,
        "messages_measured": measured,
        // `errors` and `lost` mean what they mean in `wsgate bench echo --json`.
        "errors": mismatches,
        "lost": lost,
        "disconnects": disconnects,
        "close_errors": close_errors,
        "bytes": bytes,
        "elapsed_s": elapsed,
        "msgs_per_sec": per_sec(measured as f64),
        "mib_per_sec": per_sec(bytes as f64) / (1024.0 * 1024.0),
        "latency_us": {
            "count": latency.len(),
            "min": if latency.is_empty() { 0 } else { latency.min() },
            "p50": quantile(0.50),
            "p90": quantile(0.90),
            "p99": quantile(0.99),
            "p999": quantile(0.999),
            "max": latency.max(),
            "mean": (latency.mean() * 10.0).round() / 10.0,
        },
        "samples": samples,
    });
    (summary, failures)
}
