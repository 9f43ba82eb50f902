//! Answering a client's upgrade: open the session, choose and dial the upstream,
//! then answer the client with what the upstream said.

use std::sync::Arc;

use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::time::Instant;
use wsgate_core::{
    Command, Ending, ErrorKind, Initiator, QueueOutcome, ReasonKind, SessionHandle, SessionKind, State,
    TransitionDetail,
};
use wsgate_protocol::{CloseCode, ConnectError, ConnectRequest, Connected, Frame};
use wsgate_session::{PendingUpgrade, Upgrade, upgrade};

use crate::config::ProxyConfig;
use crate::early::{EarlyOutcome, EarlyQueue, wait_for_upstream};
use crate::headers;
use crate::pump::{Pump, PumpConfig, Side};
use crate::service::Proxy;
use crate::upstream::resolve;

/// Capacity of each session's command queue: the one every session shares.
pub use wsgate_core::COMMAND_QUEUE;

use wsgate_listener::{Body, Conn, not_an_upgrade, plain};

fn failed(session: &mut SessionHandle, err: &ConnectError, upstream: &str) {
    session.transition(
        State::Failed,
        TransitionDetail {
            reason: Some(err.to_string()),
            reason_kind: Some(ReasonKind::from(err)),
            http_status: err.status().map(|s| s.as_u16()),
            upstream: Some(upstream.to_owned()),
            initiator: Some(Initiator::Upstream),
            ..Default::default()
        },
    );
}

/// Whether a dial failure means the upstream is not there to answer (what a route's
/// fallback mock stands in for): anything but an answer refusing the client, bar a
/// 5xx, which says the upstream itself is down.
fn unreachable(e: &ConnectError) -> bool {
    match e {
        ConnectError::Rejected { status, .. } => status.is_server_error(),
        _ => true,
    }
}

/// Said on the failed proxy session before its FAILED step: the client is answered
/// by the fallback mock, in a session of its own.
fn note_fallback(session: &mut SessionHandle, why: &str) {
    let msg = format!("{why}; the route's fallback mock answers the client");
    session.error(ErrorKind::MockFallback, msg);
}

/// The status a client sees when the upstream could not be reached.
fn gateway_status(err: &ConnectError) -> StatusCode {
    match err {
        ConnectError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    }
}

/// The answer to a client whose upstream could not be reached. `detail` (URLs,
/// resolver and TLS errors) is logged, and already in the session record; the client
/// sees it only under `expose_errors`, otherwise a generic reason and the session id
/// an operator can look up.
fn unavailable(cfg: &ProxyConfig, session: &SessionHandle, status: StatusCode, detail: &str) -> Response<Body> {
    let id = session.id();
    tracing::info!(session = %id, %status, detail, "upstream unavailable");
    if cfg.expose_errors {
        return plain(status, &format!("wsgate proxy: {detail}"));
    }
    let what = if status == StatusCode::GATEWAY_TIMEOUT { "did not answer in time" } else { "is unavailable" };
    plain(status, &format!("wsgate proxy: the upstream {what} (session {id})"))
}

pub(crate) async fn handle(mut req: hyper::Request<Incoming>, proxy: Arc<Proxy>, conn: Conn) -> Response<Body> {
    let Conn { peer, tls, permit } = conn;
    let up = match Upgrade::new(&mut req) {
        Ok(u) => u,
        Err(e) => return not_an_upgrade("wsgate proxy", &e),
    };
    let cfg = &proxy.cfg;
    let path = up.path().to_owned();
    let recorded = headers::recorded(req.headers(), &cfg.forward_headers);
    let mut info = up.session_info(SessionKind::Proxy, cfg.route.clone(), peer, recorded);
    info.payloads = cfg.payloads;
    let (mut session, commands) = upgrade::open(info, &proxy.bus, &proxy.registry);
    if let Some(refusal) = wsgate_session::refused_by_fault(&cfg.faults, &mut session, "wsgate proxy") {
        return refusal;
    }

    let resolved = match resolve(cfg, &proxy.http, &path).await {
        Ok(r) => r,
        Err(e) => {
            if proxy.fallback.is_some() {
                note_fallback(&mut session, &e.to_string());
            }
            session.transition(
                State::Failed,
                TransitionDetail {
                    reason: Some(e.to_string()),
                    reason_kind: Some(ReasonKind::Resolver),
                    initiator: Some(Initiator::Gateway),
                    ..Default::default()
                },
            );
            if let Some(fallback) = &proxy.fallback {
                drop(session);
                up.restore(&mut req);
                return fallback.clone().call(req, Conn { peer, tls, permit }).await;
            }
            return unavailable(cfg, &session, StatusCode::BAD_GATEWAY, &e.to_string());
        }
    };
    if let Some(why) = &resolved.fallback_reason {
        session.error(ErrorKind::ResolverFallback, format!("{why}; using the static upstream"));
    }
    let upstream_url = resolved.url.to_string();
    session.transition(
        State::Connecting,
        TransitionDetail {
            upstream: Some(upstream_url.clone()),
            // Said here, where the choice is made, so observers (the master
            // connection) know the client is answered before the upstream.
            accepted_early: cfg.accept_early.then_some(true),
            ..Default::default()
        },
    );

    let offered = up.offered().to_vec();
    // The client side's permessage-deflate is ours to accept; the upstream side's is
    // negotiated by our own offer below. Each side compresses (or not) on its own.
    let client_deflate = up.accept_deflate(cfg.deflate.as_ref());
    let level = cfg.deflate.map_or(6, |d| d.level);
    let mut connect = ConnectRequest::new(resolved.url);
    connect.deflate = cfg.deflate;
    connect.headers = headers::forwarded(req.headers(), &cfg.forward_headers, Some(peer), tls);
    connect.timeout = cfg.connect_timeout;
    connect.tls = Some(cfg.upstream_tls.clone());

    if cfg.accept_early {
        // The client is answered before the upstream: it gets its own first choice of
        // subprotocol, and the upstream is offered only that one.
        let chosen = offered.first().cloned();
        connect.subprotocols = chosen.iter().cloned().collect();
        let (response, pending) = up.accept(chosen.as_deref(), client_deflate.as_ref());
        let p = proxy.clone();
        proxy.tracker.spawn(async move {
            let _permit = permit;
            let Some(client) = take_client(pending, &p, client_deflate.map(|d| (d, level))).await else { return };
            replace_older(&p, &session);
            run_early(p, session, commands, client, connect, upstream_url).await;
        });
        return response;
    }

    connect.subprotocols = offered;
    let started = Instant::now();
    let connected = match wsgate_protocol::connect(connect).await {
        Ok(c) => c,
        Err(e) => {
            let fallback = proxy.fallback.as_ref().filter(|_| unreachable(&e));
            if fallback.is_some() {
                note_fallback(&mut session, &format!("upstream {upstream_url}: {e}"));
            }
            failed(&mut session, &e, &upstream_url);
            if let Some(fallback) = fallback {
                drop(session);
                up.restore(&mut req);
                return fallback.clone().call(req, Conn { peer, tls, permit }).await;
            }
            return match e {
                ConnectError::Rejected { status, headers: h, body } => {
                    let mut r = Response::new(Full::new(body));
                    *r.status_mut() = status;
                    *r.headers_mut() = headers::relayed_rejection(&h);
                    r
                }
                other => {
                    unavailable(cfg, &session, gateway_status(&other), &format!("upstream {upstream_url}: {other}"))
                }
            };
        }
    };
    let connect_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (response, pending) = up.accept(connected.subprotocol.as_deref(), client_deflate.as_ref());
    let p = proxy.clone();
    proxy.tracker.spawn(async move {
        let _permit = permit;
        let Some(client) = take_client(pending, &p, client_deflate.map(|d| (d, level))).await else { return };
        replace_older(&p, &session);
        session.transition(
            State::Connected,
            TransitionDetail {
                upstream: Some(upstream_url),
                subprotocol: connected.subprotocol.clone(),
                connect_ms: Some(connect_ms),
                ..Default::default()
            },
        );
        let upstream = Side::upstream(
            connected.transport,
            connected.leftover,
            p.cfg.max_message_size,
            connected.deflate.map(|d| (d, level)),
        );
        Pump::new(client, upstream, &mut session, commands, pump_config(&p), p.shutdown.clone()).run().await;
    });
    response
}

/// The close reason a replaced session's client and upstream are sent.
pub const REPLACED_REASON: &str = "replaced by a new client on the same path";

/// `replace_same_path`: once this session's client is accepted, older live proxy
/// sessions on its path (query ignored) are closed with 1000. Only older ones (ids
/// are time-ordered UUIDv7), so of two clients racing on a path the newer one stays
/// whichever finishes its handshake first. Called when the client is accepted —
/// after the upstream accepted it too, unless accept-early — so a newcomer the
/// upstream refuses never evicts the connected client.
fn replace_older(p: &Proxy, session: &SessionHandle) {
    if !p.cfg.replace_same_path {
        return;
    }
    let me = session.id();
    for id in p.registry.live_on_path(session.info().path_only()) {
        if id >= me || p.registry.live_kind(id) != Some(SessionKind::Proxy) {
            continue;
        }
        let close = Command::Close {
            code: CloseCode::NORMAL,
            reason: REPLACED_REASON.into(),
            kind: Some(ReasonKind::Replaced),
        };
        if let Err(e) = p.registry.command(id, close) {
            tracing::debug!(session = %id, error = %e, "replaced session not told to close");
        }
    }
}

fn pump_config(p: &Proxy) -> PumpConfig {
    PumpConfig {
        max_message_size: p.cfg.max_message_size,
        faults: p.cfg.faults.clone(),
        intercepts: p.cfg.intercepts.clone(),
        rules: p.cfg.rules.clone(),
        seed: p.cfg.seed,
        idle_timeout: p.cfg.idle_timeout,
        close_timeout: p.cfg.close_timeout,
    }
}

/// The client's side of the session once hyper has written our 101; `None` if the
/// client went away before the upgrade completed.
async fn take_client(
    pending: PendingUpgrade,
    p: &Proxy,
    deflate: Option<(wsgate_protocol::deflate::DeflateParams, u32)>,
) -> Option<Side> {
    let (io, leftover) = pending.transport().await?;
    Some(Side::client(io, leftover, p.cfg.max_message_size, deflate))
}

async fn run_early(
    p: Arc<Proxy>,
    mut session: SessionHandle,
    commands: wsgate_core::Commands,
    mut client: Side,
    connect: ConnectRequest,
    upstream_url: String,
) {
    let mut queue = EarlyQueue::new(p.cfg.queue);
    let started = Instant::now();
    let outcome =
        wait_for_upstream(&mut client, wsgate_protocol::connect(connect), &mut queue, &mut session, &p.shutdown).await;
    let connected: Connected = match outcome {
        EarlyOutcome::Ready(c) => *c,
        EarlyOutcome::DialFailed(e) => {
            failed(&mut session, &e, &upstream_url);
            let reason = format!("upstream unavailable: {}", ReasonKind::from(&e));
            let _ = client.write_now(&close_frame(CloseCode::BAD_GATEWAY, &reason)).await;
            return;
        }
        EarlyOutcome::ClientGone(close) => {
            if let Some(c) = &close {
                let _ = client.write_now(&close_frame(c.code, "")).await;
            }
            let code = close.as_ref().map(|c| c.code).unwrap_or(CloseCode::ABNORMAL);
            return Ending::new(code, close.map(|c| c.reason), Initiator::Client).finish(&mut session).await;
        }
        EarlyOutcome::ClientBroke(e) => {
            let _ = client.write_now(&close_frame(e.close_code(), &e.to_string())).await;
            return Ending::new(e.close_code(), Some(e.to_string()), Initiator::Gateway).finish(&mut session).await;
        }
        EarlyOutcome::Shutdown => {
            let reason = "gateway shutting down";
            let _ = client.write_now(&close_frame(CloseCode::GOING_AWAY, reason)).await;
            return Ending::closed(CloseCode::GOING_AWAY, reason, Initiator::Gateway).finish(&mut session).await;
        }
    };
    session.transition(
        State::Connected,
        TransitionDetail {
            upstream: Some(upstream_url),
            subprotocol: connected.subprotocol.clone(),
            connect_ms: Some(started.elapsed().as_secs_f64() * 1000.0),
            ..Default::default()
        },
    );
    let level = p.cfg.deflate.map_or(6, |d| d.level);
    let mut upstream = Side::upstream(
        connected.transport,
        connected.leftover,
        p.cfg.max_message_size,
        connected.deflate.map(|d| (d, level)),
    );
    for (queued_at, frame) in queue.drain() {
        upstream.queue_frame(&frame);
        session.queued(QueueOutcome::Sent, &frame, queued_at);
    }
    Pump::new(client, upstream, &mut session, commands, pump_config(&p), p.shutdown.clone()).run().await;
}

fn close_frame(code: u16, reason: &str) -> Frame {
    Frame::new(wsgate_protocol::OpCode::Close, wsgate_protocol::CloseFrame::new(code, reason).encode())
}
