//! The relay: WebSocket clients in rooms, each message fanned out to the room's other
//! members (`wsgate relay`, `relay:` routes). Every relay connection is a session of
//! kind `relay` on the shared server loop (`wsgate-session`), with its lifecycle,
//! history, inject and close like any other.
//!
//! - [`hub`]: rooms sharded by name, members, unicast directory, per-route state;
//! - [`mailbox`]: each member's bounded queue and its [`Overflow`] policy;
//! - [`member`]: the behaviour of one connection (raw or envelope, heartbeats, rate
//!   limit, slow-consumer handling);
//! - [`auth`]: JWTs at the upgrade (HS256, RS256, ES256; `rooms` claim);
//! - [`envelope`]: the envelope protocol's frames (`docs/relay-protocol.md`),
//!   WarpSocket's shape included;
//! - [`rooms`]: room patterns (a token's `rooms` claim); [`rate`]: the token bucket;
//!   [`stats`]: per-route counters read by the control plane.

pub mod auth;
pub mod envelope;
pub mod hub;
pub mod mailbox;
pub mod member;
pub mod rate;
pub mod rooms;
pub mod stats;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use hyper::body::Incoming;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wsgate_core::{EventBus, Registry, SessionKind};
use wsgate_listener::{Body, Conn, Handler, plain};
use wsgate_session::{Endpoint, EndpointConfig, Served};

pub use envelope::Payload;
pub use hub::{Hub, Published};
pub use mailbox::{MailboxLimits, Overflow};

/// What a route's clients speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Every message, unchanged, to everyone in the room named by the request path.
    #[default]
    Raw,
    /// JSON envelopes: join, leave, publish, send, acks, errors (and WarpSocket's shape).
    Envelope,
}

impl Protocol {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Envelope => "envelope",
        }
    }
}

/// Pings every `interval`; a client that leaves `misses` of them unanswered is closed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Heartbeat {
    pub interval: Duration,
    pub misses: u32,
}

/// The per-connection message rate limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

/// How a relay route's members behave.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    pub protocol: Protocol,
    /// Whether a sender gets its own messages (the Go relay does: default true).
    pub echo_sender: bool,
    /// Envelope clients start in the room named by their path (raw clients always do).
    pub join_path_room: bool,
    pub mailbox: MailboxLimits,
    pub heartbeat: Option<Heartbeat>,
    pub rate: Option<RateLimit>,
    /// Malformed envelope frames answered with an error frame before the connection
    /// is closed (1008).
    pub max_bad_frames: u32,
    /// Connections one client IP address may hold on this route.
    pub max_per_ip: Option<usize>,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            protocol: Protocol::Raw,
            echo_sender: true,
            join_path_room: true,
            mailbox: MailboxLimits { max_messages: 1024, max_bytes: 4 << 20, overflow: Overflow::DropOldest },
            heartbeat: Some(Heartbeat { interval: Duration::from_secs(30), misses: 2 }),
            rate: None,
            max_bad_frames: 10,
            max_per_ip: None,
        }
    }
}

/// A relay route's config.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The route's sessions: subprotocols, deflate, limits, timeouts.
    pub served: Served,
    pub settings: RelaySettings,
    /// Tokens required at the upgrade (`None`: anyone may connect).
    pub auth: Option<Arc<auth::Verifier>>,
}

/// The relay handler of one route: the shared endpoint with a [`member::Member`]
/// behaviour per connection, all in the gateway's one [`Hub`].
pub struct Relay {
    settings: Arc<RelaySettings>,
    hub: Arc<Hub>,
    state: Arc<hub::RouteState>,
    auth: Option<Arc<auth::Verifier>>,
    endpoint: Endpoint,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl Relay {
    pub fn new(
        cfg: RelayConfig,
        hub: Arc<Hub>,
        bus: Arc<EventBus>,
        registry: Arc<Registry>,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> Arc<Self> {
        let state = hub.route(&cfg.served.route);
        let endpoint_cfg = EndpointConfig { name: "wsgate relay", kind: SessionKind::Relay, served: cfg.served };
        let endpoint = Endpoint { cfg: endpoint_cfg, bus, registry, shutdown, tracker };
        Arc::new(Self { settings: Arc::new(cfg.settings), hub, state, auth: cfg.auth, endpoint })
    }
}

impl Handler for Relay {
    async fn handle(self: Arc<Self>, mut req: hyper::Request<Incoming>, conn: Conn) -> http::Response<Body> {
        let slot = match self.settings.max_per_ip {
            Some(max) => match self.state.claim_ip(conn.peer.ip(), max) {
                Some(slot) => Some(slot),
                None => {
                    self.state.stats.refused.fetch_add(1, Relaxed);
                    let msg = format!("wsgate relay: this address already has {max} connections to this route");
                    return plain(http::StatusCode::TOO_MANY_REQUESTS, &msg);
                }
            },
            None => None,
        };
        let path = req.uri().path().to_owned();
        let allowed = match self.authorize(&mut req, &path) {
            Ok(rooms) => rooms,
            Err(e) => {
                self.state.stats.refused.fetch_add(1, Relaxed);
                return plain(e.status(), &format!("wsgate relay: {e}"));
            }
        };
        let (hub, settings, stats) = (self.hub.clone(), self.settings.clone(), self.state.stats.clone());
        self.endpoint.answer(&mut req, conn.peer, (conn.permit, slot), move |info| {
            stats.connected.fetch_add(1, Relaxed);
            stats.connections.fetch_add(1, Relaxed);
            let entry = hub.register(hub::Member {
                session: info.id,
                route: info.route.clone(),
                protocol: settings.protocol,
                mailbox: mailbox::Mailbox::new(settings.mailbox),
                stats,
            });
            member::Member::new(hub, entry, settings, &path, allowed)
        })
    }
}

impl Relay {
    /// Checks the request's token (when the route requires one) and takes it out of
    /// the URL the session records; the rooms it allows (`None`: every room).
    fn authorize<B>(
        &self,
        req: &mut hyper::Request<B>,
        path: &str,
    ) -> Result<Option<rooms::RoomPatterns>, auth::AuthError> {
        let Some(verifier) = &self.auth else { return Ok(None) };
        let token = auth::token_of(req.headers(), req.uri().query());
        let allowed = verifier.verify(token.as_deref())?;
        // A raw client's only room is its path: a token that does not allow it is
        // refused now rather than connected to nothing.
        if let Some(r) = &allowed
            && self.settings.protocol == Protocol::Raw
            && !r.allows(path)
        {
            return Err(auth::AuthError::RoomNotAllowed(path.to_owned()));
        }
        if let Some(q) = req.uri().query() {
            let rest = auth::without_token(q);
            let pq = match rest {
                Some(rest) => format!("{path}?{rest}"),
                None => path.to_owned(),
            };
            if let Ok(pq) = pq.parse::<http::uri::PathAndQuery>() {
                let mut parts = req.uri().clone().into_parts();
                parts.path_and_query = Some(pq);
                if let Ok(uri) = http::Uri::from_parts(parts) {
                    *req.uri_mut() = uri;
                }
            }
        }
        Ok(allowed)
    }
}
