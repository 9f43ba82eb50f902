//! The inspecting proxy: a client connecting at any path reaches `upstream + path +
//! query`, and every frame in both directions is forwarded unchanged — opcode,
//! fragmentation, pings and close codes included — while the session reports it to
//! the event bus.
//!
//! Flow of one connection (see `ARCHITECTURE.md`):
//! `wsgate_listener` accepts (TLS, connection limit) for [`service`] → [`handshake`] validates the upgrade,
//! resolves the upstream ([`upstream`]) and dials it *before* answering the client, so
//! the client sees the upstream's subprotocol or its refusal status → [`pump`] moves
//! frames both ways until both close handshakes finish. With `accept_early`,
//! [`early`] accepts the client first and queues its messages until the upstream is up.

pub mod config;
pub mod early;
pub mod handshake;
pub mod headers;
pub mod pump;
pub mod service;
pub mod upstream;

pub use config::{ProxyConfig, QueueConfig, ResolverConfig};
pub use service::{Proxy, serve};
