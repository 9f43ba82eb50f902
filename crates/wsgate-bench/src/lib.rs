//! `wsgate bench`: the load generator wsgate users point at any WebSocket server, and
//! the tool every performance figure of the project is measured with — so it has to be
//! faster than what it measures and its numbers have to be honest.
//!
//! Three modes, one file each: [`echo`](EchoArgs) (round trips, every echo checked
//! byte for byte, latency in an HDR histogram per connection), [`fanout`](FanoutArgs)
//! (one publisher, N subscribers, delivery latency, loss and duplicates) and
//! [`hold`](HoldArgs) (N idle connections held open, for capacity and per-connection
//! cost). Honesty rules the design: connections are all open before the clock starts;
//! with `--rate`, latency counts from each message's scheduled time (no coordinated
//! omission); a corrupted, missing or duplicated message is counted, never assumed
//! away; Ctrl-C still yields the summary of what was measured. Speed rules the hot
//! path: each connection is one task owning its socket, queue and histogram (merged at
//! the end, no shared lock), payloads are built into a reused buffer and checked with
//! two `memcmp`s, and pipelined messages go out in one write per burst.
//!
//! The binary parses a [`BenchCommand`], calls [`run`] with its shutdown token and
//! prints the [`Summary`] with [`print_summary`].

// A failing unwrap is the clearest test failure there is.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod args;
mod connector;
mod echo;
mod error;
mod fanout;
mod hold;
mod payload;
mod progress;
mod report;
mod source;

use tokio_util::sync::CancellationToken;

pub use args::{BenchCommand, ConnectArgs, EchoArgs, FanoutArgs, HeaderArg, HoldArgs};
pub use error::BenchError;
pub use report::{BenchKind, LatencyStats, Summary, print_summary, render_summary};
pub use source::SourceIps;

/// Runs one bench to completion, or until `shutdown` is cancelled — in which case the
/// summary covers what was measured and says `interrupted`.
pub async fn run(cmd: BenchCommand, shutdown: CancellationToken) -> Result<Summary, BenchError> {
    match cmd {
        BenchCommand::Echo(a) => echo::run(a, shutdown).await,
        BenchCommand::Fanout(a) => fanout::run(a, shutdown).await,
        BenchCommand::Hold(a) => hold::run(a, shutdown).await,
    }
}
