//! The control plane's untrusted input (`wsgate_control`): HTTP requests with
//! arbitrary paths, queries, headers and JSON bodies through the real router (the
//! handlers parse inject and close bodies, breakpoints (`/api/intercepts`), list
//! filters and session and frame ids there), and
//! `/api/live` command messages through `commands::execute`, which also speaks the
//! websocket-multiplex shapes. A registry holds two live sessions (a proxy session on
//! `/chat`, a mock one on `/echo`) so commands can reach something.
//!
//! Properties:
//! - nothing panics;
//! - every answer is a client error or success: no 5xx but the 503 of a full command
//!   queue; every JSON answer is valid JSON, every error `{"error": ".."}`;
//! - with an admin token configured, nothing but the health probes and the `/` index
//!   (paths only, no data) answers without it;
//! - every live command gets an ack: `{"type":"ack","ok":..}` with `sessions` when ok
//!   and `error` when not, the command's `id` echoed;
//! - the browser guard (`guard`): `Host` and `Origin` parsing never panics, and its
//!   decisions are consistent — the router answers what `BrowserGuard::decide` says
//!   (400, 421, 403, or on to the route); listing an origin or host only ever turns a
//!   refusal into a pass; the decision ignores ASCII case; a page on the control plane's
//!   own origin (`http://<Host>`) passes wherever its Host does; the health probes never
//!   get 421; a configured origin or host that parses is then matched by what a
//!   browser would send for it.
//!
//! Input: `L` + a live command (`L{"type":"close","connectionId":"/chat"}`), or `H`
//! (the plane without a token) or `G` (with the admin token `s3cret`) + an HTTP/1.1
//! request as sent: request line, header lines, blank line, body; or `O` + a `Host`
//! value, `\n`, an `Origin` value, `\n`, a configured origin or host name
//! (`O[::1]:8081\nhttp://[::1]:8081\nhttp://localhost:5173`). The two live
//! sessions are `0190c3a0-0000-7000-8000-000000000001` and `…0002`.
#![no_main]

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use wsgate_control::guard::{self, AllowedHost, AllowedOrigin, BrowserGuard, Verdict};
use wsgate_control::{ControlConfig, ControlPlane, commands, register_observers};
use wsgate_core::{Command, EventBus, Registry, SessionHandle, SessionId, SessionInfo, SessionKind};

const TOKEN: &str = "s3cret";
/// Ids of the two live sessions; seeds use them.
const SESSIONS: [&str; 2] = ["0190c3a0-0000-7000-8000-000000000001", "0190c3a0-0000-7000-8000-000000000002"];

struct World {
    rt: tokio::runtime::Runtime,
    open: axum::Router,
    guarded: axum::Router,
    registry: Arc<Registry>,
    /// Kept so the sessions stay live; a task per session takes every command at once
    /// (answering injects as a session would), so each run starts from the same state.
    _sessions: Vec<SessionHandle>,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let _guard = rt.enter();
        let mut builder = EventBus::builder();
        let observers = register_observers(&mut builder);
        let bus = builder.build();
        let registry = Arc::new(Registry::default());
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        // With an intercept board, so breakpoint bodies reach the real parser.
        let cfg = ControlConfig {
            intercepts: Some(Arc::new(wsgate_intercept::InterceptBoard::default())),
            ..ControlConfig::default()
        };
        let cp = ControlPlane::start(cfg, registry.clone(), bus.clone(), observers, shutdown, &tracker);
        let open = cp.router();
        // A second plane with a token, on its own bus (a bus feeds one plane).
        let mut builder = EventBus::builder();
        let observers = register_observers(&mut builder);
        let cfg = ControlConfig { admin_token: Some(TOKEN.into()), ..ControlConfig::default() };
        let guarded =
            ControlPlane::start(cfg, registry.clone(), builder.build(), observers, CancellationToken::new(), &tracker)
                .router();
        let sessions = [(SESSIONS[0], SessionKind::Proxy, "/chat?room=1"), (SESSIONS[1], SessionKind::Mock, "/echo")]
            .into_iter()
            .map(|(id, kind, path)| {
                let info = SessionInfo {
                    id: id.parse::<SessionId>().expect("literal id"),
                    kind,
                    route: "default".into(),
                    path: path.into(),
                    client_addr: None,
                    headers: vec![],
                    opened_at: Default::default(),
                    payloads: Default::default(),
                };
                let (session, rx) = SessionHandle::open(info, bus.clone(), registry.clone(), 1);
                rt.spawn(answer(rx));
                session
            })
            .collect();
        World { rt, open, guarded, registry, _sessions: sessions }
    })
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    match data.split_first() {
        Some((b'L', command)) => live(w, command),
        Some((b'O', input)) => w.rt.block_on(browser(w, input)),
        Some((&mode, request)) => w.rt.block_on(http(w, mode == b'G', request)),
        None => {}
    }
    // Let the upgrade tasks the live and tap routes spawned, and the sessions'
    // command takers, finish, so every input starts from the same state.
    w.rt.block_on(tokio::task::yield_now());
});

/// Takes a session's commands as its task would: every inject is sent.
async fn answer(mut rx: wsgate_core::Commands) {
    while let Some(cmd) = rx.recv().await {
        match cmd {
            Command::Inject { ack, .. } => ack.send(Ok(())),
            // Nothing is held here.
            Command::Release { ack, .. } => drop(ack.send(false)),
            Command::Close { .. } => {}
        }
    }
}

fn live(w: &World, text: &[u8]) {
    let ack = w.rt.block_on(commands::execute(&w.registry, text));
    let v: serde_json::Value = serde_json::from_slice(&ack.to_bytes()).expect("an ack is JSON");
    assert_eq!(v["type"], "ack", "{v}");
    assert_eq!(v["ok"].as_bool(), Some(ack.is_ok()), "{v}");
    if ack.is_ok() {
        assert!(v["sessions"].is_u64(), "{v}");
    } else {
        assert!(v["error"].is_string(), "{v}");
    }
    let id = serde_json::from_slice::<serde_json::Value>(text).ok().and_then(|c| c.get("id").cloned());
    if let (Some(sent), Some(got)) = (id, v.get("id")) {
        assert_eq!(&sent, got, "the command's id is echoed");
    }
}

/// An HTTP/1.1 request as sent, parsed as leniently as hyper would (lines hyper would
/// refuse are skipped).
fn parse_request(raw: &[u8]) -> Option<Request<Full<Bytes>>> {
    let (head, body) = match raw.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => (&raw[..i], &raw[i + 4..]),
        None => match raw.windows(2).position(|w| w == b"\n\n") {
            Some(i) => (&raw[..i], &raw[i + 2..]),
            None => (raw, &[][..]),
        },
    };
    let mut lines = head.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = lines.next()?;
    let mut parts = request_line.split(|&b| b == b' ');
    let method = Method::from_bytes(parts.next()?).ok()?;
    let uri = http::Uri::try_from(parts.next()?).ok()?;
    let mut req = Request::builder().method(method).uri(uri);
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(line[colon + 1..].trim_ascii()))
        {
            req = req.header(name, value);
        }
    }
    req.body(Full::new(Bytes::copy_from_slice(body))).ok()
}

async fn http(w: &World, guarded: bool, raw: &[u8]) {
    let Some(req) = parse_request(raw) else { return };
    let probe = matches!(req.uri().path(), "/healthz" | "/readyz" | "/");
    let authed =
        req.headers().contains_key(header::AUTHORIZATION) || req.uri().query().is_some_and(|q| q.contains(TOKEN));
    let router = if guarded { w.guarded.clone() } else { w.open.clone() };
    let res = router.oneshot(req).await.expect("the router is infallible");
    let status = res.status();
    let json = res.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let body = res.into_body().collect().await.expect("a body in memory").to_bytes();
    assert!(
        !status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE,
        "{status}: {}",
        String::from_utf8_lossy(&body)
    );
    if json {
        let v: serde_json::Value = serde_json::from_slice(&body).expect("a JSON answer is JSON");
        if status.is_client_error() {
            assert!(v["error"].is_string(), "an error answer names the error: {v}");
        }
    }
    if guarded && !probe && (status.is_success() || status == StatusCode::SWITCHING_PROTOCOLS) {
        assert!(authed, "{status} on a guarded route without the token");
    }
}

fn headers(host: Option<&[u8]>, origin: Option<&[u8]>) -> Option<http::HeaderMap> {
    let mut h = http::HeaderMap::new();
    if let Some(v) = host {
        h.insert(header::HOST, HeaderValue::from_bytes(v).ok()?);
    }
    if let Some(v) = origin {
        h.insert(header::ORIGIN, HeaderValue::from_bytes(v).ok()?);
    }
    Some(h)
}

async fn browser(w: &World, input: &[u8]) {
    let mut parts = input.splitn(3, |&b| b == b'\n');
    let host = parts.next().unwrap_or_default();
    let origin = parts.next().filter(|o| !o.is_empty());
    let configured = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let Some(hm) = headers(Some(host), origin) else { return };

    // The router answers what the guard decides (`w.open` lists nothing).
    let plain = BrowserGuard::default();
    let verdict = plain.decide("/api/sessions", &hm);
    let mut req = Request::builder().uri("/api/sessions");
    for (k, v) in &hm {
        req = req.header(k, v);
    }
    let Ok(req) = req.body(Full::new(Bytes::new())) else { return };
    let status = w.open.clone().oneshot(req).await.expect("the router is infallible").status();
    let expected = match verdict {
        Verdict::Pass => StatusCode::OK,
        Verdict::BadHost => StatusCode::BAD_REQUEST,
        Verdict::HostNotAllowed => StatusCode::MISDIRECTED_REQUEST,
        Verdict::OriginNotAllowed => StatusCode::FORBIDDEN,
    };
    assert_eq!(status, expected, "{verdict:?}");

    // Probes skip the Host check, and only that.
    let probe = plain.decide("/healthz", &hm);
    assert_ne!(probe, Verdict::HostNotAllowed);
    if verdict != Verdict::HostNotAllowed {
        assert_eq!(probe, verdict);
    }

    // ASCII case does not matter.
    let upper = headers(Some(&host.to_ascii_uppercase()), origin.map(|o| o.to_ascii_uppercase()).as_deref());
    if let Some(upper) = upper {
        assert_eq!(plain.decide("/api/sessions", &upper), verdict, "upper-cased");
    }

    // Its own origin passes wherever its Host does.
    if let Some(own) = headers(Some(host), Some(format!("http://{}", String::from_utf8_lossy(host)).as_bytes())) {
        let host_only = plain.decide("/api/sessions", &headers(Some(host), None).unwrap_or_default());
        if host_only == Verdict::Pass {
            assert_eq!(plain.decide("/api/sessions", &own), Verdict::Pass, "own origin");
        }
    }

    // Listing only ever lets more in; what is listed is what a browser sends.
    let origins: Vec<_> = AllowedOrigin::parse(&configured).into_iter().collect();
    let hosts: Vec<_> = AllowedHost::parse(&configured).into_iter().collect();
    let listed = BrowserGuard::new(&origins, &hosts);
    if verdict == Verdict::Pass {
        assert_eq!(listed.decide("/api/sessions", &hm), Verdict::Pass, "listing refused what passed");
    }
    for o in &origins {
        let sent = o.serialization();
        assert!(listed.listed(sent.as_bytes()), "{sent}");
        let hm = headers(Some(b"127.0.0.1:1"), Some(sent.as_bytes())).expect("a valid header");
        assert_eq!(listed.decide("/api/live", &hm), Verdict::Pass, "listed origin {sent}");
        assert!(guard::parse_origin(sent.as_bytes()).is_some());
    }
    for h in &hosts {
        let sent = format!("{}:8081", h.as_str());
        let hm = headers(Some(sent.as_bytes()), None).expect("a valid header");
        assert_eq!(listed.decide("/api/live", &hm), Verdict::Pass, "listed host {sent}");
    }
}
