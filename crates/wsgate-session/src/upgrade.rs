//! Answering a client's upgrade request: validation, negotiation, the session's
//! opening, the 101, and the transport once hyper has switched protocols.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, header};
use http_body_util::Full;
use wsgate_core::{
    COMMAND_QUEUE, EventBus, Registry, SessionHandle, SessionId, SessionInfo, SessionKind, State, TransitionDetail,
};
use wsgate_listener::Body;
use wsgate_protocol::Transport;
use wsgate_protocol::deflate::{DeflateParams, DeflatePolicy, accept_offer};
use wsgate_protocol::handshake::{
    UpgradeError, into_transport, offered_subprotocols, switching_protocols, validate_upgrade,
};

/// A valid upgrade request, taken apart: what the client offered and where it asked
/// to go. Made before anything is answered, so a handler can still refuse.
pub struct Upgrade {
    key: HeaderValue,
    path: String,
    offered: Vec<String>,
    extension_offers: Vec<String>,
    on_upgrade: hyper::upgrade::OnUpgrade,
}

impl std::fmt::Debug for Upgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgrade").field("path", &self.path).field("offered", &self.offered).finish()
    }
}

impl Upgrade {
    /// Validates the request (`wsgate_protocol::handshake::validate_upgrade`); the
    /// error is what `wsgate_listener::not_an_upgrade` answers.
    pub fn new<B>(req: &mut http::Request<B>) -> Result<Self, UpgradeError> {
        let key = validate_upgrade(req.method(), req.headers())?;
        let headers = req.headers();
        let extension_offers = headers
            .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        Ok(Self {
            key,
            path: req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/".into()),
            offered: offered_subprotocols(headers),
            extension_offers,
            on_upgrade: hyper::upgrade::on(req),
        })
    }

    /// Gives the request back its upgrade, unused, so another handler can answer it
    /// (a proxy route's fallback mock, when the upstream cannot be reached).
    pub fn restore<B>(self, req: &mut http::Request<B>) {
        req.extensions_mut().insert(self.on_upgrade);
    }

    /// Request path and query, as the client sent them.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The subprotocols the client offered, in its order of preference.
    pub fn offered(&self) -> &[String] {
        &self.offered
    }

    /// The first subprotocol the client offers that `supported` lists.
    pub fn choose_subprotocol(&self, supported: &[String]) -> Option<String> {
        self.offered.iter().find(|p| supported.contains(p)).cloned()
    }

    /// permessage-deflate, when the client offers it and `policy` allows it.
    pub fn accept_deflate(&self, policy: Option<&DeflatePolicy>) -> Option<DeflateParams> {
        accept_offer(self.extension_offers.iter().map(String::as_str), policy?)
    }

    /// The session this request opens: kind, route, path and query, client address,
    /// the recorded (already redacted) headers.
    pub fn session_info(
        &self,
        kind: SessionKind,
        route: Arc<str>,
        client_addr: SocketAddr,
        headers: Vec<(String, String)>,
    ) -> SessionInfo {
        SessionInfo {
            id: SessionId::new(),
            kind,
            route,
            path: self.path.clone(),
            client_addr: Some(client_addr),
            headers,
            opened_at: chrono::Utc::now(),
            payloads: Default::default(),
        }
    }

    /// The 101 answer with the chosen subprotocol and extension, and what waits for
    /// hyper to finish the switch.
    pub fn accept(
        self,
        subprotocol: Option<&str>,
        deflate: Option<&DeflateParams>,
    ) -> (http::Response<Body>, PendingUpgrade) {
        let mut response = switching_protocols(&self.key, subprotocol).map(|_| Full::new(Bytes::new()));
        if let Some(v) = deflate.and_then(|p| HeaderValue::from_str(&p.to_header()).ok()) {
            response.headers_mut().insert(header::SEC_WEBSOCKET_EXTENSIONS, v);
        }
        (response, PendingUpgrade { on_upgrade: self.on_upgrade })
    }
}

/// The switch hyper completes once our 101 is written.
pub struct PendingUpgrade {
    on_upgrade: hyper::upgrade::OnUpgrade,
}

impl std::fmt::Debug for PendingUpgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PendingUpgrade")
    }
}

impl PendingUpgrade {
    /// The client's transport and the bytes hyper read past the handshake; `None` if
    /// the client went away before the switch.
    pub async fn transport(self) -> Option<(Transport, Bytes)> {
        let upgraded = self.on_upgrade.await.ok()?;
        into_transport(upgraded).ok()
    }
}

/// Registers the session (REQUESTED) with a command queue of the shared capacity.
pub fn open(
    info: SessionInfo,
    bus: &Arc<EventBus>,
    registry: &Arc<Registry>,
) -> (SessionHandle, wsgate_core::Commands) {
    SessionHandle::open(info, bus.clone(), registry.clone(), COMMAND_QUEUE)
}

/// The CONNECTED step of a session wsgate serves: the client's upgrade is done.
pub fn connected(session: &mut SessionHandle, subprotocol: Option<String>) {
    session.transition(State::Connected, TransitionDetail { subprotocol, ..Default::default() });
}
