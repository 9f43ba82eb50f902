//! `wsgate-echo-server [ADDR] [--threads N]`: echoes every text and binary message
//! back unchanged. Prints `listening on ADDR` once bound (ADDR defaults to
//! 127.0.0.1:0), so scripts can read the port.
//!
//! It is deliberately minimal — one task per connection, no observers, no limits —
//! so the benchmarks compare wsgate against the cost of WebSocket itself.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use wsgate_protocol::{Message, Role, Transport, WsConfig, WsStream, handshake};

fn main() -> std::io::Result<()> {
    let mut addr = "127.0.0.1:0".to_owned();
    let mut threads = 1usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--threads" => threads = args.next().and_then(|v| v.parse().ok()).unwrap_or(1),
            other => addr = other.to_owned(),
        }
    }
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?
    };
    rt.block_on(serve(addr))
}

async fn serve(addr: String) -> std::io::Result<()> {
    let listener = TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(_) => continue,
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let io = TokioIo::new(Transport::Plain(tcp));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, hyper::service::service_fn(upgrade))
                .with_upgrades()
                .await;
        });
    }
}

async fn upgrade(mut req: Request<Incoming>) -> Result<Response<Empty<Bytes>>, Infallible> {
    let key = match handshake::validate_upgrade(req.method(), req.headers()) {
        Ok(k) => k,
        Err(e) => {
            let mut res = Response::new(Empty::new());
            *res.status_mut() = e.status();
            return Ok(res);
        }
    };
    let offered = handshake::offered_subprotocols(req.headers());
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let Ok((transport, leftover)) = handshake::into_transport(upgraded) else {
            return;
        };
        let mut ws = WsStream::new(transport, Role::Server, WsConfig::default(), leftover);
        loop {
            match ws.recv().await {
                Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                    if ws.feed(&m).is_err() {
                        break;
                    }
                }
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
        ws.flush_best_effort().await;
    });
    Ok(handshake::switching_protocols(&key, offered.first().map(String::as_str)))
}
