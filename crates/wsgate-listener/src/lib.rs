//! The front door every serving handler shares: accept TCP, terminate TLS, enforce
//! the connection limit and the handshake deadline, and hand each HTTP/1.1 request to
//! the handler, which answers it (usually with an upgrade).
//!
//! Handlers (proxy, mock, later relay) implement [`Handler`]; a [`Router`] is a handler
//! that hands each request to the first route it matches ([`route`]). This crate knows
//! nothing about sessions.

pub mod route;

pub use route::{DynHandler, PathPattern, Route, Router};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wsgate_protocol::Transport;
use wsgate_protocol::handshake::UpgradeError;

/// Response body type every handler answers with.
pub type Body = Full<Bytes>;

#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Serve `wss://` with this certificate.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Concurrent client connections; beyond it clients get HTTP 503.
    pub max_connections: usize,
    /// Time a client has for its TLS handshake and upgrade request (slowloris guard).
    pub handshake_timeout: Duration,
}

/// What the handler learns about the connection a request came on.
#[derive(Debug)]
pub struct Conn {
    pub peer: SocketAddr,
    pub tls: bool,
    /// Held for as long as the session lives; dropping it frees a connection slot.
    pub permit: Permit,
}

/// The connection slots a session holds: the listener's, and its route's when the
/// route has its own limit. Dropping it frees both.
#[derive(Debug)]
pub struct Permit {
    pub listener: OwnedSemaphorePermit,
    pub route: Option<OwnedSemaphorePermit>,
}

/// A serving handler: answers one request (typically a WebSocket upgrade, spawning
/// the session's task on the tracker it was built with).
pub trait Handler: Send + Sync + 'static {
    fn handle(
        self: Arc<Self>,
        req: hyper::Request<Incoming>,
        conn: Conn,
    ) -> impl Future<Output = Response<Body>> + Send;
}

/// A text answer with a status (errors, refusals).
pub fn plain(status: StatusCode, msg: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{msg}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// The answer to a request that is not a valid WebSocket upgrade: the status the
/// error maps to, a body saying why (`who` names the role), `Upgrade: websocket`, and
/// for an unsupported version the one we speak — RFC 6455 §4.2.2 requires
/// `Sec-WebSocket-Version` on that refusal so the client can retry with it.
pub fn not_an_upgrade(who: &str, e: &UpgradeError) -> Response<Body> {
    let mut r = plain(e.status(), &format!("{who}: {e}; connect with a WebSocket client"));
    r.headers_mut().insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if *e == UpgradeError::Version {
        r.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
    }
    r
}

/// The answer beyond `max_connections` (the listener's or a route's).
pub(crate) fn over_limit() -> Response<Body> {
    let mut r = plain(StatusCode::SERVICE_UNAVAILABLE, "wsgate: connection limit reached; try again later");
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// Marks an answer as the connection's last unless it switches protocols: a 101
/// keeps exactly the `Connection: Upgrade` the handler set; any other answer ends
/// the connection (`Connection: close`), which hyper honours by closing after it.
/// A refusal that names a protocol to upgrade to (426) keeps `upgrade` beside
/// `close`, since `Upgrade` is a hop-by-hop header the `Connection` header must list.
fn last_answer(mut res: Response<Body>) -> Response<Body> {
    if res.status() != StatusCode::SWITCHING_PROTOCOLS {
        let value = if res.headers().contains_key(header::UPGRADE) { "upgrade, close" } else { "close" };
        res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static(value));
    }
    res
}

/// Accepts connections on an already-bound listener until `shutdown` fires. Each
/// connection runs on `tracker`, so the caller can drain them with a deadline.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    cfg: ListenerConfig,
    handler: Arc<H>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let limit = Arc::new(Semaphore::new(cfg.max_connections));
    let cfg = Arc::new(cfg);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let (tcp, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let conn = connection(tcp, peer, cfg.clone(), limit.clone(), handler.clone(), shutdown.clone());
        tracker.spawn(conn);
    }
}

async fn connection<H: Handler>(
    tcp: TcpStream,
    peer: SocketAddr,
    cfg: Arc<ListenerConfig>,
    limit: Arc<Semaphore>,
    handler: Arc<H>,
    shutdown: CancellationToken,
) {
    // Over the limit, the request is still read and answered (503) rather than the
    // socket dropped: closing with the request unread would reset the connection and
    // the client would never see why.
    let permit = limit.try_acquire_owned().ok();
    let tls = cfg.tls.is_some();
    let transport = match &cfg.tls {
        None => Transport::Plain(tcp),
        Some(tls_cfg) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls_cfg.clone());
            match tokio::time::timeout(cfg.handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => Transport::Tls(Box::new(s.into())),
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            }
        }
    };
    // One request per connection, so the permit is taken once. Keep-alive stays on in
    // hyper and every answer but a 101 says `Connection: close` itself: with
    // keep-alive off, hyper appends `close` to the 101's `Connection: Upgrade` too,
    // and strict clients (tungstenite, OkHttp) compare that header with `Upgrade`
    // as a whole and refuse the upgrade.
    let permit = Arc::new(Mutex::new(permit));
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let handler = handler.clone();
        let permit = permit.lock().ok().and_then(|mut p| p.take());
        async move {
            let res = match permit {
                Some(listener) => {
                    let permit = Permit { listener, route: None };
                    handler.handle(req, Conn { peer, tls, permit }).await
                }
                None => over_limit(),
            };
            Ok::<_, std::convert::Infallible>(last_answer(res))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.handshake_timeout)
        .serve_connection(TokioIo::new(transport), service)
        .with_upgrades();
    tokio::select! {
        _ = conn => {}
        _ = shutdown.cancelled() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_101_keeps_the_connection_header_the_handler_set() {
        let mut ok = Response::new(Body::default());
        *ok.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        ok.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        assert_eq!(last_answer(ok).headers()[header::CONNECTION], "Upgrade");
        let refused = last_answer(not_an_upgrade("wsgate mock", &UpgradeError::NotUpgrade));
        assert_eq!(refused.headers()[header::CONNECTION], "upgrade, close");
        assert_eq!(last_answer(over_limit()).headers()[header::CONNECTION], "close");
    }

    #[test]
    fn a_refused_upgrade_says_why_and_which_version_we_speak() {
        let r = not_an_upgrade("wsgate mock", &UpgradeError::Version);
        assert_eq!(r.status(), StatusCode::UPGRADE_REQUIRED);
        assert_eq!(r.headers()[header::SEC_WEBSOCKET_VERSION], "13");
        assert_eq!(r.headers()[header::UPGRADE], "websocket");
        let r = not_an_upgrade("wsgate proxy", &UpgradeError::NotUpgrade);
        assert_eq!(r.status(), StatusCode::UPGRADE_REQUIRED);
        assert!(!r.headers().contains_key(header::SEC_WEBSOCKET_VERSION));
        let r = not_an_upgrade("wsgate proxy", &UpgradeError::MissingKey);
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }
}
