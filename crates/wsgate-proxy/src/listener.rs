//! Accepting client connections: TLS, the connection limit, the HTTP/1.1 server that
//! carries the upgrade.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wsgate_core::{EventBus, Registry};
use wsgate_protocol::Transport;

use crate::config::ProxyConfig;

/// The proxy handler: its config and the shared parts it reports into.
pub struct Proxy {
    pub(crate) cfg: ProxyConfig,
    pub(crate) bus: Arc<EventBus>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) http: reqwest::Client,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tracker: TaskTracker,
    limit: Arc<Semaphore>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("route", &self.cfg.route).field("upstream", &self.cfg.upstream).finish()
    }
}

impl Proxy {
    pub fn new(
        cfg: ProxyConfig,
        bus: Arc<EventBus>,
        registry: Arc<Registry>,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> Arc<Self> {
        let limit = Arc::new(Semaphore::new(cfg.max_connections));
        let http = reqwest::Client::builder().build().unwrap_or_default();
        Arc::new(Self { cfg, bus, registry, http, shutdown, tracker, limit })
    }

    pub fn config(&self) -> &ProxyConfig {
        &self.cfg
    }
}

/// Accepts connections on an already-bound listener until `proxy.shutdown` fires.
/// Sessions already running are closed by their own pumps (1001) and tracked by
/// `proxy.tracker`, which the caller waits on with a deadline.
pub async fn serve(listener: TcpListener, proxy: Arc<Proxy>) {
    loop {
        let accepted = tokio::select! {
            _ = proxy.shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let (tcp, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let proxy2 = proxy.clone();
        proxy.tracker.spawn(async move { connection(tcp, peer, proxy2).await });
    }
}

async fn connection(tcp: TcpStream, peer: SocketAddr, proxy: Arc<Proxy>) {
    // Over the limit, the request is still read and answered (503) rather than the
    // socket dropped: closing with the request unread would reset the connection and
    // the client would never see why.
    let permit = proxy.limit.clone().try_acquire_owned().ok();
    let tls = proxy.cfg.listener_tls.is_some();
    let transport = match &proxy.cfg.listener_tls {
        None => Transport::Plain(tcp),
        Some(cfg) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(cfg.clone());
            match tokio::time::timeout(proxy.cfg.handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => Transport::Tls(Box::new(s.into())),
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            }
        }
    };
    let over_limit = permit.is_none();
    let permit = Arc::new(std::sync::Mutex::new(permit));
    let p2 = proxy.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let proxy = p2.clone();
        // The permit travels with the session task once the upgrade happens.
        let permit = permit.lock().ok().and_then(|mut p| p.take());
        async move {
            if over_limit {
                return Ok(crate::handshake::over_limit());
            }
            crate::handshake::handle(req, proxy, peer, tls, permit).await
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(proxy.cfg.handshake_timeout)
        .keep_alive(false)
        .serve_connection(TokioIo::new(transport), service)
        .with_upgrades();
    tokio::select! {
        _ = conn => {}
        _ = proxy.shutdown.cancelled() => {}
    }
}
