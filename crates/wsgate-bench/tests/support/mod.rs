//! In-test WebSocket servers on 127.0.0.1:0: an echo server (optionally corrupting
//! every Nth echo) and a broadcast hub. Built the way bench/echo-server is — hyper for
//! the upgrade, `WsStream` for the rest — and counting what the tests check.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use wsgate_protocol::{Message, Role, Transport, WsConfig, WsStream, handshake};

/// What a test server does with the messages it gets.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Sends every text and binary message back unchanged.
    Echo,
    /// Echoes, but flips the lowest bit of the last byte of every Nth echo of a
    /// connection (text stays ASCII, so stays valid UTF-8).
    CorruptEvery(u64),
    /// Echoes this many messages, then closes the connection with 1001.
    CloseAfter(u64),
    /// Sends every text and binary message from any connection to all connections,
    /// the sender included, `copies` times.
    Broadcast { copies: usize },
}

/// What a test server saw.
#[derive(Debug)]
pub struct Stats {
    pub upgraded: AtomicU64,
    pub close_1000: AtomicU64,
    /// Echoes sent, published every 100 so a test can wait for progress.
    pub echoed: watch::Sender<u64>,
    pub peers: Mutex<HashSet<IpAddr>>,
}

pub struct Server {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
}

impl Server {
    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn wss_url(&self) -> String {
        format!("wss://{}/ws", self.addr)
    }
}

pub async fn start(behaviour: Behaviour) -> Server {
    start_with(behaviour, None).await
}

/// A server that speaks wss:// with `tls`.
pub async fn start_with(behaviour: Behaviour, tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>) -> Server {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let stats = Arc::new(Stats {
        upgraded: AtomicU64::new(0),
        close_1000: AtomicU64::new(0),
        echoed: watch::Sender::new(0),
        peers: Mutex::new(HashSet::new()),
    });
    // Big enough that the hub never lags in these tests.
    let (hub, _) = broadcast::channel::<Message>(1 << 16);
    let server_stats = Arc::clone(&stats);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, peer)) = listener.accept().await else { continue };
            let _ = tcp.set_nodelay(true);
            let (stats, behaviour, hub) = (Arc::clone(&server_stats), behaviour.clone(), hub.clone());
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let transport = match acceptor {
                    Some(acceptor) => match acceptor.accept(tcp).await {
                        Ok(tls) => Transport::Tls(Box::new(tls.into())),
                        Err(_) => return,
                    },
                    None => Transport::Plain(tcp),
                };
                let io = TokioIo::new(transport);
                let service = hyper::service::service_fn(move |req| {
                    upgrade(req, peer.ip(), Arc::clone(&stats), behaviour.clone(), hub.clone())
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).with_upgrades().await;
            });
        }
    });
    Server { addr, stats }
}

async fn upgrade(
    mut req: Request<Incoming>,
    peer: IpAddr,
    stats: Arc<Stats>,
    behaviour: Behaviour,
    hub: broadcast::Sender<Message>,
) -> Result<Response<Empty<Bytes>>, Infallible> {
    let key = match handshake::validate_upgrade(req.method(), req.headers()) {
        Ok(k) => k,
        Err(e) => {
            let mut res = Response::new(Empty::new());
            *res.status_mut() = e.status();
            return Ok(res);
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else { return };
        let Ok((transport, leftover)) = handshake::into_transport(upgraded) else { return };
        stats.upgraded.fetch_add(1, Ordering::Relaxed);
        stats.peers.lock().expect("peers lock").insert(peer);
        let ws = WsStream::new(transport, Role::Server, WsConfig::default(), leftover);
        match behaviour {
            Behaviour::Echo => echo(ws, &stats, None, None).await,
            Behaviour::CorruptEvery(n) => echo(ws, &stats, Some(n), None).await,
            Behaviour::CloseAfter(n) => echo(ws, &stats, None, Some(n)).await,
            // Subscribing only now, after the 101 went out, is what a real hub that
            // registers late does: the bench's sync step must cope.
            Behaviour::Broadcast { copies } => broadcast_loop(ws, &stats, hub.subscribe(), &hub, copies).await,
        }
    });
    Ok(handshake::switching_protocols(&key, None))
}

fn note_close(stats: &Stats, m: &Message) {
    if let Message::Close(Some(f)) = m
        && f.code == 1000
    {
        stats.close_1000.fetch_add(1, Ordering::Relaxed);
    }
}

async fn echo(mut ws: WsStream<Transport>, stats: &Stats, corrupt_every: Option<u64>, close_after: Option<u64>) {
    let mut n = 0u64;
    let mut published = 0u64;
    loop {
        match ws.recv().await {
            Ok(Message::Text(b)) => {
                n += 1;
                if ws.feed(&Message::Text(corrupt(b, n, corrupt_every))).is_err() {
                    break;
                }
            }
            Ok(Message::Binary(b)) => {
                n += 1;
                if ws.feed(&Message::Binary(corrupt(b, n, corrupt_every))).is_err() {
                    break;
                }
            }
            Ok(m @ Message::Close(_)) => {
                note_close(stats, &m);
                break;
            }
            Err(_) => break,
            Ok(_) => {}
        }
        if n - published >= 100 {
            published += 100;
            stats.echoed.send_modify(|e| *e += 100);
        }
        if close_after == Some(n) {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), ws.close(1001, "enough")).await;
            return;
        }
    }
    ws.flush_best_effort().await;
}

fn corrupt(b: Bytes, n: u64, every: Option<u64>) -> Bytes {
    match every {
        Some(every) if n.is_multiple_of(every) && !b.is_empty() => {
            let mut m = BytesMut::from(&b[..]);
            let last = m.len() - 1;
            m[last] ^= 0x01;
            m.freeze()
        }
        _ => b,
    }
}

async fn broadcast_loop(
    mut ws: WsStream<Transport>,
    stats: &Stats,
    mut rx: broadcast::Receiver<Message>,
    hub: &broadcast::Sender<Message>,
    copies: usize,
) {
    loop {
        tokio::select! {
            m = ws.recv() => match m {
                Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                    for _ in 0..copies {
                        let _ = hub.send(m.clone());
                    }
                }
                Ok(m @ Message::Close(_)) => {
                    note_close(stats, &m);
                    break;
                }
                Err(_) => break,
                Ok(_) => {}
            },
            m = rx.recv() => match m {
                Ok(m) => {
                    if ws.feed(&m).is_err() {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => panic!("test hub lagged by {n}"),
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
    ws.flush_best_effort().await;
}
