//! What a relay route counts, as plain atomics the control plane reads at scrape
//! time: the data path adds, nobody locks.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// The clock deliveries are timed with (tokio's, so paused-time tests can drive it).
pub type Clock = tokio::time::Instant;

/// Upper bounds of the fan-out latency buckets, in seconds: publish → written to the
/// member's connection buffer.
pub const LATENCY_BUCKETS: [f64; 12] =
    [50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 1.0];

/// A fixed-bucket histogram (Prometheus' cumulative `le` buckets are derived when read).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = LATENCY_BUCKETS.iter().position(|b| s <= *b).unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_nanos.fetch_add(d.as_nanos().min(u128::from(u64::MAX)) as u64, Relaxed);
    }

    /// Per-bucket counts (not cumulative; the last is `+Inf`) and the sum in seconds.
    pub fn read(&self) -> ([u64; LATENCY_BUCKETS.len() + 1], f64) {
        let counts = std::array::from_fn(|i| self.buckets[i].load(Relaxed));
        (counts, self.sum_nanos.load(Relaxed) as f64 / 1e9)
    }
}

/// One relay route's counters; kept by the hub across reloads, by route name.
#[derive(Debug, Default)]
pub struct RouteStats {
    /// Clients connected now (a gauge).
    pub connected: AtomicI64,
    pub connections: AtomicU64,
    pub disconnections: AtomicU64,
    /// Data messages received from this route's clients.
    pub messages: AtomicU64,
    /// Messages handed to members' queues (one per recipient).
    pub deliveries: AtomicU64,
    pub dropped_oldest: AtomicU64,
    pub dropped_newest: AtomicU64,
    /// Members closed with 1013 because their queue overflowed.
    pub slow_disconnects: AtomicU64,
    /// Members closed with 1008 for sending too fast.
    pub rate_limited: AtomicU64,
    /// Envelope frames answered with an error frame.
    pub bad_frames: AtomicU64,
    /// Upgrades refused: bad or missing token, room not allowed, too many per IP.
    pub refused: AtomicU64,
    pub fanout: Histogram,
}

impl RouteStats {
    pub fn dropped(&self, policy: crate::Overflow) -> u64 {
        match policy {
            crate::Overflow::DropOldest => self.dropped_oldest.load(Relaxed),
            crate::Overflow::DropNewest => self.dropped_newest.load(Relaxed),
            crate::Overflow::Disconnect => self.slow_disconnects.load(Relaxed),
        }
    }
}
