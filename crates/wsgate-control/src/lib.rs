//! wsgate's control plane: the HTTP app an operator (or the dashboard, or a script)
//! talks to on its own listener, apart from the traffic listener.
//!
//! It is an observer like any other: it learns what sessions do from the
//! [`EventBus`] (two queues, `live` and `metrics`, registered by
//! [`register_observers`]) and reaches into sessions only through the [`Registry`]
//! (listing them, sending them inject and close commands). Handlers never call it.
//!
//! Routes (see [`ControlPlane::router`]):
//! - `GET /healthz`, `GET /readyz` — always open;
//! - `GET /metrics` — Prometheus text from a per-instance registry ([`metrics`]);
//! - `GET /api/sessions`, `GET /api/sessions/{id}`, `POST /api/sessions/{id}/inject`,
//!   `POST /api/sessions/{id}/close` — JSON ([`api`]);
//! - `POST /api/connections`, `POST /api/connections/{id}/send`,
//!   `DELETE /api/connections/{id}` — outbound connections ([`connections`]);
//! - `GET /api/routes`, `POST /api/reload` — the routes in force, and swapping them
//!   without a restart ([`reload`]);
//! - `WS /api/live` — live events out, commands in, including the websocket-multiplex
//!   master-control shapes ([`live`], [`commands`]);
//! - `WS /client/{path}`, `WS /upstream/{path}` — websocket-multiplex's raw per-path
//!   taps ([`taps`]);
//! - `WS /` — websocket-multiplex's master connection ([`master`]; a plain `GET /` is
//!   the index);
//! - `GET /api/openapi.json` — the OpenAPI 3.1 description of all of the above,
//!   generated from the handlers ([`openapi`]; the route table is [`routes`]).
//!
//! - `POST /api/live/ticket` — a single-use ticket for one WebSocket upgrade
//!   ([`ticket`]), so browsers need not put the admin token in a URL.
//!
//! Every request first passes the browser guard ([`guard`]: `Host` against DNS
//! rebinding, `Origin` against cross-site requests and WebSocket hijacking) and, for
//! origins listed with `--control-origin`, CORS. With an admin token configured,
//! everything but the two health probes and the `/` index needs it ([`auth`]). Every request body goes through [`body::buffer`] (1 MiB,
//! 24 MiB for a message to send; 10 s).

pub mod api;
pub mod auth;
pub mod body;
pub mod commands;
pub mod connections;
pub mod dashboard;
pub mod error;
pub mod event_json;
pub mod faults;
pub mod guard;
pub mod health;
pub mod history;
pub mod index;
pub mod intercepts;
pub mod live;
pub mod master;
pub mod metrics;
pub mod openapi;
pub mod relay_metrics;
pub mod reload;
pub mod rooms;
pub mod routes;
pub mod taps;
pub mod ticket;
pub mod ws;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::DefaultBodyLimit;
use axum::{Extension, Router};
use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wsgate_core::{EventBus, EventBusBuilder, ObserverQueue, Registry};

pub use connections::OutboundContext;
pub use error::ApiError;

/// Default cut of payloads shown on the live stream, in bytes.
pub const DEFAULT_PAYLOAD_CAP: usize = 4096;
/// Default capacity of one live subscriber's (or tap's) outgoing queue, in messages.
pub const DEFAULT_LIVE_QUEUE: usize = 1024;
/// Capacity of the bus queue feeding the live observer, in events. Sized like the
/// core default: large enough to ride out a burst while a subscriber's socket is slow.
pub const LIVE_OBSERVER_CAPACITY: usize = wsgate_core::bus::DEFAULT_OBSERVER_CAPACITY;
/// Capacity of the bus queue feeding the metrics observer, in events.
pub const METRICS_OBSERVER_CAPACITY: usize = wsgate_core::bus::DEFAULT_OBSERVER_CAPACITY;
/// Largest request body accepted (413 above it), but on the routes that carry a
/// message.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Largest body of a route that carries a message to send (`/send`, `/inject`): a
/// 16 MiB message (the default `--max-message-size`) base64-encoded, with room for
/// the JSON around it.
pub const MAX_MESSAGE_BODY_BYTES: usize = 24 << 20;

/// What the control plane needs to know beyond the registry and bus.
#[derive(Clone)]
pub struct ControlConfig {
    /// When set, `/api/*`, `/api/live`, `/metrics` and the taps need
    /// `Authorization: Bearer <token>` or `?token=<token>`. `/healthz` and `/readyz`
    /// stay open so orchestrators can probe without a secret.
    pub admin_token: Option<String>,
    /// Payloads on the live stream are cut to this many bytes; cut payloads carry
    /// `"truncated": true`. Taps are never cut.
    pub payload_cap: usize,
    /// Capacity of each live subscriber's and tap's outgoing queue. Overflow drops the
    /// newest message for that subscriber and counts it in `wsgate_live_dropped_total`.
    pub live_queue: usize,
    /// Session history; without it the API shows live and recently ended sessions only,
    /// and messages and exports are not available (`--no-store`).
    pub store: Option<Arc<dyn wsgate_store::Store>>,
    /// The recorder's counters, exported on `/metrics`.
    pub recorder: Option<Arc<wsgate_store::recorder::RecorderStats>>,
    /// What `POST /api/connections` needs; without it that route answers 501.
    pub outbound: Option<OutboundContext>,
    /// The relay hub: `/api/rooms` and the relay metrics; without it the rooms API
    /// answers with no rooms.
    pub relay: Option<Arc<wsgate_relay::Hub>>,
    /// Every route's faults: `/api/routes/{name}/faults`; without it that answers 404.
    pub faults: Option<Arc<wsgate_faults::FaultBoard>>,
    /// Every proxy route's breakpoints: `/api/intercepts`; without it that answers
    /// with none, and arming one is refused (no such route).
    pub intercepts: Option<Arc<wsgate_intercept::InterceptBoard>>,
    /// Origins whose pages may use the control plane (`--control-origin`): they pass
    /// the origin check and get CORS answers. Its own origin needs no listing.
    pub origins: Vec<guard::AllowedOrigin>,
    /// Names `Host` may carry besides IP literals and `localhost` (`--control-host`),
    /// e.g. the name of a reverse proxy in front.
    pub hosts: Vec<guard::AllowedHost>,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            admin_token: None,
            payload_cap: DEFAULT_PAYLOAD_CAP,
            live_queue: DEFAULT_LIVE_QUEUE,
            store: None,
            recorder: None,
            outbound: None,
            relay: None,
            faults: None,
            intercepts: None,
            origins: Vec::new(),
            hosts: Vec::new(),
        }
    }
}

impl std::fmt::Debug for ControlConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a credential: never let it reach a log line.
        f.debug_struct("ControlConfig")
            .field("admin_token", &self.admin_token.as_ref().map(|_| "<redacted>"))
            .field("payload_cap", &self.payload_cap)
            .field("live_queue", &self.live_queue)
            .field("store", &self.store)
            .field("outbound", &self.outbound)
            .field("origins", &self.origins)
            .field("hosts", &self.hosts)
            .finish()
    }
}

/// The bus queues this crate reads; made by [`register_observers`] before the bus is
/// built, consumed by [`ControlPlane::start`].
pub struct ControlObservers {
    live: ObserverQueue,
    metrics: ObserverQueue,
}

impl std::fmt::Debug for ControlObservers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlObservers").finish_non_exhaustive()
    }
}

/// Registers the `live` and `metrics` observers on the bus builder.
pub fn register_observers(builder: &mut EventBusBuilder) -> ControlObservers {
    let live = builder.observer("live", LIVE_OBSERVER_CAPACITY);
    // Nobody is watching yet: keep message events off the hot path until someone is.
    live.wants_messages.store(false, Ordering::Relaxed);
    let metrics = builder.observer("metrics", METRICS_OBSERVER_CAPACITY);
    // Frames are counted on the bus itself (`EventBus::count_frame`).
    metrics.wants_messages.store(false, Ordering::Relaxed);
    ControlObservers { live, metrics }
}

pub(crate) struct Inner {
    pub(crate) cfg: ControlConfig,
    pub(crate) registry: Arc<Registry>,
    /// For sessions the control plane opens itself (outbound connections).
    pub(crate) bus: Arc<EventBus>,
    pub(crate) hub: Arc<live::LiveHub>,
    pub(crate) metrics: Arc<metrics::Metrics>,
    ready: AtomicBool,
    pub(crate) shutdown: CancellationToken,
    /// WebSocket connections (live stream, taps) run on this tracker so the binary's
    /// drain waits for their close handshakes.
    pub(crate) tracker: TaskTracker,
    /// The gateway's route table, set once it exists ([`ControlPlane::set_routes`]).
    pub(crate) routes: std::sync::OnceLock<Arc<dyn reload::Reload>>,
    /// Outstanding live tickets (`POST /api/live/ticket`).
    pub(crate) tickets: Arc<ticket::Tickets>,
}

/// The running control plane. Cheap to clone.
#[derive(Clone)]
pub struct ControlPlane {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("cfg", &self.inner.cfg)
            .field("ready", &self.inner.ready.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// Spawns the observer tasks on `tracker`; they stop when `shutdown` is cancelled.
    pub fn start(
        cfg: ControlConfig,
        registry: Arc<Registry>,
        bus: Arc<EventBus>,
        observers: ControlObservers,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Self {
        let metrics = Arc::new(metrics::Metrics::new(
            registry.clone(),
            bus.clone(),
            cfg.recorder.clone(),
            cfg.relay.clone(),
            cfg.intercepts.clone(),
        ));
        let ControlObservers { live: live_queue, metrics: metrics_queue } = observers;
        let hub = Arc::new(live::LiveHub::new(
            live_queue.wants_messages.clone(),
            cfg.live_queue,
            cfg.payload_cap,
            metrics.live_dropped.clone(),
        ));
        tracker.spawn(live::run_observer(hub.clone(), live_queue, shutdown.clone()));
        tracker.spawn(metrics::run_observer(metrics.clone(), metrics_queue, shutdown.clone()));
        Self {
            inner: Arc::new(Inner {
                cfg,
                registry,
                bus,
                hub,
                metrics,
                ready: AtomicBool::new(false),
                shutdown,
                tracker: tracker.clone(),
                routes: std::sync::OnceLock::new(),
                tickets: Arc::default(),
            }),
        }
    }

    /// `/readyz` answers 200 only when ready and not shutting down.
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::Relaxed);
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Relaxed)
    }

    /// The whole HTTP app, separate from binding so tests and the binary serve it the
    /// same way.
    pub fn router(&self) -> Router {
        let (routes, doc) = routes::table(&self.inner.cfg, &self.inner.tickets);
        // Serialized once: the document only changes with the configuration.
        let json = Bytes::from(serde_json::to_vec(&doc).unwrap_or_default());
        let mut app = routes
            .layer(Extension(openapi::SpecJson(json)))
            .fallback(error::no_route)
            .method_not_allowed_fallback(error::method_not_allowed)
            .layer(DefaultBodyLimit::max(MAX_MESSAGE_BODY_BYTES))
            .layer(axum::middleware::from_fn_with_state(self.clone(), body::buffer));
        let guard = guard::BrowserGuard::new(&self.inner.cfg.origins, &self.inner.cfg.hosts);
        // Outside the body and auth layers: a listed origin's preflight carries no
        // token and is answered here; everything else passes the guard first, which is
        // outermost so that every route — and any added later — is behind it.
        if let Some(cors) = guard::cors(&guard) {
            app = app.layer(cors);
        }
        app.layer(axum::middleware::from_fn_with_state(guard, guard::check)).with_state(self.clone())
    }

    /// `GET /metrics` alone, open, for a listener of its own (`metrics_listen`:
    /// websocket-relay's `metrics.port`, which Prometheus scrapes without a token).
    pub fn metrics_router(&self) -> Router {
        Router::new().route("/metrics", axum::routing::get(metrics::scrape)).with_state(self.clone())
    }

    /// The OpenAPI 3.1 document `GET /api/openapi.json` serves for this configuration.
    pub fn openapi(&self) -> utoipa::openapi::OpenApi {
        routes::table(&self.inner.cfg, &self.inner.tickets).1
    }
}

/// Serves `router` on an already-bound listener until `shutdown` is cancelled, then
/// stops accepting and lets in-flight HTTP requests finish. Upgraded WebSockets run on
/// the control plane's tracker and close themselves with 1001 on the same signal.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned()).await
}
