//! A serving handler's whole answer to an upgrade request, for sessions wsgate
//! answers itself: validate and negotiate ([`crate::upgrade`]), open the session,
//! answer 101, and — on the handler's task tracker — wait for the switch, go
//! CONNECTED and run the [`crate::server`] loop with the behaviour the handler gives.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wsgate_core::{EventBus, Registry, SessionInfo, SessionKind};
use wsgate_listener::{Body, not_an_upgrade};
use wsgate_protocol::deflate::DeflatePolicy;
use wsgate_protocol::{Role, WsConfig, WsStream};

use crate::behaviour::Behaviour;
use crate::server::{self, ServerConfig};
use crate::upgrade::{self, Upgrade};

/// How a route's sessions are negotiated and served, whatever answers them (a
/// mock's, a relay's): the part of a handler's config every serving handler has.
#[derive(Debug, Clone)]
pub struct Served {
    pub route: Arc<str>,
    /// What history keeps of its sessions' payloads.
    pub payloads: wsgate_core::PayloadPolicy,
    /// Subprotocols accepted: the first one the client offers that is listed.
    pub subprotocols: Vec<String>,
    /// Accept permessage-deflate offers with this policy (`None`: never).
    pub deflate: Option<DeflatePolicy>,
    pub max_message_size: usize,
    pub close_timeout: Duration,
    pub idle_timeout: Option<Duration>,
    /// The route's faults (`wsgate-faults`), switched at run time; `None` for route
    /// kinds faults do not apply to (relay).
    pub faults: Option<std::sync::Arc<wsgate_faults::FaultSwitch>>,
}

/// How an endpoint negotiates and serves its sessions.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Names the role in refusals (`wsgate mock: not a WebSocket upgrade …`).
    pub name: &'static str,
    pub kind: SessionKind,
    pub served: Served,
}

/// What a serving handler holds to answer upgrades: its config and where its sessions
/// report and live.
pub struct Endpoint {
    pub cfg: EndpointConfig,
    pub bus: Arc<EventBus>,
    pub registry: Arc<Registry>,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("cfg", &self.cfg).finish()
    }
}

/// What a session task needs to start its session once the connection is switched.
struct Start<F> {
    make: F,
    chosen: Option<String>,
    deflate: Option<wsgate_protocol::deflate::DeflateParams>,
    level: u32,
    limits: WsConfig,
    server_cfg: ServerConfig,
    shutdown: CancellationToken,
    commands: wsgate_core::Commands,
}

impl Endpoint {
    /// Answers one request: a refusal if it is not a valid upgrade, else 101 and a
    /// session task (on the tracker) running the behaviour `make` builds for it.
    /// `permit` (the listener's connection slot, whatever its type) is held by that
    /// task for the session's whole life.
    pub fn answer<B, Req, P, F>(
        &self,
        req: &mut http::Request<Req>,
        peer: SocketAddr,
        permit: P,
        make: F,
    ) -> http::Response<Body>
    where
        B: Behaviour,
        P: Send + 'static,
        F: FnOnce(&SessionInfo) -> B + Send + 'static,
    {
        let up = match Upgrade::new(req) {
            Ok(u) => u,
            Err(e) => return not_an_upgrade(self.cfg.name, &e),
        };
        let cfg = &self.cfg.served;
        let chosen = up.choose_subprotocol(&cfg.subprotocols);
        let deflate = up.accept_deflate(cfg.deflate.as_ref());
        let mut info = up.session_info(self.cfg.kind, cfg.route.clone(), peer, Vec::new());
        info.payloads = cfg.payloads;
        let (mut session, commands) = upgrade::open(info, &self.bus, &self.registry);
        if let Some(refusal) = cfg.faults.as_ref().and_then(|f| crate::refused_by_fault(f, &mut session, self.cfg.name))
        {
            return refusal;
        }
        let (response, pending) = up.accept(chosen.as_deref(), deflate.as_ref());
        // What the task needs only to start the session, boxed: the task's state
        // keeps every value it captured for its whole life, and this is freed once
        // the session runs (160 bytes of every idle session otherwise).
        let start = Box::new(Start {
            make,
            chosen,
            deflate,
            level: cfg.deflate.map_or(6, |d| d.level),
            limits: WsConfig { max_frame_size: cfg.max_message_size, max_message_size: cfg.max_message_size },
            server_cfg: ServerConfig {
                close_timeout: cfg.close_timeout,
                idle_timeout: cfg.idle_timeout,
                faults: cfg.faults.clone(),
            },
            shutdown: self.shutdown.clone(),
            commands,
        });
        self.tracker.spawn(async move {
            // The client went away before the switch: dropping the handle records
            // the session DISCONNECTED.
            let Some((io, leftover)) = pending.transport().await else { return drop(permit) };
            let Start { make, chosen, deflate, level, limits, server_cfg, shutdown, commands } = *start;
            upgrade::connected(&mut session, chosen);
            let ws = WsStream::new(io, Role::Server, limits, leftover).with_deflate(deflate, level);
            let behaviour = make(session.info());
            server::run(ws, &mut session, commands, behaviour, server_cfg, shutdown).await;
            // Held (captured, not rebound: a rebinding is a second copy in the
            // task's state) for the session's whole life.
            drop(permit);
        });
        response
    }
}
