//! Outbound connections: WebSocket connections wsgate opens itself, each a session
//! of kind `outbound` (the WaveLine use case: try a third-party WebSocket API from the
//! dashboard or a script, and keep its history).
//!
//! - `POST /api/connections` `{"url","headers","subprotocols","reconnect","ping_interval_ms"}` → 201
//!   `{"id","session"}` at once; the session then goes CONNECTING → CONNECTED or
//!   FAILED (with `reason_kind`: `dns`, `refused`, `tls`, `timeout`, `http_status`
//!   and `http_status`, …), visible in `/api/sessions/{id}` and on `/api/live`.
//! - `POST /api/connections/{id}/send` `{"text"}` or `{"base64"}` → 202.
//! - `DELETE /api/connections/{id}` with `{"code","reason"}` in the body or the query
//!   (both optional) → 202.
//!
//! When the control plane is reachable beyond loopback, targets whose addresses are
//! not public are refused with 403 unless `--allow-private-targets`
//! ([`wsgate_client::guard`]): every address the name resolves to is checked, and
//! the session dials exactly the checked ones.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::{IntoParams, ToSchema};
use wsgate_client::outbound::COMMAND_QUEUE;
use wsgate_client::{BackoffPolicy, GuardError, InvalidBackoff, Outbound, OutboundConfig, TargetPolicy};
use wsgate_core::{SessionHandle, SessionId, SessionInfo, SessionKind, Target};
use wsgate_protocol::tls::ClientConfig;

use crate::ControlPlane;
use crate::api::{CloseRequest, Queued, QueuedStatus, SessionPath, parse_id};
use crate::body::JsonBody;
use crate::commands::{InjectError, InjectPayload, close_command, deliver};
use crate::error::{ApiError, ErrorBody};

/// The route name outbound sessions carry.
pub const ROUTE: &str = "outbound";
/// The keepalive intervals a connection may ask for, in ms: at least 100 (more often
/// is a flood, not a keepalive), at most an hour.
const PING_INTERVAL_MS: std::ops::RangeInclusive<u64> = 100..=3_600_000;
/// Most attempts in a row a reconnect policy may ask for.
pub const MAX_ATTEMPTS: u32 = 10_000;
/// Longest backoff delay a reconnect policy may ask for, in milliseconds (one hour).
pub const MAX_DELAY_MS: u64 = 3_600_000;
/// Request headers never shown in clear in a session's recorded headers.
const SECRET_HEADERS: [&str; 4] = ["authorization", "proxy-authorization", "cookie", "set-cookie"];
/// Headers wsgate writes itself for the handshake: a caller may not set them.
const HANDSHAKE_HEADERS: [&str; 10] = [
    "host",
    "connection",
    "upgrade",
    "content-length",
    "transfer-encoding",
    "te",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-accept",
    "sec-websocket-extensions",
];

/// What the control plane needs to open outbound connections. Built by the binary:
/// the sessions belong to the gateway (its shutdown closes them with 1001, its
/// drain waits for them), not to the control plane.
#[derive(Clone)]
pub struct OutboundContext {
    /// DNS + TCP + TLS + upgrade, for one attempt (`--outbound-connect-timeout`).
    pub connect_timeout: Duration,
    /// `--allow-private-targets`.
    pub allow_private_targets: bool,
    /// Whether the control plane listens on loopback only (then any target is fine:
    /// whoever can reach the API can reach those addresses anyway).
    pub control_is_loopback: bool,
    /// For `wss://` targets (system roots).
    pub tls: Arc<ClientConfig>,
    /// Largest message accepted from a server.
    pub max_message_size: usize,
    /// The gateway's shutdown signal.
    pub shutdown: CancellationToken,
    /// The gateway's session tasks.
    pub sessions: TaskTracker,
}

impl std::fmt::Debug for OutboundContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundContext")
            .field("connect_timeout", &self.connect_timeout)
            .field("targets", &self.targets())
            .finish_non_exhaustive()
    }
}

impl OutboundContext {
    /// Which targets connections may reach.
    pub fn targets(&self) -> TargetPolicy {
        if self.control_is_loopback || self.allow_private_targets {
            TargetPolicy::Any
        } else {
            TargetPolicy::PublicOnly
        }
    }
}

/// Why a connection request is malformed (400).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidConnection {
    #[error("invalid url {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("url scheme must be ws or wss, not {0:?}")]
    Scheme(String),
    #[error("a WebSocket URL has no fragment (RFC 6455 §3): remove the `#…` part")]
    Fragment,
    #[error("credentials in the URL are not sent: pass an Authorization header in \"headers\"")]
    Credentials,
    #[error("invalid header name {0:?}")]
    HeaderName(String),
    #[error("invalid value for header {0:?}: visible ASCII, spaces and tabs only")]
    HeaderValue(String),
    #[error("header {0:?} is written by wsgate for the WebSocket handshake")]
    HandshakeHeader(String),
    #[error("give subprotocols in \"subprotocols\", not as a Sec-WebSocket-Protocol header")]
    ProtocolHeader,
    #[error("invalid subprotocol {0:?}: a token (letters, digits and !#$%&'*+-.^_`|~)")]
    Subprotocol(String),
    #[error("subprotocol {0:?} is listed twice")]
    DuplicateSubprotocol(String),
    #[error("\"reconnect\" must be true, false, null or {{\"max_attempts\",\"base_ms\",\"max_ms\"}}")]
    ReconnectShape,
    #[error("invalid \"reconnect\": {0}")]
    ReconnectObject(String),
    #[error("invalid reconnect.{field}: {why}")]
    ReconnectField { field: &'static str, why: String },
    #[error("invalid reconnect policy: {0}")]
    Backoff(#[from] InvalidBackoff),
    #[error("invalid ping_interval_ms {0}: from {min} to {max}", min = PING_INTERVAL_MS.start(), max = PING_INTERVAL_MS.end())]
    PingInterval(u64),
    #[error("invalid close code {0:?} in the query: expected an integer")]
    CodeQuery(String),
}

/// The body of `POST /api/connections`. Unknown fields are rejected.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionRequest {
    /// The server to connect to: a `ws://` or `wss://` URL (no fragment, no
    /// credentials).
    #[schema(example = "wss://echo.example.com/chat?room=1", pattern = "^[wW][sS][sS]?://[^\\s]+$")]
    pub url: String,
    /// Extra request headers for the upgrade, e.g. `{"Authorization": "Bearer …"}`.
    /// Handshake headers (Host, Connection, Upgrade, Sec-WebSocket-*) are wsgate's to
    /// write. Authorization and Cookie values are redacted in the session's record.
    #[serde(default)]
    #[schema(schema_with = headers_schema)]
    pub headers: Option<BTreeMap<String, String>>,
    /// Subprotocols offered, in order of preference: distinct HTTP tokens.
    #[serde(default)]
    #[schema(schema_with = subprotocols_schema)]
    pub subprotocols: Option<Vec<String>>,
    /// Reconnect after a lost connection or a failed attempt that a retry can help
    /// (DNS, refused, timeout, HTTP 5xx/429): `true` for the defaults (5 attempts in a
    /// row, 200 ms base, 10 s maximum), an object to choose, `false`/`null`/absent for
    /// a single attempt. Waits are random in `[0, min(max_ms, base_ms·2ⁿ)]`.
    #[serde(default)]
    #[schema(schema_with = reconnect_schema)]
    pub reconnect: Option<serde_json::Value>,
    /// While connected, send a ping every this many ms (100‥3600000). A server that
    /// sends nothing back, not even a pong, for two intervals has lost the connection:
    /// 1006, or a reconnect when `reconnect` is on. Absent or null: no pings.
    #[serde(default)]
    #[schema(minimum = 100, maximum = 3600000)]
    pub ping_interval_ms: Option<u64>,
}

/// The reconnect policy object (every field optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReconnectPolicy {
    /// Attempts in a row that may fail before the session is FAILED (1‥10000,
    /// default 5). A successful connection starts the count again.
    #[schema(minimum = 1, maximum = 10000)]
    pub max_attempts: Option<u32>,
    /// Ceiling of the first wait, in ms (1‥3600000, default 200); it doubles per
    /// failed attempt.
    #[schema(minimum = 1, maximum = 3600000)]
    pub base_ms: Option<u64>,
    /// Largest wait, in ms (≤ 3600000; default 10000); a larger base_ms is lowered to it.
    #[schema(minimum = 1, maximum = 3600000)]
    pub max_ms: Option<u64>,
}

/// Header names are RFC 9110 tokens; values are visible ASCII, spaces and tabs.
fn headers_schema() -> RefOr<Schema> {
    use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Type};
    let name = ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"));
    let value = ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[\\t\\x20-\\x7e]*$"));
    let map = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(name))
        .additional_properties(Some(AdditionalProperties::RefOr(value.build().into())));
    Schema::OneOf(OneOfBuilder::new().item(map).item(ObjectBuilder::new().schema_type(Type::Null)).build()).into()
}

/// Distinct RFC 9110 tokens (what `Sec-WebSocket-Protocol` carries).
fn subprotocols_schema() -> RefOr<Schema> {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
    let token = ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"));
    let list = ArrayBuilder::new().items(token).unique_items(true);
    // `null` is accepted as "none", like an absent field.
    Schema::OneOf(OneOfBuilder::new().item(list).item(ObjectBuilder::new().schema_type(Type::Null)).build()).into()
}

fn reconnect_schema() -> RefOr<Schema> {
    let one_of = OneOfBuilder::new()
        .description(Some("true (defaults), false or null (no reconnect), or a policy"))
        .item(ObjectBuilder::new().schema_type(Type::Boolean))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .item(<ReconnectPolicy as utoipa::PartialSchema>::schema());
    Schema::OneOf(one_of.build()).into()
}

/// The answer of `POST /api/connections`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionCreated {
    /// The outbound session's id.
    #[schema(value_type = String)]
    pub id: SessionId,
    /// Where to follow it: its lifecycle, counters, failure.
    #[schema(example = "/api/sessions/0193a4b2-7c1e-7d3f-9a2b-1c2d3e4f5a6b")]
    pub session: String,
}

/// A message to send on an outbound connection: exactly one of `text` and `base64`.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // The documented shape of `SendBody`; never built.
pub enum SendRequest {
    Text(SendText),
    Binary(SendBinary),
}

/// A text message.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct SendText {
    /// Sent as a text frame.
    text: String,
}

/// A binary message.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct SendBinary {
    /// Standard, padded base64 (RFC 4648 §4), sent as a binary frame.
    #[schema(
        content_encoding = "base64",
        pattern = "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$"
    )]
    base64: String,
}

/// The body of `POST /api/connections/{id}/send`, as parsed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBody {
    text: Option<String>,
    base64: Option<String>,
}

/// The query of `DELETE /api/connections/{id}` (instead of a body).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CloseQuery {
    /// The close code (1000–1003, 1007–1014, 3000–4999; default 1000).
    #[param(schema_with = crate::api::close_code_schema)]
    pub code: Option<String>,
    /// The close reason, at most 123 bytes of UTF-8.
    #[param(max_length = 123)]
    pub reason: Option<String>,
}

/// A validated connection request.
#[derive(Debug)]
struct Plan {
    url: Url,
    headers: HeaderMap,
    /// As recorded on the session, secrets redacted.
    recorded: Vec<(String, String)>,
    subprotocols: Vec<String>,
    reconnect: Option<BackoffPolicy>,
    ping_interval: Option<Duration>,
}

fn plan(req: ConnectionRequest) -> Result<Plan, InvalidConnection> {
    let url =
        Url::parse(&req.url).map_err(|e| InvalidConnection::Url { url: req.url.clone(), reason: e.to_string() })?;
    if !matches!(url.scheme(), "ws" | "wss") {
        return Err(InvalidConnection::Scheme(url.scheme().to_owned()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(InvalidConnection::Url { url: req.url, reason: "no host".into() });
    }
    if url.fragment().is_some() {
        return Err(InvalidConnection::Fragment);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(InvalidConnection::Credentials);
    }
    let mut headers = HeaderMap::new();
    let mut recorded = Vec::new();
    for (name, value) in req.headers.unwrap_or_default() {
        let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| InvalidConnection::HeaderName(name.clone()))?;
        if n == header::SEC_WEBSOCKET_PROTOCOL {
            return Err(InvalidConnection::ProtocolHeader);
        }
        if HANDSHAKE_HEADERS.contains(&n.as_str()) {
            return Err(InvalidConnection::HandshakeHeader(name));
        }
        let v = HeaderValue::from_str(&value).map_err(|_| InvalidConnection::HeaderValue(name.clone()))?;
        let shown = if SECRET_HEADERS.contains(&n.as_str()) { "[redacted]".to_owned() } else { value };
        recorded.push((n.as_str().to_owned(), shown));
        headers.append(n, v);
    }
    let subprotocols = req.subprotocols.unwrap_or_default();
    for (i, p) in subprotocols.iter().enumerate() {
        if p.is_empty() || !p.bytes().all(is_tchar) {
            return Err(InvalidConnection::Subprotocol(p.clone()));
        }
        if subprotocols[..i].contains(p) {
            return Err(InvalidConnection::DuplicateSubprotocol(p.clone()));
        }
    }
    let reconnect = reconnect_policy(req.reconnect)?;
    let ping_interval = req
        .ping_interval_ms
        .map(|ms| {
            PING_INTERVAL_MS.contains(&ms).then(|| Duration::from_millis(ms)).ok_or(InvalidConnection::PingInterval(ms))
        })
        .transpose()?;
    Ok(Plan { url, headers, recorded, subprotocols, reconnect, ping_interval })
}

/// RFC 9110 §5.6.2 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn reconnect_policy(v: Option<serde_json::Value>) -> Result<Option<BackoffPolicy>, InvalidConnection> {
    let p = match v {
        None | Some(serde_json::Value::Null) | Some(serde_json::Value::Bool(false)) => return Ok(None),
        Some(serde_json::Value::Bool(true)) => ReconnectPolicy::default(),
        Some(v @ serde_json::Value::Object(_)) => serde_json::from_value::<ReconnectPolicy>(v)
            .map_err(|e| InvalidConnection::ReconnectObject(e.to_string()))?,
        Some(_) => return Err(InvalidConnection::ReconnectShape),
    };
    let default = BackoffPolicy::default();
    let ms = |field: &'static str, v: Option<u64>, d: Duration| match v {
        None => Ok(d),
        Some(n) if (1..=MAX_DELAY_MS).contains(&n) => Ok(Duration::from_millis(n)),
        Some(n) => Err(InvalidConnection::ReconnectField { field, why: format!("{n} is not in 1‥{MAX_DELAY_MS}") }),
    };
    let max_attempts = match p.max_attempts {
        None => default.max_attempts,
        Some(n) if (1..=MAX_ATTEMPTS).contains(&n) => n,
        Some(n) => {
            let why = format!("{n} is not in 1‥{MAX_ATTEMPTS}");
            return Err(InvalidConnection::ReconnectField { field: "max_attempts", why });
        }
    };
    // A maximum below the base lowers the base with it, and a base above the default
    // maximum raises the maximum unless one is given.
    // Given both, a base above the maximum is lowered to it (the maximum is the
    // promise: no wait is longer).
    let given_max = p.max_ms.map(|m| ms("max_ms", Some(m), default.max_delay)).transpose()?;
    let base = ms("base_ms", p.base_ms, default.base)?;
    let base = given_max.map_or(base, |m| base.min(m));
    let max_delay = given_max.unwrap_or(default.max_delay.max(base));
    let policy = BackoffPolicy { base, max_delay, max_attempts, ..default };
    policy.validate()?;
    Ok(Some(policy))
}

fn outbound(cp: &ControlPlane) -> Result<&OutboundContext, ApiError> {
    cp.inner.cfg.outbound.as_ref().ok_or(ApiError::OutboundDisabled)
}

/// `id` must be a live outbound session.
fn live_connection(cp: &ControlPlane, id: SessionId) -> Result<(), ApiError> {
    match cp.inner.registry.live_kind(id) {
        Some(SessionKind::Outbound) => Ok(()),
        // It was opened here and has ended (a failed dial ends it at once): the
        // resource exists but takes no more commands.
        None if cp.inner.registry.get(id).is_some_and(|s| s.info.kind == SessionKind::Outbound) => {
            Err(ApiError::ConnectionEnded(id))
        }
        _ => Err(ApiError::ConnectionNotFound(id)),
    }
}

/// `POST /api/connections`.
#[utoipa::path(
    post,
    path = "/api/connections",
    tag = "connections",
    summary = "Open an outbound connection",
    description = "Creates a session of kind `outbound` and answers at once; the session then goes \
                   CONNECTING → CONNECTED, or FAILED with `reason_kind` (`dns`, `refused`, `connect`, `tls`, \
                   `timeout`, `http_status` with `http_status`, `handshake`). With `reconnect`, each attempt is a \
                   CONNECTING step with its `attempt` number and the reason the previous one ended. When the \
                   control plane is reachable beyond loopback, targets that resolve to loopback, private, \
                   link-local or other non-public addresses are refused (403) unless the gateway runs with \
                   `--allow-private-targets`.",
    request_body(content = ConnectionRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "The session was created and is connecting", body = ConnectionCreated,
         headers(("Location" = String, description = "The session: /api/sessions/{id}"))),
        (status = 400, description = "Bad URL, scheme, header, subprotocol, reconnect policy or ping interval", body = ErrorBody),
        (status = 403, description = "The target is not a public address, and private targets are not allowed",
         body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "Content-Type is not JSON", body = ErrorBody),
        (status = 501, description = "This control plane does not open outbound connections", body = ErrorBody),
    ),
)]
pub async fn create(State(cp): State<ControlPlane>, body: JsonBody) -> Result<impl IntoResponse, ApiError> {
    let ctx = outbound(&cp)?;
    let plan = plan(body.parse()?)?;
    let targets = ctx.targets();
    let mut vetted = None;
    if targets == TargetPolicy::PublicOnly {
        match wsgate_client::vet(&plan.url, ctx.connect_timeout).await {
            Ok(addrs) => vetted = Some(addrs),
            Err(source @ GuardError::Restricted { .. }) => {
                return Err(ApiError::PrivateTarget { url: plan.url.to_string(), source: Box::new(source) });
            }
            // Not a refusal: the session's first attempt reports it (dns, timeout)
            // like any other failure, and retries it if asked to.
            Err(GuardError::Lookup(_)) => {}
        }
    }
    let path = &plan.url[url::Position::BeforePath..url::Position::AfterQuery];
    let info = SessionInfo {
        id: SessionId::new(),
        kind: SessionKind::Outbound,
        route: ROUTE.into(),
        path: if path.is_empty() { "/".to_owned() } else { path.to_owned() },
        client_addr: None,
        headers: plan.recorded,
        opened_at: chrono::Utc::now(),
        payloads: Default::default(),
    };
    let (session, commands) = SessionHandle::open(info, cp.inner.bus.clone(), cp.inner.registry.clone(), COMMAND_QUEUE);
    let id = session.id();
    let mut cfg = OutboundConfig::new(plan.url, ctx.tls.clone());
    cfg.headers = plan.headers;
    cfg.subprotocols = plan.subprotocols;
    cfg.reconnect = plan.reconnect;
    cfg.ping_interval = plan.ping_interval;
    cfg.connect_timeout = ctx.connect_timeout;
    cfg.targets = targets;
    cfg.max_message_size = ctx.max_message_size;
    let mut task = Outbound::new(cfg);
    if let Some(addrs) = vetted {
        task = task.with_vetted(addrs);
    }
    ctx.sessions.spawn(task.run(session, commands, ctx.shutdown.clone()));
    let location = format!("/api/sessions/{id}");
    Ok((StatusCode::CREATED, [(header::LOCATION, location.clone())], Json(ConnectionCreated { id, session: location })))
}

/// `POST /api/connections/{id}/send`.
#[utoipa::path(
    post,
    path = "/api/connections/{id}/send",
    tag = "connections",
    summary = "Send a message on an outbound connection",
    description = "Queues a text or binary message to the server. It is recorded `client_to_upstream`, flagged \
                   `injected`. While the session is (re)connecting, messages wait for the connection (at most 64; \
                   more are dropped with a `queue_overflow` error event).",
    params(SessionPath),
    request_body(content = SendRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Queued", body = Queued),
        (status = 400, description = "Bad id, or a body that is not one of text and base64", body = ErrorBody),
        (status = 404, description = "No outbound connection with this id", body = ErrorBody),
        (status = 409, description = "The connection has ended", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "Content-Type is not JSON", body = ErrorBody),
        (status = 503, description = "`busy`: the server is not reading (the connection's output is at the \
                                      high-water mark), or the session's command queue is full; retry", body = ErrorBody,
         headers(("Retry-After" = u32, description = "Seconds to wait"))),
    ),
)]
pub async fn send(
    State(cp): State<ControlPlane>,
    id: Result<Path<String>, PathRejection>,
    body: JsonBody,
) -> Result<impl IntoResponse, ApiError> {
    let id = parse_id(&id?.0)?;
    let SendBody { text, base64 } = body.parse()?;
    let inject = InjectPayload { text, base64 }.into_inject(Target::Upstream)?;
    live_connection(&cp, id)?;
    deliver(&cp.inner.registry, id, &inject).await.map_err(|e| match e {
        InjectError::Command(e) => not_found_as_connection(e, id),
        InjectError::Refused(r) => r.into(),
    })?;
    Ok(queued())
}

/// `DELETE /api/connections/{id}`.
#[utoipa::path(
    delete,
    path = "/api/connections/{id}",
    tag = "connections",
    summary = "Close an outbound connection",
    description = "Closes the connection with the code and reason (default 1000, empty), given in the JSON body \
                   or in the query (where both give a field, the body's wins). The session ends DISCONNECTED with that code, initiator `admin`; \
                   a session still connecting stops trying.",
    params(SessionPath, CloseQuery),
    request_body(content = Option<CloseRequest>, content_type = "application/json"),
    responses(
        (status = 202, description = "Queued", body = Queued),
        (status = 400, description = "Bad id, code or reason", body = ErrorBody),
        (status = 404, description = "No outbound connection with this id", body = ErrorBody),
        (status = 409, description = "The connection has ended", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "Content-Type is not JSON", body = ErrorBody),
        (status = 503, description = "The session's command queue is full; retry", body = ErrorBody,
         headers(("Retry-After" = u32, description = "Seconds to wait"))),
    ),
)]
pub async fn close(
    State(cp): State<ControlPlane>,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<CloseQuery>, QueryRejection>,
    body: JsonBody,
) -> Result<impl IntoResponse, ApiError> {
    let id = parse_id(&id?.0)?;
    let Query(q) = query?;
    let from_body: CloseRequest = body.parse_or_default()?;
    // Both forms are checked; where both give a field, the body's wins.
    let query_code = q.code.map(|c| c.parse::<u16>().map_err(|_| InvalidConnection::CodeQuery(c))).transpose()?;
    close_command(query_code, q.reason.clone())?;
    let (code, reason) = (from_body.code.or(query_code), from_body.reason.or(q.reason));
    let command = close_command(code, reason)?;
    live_connection(&cp, id)?;
    cp.inner.registry.command(id, command).map_err(|e| not_found_as_connection(e, id))?;
    Ok(queued())
}

fn not_found_as_connection(e: wsgate_core::CommandError, id: SessionId) -> ApiError {
    match e {
        wsgate_core::CommandError::NotFound => ApiError::ConnectionNotFound(id),
        other => other.into(),
    }
}

fn queued() -> impl IntoResponse {
    (StatusCode::ACCEPTED, Json(Queued { status: QueuedStatus::Queued }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: serde_json::Value) -> Result<Plan, String> {
        let r: ConnectionRequest = serde_json::from_value(v).map_err(|e| e.to_string())?;
        plan(r).map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_request() {
        let p = req(serde_json::json!({
            "url": "wss://example.com:8443/chat?room=1",
            "headers": {"Authorization": "Bearer s3cret", "X-Trace": "abc"},
            "subprotocols": ["v2.chat", "v1"],
            "reconnect": {"max_attempts": 3, "base_ms": 50}
        }))
        .expect("valid");
        assert_eq!(p.url.as_str(), "wss://example.com:8443/chat?room=1");
        assert_eq!(p.headers.get("x-trace").map(|v| v.as_bytes()), Some(&b"abc"[..]));
        assert_eq!(p.headers.get("authorization").map(|v| v.as_bytes()), Some(&b"Bearer s3cret"[..]));
        // What the session shows has the secret redacted.
        assert!(p.recorded.contains(&("authorization".into(), "[redacted]".into())), "{:?}", p.recorded);
        assert_eq!(p.subprotocols, ["v2.chat", "v1"]);
        let r = p.reconnect.expect("a policy");
        assert_eq!((r.max_attempts, r.base, r.max_delay), (3, Duration::from_millis(50), Duration::from_secs(10)));
    }

    #[test]
    fn ping_interval_bounds() {
        let ping = |v: serde_json::Value| req(serde_json::json!({"url": "ws://h/", "ping_interval_ms": v}));
        assert_eq!(ping(serde_json::json!(100)).expect("ok").ping_interval, Some(Duration::from_millis(100)));
        assert_eq!(ping(serde_json::json!(3_600_000)).expect("ok").ping_interval, Some(Duration::from_secs(3600)));
        assert!(ping(serde_json::Value::Null).expect("ok").ping_interval.is_none());
        assert!(req(serde_json::json!({"url": "ws://h/"})).expect("ok").ping_interval.is_none());
        for bad in [0, 99, 3_600_001] {
            let e = ping(serde_json::json!(bad)).expect_err("out of range");
            assert_eq!(e, format!("invalid ping_interval_ms {bad}: from 100 to 3600000"));
        }
        assert!(ping(serde_json::json!(-1)).is_err() && ping(serde_json::json!("10")).is_err());
    }

    #[test]
    fn reconnect_shapes() {
        let policy = |v: serde_json::Value| req(serde_json::json!({"url": "ws://h/", "reconnect": v}));
        assert_eq!(policy(serde_json::json!(true)).expect("ok").reconnect, Some(BackoffPolicy::default()));
        assert!(policy(serde_json::json!(false)).expect("ok").reconnect.is_none());
        assert!(policy(serde_json::Value::Null).expect("ok").reconnect.is_none());
        assert!(req(serde_json::json!({"url": "ws://h/"})).expect("ok").reconnect.is_none());
        let big_base = policy(serde_json::json!({"base_ms": 20000})).expect("ok").reconnect.expect("policy");
        assert_eq!(big_base.max_delay, Duration::from_secs(20), "max follows a large base");
        let small_max = policy(serde_json::json!({"max_ms": 1})).expect("ok").reconnect.expect("policy");
        assert_eq!(small_max.base, Duration::from_millis(1), "base follows a small max");
        let both = policy(serde_json::json!({"base_ms": 500, "max_ms": 100})).expect("ok").reconnect.expect("policy");
        assert_eq!((both.base, both.max_delay), (Duration::from_millis(100), Duration::from_millis(100)));
        for (bad, says) in [
            (serde_json::json!(3), "must be true, false, null"),
            (serde_json::json!({"max_attempts": 0}), "max_attempts"),
            (serde_json::json!({"max_attempts": 10001}), "max_attempts"),
            (serde_json::json!({"base_ms": 0}), "base_ms"),
            (serde_json::json!({"retries": 3}), "unknown field"),
        ] {
            let e = policy(bad.clone()).expect_err("invalid");
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn bad_requests_say_why() {
        for (body, says) in [
            (serde_json::json!({"url": "not a url"}), "invalid url"),
            (serde_json::json!({"url": "http://example.com/"}), "ws or wss"),
            (serde_json::json!({"url": "ws://example.com/#x"}), "fragment"),
            (serde_json::json!({"url": "ws://u:p@example.com/"}), "credentials"),
            (serde_json::json!({"url": "ws://h/", "headers": {"bad name": "v"}}), "invalid header name"),
            (serde_json::json!({"url": "ws://h/", "headers": {"X-A": "a\nb"}}), "invalid value"),
            (serde_json::json!({"url": "ws://h/", "headers": {"Host": "other"}}), "written by wsgate"),
            (serde_json::json!({"url": "ws://h/", "headers": {"Sec-WebSocket-Key": "x"}}), "written by wsgate"),
            (serde_json::json!({"url": "ws://h/", "headers": {"Sec-WebSocket-Protocol": "x"}}), "\"subprotocols\""),
            (serde_json::json!({"url": "ws://h/", "subprotocols": ["a b"]}), "invalid subprotocol"),
            (serde_json::json!({"url": "ws://h/", "subprotocols": [""]}), "invalid subprotocol"),
            (serde_json::json!({"url": "ws://h/", "subprotocols": ["a", "a"]}), "twice"),
            (serde_json::json!({"url": "ws://h/", "extra": 1}), "unknown field"),
            (serde_json::json!({"headers": {}}), "missing field `url`"),
        ] {
            let e = req(body.clone()).expect_err("invalid");
            assert!(e.contains(says), "{body}: {e}");
        }
    }

    #[test]
    fn the_guard_applies_beyond_loopback_unless_allowed() {
        let ctx = |loopback, allow| OutboundContext {
            connect_timeout: Duration::from_secs(1),
            allow_private_targets: allow,
            control_is_loopback: loopback,
            tls: wsgate_protocol::tls::client_config(None).expect("tls"),
            max_message_size: 1 << 20,
            shutdown: CancellationToken::new(),
            sessions: TaskTracker::new(),
        };
        assert_eq!(ctx(true, false).targets(), TargetPolicy::Any);
        assert_eq!(ctx(false, true).targets(), TargetPolicy::Any);
        assert_eq!(ctx(false, false).targets(), TargetPolicy::PublicOnly);
    }
}
