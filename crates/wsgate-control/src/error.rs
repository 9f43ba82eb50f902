//! Every failure the HTTP API reports, each carrying its status. The body is always
//! `{"error":"<message>"}` ([`ErrorBody`]), so a script never has to parse an HTML
//! error page.

use axum::Json;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use utoipa::ToSchema;
use wsgate_core::{CommandError, InjectRefused, SessionId};
use wsgate_protocol::handshake::UpgradeError;

use crate::commands::InvalidCommand;
use crate::connections::InvalidConnection;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no such route")]
    NoRoute,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("missing or wrong admin token")]
    Unauthorized,
    #[error("invalid session id {0:?}")]
    BadSessionId(String),
    #[error("no session with id {0}")]
    SessionNotFound(SessionId),
    #[error("invalid path: {0}")]
    BadPath(String),
    #[error("invalid query: {0}")]
    BadQuery(String),
    #[error("invalid {field} {value:?}: expected one of {expected}")]
    BadFilter { field: &'static str, value: String, expected: &'static str },
    #[error("request body must be JSON (Content-Type: application/json)")]
    NotJson,
    #[error("request body is empty: expected a JSON object")]
    EmptyBody,
    #[error("request body must be a JSON object, not {0}")]
    NotAnObject(&'static str),
    #[error("request body is larger than the {limit}-byte limit")]
    BodyTooLarge { limit: usize },
    #[error("request body did not arrive within {0:?}")]
    BodyTimeout(std::time::Duration),
    #[error("cannot read request body: {0}")]
    BodyRead(String),
    #[error("invalid {field} {value:?}: expected an integer from {min} to {max}")]
    OutOfRange { field: &'static str, value: String, min: usize, max: usize },
    #[error("cannot read request body: {0}")]
    Body(#[from] BytesRejection),
    #[error("invalid JSON body: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Invalid(#[from] InvalidCommand),
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The session refused an inject.
    #[error(transparent)]
    Refused(#[from] InjectRefused),
    #[error("{0}")]
    Upgrade(#[from] UpgradeError),
    #[error("cannot encode metrics")]
    MetricsEncoding,
    #[error("no stored history: this gateway runs with --no-store")]
    NoHistory,
    #[error("the history store failed: {0}")]
    Store(#[from] wsgate_store::StoreError),
    #[error(transparent)]
    BadConnection(#[from] InvalidConnection),
    #[error(
        "refusing {url}: {source}. The control plane is reachable beyond loopback, so outbound targets must be \
         public addresses; start the gateway with --allow-private-targets to allow loopback, private and \
         link-local ones"
    )]
    PrivateTarget { url: String, source: Box<wsgate_client::GuardError> },
    #[error("no live outbound connection with id {0}")]
    ConnectionNotFound(SessionId),
    #[error("outbound connection {0} has ended; open a new one")]
    ConnectionEnded(SessionId),
    #[error("this control plane does not open outbound connections")]
    OutboundDisabled,
    #[error("this gateway has no route table: it serves the control plane only")]
    NoRoutes,
    #[error("reload refused, the routes in force keep serving: {0}")]
    ReloadRefused(String),
    #[error("no room {0:?} (a room exists while it has members)")]
    RoomNotFound(String),
    #[error("no dashboard file {0:?}")]
    NoAsset(String),
    #[error("give exactly one of \"text\", \"json\" and \"base64\", and nothing else")]
    PublishChoice,
    #[error("\"{0}\" must be a string")]
    PublishType(&'static str),
    #[error("invalid Host header {0:?}: expected host[:port]")]
    BadHost(String),
    #[error(
        "Host {0:?} is not a name of this control plane (DNS rebinding guard): IP addresses, localhost and \
         listed names are. If clients reach it by this name (a reverse proxy in front), list it with \
         --control-host NAME (WSGATE_CONTROL_HOST, or control_hosts: in the config file)"
    )]
    HostNotAllowed(String),
    #[error(
        "a page on origin {0:?} may not use the control plane (cross-site request guard). To let a dashboard \
         on that origin in, list it with --control-origin ORIGIN (WSGATE_CONTROL_ORIGIN, or control_origins: \
         in the config file)"
    )]
    OriginNotAllowed(String),
    #[error(transparent)]
    Ticket(#[from] crate::ticket::TicketError),
    #[error("no route named {0:?} (GET /api/routes lists them)")]
    RouteNotFound(String),
    #[error("route {route:?} is a {kind} route: faults apply to proxy and mock routes")]
    NoFaults { route: String, kind: String },
    #[error("invalid faults: {0}")]
    BadFaults(wsgate_faults::FaultError),
    #[error("invalid breakpoint: {0}")]
    BadBreakpoint(wsgate_intercept::BreakpointError),
    #[error("route {route:?} is a {kind} route: breakpoints hold frames on proxy routes")]
    NotProxy { route: String, kind: String },
    #[error(transparent)]
    Intercept(wsgate_intercept::InterceptError),
    #[error(
        "frame {0} is not held: it was forwarded, dropped or expired, or its session ended (GET /api/intercepts lists what is held)"
    )]
    NotHeld(u64),
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::BadPath(r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::BadQuery(r.body_text())
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute | Self::SessionNotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::BadSessionId(_)
            | Self::BadPath(_)
            | Self::BadQuery(_)
            | Self::BadFilter { .. }
            | Self::OutOfRange { .. }
            | Self::EmptyBody
            | Self::NotAnObject(_)
            | Self::BodyRead(_)
            | Self::Json(_)
            | Self::Invalid(_)
            | Self::BadConnection(_) => StatusCode::BAD_REQUEST,
            Self::PrivateTarget { .. } | Self::OriginNotAllowed(_) => StatusCode::FORBIDDEN,
            Self::BadHost(_) => StatusCode::BAD_REQUEST,
            Self::HostNotAllowed(_) => StatusCode::MISDIRECTED_REQUEST,
            Self::Ticket(crate::ticket::TicketError::Full) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Ticket(crate::ticket::TicketError::Random(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::ConnectionNotFound(_) => StatusCode::NOT_FOUND,
            Self::ConnectionEnded(_) => StatusCode::CONFLICT,
            Self::OutboundDisabled => StatusCode::NOT_IMPLEMENTED,
            Self::NoRoutes => StatusCode::CONFLICT,
            Self::RoomNotFound(_) | Self::RouteNotFound(_) | Self::NoAsset(_) => StatusCode::NOT_FOUND,
            Self::NoFaults { .. } => StatusCode::CONFLICT,
            Self::BadFaults(_) | Self::BadBreakpoint(_) => StatusCode::BAD_REQUEST,
            Self::NotProxy { .. } | Self::Intercept(wsgate_intercept::InterceptError::TooMany) => StatusCode::CONFLICT,
            Self::Intercept(wsgate_intercept::InterceptError::NoBreakpoint(_)) | Self::NotHeld(_) => {
                StatusCode::NOT_FOUND
            }
            Self::PublishChoice | Self::PublishType(_) => StatusCode::BAD_REQUEST,
            Self::ReloadRefused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::NotJson => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            // 413 when the body is over the limit, 400 when it could not be read.
            Self::Body(r) => r.status(),
            Self::Command(CommandError::NotFound) => StatusCode::NOT_FOUND,
            // The session's command queue is full: transient, so 503 with Retry-After.
            Self::Command(CommandError::Busy) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Command(CommandError::NoSuchSide(_)) => StatusCode::CONFLICT,
            // The peer is not reading: transient, like a full queue.
            Self::Refused(InjectRefused::Busy { .. }) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Refused(InjectRefused::NoSuchSide { .. } | InjectRefused::Closing { .. }) => StatusCode::CONFLICT,
            Self::Upgrade(e) => e.status(),
            Self::MetricsEncoding => StatusCode::INTERNAL_SERVER_ERROR,
            Self::NoHistory => StatusCode::NOT_FOUND,
            // The database is down or refused the query: retrying later may help.
            Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// What every error response carries.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
#[schema(example = json!({"error": "no session with id 0193a4b2-7c1e-7d3f-9a2b-1c2d3e4f5a6b"}))]
pub struct ErrorBody {
    /// What went wrong, for a person to read; `busy` (with a `detail`) for a 503 that
    /// a retry may cure.
    pub error: String,
    /// For `busy`: what is busy (a full command queue, or a peer that is not reading).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let busy = matches!(self, Self::Command(CommandError::Busy) | Self::Refused(InjectRefused::Busy { .. }));
        let body = match busy {
            // A stable word a script can test, and the sentence for a person.
            true => ErrorBody { error: "busy".into(), detail: Some(self.to_string()) },
            false => ErrorBody { error: self.to_string(), detail: None },
        };
        let mut res = (status, Json(body)).into_response();
        match self {
            Self::Unauthorized => {
                res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::Command(CommandError::Busy)
            | Self::Refused(InjectRefused::Busy { .. })
            | Self::Ticket(crate::ticket::TicketError::Full) => {
                res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            // RFC 9110 §15.5.22: a 426 names the protocol to upgrade to.
            Self::Upgrade(e) if e.status() == StatusCode::UPGRADE_REQUIRED => {
                let h = res.headers_mut();
                h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
                h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                h.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
            }
            // The rest of the body was not read: the connection cannot carry another
            // request (see `body::buffer`).
            Self::BodyTooLarge { .. } | Self::BodyTimeout(_) => {
                res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        res
    }
}

impl From<crate::commands::InjectError> for ApiError {
    fn from(e: crate::commands::InjectError) -> Self {
        match e {
            crate::commands::InjectError::Command(c) => c.into(),
            crate::commands::InjectError::Refused(r) => r.into(),
        }
    }
}

/// Fallback for unknown paths.
pub async fn no_route() -> ApiError {
    ApiError::NoRoute
}

/// Fallback for a known path with the wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
