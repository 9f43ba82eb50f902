//! The mock server: WebSocket sessions answered by wsgate itself, each a session of
//! kind `mock` with the same lifecycle, events, inject and close as a proxied one.
//!
//! Modes: [`MockMode::Echo`] sends every text and binary message back unchanged —
//! the conformance target for wsgate's server role; [`MockMode::Replay`] plays a
//! script (`script.rs`: MockForge's lines or a wsgate transcript) on each session's
//! own schedule (`replay.rs`), with templates and waits for client messages
//! (`wsgate_rules::template`, `wsgate_rules::matcher`); [`MockMode::Rules`] answers
//! each client message by a rules file (`rules.rs` over `wsgate_rules::Conversation`);
//! [`MockMode::Ai`] sends each session a stream of JSON events an OpenAI-compatible
//! chat-completions endpoint generates from the route's narrative, at the route's
//! rate (`ai/`).

pub mod ai;
mod echo;
mod replay;
mod rules;
pub mod script;

/// Shared with the proxy, so they live in `wsgate-rules`; re-exported so the paths the
/// replay mock has always had keep working.
pub use wsgate_rules::{matcher, template};

use std::sync::Arc;

use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wsgate_core::{EventBus, Registry, SessionKind};
use wsgate_listener::{Body, Conn, Handler, ListenerConfig};
use wsgate_session::{Endpoint, EndpointConfig, Served};

pub use echo::Echo;
pub use replay::{Replay, ReplaySettings};
pub use rules::{RulesBehaviour, RulesSettings};
/// Capacity of each mock session's command queue (inject/close): the one every
/// session shares.
pub use wsgate_core::COMMAND_QUEUE;

#[derive(Debug, Clone)]
pub enum MockMode {
    /// Every text and binary message is sent back unchanged.
    Echo,
    /// Each session plays the script.
    Replay(Arc<ReplaySettings>),
    /// Each session gets a generated event stream.
    Ai(Arc<ai::AiSettings>),
    /// Each client message is answered by the first rule that matches it.
    Rules(Arc<RulesSettings>),
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
        match &self.mode {
            MockMode::Echo => self.endpoint.answer(&mut req, conn.peer, conn.permit, |_| Echo),
            MockMode::Replay(settings) => {
                let settings = settings.clone();
                self.endpoint.answer(&mut req, conn.peer, conn.permit, move |_| Replay::new(settings))
            }
            MockMode::Ai(settings) => {
                let (settings, tracker) = (settings.clone(), self.endpoint.tracker.clone());
                self.endpoint
                    .answer(&mut req, conn.peer, conn.permit, move |info| ai::AiStream::new(settings, info, tracker))
            }
            MockMode::Rules(settings) => {
                let settings = settings.clone();
                self.endpoint.answer(&mut req, conn.peer, conn.permit, move |info| RulesBehaviour::new(settings, info))
            }
        }
    }
}

/// Accepts clients on an already-bound listener until the mock's shutdown fires.
pub async fn serve(listener: TcpListener, mock: Arc<Mock>) {
    let ep = &mock.endpoint;
    let (cfg, shutdown, tracker) = (mock.listener.clone(), ep.shutdown.clone(), ep.tracker.clone());
    wsgate_listener::serve(listener, cfg, mock, shutdown, tracker).await;
}
