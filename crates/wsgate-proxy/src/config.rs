//! Everything the proxy needs to know, already validated by the binary's config layer.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use url::Url;

/// Upstream resolution over HTTP, as websocket-multiplex's `DYNAMIC_UPSTREAM_CONFIG_URL`:
/// `GET <url><path>` answers the upstream URL for that connection.
#[derive(Debug, Clone)]
pub struct ResolverConfig {
    pub url: Url,
    pub timeout: Duration,
    /// Further attempts after the first failure.
    pub retries: u32,
}

/// The accept-early message queue (websocket-multiplex's behaviour).
#[derive(Debug, Clone, Copy)]
pub struct QueueConfig {
    pub max_messages: usize,
    pub max_bytes: usize,
    /// Queued messages older than this are dropped, each with an event.
    pub timeout: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self { max_messages: 1000, max_bytes: 8 << 20, timeout: Duration::from_secs(30) }
    }
}

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Route name recorded on every session.
    pub route: Arc<str>,
    /// What history keeps of its sessions' payloads.
    pub payloads: wsgate_core::PayloadPolicy,
    /// The route's faults (`wsgate-faults`), switched at run time through the control
    /// API; never set: nothing is checked per message beyond one branch.
    pub faults: Arc<wsgate_faults::FaultSwitch>,
    /// The route's intercept breakpoints (`wsgate-intercept`), armed at run time
    /// through the control API; none armed: one atomic load per message.
    pub intercepts: Arc<wsgate_intercept::RouteIntercepts>,
    /// Static upstream; the fallback when a resolver is configured. At least one of
    /// `upstream` and `resolver` is set.
    pub upstream: Option<Url>,
    pub resolver: Option<ResolverConfig>,
    /// Removed from the front of the client's path before it is appended to the
    /// upstream (or sent to the resolver): a route `/api/*` with `strip_prefix: /api`
    /// sends `/api/orders` to `upstream + /orders`. The session records the path the
    /// client asked for.
    pub strip_prefix: Option<String>,
    /// Accept the client before the upstream answers, queueing its messages.
    pub accept_early: bool,
    /// When a client is accepted on a path that already has live proxy sessions,
    /// close the older ones (1000, lifecycle `reason_kind: replaced`): a device that
    /// vanished without closing must not keep its path (websocket-multiplex's later
    /// behaviour). Off by default: wsgate lets several clients share a path.
    pub replace_same_path: bool,
    pub queue: QueueConfig,
    /// Request headers forwarded in addition to the default allowlist.
    pub forward_headers: Vec<HeaderName>,
    /// Largest message (and frame) accepted from either side; above it the sender is
    /// closed with 1009.
    pub max_message_size: usize,
    /// Concurrent client connections; further ones get HTTP 503.
    pub max_connections: usize,
    /// Close a session after this long without a frame in either direction.
    pub idle_timeout: Option<Duration>,
    /// DNS + TCP + TLS + upgrade towards the upstream.
    pub connect_timeout: Duration,
    /// Time a client has to send its upgrade request (slowloris guard).
    pub handshake_timeout: Duration,
    /// How long to wait for the peer's close frame after sending ours.
    pub close_timeout: Duration,
    pub upstream_tls: Arc<rustls::ClientConfig>,
    pub listener_tls: Option<Arc<rustls::ServerConfig>>,
    /// permessage-deflate policy for both sides, each negotiated on its own (`None`:
    /// never; it costs ~300 KiB per compressing connection).
    pub deflate: Option<wsgate_protocol::deflate::DeflatePolicy>,
    /// Tell a refused client why the upstream could not be reached (its URL, the
    /// DNS or TLS error). Off by default: that detail is for operators, and stays in
    /// the session record and the logs; the client is told only that the upstream is
    /// unavailable and which session to look up.
    pub expose_errors: bool,
    /// Rules that transform the frames this route forwards (`wsgate_rules`, loaded and
    /// checked for the proxy role at start); `None`: every frame unchanged.
    pub rules: Option<Arc<wsgate_rules::Rules>>,
    /// Seed for the rules' random template values (`{{uuid}}`, `{{randInt}}`); every
    /// session the same sequence.
    pub seed: Option<u64>,
}

impl ProxyConfig {
    /// Defaults around a static upstream (tests and tools).
    pub fn new(upstream: Url, upstream_tls: Arc<rustls::ClientConfig>) -> Self {
        Self {
            route: "default".into(),
            payloads: wsgate_core::PayloadPolicy::Full,
            faults: Arc::default(),
            intercepts: Arc::default(),
            upstream: Some(upstream),
            resolver: None,
            strip_prefix: None,
            accept_early: false,
            replace_same_path: false,
            queue: QueueConfig::default(),
            forward_headers: Vec::new(),
            max_message_size: 16 << 20,
            max_connections: 10_000,
            idle_timeout: None,
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            upstream_tls,
            listener_tls: None,
            deflate: None,
            expose_errors: false,
            rules: None,
            seed: None,
        }
    }
}
