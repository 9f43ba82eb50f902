//! websocket-multiplex's raw per-path taps, so its users can point their tools at
//! wsgate unchanged.
//!
//! - `WS /client/{path}` receives every data message sent to the clients of live
//!   sessions on `/{path}` (`upstream_to_client`, or `gateway_to_client` for sessions
//!   the gateway terminates); a message written into it is injected to those clients.
//! - `WS /upstream/{path}` receives every data message those clients send towards
//!   their upstreams; a message written into it is injected to the upstreams.
//!
//! Each tap is one side's wire, as websocket-multiplex defines them (its test suite
//! asserts that `/upstream/p` hears what the client on `p` sends).
//!
//! Messages are raw: opcode (text or binary) and payload exactly as on the wire, no
//! JSON wrapper, never cut. Fragmented messages are delivered whole.

use axum::extract::{Request, State};
use axum::response::Response;
use wsgate_core::{Command, InjectAck, Registry, Target};
use wsgate_protocol::{Message, WsConfig};

use crate::ControlPlane;
use crate::error::{ApiError, ErrorBody};
use crate::live::{Filter, TapFilter, TapSide};
use crate::ws::{pump, upgrade};

// One handler per route: `#[utoipa::path]` documents one path, and a tap on `/` is
// `/client` or `/client/` (axum's wildcard needs a segment).

/// `WS /client/{path}`.
#[utoipa::path(get, path = "/client/{*path}", tag = "taps", summary = "Client-side tap of a path (WebSocket)",
    description = "Every data message sent to the clients on `/{path}` (raw, no JSON wrapper); a message \
                   written into it is injected to those clients. `path` may contain slashes.",
    params(("path" = String, Path, description = "The session path without its leading slash")),
    responses(TapResponses))]
pub async fn client(State(cp): State<ControlPlane>, req: Request) -> Result<Response, ApiError> {
    tap(cp, req, TapSide::Client, "/client")
}

/// `WS /client`: the client-side tap of `/`.
#[utoipa::path(
    get,
    path = "/client",
    tag = "taps",
    summary = "Client-side tap of `/` (WebSocket)",
    responses(TapResponses)
)]
pub async fn client_root(State(cp): State<ControlPlane>, req: Request) -> Result<Response, ApiError> {
    tap(cp, req, TapSide::Client, "/client")
}

/// `WS /client/`: the client-side tap of `/`.
#[utoipa::path(
    get,
    path = "/client/",
    tag = "taps",
    summary = "Client-side tap of `/` (WebSocket)",
    responses(TapResponses)
)]
pub async fn client_root_slash(State(cp): State<ControlPlane>, req: Request) -> Result<Response, ApiError> {
    tap(cp, req, TapSide::Client, "/client")
}

/// `WS /upstream/{path}`.
#[utoipa::path(get, path = "/upstream/{*path}", tag = "taps", summary = "Upstream-side tap of a path (WebSocket)",
    description = "Every data message the clients on `/{path}` send towards their upstreams (raw); a \
                   message written into it is injected to those upstreams. `path` may contain slashes.",
    params(("path" = String, Path, description = "The session path without its leading slash")),
    responses(TapResponses))]
pub async fn upstream(State(cp): State<ControlPlane>, req: Request) -> Result<Response, ApiError> {
    tap(cp, req, TapSide::Upstream, "/upstream")
}

/// `WS /upstream`: the upstream-side tap of `/`.
#[utoipa::path(
    get,
    path = "/upstream",
    tag = "taps",
    summary = "Upstream-side tap of `/` (WebSocket)",
    responses(TapResponses)
)]
pub async fn upstream_root(State(cp): State<ControlPlane>, req: Request) -> Result<Response, ApiError> {
    tap(cp, req, TapSide::Upstream, "/upstream")
}

/// `WS /upstream/`: the upstream-side tap of `/`.
#[utoipa::path(
    get,
    path = "/upstream/",
    tag = "taps",
    summary = "Upstream-side tap of `/` (WebSocket)",
    responses(TapResponses)
)]
pub async fn upstream_root_slash(State(cp): State<ControlPlane>, req: Request) -> Result<Response, ApiError> {
    tap(cp, req, TapSide::Upstream, "/upstream")
}

/// What every tap route answers.
/// Documentation only: the handlers build these answers through `ApiError`.
#[derive(utoipa::IntoResponses)]
pub enum TapResponses {
    /// Upgraded to a WebSocket
    #[response(status = 101)]
    Upgraded,
    /// Sec-WebSocket-Key is missing
    #[response(status = 400)]
    BadUpgrade(ErrorBody),
    /// Not a WebSocket upgrade request
    #[response(status = 426)]
    NotUpgrade(ErrorBody),
}

/// The session path a tap URL names: `/client/chat/room` → `/chat/room`, `/client` →
/// `/`. Taken from the raw URI so it compares equal to the raw request paths sessions
/// record.
fn tapped_path(uri_path: &str, prefix: &str) -> String {
    match uri_path.strip_prefix(prefix) {
        Some(rest) if rest.len() > 1 => rest.to_owned(),
        _ => "/".to_owned(),
    }
}

fn tap(cp: ControlPlane, req: Request, side: TapSide, prefix: &str) -> Result<Response, ApiError> {
    let path = tapped_path(req.uri().path(), prefix);
    let sub = cp.inner.hub.subscribe(Filter::Tap(TapFilter { path: path.clone(), side }));
    let registry = cp.inner.registry.clone();
    let shutdown = cp.inner.shutdown.clone();
    let to = match side {
        TapSide::Client => Target::Client,
        TapSide::Upstream => Target::Upstream,
    };
    upgrade(&cp, req, WsConfig::default(), move |ws| async move {
        pump(ws, sub, shutdown, |msg| {
            inject_on_path(&registry, &path, to, msg);
            std::future::ready(None)
        })
        .await;
    })
}

/// Injects one message written into a tap to every live session on the path.
fn inject_on_path(registry: &Registry, path: &str, to: Target, msg: Message) {
    let (payload, binary) = match msg {
        Message::Text(p) => (p, false),
        Message::Binary(p) => (p, true),
        _ => return,
    };
    for id in registry.live_on_path(path) {
        if let Err(e) = registry.command(
            id,
            // Nobody waits for a tap's answer: the session still refuses what its
            // peer cannot take (the bound holds), the tap just does not hear of it.
            Command::Inject { to, payload: payload.clone(), binary, ack: InjectAck::detached() },
        ) {
            tracing::debug!(session = %id, error = %e, "tap inject not delivered");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tapped_path;

    #[test]
    fn tap_paths() {
        assert_eq!(tapped_path("/client/chat", "/client"), "/chat");
        assert_eq!(tapped_path("/client/chat/room", "/client"), "/chat/room");
        assert_eq!(tapped_path("/client/", "/client"), "/");
        assert_eq!(tapped_path("/client", "/client"), "/");
        assert_eq!(tapped_path("/upstream/a%20b", "/upstream"), "/a%20b");
    }
}
