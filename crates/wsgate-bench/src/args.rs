//! The `wsgate bench` command line: one `clap` struct per mode, plus the checks that
//! turn a flag's value into something a run can use (or a message naming the flag and
//! the fix).

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use url::Url;

use crate::error::BenchError;
use crate::source::SourceIps;

/// `wsgate bench echo|fanout|hold`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum BenchCommand {
    /// Round trips: every connection sends messages to an echo endpoint, checks each
    /// echo byte for byte and measures its round-trip latency.
    Echo(EchoArgs),
    /// Fan-out: one publisher, many subscribers; measures delivery latency, loss and
    /// duplicates of a broadcast endpoint.
    Fanout(FanoutArgs),
    /// Holds many idle connections open (answering pings) to measure how many a
    /// server sustains and what they cost it.
    Hold(HoldArgs),
}

impl BenchCommand {
    /// Whether the summary should be printed as one JSON object.
    pub fn json(&self) -> bool {
        match self {
            Self::Echo(a) => a.json,
            Self::Fanout(a) => a.json,
            Self::Hold(a) => a.json,
        }
    }

    /// Whether the live progress bar was turned off.
    pub fn no_progress(&self) -> bool {
        match self {
            Self::Echo(a) => a.no_progress,
            Self::Fanout(a) => a.no_progress,
            Self::Hold(a) => a.no_progress,
        }
    }
}

/// How every connection of a run is opened.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// Extra handshake request header, `'Name: value'` (repeatable).
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<HeaderArg>,
    /// Subprotocol to offer in Sec-WebSocket-Protocol (repeatable, in order of
    /// preference).
    #[arg(long = "subprotocol", value_name = "PROTOCOL")]
    pub subprotocols: Vec<String>,
    /// Deadline for one connection's DNS + TCP + TLS + upgrade, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub connect_timeout: f64,
    /// Extra CA certificate (PEM) trusted for wss://, on top of the system roots.
    #[arg(long, value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
}

/// `wsgate bench echo URL`.
#[derive(Debug, Clone, clap::Args)]
pub struct EchoArgs {
    /// ws:// or wss:// URL of an endpoint that echoes every message back.
    pub url: Url,
    /// Connections to open.
    #[arg(short = 'c', long, default_value_t = 64)]
    pub connections: usize,
    /// Messages per connection [default: 10000 unless --duration is given].
    #[arg(short = 'n', long, conflicts_with = "duration")]
    pub messages: Option<u64>,
    /// Run for this many seconds instead of a message count.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Payload size in bytes.
    #[arg(short = 's', long, value_name = "BYTES", default_value_t = 64)]
    pub size: usize,
    /// Messages each connection keeps in flight (pipelining depth).
    #[arg(short = 'k', long, value_name = "K", default_value_t = 1)]
    pub in_flight: usize,
    /// Fixed total send rate in messages/s, spread evenly over the connections
    /// (open loop: latency counts from each message's scheduled send time).
    #[arg(long, value_name = "MSGS_PER_SEC")]
    pub rate: Option<f64>,
    /// Send binary messages (default: text).
    #[arg(long)]
    pub binary: bool,
    /// Run this many seconds before measuring (not counted in any figure but errors).
    #[arg(long, value_name = "SECS")]
    pub warmup: Option<f64>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// No live progress bar.
    #[arg(long)]
    pub no_progress: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Spread connections over these local source addresses (A-B or CIDR).
    #[arg(long, value_name = "RANGE")]
    pub source_ips: Option<SourceIps>,
}

/// `wsgate bench fanout URL`.
#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    /// ws:// or wss:// URL the subscribers connect to.
    pub url: Url,
    /// URL the publisher connects to [default: URL].
    #[arg(long, value_name = "URL")]
    pub publish_url: Option<Url>,
    /// Subscriber connections.
    #[arg(long, default_value_t = 100)]
    pub subscribers: usize,
    /// Messages to publish.
    #[arg(short = 'n', long, default_value_t = 1000)]
    pub messages: u64,
    /// Payload size in bytes (at least 16, or 32 for text: it carries seq and timestamp).
    #[arg(short = 's', long, value_name = "BYTES", default_value_t = 64)]
    pub size: usize,
    /// Publish rate in messages/s [default: as fast as the connection takes them].
    #[arg(long, value_name = "MSGS_PER_SEC")]
    pub rate: Option<f64>,
    /// Publish binary messages (default: text).
    #[arg(long)]
    pub binary: bool,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// No live progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// How long to wait for stragglers after the last publish, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub settle_timeout: f64,
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Spread subscriber connections over these local source addresses (A-B or CIDR).
    #[arg(long, value_name = "RANGE")]
    pub source_ips: Option<SourceIps>,
}

/// `wsgate bench hold URL`.
#[derive(Debug, Clone, clap::Args)]
pub struct HoldArgs {
    /// ws:// or wss:// URL to hold connections to.
    pub url: Url,
    /// Connections to open and hold.
    #[arg(short = 'c', long, default_value_t = 1000)]
    pub connections: usize,
    /// Seconds to hold once all are up; 0 holds until Ctrl-C.
    #[arg(long, value_name = "SECS", default_value_t = 0.0)]
    pub duration: f64,
    /// Local source addresses to spread connections over (A-B or CIDR)
    /// [default: 127.0.0.1-127.0.0.254 when the URL's host is a 127.x address].
    #[arg(long, value_name = "RANGE")]
    pub source_ips: Option<SourceIps>,
    /// Connections started per second [default: as fast as 256 concurrent handshakes go].
    #[arg(long, value_name = "PER_SEC")]
    pub ramp: Option<f64>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// No live progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Write a line to this file once every connection is up (or has failed), so a
    /// script can measure the server at that moment.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// A `Name: value` request header from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderArg {
    pub name: HeaderName,
    pub value: HeaderValue,
}

impl FromStr for HeaderArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, value) = s.split_once(':').ok_or_else(|| format!("{s:?} is not of the form 'Name: value'"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("{:?} is not a valid header name", name.trim()))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| format!("the value of {name} holds characters a header cannot carry"))?;
        Ok(Self { name, value })
    }
}

/// Largest payload accepted: the default message limit of most servers (and of
/// wsgate's own codec) is 64 MiB.
pub(crate) const MAX_SIZE: usize = 64 << 20;
/// Largest connection count accepted by any mode; beyond it a typo is likelier than
/// intent.
pub(crate) const MAX_CONNECTIONS: usize = 10_000_000;

/// A non-negative, finite number of seconds.
pub(crate) fn seconds(flag: &'static str, secs: f64) -> Result<Duration, BenchError> {
    Duration::try_from_secs_f64(secs)
        .map_err(|_| BenchError::invalid(flag, format!("{secs} is not a number of seconds >= 0")))
}

/// A positive, finite number of seconds.
pub(crate) fn positive_seconds(flag: &'static str, secs: f64) -> Result<Duration, BenchError> {
    let d = seconds(flag, secs)?;
    if d.is_zero() {
        return Err(BenchError::invalid(flag, "must be greater than 0"));
    }
    Ok(d)
}

/// A positive, finite rate.
pub(crate) fn rate(flag: &'static str, rate: f64) -> Result<f64, BenchError> {
    if rate.is_finite() && rate > 0.0 {
        Ok(rate)
    } else {
        Err(BenchError::invalid(flag, format!("{rate} is not a rate > 0 per second")))
    }
}

pub(crate) fn count(flag: &'static str, n: usize, max: usize) -> Result<usize, BenchError> {
    if n == 0 {
        return Err(BenchError::invalid(flag, "must be at least 1"));
    }
    if n > max {
        return Err(BenchError::invalid(flag, format!("{n} is more than the {max} this bench accepts")));
    }
    Ok(n)
}

pub(crate) fn size(flag: &'static str, size: usize, min: usize) -> Result<usize, BenchError> {
    if size < min {
        return Err(BenchError::invalid(
            flag,
            format!("{size} bytes cannot carry the {min}-byte sequence number and timestamp; use --size {min} or more"),
        ));
    }
    if size > MAX_SIZE {
        return Err(BenchError::invalid(flag, format!("{size} bytes is more than the {MAX_SIZE}-byte maximum")));
    }
    Ok(size)
}

/// The URL must be ws://, wss:// (or http(s)://, which mean the same to the handshake)
/// with a host.
pub(crate) fn target(flag: &'static str, url: &Url) -> Result<(), BenchError> {
    if !matches!(url.scheme(), "ws" | "wss" | "http" | "https") {
        return Err(BenchError::invalid(flag, format!("{url} is not a ws:// or wss:// URL")));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(BenchError::invalid(flag, format!("{url} has no host")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: BenchCommand,
    }

    fn parse(args: &[&str]) -> Result<BenchCommand, clap::Error> {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied())).map(|c| c.cmd)
    }

    #[test]
    fn echo_flags_and_defaults() {
        let BenchCommand::Echo(a) = parse(&[
            "echo",
            "ws://127.0.0.1:9/x",
            "-c",
            "8",
            "-k",
            "16",
            "-s",
            "0",
            "--binary",
            "-H",
            "Authorization: Bearer t",
            "--header",
            "X-A:b",
            "--source-ips",
            "127.0.0.0/30",
        ])
        .unwrap() else {
            panic!("not echo")
        };
        assert_eq!((a.connections, a.in_flight, a.size, a.binary), (8, 16, 0, true));
        assert_eq!(a.messages, None);
        assert_eq!(a.connect.headers.len(), 2);
        assert_eq!(a.connect.headers[0].value, "Bearer t");
        assert_eq!(a.source_ips.map(|s| s.len()), Some(2));
        assert!(parse(&["echo", "ws://h", "-n", "5", "--duration", "3"]).is_err());
        assert!(parse(&["echo", "ws://h", "--header", "novalue"]).is_err());
        assert!(parse(&["echo", "not a url"]).is_err());
    }

    #[test]
    fn fanout_and_hold_defaults() {
        let BenchCommand::Fanout(f) = parse(&["fanout", "ws://h/sub"]).unwrap() else { panic!("not fanout") };
        assert_eq!((f.subscribers, f.messages, f.size, f.settle_timeout), (100, 1000, 64, 5.0));
        let BenchCommand::Hold(h) = parse(&["hold", "ws://127.0.0.1:1", "--json"]).unwrap() else { panic!("not hold") };
        assert_eq!((h.connections, h.duration, h.json), (1000, 0.0, true));
        assert!(BenchCommand::Hold(h).json());
    }

    #[test]
    fn value_checks_name_the_flag() {
        let e = seconds("--duration", -1.0).unwrap_err();
        assert!(e.to_string().contains("--duration"), "{e}");
        assert!(rate("--rate", 0.0).is_err());
        assert!(rate("--rate", f64::NAN).is_err());
        assert!(count("--connections", 0, 10).is_err());
        assert!(size("--size", 8, 16).unwrap_err().to_string().contains("--size 16"));
        assert!(target("URL", &Url::parse("http://h/").unwrap()).is_ok());
        assert!(target("URL", &Url::parse("ftp://h/").unwrap()).is_err());
    }
}
