//! A tokio-tungstenite client (code no one here wrote) for the tests that drive the
//! gateway as a user's program would: connect, read the next message, assert a quiet
//! spell. One place for what replay, rules, faults, transforms and fallback tests
//! each need.

use std::time::Duration;

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message as TMessage;

use crate::support::{Gateway, within};

pub type Client = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn connect(gw: &Gateway, path: &str) -> Client {
    within(tokio_tungstenite::connect_async(gw.ws(path))).await.expect("connect").0
}

/// The next text, binary or close message (pings and pongs skipped).
pub async fn next(ws: &mut Client) -> TMessage {
    loop {
        match within(ws.next()).await {
            Some(Ok(m @ (TMessage::Text(_) | TMessage::Binary(_) | TMessage::Close(_)))) => return m,
            Some(Ok(_)) => continue,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

pub async fn next_text(ws: &mut Client) -> String {
    match next(ws).await {
        TMessage::Text(t) => t.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// The next `n` texts.
pub async fn texts(ws: &mut Client, n: usize) -> Vec<String> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        got.push(next_text(ws).await);
    }
    got
}

/// Nothing arrives within `d` (a bounded look, not synchronisation: the test
/// asserts an absence).
pub async fn quiet_for(ws: &mut Client, d: Duration) {
    if let Ok(m) = tokio::time::timeout(d, ws.next()).await {
        panic!("expected nothing yet, got {m:?}");
    }
}
