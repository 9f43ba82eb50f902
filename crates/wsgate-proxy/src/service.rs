//! The proxy as a [`wsgate_listener::Handler`]: its config and the shared parts it
//! reports into.

use std::sync::Arc;

use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wsgate_core::{EventBus, Registry};
use wsgate_listener::{Body, Conn, DynHandler, Handler, ListenerConfig};

use crate::config::ProxyConfig;

pub struct Proxy {
    pub(crate) cfg: ProxyConfig,
    pub(crate) bus: Arc<EventBus>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) http: reqwest::Client,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tracker: TaskTracker,
    /// Answers clients whose upstream cannot be reached (`fallback:`, a mock), when set.
    pub(crate) fallback: Option<Arc<dyn DynHandler>>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("route", &self.cfg.route).field("upstream", &self.cfg.upstream).finish()
    }
}

impl Proxy {
    pub fn new(
        cfg: ProxyConfig,
        bus: Arc<EventBus>,
        registry: Arc<Registry>,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> Arc<Self> {
        Self::with_fallback(cfg, bus, registry, shutdown, tracker, None)
    }

    /// [`Proxy::new`] with a handler (a mock route's) that answers clients whose
    /// upstream cannot be reached, instead of a 502/504.
    pub fn with_fallback(
        cfg: ProxyConfig,
        bus: Arc<EventBus>,
        registry: Arc<Registry>,
        shutdown: CancellationToken,
        tracker: TaskTracker,
        fallback: Option<Arc<dyn DynHandler>>,
    ) -> Arc<Self> {
        let http = reqwest::Client::builder().build().unwrap_or_default();
        Arc::new(Self { cfg, bus, registry, http, shutdown, tracker, fallback })
    }

    pub fn config(&self) -> &ProxyConfig {
        &self.cfg
    }
}

impl Handler for Proxy {
    async fn handle(self: Arc<Self>, req: hyper::Request<Incoming>, conn: Conn) -> http::Response<Body> {
        crate::handshake::handle(req, self, conn).await
    }
}

/// Accepts clients on an already-bound listener until `proxy.shutdown` fires.
/// Sessions already running are closed by their own pumps (1001) and tracked by
/// `proxy.tracker`, which the caller waits on with a deadline.
pub async fn serve(listener: TcpListener, proxy: Arc<Proxy>) {
    let cfg = ListenerConfig {
        tls: proxy.cfg.listener_tls.clone(),
        max_connections: proxy.cfg.max_connections,
        handshake_timeout: proxy.cfg.handshake_timeout,
    };
    let (shutdown, tracker) = (proxy.shutdown.clone(), proxy.tracker.clone());
    wsgate_listener::serve(listener, cfg, proxy, shutdown, tracker).await;
}
