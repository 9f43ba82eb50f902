//! The one typed configuration, layered: defaults → YAML file (`--config`) →
//! websocket-multiplex environment names → `WSGATE_*` environment → command-line
//! flags. `wsgate config default` prints it, `wsgate config check` validates it, and
//! every serving command runs from it.

mod ai;
mod keys;
mod load;
/// Public for the config fuzz target.
pub mod locate;
mod redact;
mod relay;
mod routes;
pub mod websocket_relay;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

pub use ai::AiSection;
pub use keys::KEYS;
pub use load::{COMPAT_ENV, ConfigError, Sources, documented_keys, invalid as load_invalid, load, load_yaml};
pub use relay::RelaySection;
pub use routes::{RouteKind, RouteLimits, RouteSection, route_error, routes_file};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Everything wsgate can be told. Unknown fields are errors, so a typo in a file never
/// silently falls back to a default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where clients connect.
    pub listen: SocketAddr,
    /// Dashboard, API, live stream and metrics.
    pub control: SocketAddr,
    /// Also serve `GET /metrics` alone, with no token, on this address
    /// (websocket-relay's `metrics.port`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
    /// Bearer token for the control plane; required when `control` is not loopback.
    pub admin_token: Option<String>,
    /// Origins whose pages may use the control plane (its own needs no listing).
    pub control_origins: Vec<String>,
    /// Names `Host` may carry besides IP addresses and `localhost`.
    pub control_hosts: Vec<String>,
    pub log_level: String,
    pub log_format: LogFormat,
    /// PEM certificate chain for wss:// on `listen`.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// How long a graceful shutdown waits for sessions to close.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    pub limits: Limits,
    pub live: Live,
    pub proxy: ProxySection,
    pub mock: MockSection,
    pub relay: RelaySection,
    pub deflate: DeflateSection,
    pub store: StoreSection,
    pub outbound: OutboundSection,
    /// Routes on `listen`, tried in order (first match wins; no match is 404). Each
    /// has a `name`, a `path` (`/feed`, or `/api/*` for a prefix), an optional `host`
    /// and `origins`, its own `limits`, and exactly one of `proxy:`, `mock:` or `relay:`.
    pub routes: Vec<RouteSection>,
    /// Faults for the top-level proxy or mock (`docs/faults.md`); a route in `routes:`
    /// has its own `faults:`. Changed at run time through `/api/routes/{name}/faults`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub faults: Option<wsgate_faults::FaultSpec>,
}

/// What the recorder does when the store falls behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordMode {
    /// Traffic never waits: messages the store cannot take are dropped and counted.
    Drop,
    /// Traffic waits for the store: every message is stored.
    Strict,
}

/// Session history.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// Record sessions at all (`--no-store` turns it off).
    pub enabled: bool,
    /// `sqlite://PATH`, `postgres://USER@HOST/DB` or `memory://`.
    pub url: String,
    pub record: RecordMode,
    /// Payload bytes stored per message; longer ones are cut and flagged.
    pub payload_cap: usize,
    /// What history keeps of payloads, unless a route says otherwise:
    /// `full`, `headers` or `sample:N`.
    pub payloads: wsgate_core::PayloadPolicy,
    /// Delete sessions that ended longer ago than this (0s = keep forever).
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Keep at most this many messages overall, oldest deleted first (0 = no limit).
    pub retention_messages: u64,
    /// Request headers redacted before they are stored, besides Authorization,
    /// Cookie and Set-Cookie.
    pub redact_headers: Vec<String>,
    /// This gateway's name in a shared store (default: the host name). A running
    /// gateway holds a lease on it: a second one with the same name and store is
    /// refused, and only sessions whose instance's lease is gone are closed.
    pub instance: Option<String>,
    /// How long the lease on `instance` lasts unless renewed (every third of it): a
    /// crashed gateway's sessions are closed, and its name is free, once it runs out.
    #[serde(with = "humantime_serde")]
    pub instance_lease: Duration,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            enabled: true,
            url: "sqlite://wsgate.db".into(),
            record: RecordMode::Drop,
            payload_cap: 64 * 1024,
            payloads: wsgate_core::PayloadPolicy::Full,
            retention: Duration::ZERO,
            retention_messages: 0,
            redact_headers: Vec::new(),
            instance: None,
            instance_lease: Duration::from_secs(30),
        }
    }
}

impl StoreSection {
    /// The instance name: configured, or the host name.
    pub fn instance_name(&self) -> String {
        self.instance.clone().filter(|s| !s.is_empty()).unwrap_or_else(wsgate_store::lease::host_name)
    }
}

/// Connections wsgate opens itself (`POST /api/connections`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundSection {
    /// Allow targets in private, loopback and link-local ranges even when the control
    /// plane is reachable beyond loopback.
    pub allow_private_targets: bool,
    /// DNS + TCP + TLS + upgrade for one attempt.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Extra CA certificate (PEM) trusted for `wss://` targets, besides the system
    /// roots: a private CA, or a development server's own certificate.
    pub ca: Option<PathBuf>,
}

impl Default for OutboundSection {
    fn default() -> Self {
        Self { allow_private_targets: false, connect_timeout: Duration::from_secs(10), ca: None }
    }
}

/// permessage-deflate (RFC 7692), negotiated on each connection independently.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeflateSection {
    /// Negotiate permessage-deflate (costs ~300 KiB per compressing connection).
    pub enabled: bool,
    /// Largest LZ77 window wsgate compresses with, 9..=15 (smaller saves memory).
    pub max_window_bits: u8,
    /// Ask peers to reset their compressor after every message.
    pub no_context_takeover: bool,
    /// zlib compression level 0..=9.
    pub level: u32,
}

impl Default for DeflateSection {
    fn default() -> Self {
        Self { enabled: false, max_window_bits: 15, no_context_takeover: false, level: 6 }
    }
}

impl DeflateSection {
    pub fn policy(&self) -> Option<wsgate_protocol::deflate::DeflatePolicy> {
        self.enabled.then_some(wsgate_protocol::deflate::DeflatePolicy {
            max_window_bits: self.max_window_bits,
            request_no_context_takeover: self.no_context_takeover,
            level: self.level,
        })
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MockSection {
    /// Echo every text and binary message back unchanged.
    pub echo: bool,
    /// Play this script to every session (MockForge lines or a wsgate transcript).
    pub replay: Option<std::path::PathBuf>,
    /// Play this stored session (its id in the configured store) to every session,
    /// as `replay` plays its export.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_session: Option<String>,
    /// Answer each client message by the first matching rule of this file (docs/rules.md).
    pub rules: Option<std::path::PathBuf>,
    /// The replay's schedule speed (1.0 when unset).
    pub speed: Option<f64>,
    /// Start the script over after its last step.
    #[serde(rename = "loop")]
    pub looped: bool,
    /// Seed for every random template value, so runs repeat.
    pub seed: Option<u64>,
    /// Subprotocols the mock accepts (the first one a client offers that is listed).
    pub subprotocols: Vec<String>,
    /// Send each session a generated event stream (`config/ai.rs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ai: Option<AiSection>,
}

impl MockSection {
    /// Whether a mode is set.
    pub fn enabled(&self) -> bool {
        self.echo || self.replay.is_some() || self.replay_session.is_some() || self.ai.is_some() || self.rules.is_some()
    }

    /// One mode, and settings that fit it: `(field, message, fix)` otherwise.
    pub fn check(&self) -> Result<(), (&'static str, String, &'static str)> {
        let modes = [
            ("echo", self.echo),
            ("replay", self.replay.is_some()),
            ("replay_session", self.replay_session.is_some()),
            ("ai", self.ai.is_some()),
            ("rules", self.rules.is_some()),
        ];
        let mut set = modes.iter().filter(|(_, on)| *on).map(|(name, _)| *name);
        match (set.next(), set.next()) {
            (None, _) => {
                let fix = "set `echo: true`, `replay: FILE`, `replay_session: ID`, `rules: FILE` or `ai: {..}`";
                return Err(("echo", "the mock has no mode".into(), fix));
            }
            (Some(a), Some(b)) => {
                return Err((b, format!("the mock has two modes, {a} and {b}"), "keep one of them"));
            }
            (Some(_), None) => {}
        }
        if let Some(ai) = &self.ai {
            ai.check()?;
        }
        if let Some(speed) = self.speed
            && !(speed.is_finite() && speed > 0.0 && speed <= 1e6)
        {
            return Err((
                "speed",
                format!("{speed} is not a speed"),
                "a positive number: 1.0 as recorded, 2.0 twice as fast",
            ));
        }
        if self.replay.is_none() && self.replay_session.is_none() && self.rules.is_none() && self.seed.is_some() {
            return Err((
                "seed",
                "`seed` applies to a replay or rules".into(),
                "add --replay FILE or --rules FILE, or drop it",
            ));
        }
        if self.replay.is_none() && self.replay_session.is_none() {
            for (field, set) in [("speed", self.speed.is_some()), ("loop", self.looped)] {
                if set {
                    return Err((
                        field,
                        format!("`{field}` applies to a replay"),
                        "add --replay FILE (`replay: FILE`), or drop it",
                    ));
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest message (bytes) accepted from either side; larger closes with 1009.
    pub max_message_size: usize,
    /// Concurrent client connections; further ones get HTTP 503.
    pub max_connections: usize,
    /// Close sessions idle this long (0s = never).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Time a client has to complete its upgrade request.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Live {
    /// Payload bytes shown per message on the live stream (longer ones are cut and
    /// flagged `truncated`).
    pub payload_cap: usize,
    /// Events queued per live-stream subscriber before drops.
    pub queue: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxySection {
    /// Upstream base URL; the client's path and query are appended.
    pub upstream: Option<Url>,
    /// Resolve the upstream per connection: GET <resolver_url><path> returns its URL.
    pub resolver_url: Option<Url>,
    #[serde(with = "humantime_serde")]
    pub resolver_timeout: Duration,
    pub resolver_retries: u32,
    /// Accept clients before the upstream answers, queueing their messages.
    pub accept_early: bool,
    /// A client accepted on a path closes the older live sessions on that path.
    pub replace_same_path: bool,
    pub queue_max_messages: usize,
    pub queue_max_bytes: usize,
    /// Queued messages older than this are dropped (with an event).
    #[serde(with = "humantime_serde")]
    pub queue_timeout: Duration,
    /// Extra request headers forwarded to the upstream.
    pub forward_headers: Vec<String>,
    /// Removed from the front of the client's path before it goes upstream (`/api`:
    /// `/api/orders` → `upstream/orders`).
    pub strip_prefix: Option<String>,
    /// Extra CA (PEM) trusted for wss:// upstreams, besides the system roots.
    pub upstream_ca: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Tell refused clients why the upstream failed (URL, DNS/TLS error) instead of a
    /// generic reason; the detail is always in the session record and the logs.
    pub expose_errors: bool,
    /// A mock (the keys of `mock:`) that answers the client when the upstream cannot
    /// be reached (MockForge's proxy fallback); config file only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Box<MockSection>>,
    /// Rules (YAML) transforming what the route forwards (docs/rules.md).
    pub rules: Option<PathBuf>,
    /// Seed for every random choice of the route: its rules' templates and its faults
    /// (when their spec has no `seed`), so runs repeat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// `Config::default()` as JSON, with the sections that are unset by default (a mode
/// such as `mock.ai`) filled in with their fields' defaults: what `config default`
/// and `--help` show.
pub fn documented_defaults() -> serde_json::Value {
    let mut v = serde_json::to_value(Config::default()).unwrap_or_default();
    ai::show_defaults(&mut v);
    v
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("literal address"),
            control: "127.0.0.1:8081".parse().expect("literal address"),
            metrics_listen: None,
            admin_token: None,
            control_origins: Vec::new(),
            control_hosts: Vec::new(),
            log_level: "info".into(),
            log_format: LogFormat::Text,
            tls_cert: None,
            tls_key: None,
            shutdown_timeout: Duration::from_secs(10),
            limits: Limits::default(),
            live: Live::default(),
            proxy: ProxySection::default(),
            mock: MockSection::default(),
            relay: RelaySection::default(),
            deflate: DeflateSection::default(),
            store: StoreSection::default(),
            outbound: OutboundSection::default(),
            routes: Vec::new(),
            faults: None,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_size: 16 << 20,
            max_connections: 10_000,
            idle_timeout: Duration::ZERO,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl Default for Live {
    fn default() -> Self {
        Self { payload_cap: 4096, queue: 1024 }
    }
}

impl Default for ProxySection {
    fn default() -> Self {
        Self {
            upstream: None,
            resolver_url: None,
            resolver_timeout: Duration::from_secs(2),
            resolver_retries: 2,
            accept_early: false,
            replace_same_path: false,
            queue_max_messages: 1000,
            queue_max_bytes: 8 << 20,
            queue_timeout: Duration::from_secs(30),
            forward_headers: Vec::new(),
            strip_prefix: None,
            upstream_ca: None,
            connect_timeout: Duration::from_secs(10),
            expose_errors: false,
            fallback: None,
            rules: None,
            seed: None,
        }
    }
}
