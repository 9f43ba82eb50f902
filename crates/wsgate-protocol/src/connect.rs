//! Opening a WebSocket as a client: DNS, TCP, TLS, the HTTP/1.1 upgrade — each step's
//! failure kept apart, because "refused", "DNS", "TLS", "HTTP 403" and "timeout" are
//! what a user debugging an integration needs to tell apart.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, timeout_at};
use url::Url;

use crate::handshake::{accept_key, generate_key};
use crate::transport::Transport;

/// Largest refused-upgrade body kept (and relayed to a proxied client).
pub const MAX_REJECT_BODY: usize = 64 * 1024;

/// What to connect to and how.
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    pub url: Url,
    /// Extra request headers (e.g. forwarded from a proxied client).
    pub headers: HeaderMap,
    pub subprotocols: Vec<String>,
    /// Deadline for DNS + TCP + TLS + upgrade together.
    pub timeout: Duration,
    /// Required for `wss://`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Source address to bind (spreads load-test connections over 127.0.0.0/8).
    pub local_addr: Option<IpAddr>,
    /// Offer permessage-deflate with this policy.
    pub deflate: Option<crate::deflate::DeflatePolicy>,
    /// Dial these addresses, in order, instead of resolving the URL's host (which
    /// still names the server in `Host` and for TLS). A caller that vetted the
    /// addresses itself (wsgate's private-target guard) is then sure the connection
    /// goes where it vetted: a second lookup could answer differently.
    pub resolved: Option<Vec<SocketAddr>>,
}

impl ConnectRequest {
    pub fn new(url: Url) -> Self {
        Self {
            url,
            headers: HeaderMap::new(),
            subprotocols: Vec::new(),
            timeout: Duration::from_secs(10),
            tls: None,
            local_addr: None,
            deflate: None,
            resolved: None,
        }
    }
}

/// An open connection and what the server said when it accepted it.
#[derive(Debug)]
pub struct Connected {
    pub transport: Transport,
    /// Bytes the server sent right after its `101` (a greeting frame, say).
    pub leftover: Bytes,
    pub headers: HeaderMap,
    pub subprotocol: Option<String>,
    pub peer: SocketAddr,
    /// permessage-deflate parameters, when the server accepted our offer.
    pub deflate: Option<crate::deflate::DeflateParams>,
}

/// Why a connection could not be opened, one variant per failure a user must tell
/// apart.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid URL {url}: {reason}")]
    InvalidUrl { url: String, reason: &'static str },
    #[error("DNS lookup of {host} failed: {source}")]
    Dns { host: String, source: io::Error },
    #[error("connection to {addr} refused")]
    Refused { addr: SocketAddr },
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("TLS handshake with {host} failed: {source}")]
    Tls { host: String, source: io::Error },
    #[error("wss:// needs a TLS client configuration")]
    NoTlsConfig,
    #[error("timed out during {stage} after {after:?}")]
    Timeout { stage: &'static str, after: Duration },
    #[error("upgrade refused with HTTP {status}")]
    Rejected { status: StatusCode, headers: HeaderMap, body: Bytes },
    #[error("HTTP error during the upgrade: {0}")]
    Http(#[from] hyper::Error),
    #[error("server answered 101 with a wrong Sec-WebSocket-Accept")]
    BadAccept,
    #[error("server chose subprotocol {0:?}, which was not offered")]
    UnofferedSubprotocol(String),
    #[error("upgrade succeeded but the connection could not be taken over")]
    Takeover,
    #[error("server's Sec-WebSocket-Extensions cannot be used: {0}")]
    Extension(#[from] crate::deflate::NegotiationError),
}

impl ConnectError {
    /// A short machine-readable class: `dns`, `refused`, `connect`, `tls`, `timeout`,
    /// `http_status`, `handshake`, `invalid_url`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidUrl { .. } => "invalid_url",
            Self::Dns { .. } => "dns",
            Self::Refused { .. } => "refused",
            Self::Connect { .. } => "connect",
            Self::Tls { .. } | Self::NoTlsConfig => "tls",
            Self::Timeout { .. } => "timeout",
            Self::Rejected { .. } => "http_status",
            Self::Http(_) | Self::BadAccept | Self::UnofferedSubprotocol(_) | Self::Takeover | Self::Extension(_) => {
                "handshake"
            }
        }
    }

    /// The HTTP status of a refused upgrade.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Rejected { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Opens a WebSocket connection.
pub async fn connect(req: ConnectRequest) -> Result<Connected, ConnectError> {
    let started = Instant::now();
    let deadline = started + req.timeout;
    let timeout = |stage| ConnectError::Timeout { stage, after: started.elapsed() };
    let url = &req.url;
    let bad = |reason| ConnectError::InvalidUrl { url: url.to_string(), reason };
    let secure = match url.scheme() {
        "ws" | "http" => false,
        "wss" | "https" => true,
        _ => return Err(bad("scheme must be ws:// or wss://")),
    };
    let host = url.host_str().ok_or_else(|| bad("no host"))?.to_owned();
    let port = url.port_or_known_default().ok_or_else(|| bad("no port"))?;
    let bare_host = host.trim_start_matches('[').trim_end_matches(']').to_owned();

    let addrs: Vec<SocketAddr> = match (&req.resolved, bare_host.parse::<IpAddr>()) {
        (Some(pinned), _) => pinned.clone(),
        (None, Ok(ip)) => vec![SocketAddr::new(ip, port)],
        (None, Err(_)) => timeout_at(deadline, tokio::net::lookup_host((bare_host.as_str(), port)))
            .await
            .map_err(|_| timeout("dns"))?
            .map_err(|source| ConnectError::Dns { host: bare_host.clone(), source })?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(ConnectError::Dns { host, source: io::Error::new(io::ErrorKind::NotFound, "no addresses") });
    }

    let mut last_err = None;
    let mut tcp = None;
    for addr in &addrs {
        match timeout_at(deadline, dial(*addr, req.local_addr)).await {
            Err(_) => return Err(timeout("connect")),
            Ok(Ok(s)) => {
                tcp = Some(s);
                break;
            }
            Ok(Err(e)) => last_err = Some(e),
        }
    }
    let tcp = match (tcp, last_err) {
        (Some(s), _) => s,
        (None, Some(e)) => return Err(e),
        (None, None) => return Err(timeout("connect")),
    };
    let peer = tcp.peer_addr().map_err(|source| ConnectError::Connect { addr: addrs[0], source })?;
    let _ = tcp.set_nodelay(true);

    let transport = if secure {
        let cfg = req.tls.clone().ok_or(ConnectError::NoTlsConfig)?;
        let name = rustls::pki_types::ServerName::try_from(bare_host.clone())
            .map_err(|_| bad("host is not a valid TLS server name"))?;
        let tls = timeout_at(deadline, tokio_rustls::TlsConnector::from(cfg).connect(name, tcp))
            .await
            .map_err(|_| timeout("tls"))?
            .map_err(|source| ConnectError::Tls { host: bare_host.clone(), source })?;
        Transport::Tls(Box::new(tls.into()))
    } else {
        Transport::Plain(tcp)
    };

    timeout_at(deadline, upgrade(transport, &req, peer)).await.map_err(|_| timeout("upgrade"))?
}

/// What a server's `101` answer settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub subprotocol: Option<String>,
    pub deflate: Option<crate::deflate::DeflateParams>,
}

/// Checks the headers of a server's `101` against what we asked for: the accept key
/// for our `key`, a subprotocol we offered (or none), and permessage-deflate only if
/// we offered it. Pure, so the fuzz target can drive it without a socket.
#[allow(clippy::result_large_err)] // the error type `connect` returns, unboxed like there
pub fn check_answer(
    headers: &HeaderMap,
    key: &str,
    offered: &[String],
    deflate: Option<&crate::deflate::DeflatePolicy>,
) -> Result<Answer, ConnectError> {
    let expected = accept_key(key.as_bytes());
    if headers.get(header::SEC_WEBSOCKET_ACCEPT).map(|v| v.as_bytes()) != Some(expected.as_bytes()) {
        return Err(ConnectError::BadAccept);
    }
    // The server may name one subprotocol, one we offered. A value that is not text,
    // or a second value, was not offered either: both used to be ignored, leaving us
    // without the subprotocol the server then speaks (found by fuzzing).
    let named: Vec<&HeaderValue> = headers.get_all(header::SEC_WEBSOCKET_PROTOCOL).iter().collect();
    let subprotocol = match named.as_slice() {
        [] => None,
        [v] if v.to_str().is_ok_and(|p| offered.iter().any(|o| o == p)) => v.to_str().ok().map(str::to_owned),
        _ => {
            let shown: Vec<_> = named.iter().map(|v| String::from_utf8_lossy(v.as_bytes())).collect();
            return Err(ConnectError::UnofferedSubprotocol(shown.join(", ")));
        }
    };
    let answer: Vec<&str> =
        headers.get_all(header::SEC_WEBSOCKET_EXTENSIONS).iter().filter_map(|v| v.to_str().ok()).collect();
    let deflate = match deflate {
        Some(policy) => crate::deflate::accept_answer(answer, policy)?,
        None if answer.iter().any(|v| !v.trim().is_empty()) => {
            return Err(crate::deflate::NegotiationError::Unoffered(answer.join(", ")).into());
        }
        None => None,
    };
    Ok(Answer { subprotocol, deflate })
}

async fn dial(addr: SocketAddr, local: Option<IpAddr>) -> Result<TcpStream, ConnectError> {
    let sock = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() };
    let sock = sock.map_err(|source| ConnectError::Connect { addr, source })?;
    if let Some(ip) = local {
        sock.bind(SocketAddr::new(ip, 0)).map_err(|source| ConnectError::Connect { addr, source })?;
    }
    sock.connect(addr).await.map_err(|source| match source.kind() {
        io::ErrorKind::ConnectionRefused => ConnectError::Refused { addr },
        _ => ConnectError::Connect { addr, source },
    })
}

async fn upgrade(transport: Transport, req: &ConnectRequest, peer: SocketAddr) -> Result<Connected, ConnectError> {
    let url = &req.url;
    let key = generate_key();
    let path_and_query = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let path_and_query = if path_and_query.is_empty() { "/" } else { path_and_query };
    let mut builder = http::Request::builder().method("GET").uri(path_and_query);
    let host_header = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_owned(),
    };
    {
        let h = builder.headers_mut().ok_or(ConnectError::Takeover)?;
        for (name, value) in &req.headers {
            h.append(name, value.clone());
        }
        if let Ok(v) = HeaderValue::from_str(&host_header) {
            h.insert(header::HOST, v);
        }
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        if let Ok(v) = HeaderValue::from_str(&key) {
            h.insert(header::SEC_WEBSOCKET_KEY, v);
        }
        h.remove(header::SEC_WEBSOCKET_PROTOCOL);
        h.remove(header::SEC_WEBSOCKET_EXTENSIONS);
        if let Some(policy) = &req.deflate
            && let Ok(v) = HeaderValue::from_str(&crate::deflate::client_offer(policy))
        {
            h.insert(header::SEC_WEBSOCKET_EXTENSIONS, v);
        }
        if !req.subprotocols.is_empty()
            && let Ok(v) = HeaderValue::from_str(&req.subprotocols.join(", "))
        {
            h.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
        }
    }
    let request = builder.body(Empty::<Bytes>::new()).map_err(|_| ConnectError::InvalidUrl {
        url: url.to_string(),
        reason: "cannot form an HTTP request from it",
    })?;

    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(transport)).await?;
    // The connection future finishes once hyper hands the socket to the upgrade (or
    // the server closes); a refused upgrade ends it when `sender` is dropped.
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let mut res = sender.send_request(request).await?;
    let status = res.status();
    if status != StatusCode::SWITCHING_PROTOCOLS {
        let headers = res.headers().clone();
        let body =
            Limited::new(res.into_body(), MAX_REJECT_BODY).collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        return Err(ConnectError::Rejected { status, headers, body });
    }
    let Answer { subprotocol, deflate } = check_answer(res.headers(), &key, &req.subprotocols, req.deflate.as_ref())?;
    let headers = res.headers().clone();
    let upgraded = hyper::upgrade::on(&mut res).await?;
    let (transport, leftover) = crate::handshake::into_transport(upgraded).map_err(|_| ConnectError::Takeover)?;
    Ok(Connected { transport, leftover, headers, subprotocol, peer, deflate })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pinned_addresses_are_dialled_without_a_lookup() {
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port());
        let pinned = SocketAddr::from(([127, 0, 0, 1], port.expect("a free port")));
        let mut req = ConnectRequest::new(format!("ws://nonexistent.invalid:{}/", pinned.port()).parse().expect("url"));
        // Unpinned, the name does not resolve.
        assert_eq!(connect(req.clone()).await.expect_err("no such host").kind(), "dns");
        // Pinned, the name is not looked up: the pinned address is dialled (and refuses).
        req.resolved = Some(vec![pinned]);
        match connect(req).await {
            Err(ConnectError::Refused { addr }) => assert_eq!(addr, pinned),
            other => panic!("expected refused, got {other:?}"),
        }
    }

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    /// A `101` for [`KEY`] naming these subprotocols.
    fn answer(protocols: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::SEC_WEBSOCKET_ACCEPT, HeaderValue::from_static("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        for p in protocols {
            h.append(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_bytes(p).expect("header value"));
        }
        h
    }

    #[test]
    fn answer_with_offered_subprotocol() {
        let offered = vec!["chat".to_owned(), "superchat".to_owned()];
        let a = check_answer(&answer(&[b"superchat"]), KEY, &offered, None).expect("accepted");
        assert_eq!(a, Answer { subprotocol: Some("superchat".into()), deflate: None });
        assert_eq!(check_answer(&answer(&[]), KEY, &offered, None).expect("accepted").subprotocol, None);
        assert!(matches!(
            check_answer(&answer(&[b"other"]), KEY, &offered, None),
            Err(ConnectError::UnofferedSubprotocol(p)) if p == "other"
        ));
        assert!(matches!(check_answer(&answer(&[]), "wrong key", &offered, None), Err(ConnectError::BadAccept)));
    }

    /// Fuzzing found a subprotocol that is not text (`\xeechat`) accepted as "no
    /// subprotocol", and only the first of two values checked.
    #[test]
    fn answer_with_a_subprotocol_we_cannot_have_offered_fails() {
        let offered = vec!["chat".to_owned()];
        assert!(matches!(
            check_answer(&answer(&[b"\xeechat"]), KEY, &offered, None),
            Err(ConnectError::UnofferedSubprotocol(_))
        ));
        assert!(matches!(
            check_answer(&answer(&[b"chat", b"other"]), KEY, &offered, None),
            Err(ConnectError::UnofferedSubprotocol(p)) if p == "chat, other"
        ));
    }
}
