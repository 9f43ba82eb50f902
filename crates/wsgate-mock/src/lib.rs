//! The mock server: WebSocket sessions answered by wsgate itself, each a session of
//! kind `mock` with the same lifecycle, events, inject and close as a proxied one.
//!
//! Modes: [`MockMode::Echo`] sends every text and binary message back unchanged —
//! the conformance target for wsgate's server role. Replay scripts and rules build on
//! the same [`Mock`] handler.

mod echo;

use std::sync::Arc;

use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wsgate_core::{EventBus, Registry, SessionKind};
use wsgate_listener::{Body, Conn, Handler, ListenerConfig};
use wsgate_session::{Endpoint, EndpointConfig, Served};

pub use echo::Echo;
/// Capacity of each mock session's command queue (inject/close): the one every
/// session shares.
pub use wsgate_core::COMMAND_QUEUE;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MockMode {
    /// Every text and binary message is sent back unchanged.
    Echo,
}

#[derive(Debug, Clone)]
pub struct MockConfig {
    /// The route's sessions: subprotocols, deflate, limits, timeouts.
    pub served: Served,
    pub mode: MockMode,
    pub listener: ListenerConfig,
}

/// The mock handler: the shared server-session endpoint with the mode's behaviour.
pub struct Mock {
    mode: MockMode,
    listener: ListenerConfig,
    endpoint: Endpoint,
}

impl std::fmt::Debug for Mock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mock").field("mode", &self.mode).finish()
    }
}

impl Mock {
    pub fn new(
        cfg: MockConfig,
        bus: Arc<EventBus>,
        registry: Arc<Registry>,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> Arc<Self> {
        let endpoint_cfg = EndpointConfig { name: "wsgate mock", kind: SessionKind::Mock, served: cfg.served };
        let endpoint = Endpoint { cfg: endpoint_cfg, bus, registry, shutdown, tracker };
        Arc::new(Self { mode: cfg.mode, listener: cfg.listener, endpoint })
    }
}

impl Handler for Mock {
    async fn handle(self: Arc<Self>, mut req: hyper::Request<Incoming>, conn: Conn) -> http::Response<Body> {
        match self.mode {
            MockMode::Echo => self.endpoint.answer(&mut req, conn.peer, conn.permit, |_| Echo),
        }
    }
}

/// Accepts clients on an already-bound listener until the mock's shutdown fires.
pub async fn serve(listener: TcpListener, mock: Arc<Mock>) {
    let ep = &mock.endpoint;
    let (cfg, shutdown, tracker) = (mock.listener.clone(), ep.shutdown.clone(), ep.tracker.clone());
    wsgate_listener::serve(listener, cfg, mock, shutdown, tracker).await;
}
