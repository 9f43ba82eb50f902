//! Opening a run's connections: the same request for every connection (headers,
//! subprotocols, TLS, deadline), each bound to its share of the source addresses, with
//! a cap on concurrent handshakes so a run of 100 000 connections does not open them
//! all at once and measure the server's SYN backlog instead.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use http::HeaderMap;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use url::Url;
use wsgate_protocol::{CloseCode, ConnectError, ConnectRequest, Role, Transport, WsConfig, WsStream, connect};

use crate::args::{ConnectArgs, positive_seconds, rate};
use crate::error::BenchError;
use crate::report::{LatencyStats, Summary, latency_histogram, record};
use crate::source::SourceIps;

/// A bench connection.
pub(crate) type Ws = WsStream<Transport>;

/// Handshakes in flight at once, at most.
pub(crate) const MAX_HANDSHAKES: usize = 256;

/// How long a finishing connection waits for the peer's close frame.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Builds the request for each connection of a run.
#[derive(Debug)]
pub(crate) struct Dialer {
    base: ConnectRequest,
    sources: Option<SourceIps>,
}

impl Dialer {
    pub(crate) fn new(url: &Url, args: &ConnectArgs, sources: Option<SourceIps>) -> Result<Self, BenchError> {
        let mut base = ConnectRequest::new(url.clone());
        base.timeout = positive_seconds("--connect-timeout", args.connect_timeout)?;
        let mut headers = HeaderMap::new();
        for h in &args.headers {
            headers.append(h.name.clone(), h.value.clone());
        }
        base.headers = headers;
        base.subprotocols = args.subprotocols.clone();
        if matches!(url.scheme(), "wss" | "https") {
            base.tls = Some(wsgate_protocol::tls::client_config(args.ca_file.as_deref())?);
        }
        Ok(Self { base, sources })
    }

    /// The request of connection `index`.
    fn request(&self, index: usize) -> ConnectRequest {
        let mut req = self.base.clone();
        req.local_addr = self.sources.map(|s| s.nth(index));
        req
    }

    /// Opens connection `index`.
    pub(crate) async fn open(&self, index: usize) -> Result<Ws, ConnectError> {
        let c = connect(self.request(index)).await?;
        Ok(WsStream::new(c.transport, Role::Client, WsConfig::default(), c.leftover))
    }
}

/// What the handshakes of a run came to.
#[derive(Debug)]
pub(crate) struct ConnectStats {
    pub(crate) connected: u64,
    pub(crate) failed: u64,
    by_kind: BTreeMap<String, u64>,
    first_error: Option<ConnectError>,
    handshake_us: Histogram<u64>,
    started: Instant,
    elapsed: Duration,
}

impl ConnectStats {
    pub(crate) fn new() -> Self {
        Self {
            connected: 0,
            failed: 0,
            by_kind: BTreeMap::new(),
            first_error: None,
            handshake_us: latency_histogram(1),
            started: Instant::now(),
            elapsed: Duration::ZERO,
        }
    }

    /// Counts one handshake; a failure's error is kept if it is the first.
    fn record<T>(&mut self, result: Result<T, ConnectError>, took: Duration) -> Option<T> {
        match result {
            Ok(ws) => {
                self.connected += 1;
                record(&mut self.handshake_us, took.as_micros() as u64);
                Some(ws)
            }
            Err(e) => {
                self.failed += 1;
                *self.by_kind.entry(e.kind().to_owned()).or_default() += 1;
                self.first_error.get_or_insert(e);
                None
            }
        }
    }

    pub(crate) fn finish(&mut self) {
        self.elapsed = self.started.elapsed();
    }

    /// Fails the run when nothing connected: there is nothing to measure.
    pub(crate) fn require_some(&mut self, url: &Url) -> Result<(), BenchError> {
        match (self.connected, self.first_error.take()) {
            (0, Some(source)) => Err(BenchError::AllConnectsFailed {
                url: url.to_string(),
                attempted: self.failed,
                kind: source.kind(),
                source: Box::new(source),
            }),
            _ => Ok(()),
        }
    }

    pub(crate) fn apply(&self, s: &mut Summary) {
        s.connected = self.connected;
        s.connect_errors = self.failed;
        s.connect_errors_by_kind = self.by_kind.clone();
        s.connect_s = (self.elapsed.as_secs_f64() * 1000.0).round() / 1000.0;
        s.connect_latency_us = LatencyStats::from_histogram(&self.handshake_us);
    }
}

/// Opens connections `0..n`, at most [`MAX_HANDSHAKES`] at a time and, with `ramp`,
/// no more than `ramp` new ones per second. Each outcome goes to `on_open` as soon as
/// it is known, with its index (`None` for a failure, which `stats` counts). Returns `false` if `shutdown` interrupted it (pending
/// handshakes are abandoned).
pub(crate) async fn open_all(
    dialer: &Arc<Dialer>,
    n: usize,
    ramp: Option<f64>,
    stats: &mut ConnectStats,
    shutdown: &CancellationToken,
    mut on_open: impl FnMut(usize, Option<Ws>),
) -> Result<bool, BenchError> {
    let mut ticker = match ramp {
        Some(r) => {
            let period = Duration::from_secs_f64(1.0 / rate("--ramp", r)?);
            let mut t = tokio::time::interval(period);
            // A late tick is a late connect, not a reason to start a burst of them.
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
            Some(t)
        }
        None => None,
    };
    let mut pending = JoinSet::new();
    let mut next = 0usize;
    loop {
        let can_start = next < n && pending.len() < MAX_HANDSHAKES;
        if !can_start && pending.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                pending.abort_all();
                stats.finish();
                return Ok(false);
            }
            Some(joined) = pending.join_next(), if !pending.is_empty() => {
                // A panicked handshake task is a bug, not a measurement; skip it.
                if let Ok((index, result, took)) = joined {
                    on_open(index, stats.record(result, took));
                }
            }
            _ = async {
                if let Some(t) = ticker.as_mut() {
                    t.tick().await;
                }
            }, if can_start => {
                let dialer = Arc::clone(dialer);
                let index = next;
                next += 1;
                pending.spawn(async move {
                    let started = Instant::now();
                    let result = dialer.open(index).await;
                    (index, result, started.elapsed())
                });
            }
        }
    }
    stats.finish();
    Ok(true)
}

/// Closes connections that will not be used (the run was interrupted, or cannot go on),
/// each with 1000 and within [`CLOSE_TIMEOUT`].
pub(crate) async fn close_all(conns: impl IntoIterator<Item = Ws>) {
    let mut set = JoinSet::new();
    for mut ws in conns {
        set.spawn(async move {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.close(CloseCode::NORMAL, "")).await;
        });
    }
    while set.join_next().await.is_some() {}
}

/// Raises the soft open-file limit to the hard limit (every connection is a file
/// descriptor; the usual soft limit of 1 024 would cap a run long before the server
/// does). Returns the limit now in force.
pub(crate) fn raise_fd_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX)
        .unwrap_or_else(|_| rlimit::Resource::NOFILE.get().map(|(soft, _)| soft).unwrap_or(u64::MAX))
}

/// Fails early when `n` connections cannot fit under the open-file limit, instead of
/// reporting thousands of "too many open files" connect errors.
pub(crate) fn check_fd_budget(flag: &'static str, n: usize) -> Result<(), BenchError> {
    /// Descriptors the process needs besides its connections (runtime, stdio, files).
    const RESERVE: u64 = 64;
    let limit = raise_fd_limit();
    if (n as u64).saturating_add(RESERVE) > limit {
        return Err(BenchError::invalid(
            flag,
            format!(
                "{n} connections need more file descriptors than the limit of {limit}; \
                 raise it (`ulimit -n`, or the hard limit in /etc/security/limits.conf) or open fewer"
            ),
        ));
    }
    Ok(())
}
