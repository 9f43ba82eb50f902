//! The machine-readable classes sessions report: why a session failed
//! ([`ReasonKind`], a transition's `reason_kind`) and what a non-fatal error event is
//! ([`ErrorKind`]). They are contracts — the API, the live stream, the store and the
//! metrics all name them — so they are enums here, and strings only at the wire edge
//! (`as_str`, serde snake_case: the same names the API has always shown).

use serde::{Deserialize, Serialize};
use wsgate_protocol::ConnectError;

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $wire:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];

            /// The wire name (what the API, the store and the metrics show).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $wire,)+
                }
            }

            /// The value whose [`as_str`](Self::as_str) name is `s`.
            pub fn from_name(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum! {
    /// Why a session (or one attempt of it) failed, or ended for a reason of the
    /// gateway's own (`replaced`): a transition's `reason_kind`.
    ReasonKind {
        /// The upstream URL could not be used.
        InvalidUrl => "invalid_url",
        /// The host name did not resolve.
        Dns => "dns",
        /// The upstream refused the TCP connection.
        Refused => "refused",
        /// Another TCP connect failure (unreachable, reset).
        Connect => "connect",
        /// The TLS handshake failed (or no TLS configuration for `wss://`).
        Tls => "tls",
        /// A stage of the dial took too long.
        Timeout => "timeout",
        /// The upstream answered the upgrade with another HTTP status.
        HttpStatus => "http_status",
        /// The upgrade answer was unusable (bad accept key, subprotocol, extension).
        Handshake => "handshake",
        /// The resolver (HTTP upstream lookup) failed without a fallback.
        Resolver => "resolver",
        /// The private-target guard refused the address (outbound).
        Guard => "guard",
        /// A fault of the route's (`faults:`, `/api/routes/{name}/faults`) refused the
        /// handshake or ended the session.
        Fault => "fault",
        /// An established connection went away without a close frame (outbound,
        /// on the CONNECTING step of the next attempt).
        ConnectionLost => "connection_lost",
        /// A newer client connected on the same path and this session was closed to
        /// make way for it (`--replace-same-path`, on a DISCONNECTED step).
        Replaced => "replaced",
    }
}

impl From<&ConnectError> for ReasonKind {
    fn from(e: &ConnectError) -> Self {
        match e {
            ConnectError::InvalidUrl { .. } => Self::InvalidUrl,
            ConnectError::Dns { .. } => Self::Dns,
            ConnectError::Refused { .. } => Self::Refused,
            ConnectError::Connect { .. } => Self::Connect,
            ConnectError::Tls { .. } | ConnectError::NoTlsConfig => Self::Tls,
            ConnectError::Timeout { .. } => Self::Timeout,
            ConnectError::Rejected { .. } => Self::HttpStatus,
            ConnectError::Http(_)
            | ConnectError::BadAccept
            | ConnectError::UnofferedSubprotocol(_)
            | ConnectError::Takeover
            | ConnectError::Extension(_) => Self::Handshake,
        }
    }
}

wire_enum! {
    /// What a `SessionEvent::Error` is about.
    ErrorKind {
        /// A peer broke the WebSocket protocol (or a size limit).
        Protocol => "protocol",
        /// The resolver failed and the static upstream was used instead.
        ResolverFallback => "resolver_fallback",
        /// The upstream could not be reached, and the route's fallback mock answered
        /// the client (as a session of its own).
        MockFallback => "mock_fallback",
        /// A queued message was dropped: its queue was full.
        QueueOverflow => "queue_overflow",
        /// A queued message was dropped: it waited too long.
        QueueTimeout => "queue_timeout",
        /// A command addressed a side the session does not have.
        NoSuchSide => "no_such_side",
        /// An outbound connection was lost and will be dialled again.
        ConnectionLost => "connection_lost",
        /// An outbound attempt failed and will be retried.
        AttemptFailed => "attempt_failed",
        /// A relay member's queue was full: messages to it were dropped (or it was
        /// disconnected), by its route's overflow policy.
        SlowConsumer => "slow_consumer",
        /// A relay client sent an envelope frame that was refused with an error frame.
        BadFrame => "bad_frame",
        /// A mock's generated event stream failed: its chat-completions endpoint was
        /// unreachable, refused the request, went silent, or answered something that
        /// is not events (the message says which).
        Generation => "generation",
    }
}

impl ErrorKind {
    /// Whether the event means a queued message was dropped (counted in
    /// `wsgate_queue_dropped_total`).
    pub const fn is_queue_drop(self) -> bool {
        matches!(self, Self::QueueOverflow | Self::QueueTimeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_names_are_the_wire_names() {
        for k in ReasonKind::ALL {
            assert_eq!(serde_json::to_value(k).ok(), Some(serde_json::Value::from(k.as_str())));
            assert_eq!(ReasonKind::from_name(k.as_str()), Some(*k));
        }
        for k in ErrorKind::ALL {
            assert_eq!(serde_json::to_value(k).ok(), Some(serde_json::Value::from(k.as_str())));
            assert_eq!(ErrorKind::from_name(k.as_str()), Some(*k));
        }
    }
}
