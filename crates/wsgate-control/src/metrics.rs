//! Prometheus metrics, in a registry owned by this control plane (not a global
//! recorder: several gateways run in one test process, each with its own numbers).
//!
//! Exposed at `GET /metrics` (OpenMetrics text):
//!
//! | metric | type | labels | source |
//! | --- | --- | --- | --- |
//! | `wsgate_sessions_active` | gauge | `kind` | live sessions in the registry, read at scrape time |
//! | `wsgate_sessions_total` | counter | `kind`, `outcome` (`disconnected`\|`failed`) | final lifecycle transitions |
//! | `wsgate_route_sessions_active` | gauge | `route`, `kind` | the same per route: every configured route (0 when idle), and any other route with live sessions (`outbound`) |
//! | `wsgate_route_sessions_total` | counter | `route`, `kind`, `outcome` | final transitions per route; a configured route's series exist from the start |
//! | `wsgate_config_reloads_total` | counter | `outcome` (`applied`\|`refused`) | route reloads (SIGHUP, `POST /api/reload`) |
//! | `wsgate_messages_total` | counter | `direction` | frames, counted by the sessions on the bus at scrape time (exact) |
//! | `wsgate_message_bytes_total` | counter | `direction` | payload bytes of those frames |
//! | `wsgate_upstream_connect_seconds` | histogram | — | `connect_ms` of CONNECTED transitions; buckets 0.5 ms … 10 s |
//! | `wsgate_queue_dropped_total` | counter | `reason` (`queue_timeout`\|`queue_overflow`) | one per `Error` event of that kind (the proxy emits one per dropped message) |
//! | `wsgate_observer_dropped_total` | counter | `observer` | events each bus observer dropped, read from the bus at scrape time (`store`: messages not recorded under `--record drop`) |
//! | `wsgate_store_rows_total`, `wsgate_store_batches_total`, `wsgate_store_payload_bytes_total`, `wsgate_store_write_errors_total` | counter | | what the recorder committed (rows, transactions, message payload bytes), and batches the store refused |
//! | `wsgate_live_dropped_total` | counter | — | messages dropped for slow `/api/live` subscribers and taps |
//!
//! The relay's metrics (websocket-relay's four names and `wsgate_relay_*`) are in
//! [`crate::relay_metrics`].
//!
//! `direction` is `client_to_upstream`, `upstream_to_client`, `client_to_gateway` or
//! `gateway_to_client`; `kind` is `proxy`, `relay`, `mock` or `outbound`.
//!
//! The counters fed from events (sessions, connect times, queue drops) can miss events
//! the `metrics` observer dropped under overload;
//! `wsgate_observer_dropped_total{observer="metrics"}` says how many. That observer
//! takes no message events: frames are counted on the bus itself.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry as PromRegistry;
use tokio_util::sync::CancellationToken;
use wsgate_core::{
    Direction, ErrorKind, EventBus, ObserverQueue, Registry, SessionEvent, SessionKind, State as SessionState,
};

use crate::ControlPlane;
use crate::error::ApiError;

/// Most events taken from the bus queue per wake-up.
pub const OBSERVER_BATCH: usize = 512;
/// Upper bounds of `wsgate_upstream_connect_seconds`, 0.5 ms to 10 s: a loopback
/// dial lands in the first buckets, a TLS handshake across a continent in the middle.
pub const CONNECT_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const OUTCOMES: [&str; 2] = ["disconnected", "failed"];
/// `SessionEvent::Error` kinds that mean "a queued message was dropped".
const QUEUE_DROP_REASONS: [ErrorKind; 2] = [ErrorKind::QueueTimeout, ErrorKind::QueueOverflow];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    kind: &'static str,
    outcome: &'static str,
}

/// Per route. Bounded: routes come from the config (plus `outbound` and the like).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteLabels {
    pub(crate) route: String,
    pub(crate) kind: &'static str,
    pub(crate) outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabel {
    pub(crate) outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// This control plane's metrics.
pub(crate) struct Metrics {
    registry: PromRegistry,
    sessions_total: Family<OutcomeLabels, Counter>,
    route_sessions_total: Family<RouteLabels, Counter>,
    pub(crate) reloads: Family<OutcomeLabel, Counter>,
    /// The configured routes as `(name, kind)`: their gauges are shown at 0 when idle.
    routes: Arc<std::sync::RwLock<Vec<(String, &'static str)>>>,
    upstream_connect: Histogram,
    queue_dropped: Family<ReasonLabels, Counter>,
    pub(crate) live_dropped: Counter,
}

impl Metrics {
    pub(crate) fn new(
        sessions: Arc<Registry>,
        bus: Arc<EventBus>,
        recorder: Option<Arc<wsgate_store::recorder::RecorderStats>>,
        relay: Option<Arc<wsgate_relay::Hub>>,
        intercepts: Option<Arc<wsgate_intercept::InterceptBoard>>,
    ) -> Self {
        let mut registry = PromRegistry::default();
        let sessions_total = Family::<OutcomeLabels, Counter>::default();
        let upstream_connect = Histogram::new(CONNECT_BUCKETS);
        let queue_dropped = Family::<ReasonLabels, Counter>::default();
        let live_dropped = Counter::default();
        let route_sessions_total = Family::<RouteLabels, Counter>::default();
        let reloads = Family::<OutcomeLabel, Counter>::default();
        let routes = Arc::new(std::sync::RwLock::new(Vec::new()));
        registry.register(
            "wsgate_route_sessions",
            "Sessions ended, by route, kind and outcome",
            route_sessions_total.clone(),
        );
        registry.register("wsgate_config_reloads", "Route reloads, by outcome", reloads.clone());
        for outcome in ["applied", "refused"] {
            drop(reloads.get_or_create(&OutcomeLabel { outcome }));
        }
        // Counter names are registered without `_total`: the encoder appends it.
        registry.register("wsgate_sessions", "Sessions ended, by kind and outcome", sessions_total.clone());
        registry.register(
            "wsgate_upstream_connect_seconds",
            "Time to dial and upgrade the upstream",
            upstream_connect.clone(),
        );
        registry.register(
            "wsgate_queue_dropped",
            "Messages a session dropped from its queue, by reason",
            queue_dropped.clone(),
        );
        registry.register(
            "wsgate_live_dropped",
            "Messages dropped for slow live-stream subscribers and taps",
            live_dropped.clone(),
        );
        registry.register_collector(Box::new(ScrapeTimeCollector { sessions, bus, recorder, routes: routes.clone() }));
        if let Some(hub) = relay {
            registry.register_collector(Box::new(crate::relay_metrics::RelayCollector { hub }));
        }
        if let Some(board) = intercepts {
            registry.register_collector(Box::new(crate::intercepts::InterceptCollector { board }));
        }
        // Every known series starts at 0, so it exists (and `rate()` works) before
        // its first event.
        for kind in SessionKind::ALL {
            for outcome in OUTCOMES {
                drop(sessions_total.get_or_create(&OutcomeLabels { kind: kind.as_str(), outcome }));
            }
        }
        for reason in QUEUE_DROP_REASONS {
            drop(queue_dropped.get_or_create(&ReasonLabels { reason: reason.as_str() }));
        }
        Self {
            registry,
            sessions_total,
            route_sessions_total,
            reloads,
            routes,
            upstream_connect,
            queue_dropped,
            live_dropped,
        }
    }

    /// The routes in force (at start and after each reload): their series exist, at 0,
    /// before their first session.
    pub(crate) fn set_routes(&self, routes: Vec<(String, &'static str)>) {
        for (route, kind) in &routes {
            for outcome in OUTCOMES {
                drop(self.route_sessions_total.get_or_create(&RouteLabels { route: route.clone(), kind, outcome }));
            }
        }
        match self.routes.write() {
            Ok(mut r) => *r = routes,
            Err(p) => *p.into_inner() = routes,
        }
    }

    fn observe(&self, ev: &SessionEvent) {
        match ev {
            SessionEvent::Lifecycle { info, transition } => match transition.state {
                SessionState::Disconnected | SessionState::Failed => {
                    let outcome = if transition.state == SessionState::Failed { "failed" } else { "disconnected" };
                    self.sessions_total.get_or_create(&OutcomeLabels { kind: info.kind.as_str(), outcome }).inc();
                    let route = RouteLabels { route: info.route.to_string(), kind: info.kind.as_str(), outcome };
                    self.route_sessions_total.get_or_create(&route).inc();
                }
                SessionState::Connected => {
                    if let Some(ms) = transition.detail.connect_ms {
                        self.upstream_connect.observe(ms / 1000.0);
                    }
                }
                SessionState::Requested | SessionState::Connecting => {}
            },
            // Counted on the bus (`EventBus::traffic`); the observer does not ask for them.
            SessionEvent::Message(_) => {}
            // Drops are counted from their error events.
            SessionEvent::Queue(_) | SessionEvent::Logged(_) | SessionEvent::Delivered(_) => {}
            SessionEvent::Error { kind, .. } => {
                if kind.is_queue_drop() {
                    self.queue_dropped.get_or_create(&ReasonLabels { reason: kind.as_str() }).inc();
                }
            }
        }
    }

    /// The OpenMetrics text exposition.
    pub(crate) fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(4096);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Values that already live elsewhere, read when scraped rather than mirrored:
/// mirroring the active-session gauge from events would drift whenever the
/// observer drops one.
#[derive(Debug)]
struct ScrapeTimeCollector {
    sessions: Arc<Registry>,
    bus: Arc<EventBus>,
    recorder: Option<Arc<wsgate_store::recorder::RecorderStats>>,
    routes: Arc<std::sync::RwLock<Vec<(String, &'static str)>>>,
}

impl Collector for ScrapeTimeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family =
            encoder.encode_descriptor("wsgate_sessions_active", "Live sessions, by kind", None, MetricType::Gauge)?;
        for kind in SessionKind::ALL {
            let n = self.sessions.live_of_kind(kind).len();
            let labels = [("kind", kind.as_str())];
            ConstGauge::new(n as i64).encode(family.encode_family(&labels)?)?;
        }
        let mut per_route: std::collections::BTreeMap<(String, &'static str), i64> = match self.routes.read() {
            Ok(r) => r.iter().map(|(name, kind)| ((name.clone(), *kind), 0)).collect(),
            Err(p) => p.into_inner().iter().map(|(name, kind)| ((name.clone(), *kind), 0)).collect(),
        };
        for (kind, route) in self.sessions.live_routes() {
            *per_route.entry((route.to_string(), kind.as_str())).or_default() += 1;
        }
        let mut family = encoder.encode_descriptor(
            "wsgate_route_sessions_active",
            "Live sessions, by route and kind",
            None,
            MetricType::Gauge,
        )?;
        for ((route, kind), n) in per_route {
            let labels = [("route", route.as_str()), ("kind", kind)];
            ConstGauge::new(n).encode(family.encode_family(&labels)?)?;
        }
        for (name, help, pick) in [
            ("wsgate_messages", "Frames seen, by direction", 0),
            ("wsgate_message_bytes", "Payload bytes seen, by direction", 1),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for direction in Direction::ALL {
                let (messages, bytes) = self.bus.traffic(direction);
                let labels = [("direction", direction.as_str())];
                ConstCounter::new(if pick == 0 { messages } else { bytes }).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "wsgate_observer_dropped",
            "Events an event-bus observer dropped because its queue was full",
            None,
            MetricType::Counter,
        )?;
        for (observer, n) in self.bus.drops() {
            let labels = [("observer", observer)];
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }
        if let Some(r) = &self.recorder {
            use std::sync::atomic::Ordering::Relaxed;
            for (name, help, n) in [
                ("wsgate_store_rows", "Rows the recorder committed to the store", r.rows_written.load(Relaxed)),
                (
                    "wsgate_store_batches",
                    "Batches (transactions) the recorder committed",
                    r.batches_written.load(Relaxed),
                ),
                (
                    "wsgate_store_payload_bytes",
                    "Payload bytes of the messages the recorder committed",
                    r.payload_bytes_written.load(Relaxed),
                ),
                (
                    "wsgate_store_write_errors",
                    "Batches the store refused (their rows are lost)",
                    r.write_errors.load(Relaxed),
                ),
            ] {
                let family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
                ConstCounter::new(n).encode(family)?;
            }
        }
        Ok(())
    }
}

/// `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "metrics",
    summary = "Prometheus metrics",
    description = "OpenMetrics text; the metric names are listed in docs/control-api.md.",
    responses(
        (status = 200, description = "The metrics", body = String,
         content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
        (status = 500, description = "The metrics could not be encoded", body = crate::error::ErrorBody),
    ),
)]
pub async fn scrape(State(cp): State<ControlPlane>) -> Response {
    match cp.inner.metrics.encode() {
        Ok(body) => {
            let mut res = body.into_response();
            res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
            res
        }
        Err(_) => ApiError::MetricsEncoding.into_response(),
    }
}

/// The metrics observer: drains the `metrics` queue in batches until shutdown.
pub(crate) async fn run_observer(metrics: Arc<Metrics>, mut queue: ObserverQueue, shutdown: CancellationToken) {
    queue
        .drain_batches(OBSERVER_BATCH, shutdown.cancelled(), |batch| {
            for ev in batch.drain(..) {
                metrics.observe(&ev);
            }
        })
        .await;
}
