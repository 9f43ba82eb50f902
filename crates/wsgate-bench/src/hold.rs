//! `wsgate bench hold`: open many idle connections and keep them open.
//!
//! Used to find how many connections a server sustains and what each costs it (its
//! RSS divided by the count, measured at the moment `--ready-file` appears). Every
//! connection is a small task that does nothing but `recv` — which answers pings and
//! completes a close handshake the server starts — until the hold ends, then closes
//! with 1000. An idle `WsStream` keeps no buffers, so the bench itself stays small at
//! 100 000 connections.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::{Host, Url};
use wsgate_protocol::{CloseCode, Message};

use crate::args::{self, HoldArgs};
use crate::connector::{self, CLOSE_TIMEOUT, ConnectStats, Dialer, Ws};
use crate::error::BenchError;
use crate::progress::{Progress, Tally};
use crate::report::{BenchKind, Summary};
use crate::source::SourceIps;

/// Counters the connection tasks update once each (on open, drop or message), never
/// in a loop.
#[derive(Debug, Default)]
struct Held {
    open: Tally,
    peak: Tally,
    failed: Tally,
    dropped: Tally,
    messages: Tally,
}

pub(crate) async fn run(a: HoldArgs, shutdown: CancellationToken) -> Result<Summary, BenchError> {
    args::target("URL", &a.url)?;
    let connections = args::count("--connections", a.connections, args::MAX_CONNECTIONS)?;
    let hold_for = args::seconds("--duration", a.duration)?;
    let ramp = a.ramp.map(|r| args::rate("--ramp", r)).transpose()?;
    connector::check_fd_budget("--connections", connections)?;
    let sources = a.source_ips.or_else(|| default_sources(&a.url));
    let dialer = Arc::new(Dialer::new(&a.url, &a.connect, sources)?);

    let held = Arc::new(Held::default());
    let tracker = TaskTracker::new();
    let stop = CancellationToken::new();
    let progress = {
        let held = Arc::clone(&held);
        Progress::start(
            !a.no_progress,
            Some(connections as u64),
            "{spinner} [{elapsed_precise}] [{wide_bar}] {pos}/{len} open · {msg}",
            move |bar| {
                bar.set_position(held.open.get());
                bar.set_message(format!("{} failed · {} dropped", held.failed.get(), held.dropped.get()));
            },
        )
    };

    let mut stats = ConnectStats::new();
    let finished = connector::open_all(&dialer, connections, ramp, &mut stats, &shutdown, |_, ws| match ws {
        Some(ws) => {
            let now_open = held.open.add(1);
            held.peak.max(now_open);
            tracker.spawn(hold_one(ws, stop.clone(), Arc::clone(&held)));
        }
        None => {
            held.failed.add(1);
        }
    })
    .await;
    let finished = match finished.and_then(|f| stats.require_some(&a.url).map(|()| f)) {
        Ok(f) => f,
        Err(e) => {
            progress.finish().await;
            return Err(e);
        }
    };

    let mut summary = Summary::new(BenchKind::Hold, &a.url, connections, 0);
    stats.apply(&mut summary);
    let held_since = Instant::now();
    let mut ready_error = None;
    if finished {
        if let Some(path) = &a.ready_file
            && let Err(e) = write_ready_file(path, &summary, held.open.get()).await
        {
            ready_error = Some(e);
        }
        if ready_error.is_none() {
            if hold_for.is_zero() {
                shutdown.cancelled().await;
            } else {
                tokio::select! {
                    _ = shutdown.cancelled() => summary.interrupted = true,
                    _ = tokio::time::sleep(hold_for) => {}
                }
            }
        }
    } else {
        summary.interrupted = true;
    }
    let held_for = held_since.elapsed();

    // Close every connection with 1000 and wait for the handshakes, within a bound.
    stop.cancel();
    tracker.close();
    let _ = tokio::time::timeout(CLOSE_TIMEOUT + Duration::from_secs(1), tracker.wait()).await;
    progress.finish().await;
    if let Some(e) = ready_error {
        return Err(e);
    }

    summary.peak_connections = held.peak.get();
    summary.disconnects = held.dropped.get();
    summary.messages_received = held.messages.get();
    summary.set_elapsed(held_for.as_secs_f64(), 0);
    summary.source_ips = sources.map(|s| s.to_string());
    Ok(summary)
}

/// 127.0.0.1-127.0.0.254 when the target is a 127.x address: one source address runs
/// out of ephemeral ports near 28 000 connections to one destination.
fn default_sources(url: &Url) -> Option<SourceIps> {
    match url.host() {
        Some(Host::Ipv4(ip)) if IpAddr::V4(ip).is_loopback() => Some(SourceIps::loopback_default()),
        _ => None,
    }
}

/// Writes `ready connected=N failed=F connect_s=S` atomically (to a temporary name,
/// then renamed), so a script polling for the file never reads half a line.
async fn write_ready_file(path: &Path, s: &Summary, open: u64) -> Result<(), BenchError> {
    let line = format!(
        "ready connected={} failed={} open={open} connect_s={:.3}\n",
        s.connected, s.connect_errors, s.connect_s
    );
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let err = |source| BenchError::ReadyFile { path: path.to_owned(), source };
    tokio::fs::write(&tmp, line).await.map_err(err)?;
    tokio::fs::rename(&tmp, path).await.map_err(err)
}

/// Keeps one connection open until `stop`, then closes it with 1000.
async fn hold_one(mut ws: Ws, stop: CancellationToken, held: Arc<Held>) {
    let ended_by_server = tokio::select! {
        _ = stop.cancelled() => false,
        () = read_until_closed(&mut ws, &held) => true,
    };
    if ended_by_server {
        held.dropped.add(1);
        ws.flush_best_effort().await;
    } else {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.close(CloseCode::NORMAL, "")).await;
    }
    held.open.sub(1);
}

/// Reads (answering pings) until the server closes or the connection fails.
async fn read_until_closed(ws: &mut Ws, held: &Held) {
    loop {
        match ws.recv().await {
            Ok(Message::Close(_)) | Err(_) => return,
            Ok(Message::Text(_) | Message::Binary(_)) => {
                held.messages.add(1);
            }
            Ok(_) => {}
        }
    }
}
