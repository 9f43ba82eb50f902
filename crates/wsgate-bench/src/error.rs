//! Why a bench run could not produce a summary at all.
//!
//! What goes wrong *during* a run — a mismatched echo, a lost delivery, a connection
//! the server dropped, some handshakes refused — is a measurement, so it is counted in
//! the [`Summary`](crate::Summary) rather than returned here. Only what leaves nothing
//! to measure is an error.

use std::io;
use std::path::PathBuf;

use wsgate_protocol::ConnectError;
use wsgate_protocol::tls::TlsConfigError;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A flag's value makes the run impossible; the message names the flag and the fix.
    #[error("invalid {flag}: {reason}")]
    InvalidArgument { flag: &'static str, reason: String },

    /// Not one connection could be opened, so there is nothing to measure.
    #[error("all {attempted} connections to {url} failed (first error, {kind}: {source})")]
    AllConnectsFailed {
        url: String,
        attempted: u64,
        kind: &'static str,
        /// Boxed: a refused upgrade carries the response's headers and body.
        #[source]
        source: Box<ConnectError>,
    },

    /// Fan-out needs its publisher connection.
    #[error("publisher connection to {url} failed ({kind}: {source})")]
    Publisher {
        url: String,
        kind: &'static str,
        #[source]
        source: Box<ConnectError>,
    },

    /// The subscribers never saw one of the publisher's messages, which means the
    /// endpoint does not broadcast what the publish URL receives.
    #[error(
        "no subscriber received any of the publisher's sync messages within {waited_s:.1} s: \
         is {url} a broadcast endpoint fed by --publish-url?"
    )]
    NoDelivery { url: String, waited_s: f64 },

    #[error("cannot write the ready file {}: {source}", path.display())]
    ReadyFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("TLS client configuration: {0}")]
    Tls(#[from] TlsConfigError),
}

impl BenchError {
    pub(crate) fn invalid(flag: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidArgument { flag, reason: reason.into() }
    }

    /// Whether this is a usage error (exit code 64, EX_USAGE) rather than a failure of
    /// the target.
    pub fn is_usage(&self) -> bool {
        matches!(self, Self::InvalidArgument { .. })
    }
}
