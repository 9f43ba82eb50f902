//! wsgate's client side: connections wsgate opens itself.
//!
//! - [`outbound`]: the task behind an outbound session (`POST /api/connections`): it
//!   dials, reports every attempt in the session's lifecycle, moves messages, obeys
//!   send and close commands, and reconnects after a lost connection when asked to;
//! - [`backoff`]: jittered exponential backoff between attempts (full jitter, seeded
//!   RNG for tests);
//! - [`guard`]: the private-target guard — which addresses a gateway whose control
//!   plane is reachable beyond loopback must not be steered into (loopback, private,
//!   link-local, …), checked on every address a name resolves to, with the
//!   connection pinned to the checked addresses.
//!
//! It reports only through [`wsgate_core::SessionHandle`], like every handler, and
//! speaks WebSocket through `wsgate-protocol`. Later users (`wsgate connect`, the
//! bench) build on the same pieces.

pub mod backoff;
pub mod guard;
pub mod outbound;

pub use backoff::{Backoff, BackoffPolicy, InvalidBackoff};
pub use guard::{GuardError, Restricted, TargetPolicy, classify, vet};
pub use outbound::{DialError, Outbound, OutboundConfig};
