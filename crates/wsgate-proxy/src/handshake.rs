//! Answering a client's upgrade: open the session, choose and dial the upstream,
//! then answer the client with what the upstream said.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::time::Instant;
use wsgate_core::{Initiator, SessionHandle, SessionInfo, SessionKind, State, TransitionDetail};
use wsgate_protocol::handshake::{into_transport, offered_subprotocols, switching_protocols, validate_upgrade};
use wsgate_protocol::{CloseCode, ConnectError, ConnectRequest, Connected, Frame};

use crate::config::ProxyConfig;
use crate::early::{EarlyOutcome, EarlyQueue, wait_for_upstream};
use crate::headers;
use crate::pump::{Pump, PumpConfig, Side};
use crate::service::Proxy;
use crate::upstream::resolve;

/// Capacity of each session's command queue (inject/close from the control plane).
pub const COMMAND_QUEUE: usize = 64;

use wsgate_listener::{Body, Conn, not_an_upgrade, plain};

fn failed(session: &mut SessionHandle, err: &ConnectError, upstream: &str) {
    session.transition(
        State::Failed,
        TransitionDetail {
            reason: Some(err.to_string()),
            reason_kind: Some(err.kind()),
            http_status: err.status().map(|s| s.as_u16()),
            upstream: Some(upstream.to_owned()),
            initiator: Some(Initiator::Upstream),
            ..Default::default()
        },
    );
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
    let key = match validate_upgrade(req.method(), req.headers()) {
        Ok(k) => k,
        Err(e) => return not_an_upgrade("wsgate proxy", &e),
    };
    let cfg = &proxy.cfg;
    let path = req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/".into());
    let info = SessionInfo {
        id: wsgate_core::SessionId::new(),
        kind: SessionKind::Proxy,
        route: cfg.route.clone(),
        path: path.clone(),
        client_addr: Some(peer),
        headers: headers::recorded(req.headers(), &cfg.forward_headers),
        opened_at: chrono::Utc::now(),
    };
    let (mut session, commands) = SessionHandle::open(info, proxy.bus.clone(), proxy.registry.clone(), COMMAND_QUEUE);

    let resolved = match resolve(cfg, &proxy.http, &path).await {
        Ok(r) => r,
        Err(e) => {
            session.transition(
                State::Failed,
                TransitionDetail {
                    reason: Some(e.to_string()),
                    reason_kind: Some("resolver"),
                    initiator: Some(Initiator::Gateway),
                    ..Default::default()
                },
            );
            return unavailable(cfg, &session, StatusCode::BAD_GATEWAY, &e.to_string());
        }
    };
    if let Some(why) = &resolved.fallback_reason {
        session.error("resolver_fallback", format!("{why}; using the static upstream"));
    }
    let upstream_url = resolved.url.to_string();
    session
        .transition(State::Connecting, TransitionDetail { upstream: Some(upstream_url.clone()), ..Default::default() });

    let offered = offered_subprotocols(req.headers());
    // The client side's permessage-deflate is ours to accept; the upstream side's is
    // negotiated by our own offer below. Each side compresses (or not) on its own.
    let client_deflate = cfg.deflate.as_ref().and_then(|policy| {
        let offers = req.headers().get_all(header::SEC_WEBSOCKET_EXTENSIONS);
        wsgate_protocol::deflate::accept_offer(offers.iter().filter_map(|v| v.to_str().ok()), policy)
    });
    let level = cfg.deflate.map_or(6, |d| d.level);
    let mut connect = ConnectRequest::new(resolved.url);
    connect.deflate = cfg.deflate;
    connect.headers = headers::forwarded(req.headers(), &cfg.forward_headers, Some(peer), tls);
    connect.timeout = cfg.connect_timeout;
    connect.tls = Some(cfg.upstream_tls.clone());
    let on_upgrade = hyper::upgrade::on(&mut req);

    if cfg.accept_early {
        // The client is answered before the upstream: it gets its own first choice of
        // subprotocol, and the upstream is offered only that one.
        let chosen = offered.first().cloned();
        connect.subprotocols = chosen.iter().cloned().collect();
        let response = with_extensions(switching_protocols(&key, chosen.as_deref()), client_deflate.as_ref());
        let p = proxy.clone();
        proxy.tracker.spawn(async move {
            let _permit = permit;
            let Some(client) = take_client(on_upgrade, &p, client_deflate.map(|d| (d, level))).await else { return };
            run_early(p, session, commands, client, connect, upstream_url).await;
        });
        return map_body(response);
    }

    connect.subprotocols = offered;
    let started = Instant::now();
    let connected = match wsgate_protocol::connect(connect).await {
        Ok(c) => c,
        Err(e) => {
            failed(&mut session, &e, &upstream_url);
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
    let response =
        with_extensions(switching_protocols(&key, connected.subprotocol.as_deref()), client_deflate.as_ref());
    let p = proxy.clone();
    proxy.tracker.spawn(async move {
        let _permit = permit;
        let Some(client) = take_client(on_upgrade, &p, client_deflate.map(|d| (d, level))).await else { return };
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
    map_body(response)
}

fn pump_config(p: &Proxy) -> PumpConfig {
    PumpConfig {
        max_message_size: p.cfg.max_message_size,
        idle_timeout: p.cfg.idle_timeout,
        close_timeout: p.cfg.close_timeout,
    }
}

/// The client's side of the session once hyper has written our 101; `None` if the
/// client went away before the upgrade completed.
async fn take_client(
    on_upgrade: hyper::upgrade::OnUpgrade,
    p: &Proxy,
    deflate: Option<(wsgate_protocol::deflate::DeflateParams, u32)>,
) -> Option<Side> {
    let upgraded = on_upgrade.await.ok()?;
    let (io, leftover) = into_transport(upgraded).ok()?;
    Some(Side::client(io, leftover, p.cfg.max_message_size, deflate))
}

/// Adds the agreed `Sec-WebSocket-Extensions` to a 101 answer.
fn with_extensions(
    mut r: Response<http_body_util::Empty<Bytes>>,
    deflate: Option<&wsgate_protocol::deflate::DeflateParams>,
) -> Response<http_body_util::Empty<Bytes>> {
    if let Some(v) = deflate.and_then(|p| HeaderValue::from_str(&p.to_header()).ok()) {
        r.headers_mut().insert(header::SEC_WEBSOCKET_EXTENSIONS, v);
    }
    r
}

fn map_body(r: Response<http_body_util::Empty<Bytes>>) -> Response<Body> {
    r.map(|_| Full::new(Bytes::new()))
}

async fn run_early(
    p: Arc<Proxy>,
    mut session: SessionHandle,
    commands: tokio::sync::mpsc::Receiver<wsgate_core::Command>,
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
            let reason = format!("upstream unavailable: {}", e.kind());
            let _ = client.write_now(&close_frame(CloseCode::BAD_GATEWAY, &reason)).await;
            return;
        }
        EarlyOutcome::ClientGone(close) => {
            if let Some(c) = &close {
                let _ = client.write_now(&close_frame(c.code, "")).await;
            }
            let code = close.as_ref().map(|c| c.code).unwrap_or(CloseCode::ABNORMAL);
            return disconnected(&mut session, code, close.map(|c| c.reason), Initiator::Client);
        }
        EarlyOutcome::ClientBroke(e) => {
            let _ = client.write_now(&close_frame(e.close_code(), &e.to_string())).await;
            return disconnected(&mut session, e.close_code(), Some(e.to_string()), Initiator::Gateway);
        }
        EarlyOutcome::Shutdown => {
            let reason = "gateway shutting down";
            let _ = client.write_now(&close_frame(CloseCode::GOING_AWAY, reason)).await;
            return disconnected(&mut session, CloseCode::GOING_AWAY, Some(reason.into()), Initiator::Gateway);
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
    for frame in queue.drain() {
        upstream.queue_frame(&frame);
    }
    Pump::new(client, upstream, &mut session, commands, pump_config(&p), p.shutdown.clone()).run().await;
}

fn disconnected(session: &mut SessionHandle, code: u16, reason: Option<String>, initiator: Initiator) {
    session.transition(
        State::Disconnected,
        TransitionDetail {
            close_code: Some(code),
            close_reason: reason,
            initiator: Some(initiator),
            ..Default::default()
        },
    );
}

fn close_frame(code: u16, reason: &str) -> Frame {
    Frame::new(wsgate_protocol::OpCode::Close, wsgate_protocol::CloseFrame::new(code, reason).encode())
}
