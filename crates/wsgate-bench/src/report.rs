//! What a run measured, and how it is shown: a human table or one JSON object.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Which bench produced a summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchKind {
    Echo,
    Fanout,
    Hold,
}

impl BenchKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Echo => "echo",
            Self::Fanout => "fanout",
            Self::Hold => "hold",
        }
    }
}

/// Percentiles of a latency distribution, in microseconds. All zero when nothing was
/// measured (`count` says so).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LatencyStats {
    pub count: u64,
    pub min: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl LatencyStats {
    pub(crate) fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            min: h.min(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: (h.mean() * 10.0).round() / 10.0,
        }
    }
}

/// A latency histogram in microseconds, one per connection (merged at the end, so the
/// hot path shares nothing). It starts small and grows to whatever latencies occur.
/// Three significant digits (0.1 %) up to 1 024 connections; beyond that two (1 %), to
/// keep thousands of per-connection histograms within a few KiB each.
pub(crate) fn latency_histogram(connections: usize) -> Histogram<u64> {
    let sigfig = if connections <= 1024 { 3 } else { 2 };
    Histogram::new(sigfig).expect("2 and 3 are valid significant-figure counts")
}

/// Records one value, growing the histogram to fit it (`saturating_record` would clamp
/// an outlier to the current range instead, silently hiding the worst latencies).
#[inline]
pub(crate) fn record(h: &mut Histogram<u64>, value: u64) {
    if h.record(value).is_err() {
        h.saturating_record(value);
    }
}

/// Adds `part` into `total`. `total` is auto-resizing, so the addition cannot run out
/// of range.
pub(crate) fn merge(total: &mut Histogram<u64>, part: &Histogram<u64>) {
    let _ = total.add(part);
}

/// Error descriptions kept for the summary.
pub(crate) const MAX_SAMPLES: usize = 5;

/// The outcome of a bench run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub kind: BenchKind,
    pub url: String,
    /// Connections attempted (subscribers for fan-out).
    pub connections: u64,
    /// Connections whose handshake succeeded.
    pub connected: u64,
    pub connect_errors: u64,
    /// Failed handshakes by class (`refused`, `timeout`, `http_status`, ...).
    pub connect_errors_by_kind: BTreeMap<String, u64>,
    /// Most connections open at the same time.
    pub peak_connections: u64,
    /// Connections that ended before the run did (closed by the server, reset, or a
    /// protocol error).
    pub disconnects: u64,
    /// Payload size in bytes.
    pub size: usize,
    pub messages_sent: u64,
    /// Echoes (echo) or deliveries, duplicates included (fan-out) that were measured.
    pub messages_received: u64,
    /// Messages the run meant to receive: connections × messages for an echo run by
    /// count, subscribers × messages for fan-out.
    pub expected: Option<u64>,
    /// Messages whose content was not what was sent (byte-for-byte check), or that
    /// could not have been sent.
    pub errors: u64,
    /// Sent but never answered (connection closed, or no echo within 5 s of the end of
    /// a `--duration` run) or never delivered (after the settle timeout). Not counted
    /// for an interrupted run: what was outstanding then was not waited for.
    pub lost: u64,
    /// Deliveries of a message a subscriber had already received (fan-out).
    pub duplicates: u64,
    /// Payload bytes received (measured messages only).
    pub bytes: u64,
    /// Payload bytes sent (measured messages only).
    pub bytes_sent: u64,
    /// Measured time: from the start of measurement to the last reply or delivery (to
    /// the end of holding, for hold).
    pub elapsed_s: f64,
    /// Time to open all connections.
    pub connect_s: f64,
    /// `messages_received / elapsed_s`: round trips/s for echo; deliveries/s for
    /// fan-out, over the time from the first publish to the last delivery.
    pub msgs_per_sec: f64,
    /// Received payload throughput, MiB/s.
    pub mib_per_sec: f64,
    /// The `--rate` asked for (total messages/s), if any: a `msgs_per_sec` below it
    /// means the target could not keep up.
    pub target_rate: Option<f64>,
    /// Round-trip (echo) or publish-to-delivery (fan-out) latency.
    pub latency_us: LatencyStats,
    /// Fan-out: per publication, publish → its last subscriber (the slowest of its
    /// deliveries); absent for echo and for runs too long to track.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_delivery_us: Option<LatencyStats>,
    /// Handshake time of the connections that opened (TCP + TLS + upgrade).
    pub connect_latency_us: LatencyStats,
    /// Local source addresses the connections were spread over, if any.
    pub source_ips: Option<String>,
    /// The run was stopped early (Ctrl-C); the figures cover what was measured.
    pub interrupted: bool,
    /// The first few errors, described.
    pub error_samples: Vec<String>,
}

impl Summary {
    pub(crate) fn new(kind: BenchKind, url: &url::Url, connections: usize, size: usize) -> Self {
        Self {
            kind,
            url: url.to_string(),
            connections: connections as u64,
            connected: 0,
            connect_errors: 0,
            connect_errors_by_kind: BTreeMap::new(),
            peak_connections: 0,
            disconnects: 0,
            size,
            messages_sent: 0,
            messages_received: 0,
            expected: None,
            errors: 0,
            lost: 0,
            duplicates: 0,
            bytes: 0,
            bytes_sent: 0,
            elapsed_s: 0.0,
            connect_s: 0.0,
            msgs_per_sec: 0.0,
            mib_per_sec: 0.0,
            target_rate: None,
            latency_us: LatencyStats::default(),
            last_delivery_us: None,
            connect_latency_us: LatencyStats::default(),
            source_ips: None,
            interrupted: false,
            error_samples: Vec::new(),
        }
    }

    /// Sets `elapsed_s` and the rates derived from it.
    pub(crate) fn set_elapsed(&mut self, secs: f64, counted_messages: u64) {
        self.elapsed_s = round3(secs);
        if secs > 0.0 {
            self.msgs_per_sec = (counted_messages as f64 / secs).round();
            self.mib_per_sec = round3(self.bytes as f64 / secs / (1024.0 * 1024.0));
        }
    }

    /// Why the run failed, if it did: any message that was wrong, lost or
    /// duplicated, or any connection that could not open. Empty for a clean run.
    /// `wsgate bench` exits non-zero when this is not empty, so a CI job that uses it
    /// fails on the first wrong echo instead of reporting it and passing.
    pub fn failures(&self) -> Vec<String> {
        let counts = [
            (self.errors, "messages were not what was sent"),
            (self.lost, "messages were lost"),
            (self.duplicates, "messages were delivered twice"),
            (self.connect_errors, "connections failed to open"),
        ];
        counts.iter().filter(|(n, _)| *n > 0).map(|(n, what)| format!("{n} {what}")).collect()
    }

    pub(crate) fn sample(&mut self, what: impl FnOnce() -> String) {
        if self.error_samples.len() < MAX_SAMPLES {
            self.error_samples.push(what());
        }
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// `1234567` → `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn latency_line(l: &LatencyStats) -> String {
    if l.count == 0 {
        return "-".to_owned();
    }
    format!(
        "p50 {} · p90 {} · p99 {} · p99.9 {} · max {} · mean {:.1}",
        thousands(l.p50),
        thousands(l.p90),
        thousands(l.p99),
        thousands(l.p999),
        thousands(l.max),
        l.mean
    )
}

/// The summary as printed: a human table, or one JSON object (one line).
pub fn render_summary(s: &Summary, json: bool) -> String {
    if json {
        // A struct of numbers, strings and maps with string keys always serializes.
        return serde_json::to_string(s).unwrap_or_default();
    }
    let mut out = String::new();
    let mut row = |label: &str, value: String| {
        let _ = writeln!(out, "  {label:<15} {value}");
    };
    let title =
        format!("wsgate bench {} {}{}", s.kind.name(), s.url, if s.interrupted { "  (interrupted)" } else { "" });

    let mut conn = format!(
        "{} of {} connected in {:.3} s · {} failed",
        thousands(s.connected),
        thousands(s.connections),
        s.connect_s,
        thousands(s.connect_errors)
    );
    if !s.connect_errors_by_kind.is_empty() {
        let kinds: Vec<String> = s.connect_errors_by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = write!(conn, " ({})", kinds.join(", "));
    }
    let _ = write!(conn, " · {} dropped", thousands(s.disconnects));
    row("connections", conn);

    match s.kind {
        BenchKind::Hold => {
            row("peak open", thousands(s.peak_connections));
            row("held", format!("{:.3} s", s.elapsed_s));
        }
        BenchKind::Echo | BenchKind::Fanout => {
            let received = if s.kind == BenchKind::Fanout { "delivered" } else { "received" };
            let mut msgs =
                format!("{} sent · {} {received}", thousands(s.messages_sent), thousands(s.messages_received));
            if let Some(e) = s.expected {
                let _ = write!(msgs, " of {} expected", thousands(e));
            }
            let _ = write!(msgs, " · {} errors · {} lost", thousands(s.errors), thousands(s.lost));
            if s.kind == BenchKind::Fanout {
                let _ = write!(msgs, " · {} duplicates", thousands(s.duplicates));
            }
            row("messages", msgs);
            row("payload", format!("{} bytes", thousands(s.size as u64)));
            row("elapsed", format!("{:.3} s", s.elapsed_s));
            let unit = if s.kind == BenchKind::Fanout { "deliveries/s" } else { "msgs/s" };
            let mut throughput = format!("{} {unit} · {:.2} MiB/s", thousands(s.msgs_per_sec as u64), s.mib_per_sec);
            if let Some(target) = s.target_rate {
                let _ = write!(throughput, " (--rate {})", thousands(target.round() as u64));
            }
            row("throughput", throughput);
            let label = if s.kind == BenchKind::Fanout { "delivery µs" } else { "round trip µs" };
            row(label, latency_line(&s.latency_us));
            if let Some(last) = &s.last_delivery_us {
                row("last delivery µs", latency_line(last));
            }
        }
    }
    row("handshake µs", latency_line(&s.connect_latency_us));
    if let Some(ips) = &s.source_ips {
        row("source addrs", ips.clone());
    }
    for e in &s.error_samples {
        row("error", e.clone());
    }
    format!("{title}\n{out}")
}

/// Prints the summary on stdout: a human table, or one JSON object with `json`.
pub fn print_summary(summary: &Summary, json: bool) {
    print!("{}", render_summary(summary, json));
    if json {
        println!();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_with_any_wrong_lost_or_refused_message_has_failures() {
        let url = url::Url::parse("ws://127.0.0.1:1/").unwrap_or_else(|e| panic!("{e}"));
        let clean = Summary::new(BenchKind::Echo, &url, 4, 64);
        assert!(clean.failures().is_empty());
        let mut bad = clean.clone();
        bad.errors = 5;
        bad.connect_errors = 1;
        assert_eq!(bad.failures(), ["5 messages were not what was sent", "1 connections failed to open"]);
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn latency_from_histogram() {
        let mut h = latency_histogram(1);
        for v in 1..=1000 {
            record(&mut h, v);
        }
        let l = LatencyStats::from_histogram(&h);
        assert_eq!((l.count, l.min, l.p50, l.max), (1000, 1, 500, 1000));
        assert_eq!(l.p99, 990);
        assert_eq!(LatencyStats::from_histogram(&latency_histogram(1)), LatencyStats::default());
        // outliers grow the histogram instead of being clamped
        record(&mut h, 5_000_000);
        assert_eq!(LatencyStats::from_histogram(&h).max, h.highest_equivalent(5_000_000));
        assert!(h.highest_equivalent(5_000_000) >= 5_000_000);
    }

    #[test]
    fn human_and_json() {
        let url = url::Url::parse("ws://127.0.0.1:1/").unwrap();
        let mut s = Summary::new(BenchKind::Echo, &url, 2, 64);
        s.messages_received = 10;
        s.bytes = 640;
        s.set_elapsed(2.0, 10);
        s.sample(|| "oops".into());
        let human = render_summary(&s, false);
        assert!(human.contains("5 msgs/s"), "{human}");
        assert!(human.contains("oops"));
        let v: serde_json::Value = serde_json::from_str(&render_summary(&s, true)).unwrap();
        assert_eq!(v["kind"], "echo");
        assert_eq!(v["msgs_per_sec"], 5.0);
    }
}
