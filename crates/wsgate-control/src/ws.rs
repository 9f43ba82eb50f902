//! WebSocket endpoints of the control plane: the upgrade (done with wsgate's own
//! protocol crate, on the connection axum serves), the loop every control socket
//! runs, and `WS /api/live`.
//!
//! `WS /api/live?session=<id>&path=<path>&route=<route>` sends
//! `{"type":"status","sessions":[..]}` first (live sessions matching the filter), then
//! one JSON message per matching event (see [`crate::event_json`]), and takes the
//! commands described in [`crate::commands`], answering each with an ack.

use std::future::Future;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::response::Response;
use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use utoipa::IntoParams;
use wsgate_protocol::handshake::{UpgradeError, switching_protocols, validate_upgrade};
use wsgate_protocol::{CloseCode, Message, Role, WsConfig, WsStream};

use crate::ControlPlane;
use crate::api::parse_id;
use crate::commands::{self, InvalidCommand};
use crate::error::{ApiError, ErrorBody};
use crate::event_json;
use crate::live::{Filter, LiveFilter, Subscription};

/// The socket type every control-plane WebSocket runs on.
pub type ControlSocket = WsStream<TokioIo<Upgraded>>;

/// Limits for `/api/live`: commands are small JSON, so a megabyte (the REST body
/// limit) is plenty and bounds what a client can make us buffer.
pub const LIVE_WS_CONFIG: WsConfig = WsConfig { max_frame_size: 1 << 20, max_message_size: 1 << 20 };
/// Most queued messages written per flush.
pub const WRITE_BATCH: usize = 64;
/// A subscriber that cannot take a write for this long is disconnected: its queue is
/// already dropping, and a stalled socket must not pin a task forever.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the closing handshake may take on shutdown.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Validates a WebSocket upgrade and answers `101`; `run` gets the socket once hyper
/// hands the connection over, on the control plane's task tracker.
///
/// Callers subscribe to the hub *before* calling this and move the subscription into
/// `run`: by the time the client sees `101`, nothing emitted can be missed.
pub(crate) fn upgrade<F, Fut>(
    cp: &ControlPlane,
    mut req: Request,
    config: WsConfig,
    run: F,
) -> Result<Response, ApiError>
where
    F: FnOnce(ControlSocket) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    // HEAD is GET without a body: answer it as GET would be answered without an
    // upgrade (426), not as a wrong method.
    if req.method() == http::Method::HEAD {
        return Err(UpgradeError::NotUpgrade.into());
    }
    let key = validate_upgrade(req.method(), req.headers())?;
    // The URI may carry `?token=` or `?ticket=`: only its redacted form is logged.
    tracing::debug!(uri = %crate::auth::redacted(req.uri()), "control-plane WebSocket upgrade");
    let on_upgrade = hyper::upgrade::on(&mut req);
    let shutdown = cp.inner.shutdown.clone();
    cp.inner.tracker.spawn(async move {
        let upgraded = tokio::select! {
            u = on_upgrade => u,
            _ = shutdown.cancelled() => return,
        };
        match upgraded {
            Ok(io) => run(WsStream::new(TokioIo::new(io), Role::Server, config, Bytes::new())).await,
            Err(e) => tracing::debug!(error = %e, "control-plane WebSocket upgrade failed"),
        }
    });
    let (parts, _) = switching_protocols(&key, None).into_parts();
    Ok(Response::from_parts(parts, Body::empty()))
}

/// Flushes with a deadline; false when the socket is gone, stalled, or shutdown began.
async fn flush<IO: AsyncRead + AsyncWrite + Unpin>(ws: &mut WsStream<IO>, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        r = timeout(SEND_TIMEOUT, ws.flush()) => matches!(r, Ok(Ok(()))),
        _ = shutdown.cancelled() => false,
    }
}

/// The loop of every control socket: writes what the hub queues for it, hands data
/// messages it receives to `on_data` (writing back whatever reply that returns), and
/// closes with 1001 on shutdown. Pings are answered by `WsStream`.
pub(crate) async fn pump<IO, F, R>(
    mut ws: WsStream<IO>,
    mut sub: Subscription,
    shutdown: CancellationToken,
    mut on_data: F,
) where
    IO: AsyncRead + AsyncWrite + Unpin,
    F: FnMut(Message) -> R,
    // A command's answer may wait for its sessions (an inject's ack, bounded by
    // `INJECT_ACK_TIMEOUT`); events meanwhile wait in the subscription's bounded queue.
    R: std::future::Future<Output = Option<Message>>,
{
    loop {
        tokio::select! {
            // Shutdown first; then what the peer sends (commands, pings: rare and
            // small), so a flood of events cannot starve command handling; then events.
            biased;
            _ = shutdown.cancelled() => {
                let _ = timeout(CLOSE_TIMEOUT, ws.close(CloseCode::GOING_AWAY, "shutting down")).await;
                return;
            }
            msg = ws.recv() => match msg {
                Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                    if let Some(reply) = on_data(m).await
                        && (ws.feed(&reply).is_err() || !flush(&mut ws, &shutdown).await)
                    {
                        return;
                    }
                }
                // The pong is queued by WsStream and flushed by the next recv.
                Ok(Message::Ping(_) | Message::Pong(_)) => {}
                // The peer closed (our reply is queued) or broke the protocol (a close
                // frame saying why is queued): send it, then drop the connection.
                Ok(Message::Close(_)) | Err(_) => {
                    let _ = timeout(CLOSE_TIMEOUT, ws.flush_best_effort()).await;
                    return;
                }
            },
            out = sub.rx.recv() => {
                let Some(first) = out else { return };
                if ws.feed(&first).is_err() {
                    return;
                }
                for _ in 1..WRITE_BATCH {
                    let Ok(next) = sub.rx.try_recv() else { break };
                    if ws.feed(&next).is_err() {
                        return;
                    }
                }
                if !flush(&mut ws, &shutdown).await {
                    return;
                }
            }
        }
    }
}

/// The filters of `WS /api/live`; unset or empty ones match everything.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LiveQuery {
    /// Only this session's events.
    #[param(pattern = "^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})?$")]
    pub session: Option<String>,
    /// Only sessions on this request path (with its query if it has one).
    pub path: Option<String>,
    /// Only sessions of this route.
    pub route: Option<String>,
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

/// `WS /api/live`.
#[utoipa::path(
    get,
    path = "/api/live",
    tag = "live",
    summary = "Live events and commands (WebSocket)",
    description = "A WebSocket: a `status` message with the live sessions, then one JSON \
                   message per event (`lifecycle`, `message`, `error`); takes `inject` and \
                   `close` commands, including the websocket-multiplex shapes, each answered \
                   by an `ack`. See docs/control-api.md.",
    params(LiveQuery),
    responses(
        (status = 101, description = "Upgraded to a WebSocket"),
        (status = 400, description = "A filter is invalid, or Sec-WebSocket-Key is missing", body = ErrorBody),
        (status = 426, description = "Not a WebSocket upgrade request", body = ErrorBody,
         headers(("Upgrade" = String, description = "`websocket`"))),
    ),
)]
pub async fn live(
    State(cp): State<ControlPlane>,
    query: Result<Query<LiveQuery>, QueryRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    let filter = LiveFilter {
        session: non_empty(q.session).as_deref().map(parse_id).transpose()?,
        path: non_empty(q.path),
        route: non_empty(q.route),
    };
    let sub = cp.inner.hub.subscribe(Filter::Live(filter.clone()));
    let registry = cp.inner.registry.clone();
    let shutdown = cp.inner.shutdown.clone();
    upgrade(&cp, req, LIVE_WS_CONFIG, move |mut ws| async move {
        // Taken after subscribing: an event racing with the snapshot shows up twice
        // (in the snapshot and as an event), never not at all.
        let sessions: Vec<_> = registry.live().into_iter().filter(|s| filter.matches(&s.info)).collect();
        if ws.feed(&Message::Text(event_json::status(&sessions))).is_err() || !flush(&mut ws, &shutdown).await {
            return;
        }
        pump(ws, sub, shutdown, |msg| {
            let registry = registry.clone();
            async move {
                let ack = match msg {
                    Message::Text(cmd) => commands::execute(&registry, &cmd).await,
                    _ => commands::reject(InvalidCommand::Binary),
                };
                Some(Message::Text(ack.to_bytes()))
            }
        })
        .await;
    })
}
