//! The mock server: WebSocket sessions answered by wsgate itself, each a session of
//! kind `mock` with the same lifecycle, events, inject and close as a proxied one.
//!
//! Modes: [`MockMode::Echo`] sends every text and binary message back unchanged —
//! the conformance target for wsgate's server role. Replay scripts and rules build on
//! the same [`Mock`] handler.

mod echo;

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wsgate_core::{EventBus, Registry, SessionHandle, SessionInfo, SessionKind, State, TransitionDetail};
use wsgate_listener::{Body, Conn, Handler, ListenerConfig};
use wsgate_protocol::handshake::{into_transport, offered_subprotocols, switching_protocols, validate_upgrade};
use wsgate_protocol::{Role, WsConfig, WsStream};

/// Capacity of each mock session's command queue (inject/close).
pub const COMMAND_QUEUE: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MockMode {
    /// Every text and binary message is sent back unchanged.
    Echo,
}

#[derive(Debug, Clone)]
pub struct MockConfig {
    pub route: Arc<str>,
    pub mode: MockMode,
    /// Subprotocols the mock accepts: the first one the client offers that is listed.
    pub subprotocols: Vec<String>,
    pub max_message_size: usize,
    pub close_timeout: Duration,
    pub listener: ListenerConfig,
    /// Accept permessage-deflate offers with this policy (`None`: never).
    pub deflate: Option<wsgate_protocol::deflate::DeflatePolicy>,
}

pub struct Mock {
    cfg: MockConfig,
    bus: Arc<EventBus>,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl std::fmt::Debug for Mock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mock").field("mode", &self.cfg.mode).finish()
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
        Arc::new(Self { cfg, bus, registry, shutdown, tracker })
    }
}

impl Handler for Mock {
    async fn handle(self: Arc<Self>, mut req: hyper::Request<Incoming>, conn: Conn) -> http::Response<Body> {
        let key = match validate_upgrade(req.method(), req.headers()) {
            Ok(k) => k,
            Err(e) => return wsgate_listener::not_an_upgrade("wsgate mock", &e),
        };
        let chosen = offered_subprotocols(req.headers()).into_iter().find(|p| self.cfg.subprotocols.contains(p));
        let info = SessionInfo {
            id: wsgate_core::SessionId::new(),
            kind: SessionKind::Mock,
            route: self.cfg.route.clone(),
            path: req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/".into()),
            client_addr: Some(conn.peer),
            headers: Vec::new(),
            opened_at: chrono::Utc::now(),
        };
        let (mut session, commands) = SessionHandle::open(info, self.bus.clone(), self.registry.clone(), COMMAND_QUEUE);
        let deflate = self.cfg.deflate.as_ref().and_then(|policy| {
            let offers = req.headers().get_all(http::header::SEC_WEBSOCKET_EXTENSIONS);
            wsgate_protocol::deflate::accept_offer(offers.iter().filter_map(|v| v.to_str().ok()), policy)
        });
        let on_upgrade = hyper::upgrade::on(&mut req);
        let mut response = switching_protocols(&key, chosen.as_deref()).map(|_| Body::new(bytes::Bytes::new()));
        if let Some(p) = &deflate
            && let Ok(v) = http::HeaderValue::from_str(&p.to_header())
        {
            response.headers_mut().insert(http::header::SEC_WEBSOCKET_EXTENSIONS, v);
        }
        let level = self.cfg.deflate.map_or(6, |d| d.level);
        let me = self.clone();
        self.tracker.spawn(async move {
            let _permit = conn.permit;
            let Ok(upgraded) = on_upgrade.await else { return };
            let Ok((io, leftover)) = into_transport(upgraded) else { return };
            session.transition(State::Connected, TransitionDetail { subprotocol: chosen, ..Default::default() });
            let limits =
                WsConfig { max_frame_size: me.cfg.max_message_size, max_message_size: me.cfg.max_message_size };
            let ws = WsStream::new(io, Role::Server, limits, leftover).with_deflate(deflate, level);
            match me.cfg.mode {
                MockMode::Echo => {
                    echo::run(ws, &mut session, commands, me.shutdown.clone(), me.cfg.close_timeout).await
                }
            }
        });
        response
    }
}

/// Accepts clients on an already-bound listener until `mock.shutdown` fires.
pub async fn serve(listener: TcpListener, mock: Arc<Mock>) {
    let (cfg, shutdown, tracker) = (mock.cfg.listener.clone(), mock.shutdown.clone(), mock.tracker.clone());
    wsgate_listener::serve(listener, cfg, mock, shutdown, tracker).await;
}
