//! `relay:` — rooms and fan-out (`wsgate relay`, and `relay:` routes in `serve`):
//! the route's protocol, whether senders get their own messages, each member's queue
//! and what a full one does, heartbeats, and the per-connection limits.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wsgate_relay::{Heartbeat, MailboxLimits, Overflow, Protocol, RateLimit, RelaySettings};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelaySection {
    /// raw (every message unchanged to the room named by the path) or envelope (JSON
    /// commands: join, leave, publish, send; WarpSocket's event and heartbeat).
    pub protocol: Protocol,
    /// Whether a sender gets its own messages back (the Go websocket-relay does).
    pub echo_sender: bool,
    /// Envelope clients start in the room named by their path (raw clients always do).
    pub join_path_room: bool,
    /// Messages waiting for one member before its overflow policy applies.
    pub queue_max_messages: usize,
    /// Bytes waiting for one member before its overflow policy applies.
    pub queue_max_bytes: usize,
    /// What a full member queue does: drop_oldest, drop_newest, or disconnect (1013).
    pub overflow: Overflow,
    /// Ping every member this often (0s = no heartbeats).
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Pings a member may leave unanswered before it is closed (1001).
    pub heartbeat_misses: u32,
    /// Messages per second one connection may send (0 = no limit); over it: 1008.
    pub rate_limit: f64,
    /// Messages a connection may send at once before the rate applies (0: the rate, at least 1).
    pub rate_burst: u32,
    /// Malformed envelope frames answered with an error frame before the connection is closed (1008).
    pub max_bad_frames: u32,
    /// Connections one client IP address may hold (0 = no limit); beyond it: HTTP 429.
    pub max_connections_per_ip: usize,
    /// Subprotocols accepted (the first one a client offers that is listed).
    pub subprotocols: Vec<String>,
    /// HS256: clients must present a JWT signed with this secret (`Authorization:
    /// Bearer`, or `?token=`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_secret: Option<String>,
    /// RS256 or ES256: clients must present a JWT that verifies with this public key
    /// (PEM file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_public_key: Option<std::path::PathBuf>,
    /// Browser origins allowed on `wsgate relay` (others get 403); routes have their own `origins`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origins: Option<Vec<String>>,
}

impl Default for RelaySection {
    fn default() -> Self {
        let d = RelaySettings::default();
        Self {
            protocol: d.protocol,
            echo_sender: d.echo_sender,
            join_path_room: d.join_path_room,
            queue_max_messages: d.mailbox.max_messages,
            queue_max_bytes: d.mailbox.max_bytes,
            overflow: d.mailbox.overflow,
            heartbeat_interval: d.heartbeat.map_or(Duration::ZERO, |h| h.interval),
            heartbeat_misses: d.heartbeat.map_or(2, |h| h.misses),
            rate_limit: 0.0,
            rate_burst: 0,
            max_bad_frames: d.max_bad_frames,
            max_connections_per_ip: 0,
            subprotocols: Vec::new(),
            jwt_secret: None,
            jwt_public_key: None,
            origins: None,
        }
    }
}

impl RelaySection {
    /// The section's own checks: `(field, message, fix)` of the first problem.
    pub fn check(&self) -> Result<(), (&'static str, String, &'static str)> {
        let positive = "must be greater than 0";
        if self.queue_max_messages == 0 {
            return Err(("queue_max_messages", positive.into(), "e.g. 1024"));
        }
        if self.queue_max_bytes == 0 {
            return Err(("queue_max_bytes", positive.into(), "e.g. 4194304 (4 MiB)"));
        }
        if !self.heartbeat_interval.is_zero() && self.heartbeat_misses == 0 {
            return Err(("heartbeat_misses", positive.into(), "e.g. 2, or heartbeat_interval: 0s for no heartbeats"));
        }
        if self.heartbeat_interval > super::load::MAX_DURATION {
            return Err(("heartbeat_interval", "longer than the 100 years allowed".into(), "e.g. 30s"));
        }
        if !self.rate_limit.is_finite() || self.rate_limit < 0.0 {
            return Err((
                "rate_limit",
                format!("{} is not a rate", self.rate_limit),
                "messages per second, 0 for no limit",
            ));
        }
        if self.max_bad_frames == 0 {
            return Err(("max_bad_frames", positive.into(), "e.g. 10"));
        }
        if self.jwt_secret.is_some() && self.jwt_public_key.is_some() {
            return Err((
                "jwt_public_key",
                "both jwt_secret and jwt_public_key are set".into(),
                "keep one: a secret for HS256, or a public key file for RS256/ES256",
            ));
        }
        self.verifier().map(|_| ())
    }

    /// The token check the section asks for (reads the key file).
    pub fn verifier(&self) -> Result<Option<wsgate_relay::auth::Verifier>, (&'static str, String, &'static str)> {
        use wsgate_relay::auth::Verifier;
        match (&self.jwt_secret, &self.jwt_public_key) {
            (Some(s), _) => Verifier::hs256(s.as_bytes())
                .map(Some)
                .map_err(|e| ("jwt_secret", e.to_string(), "a non-empty shared secret")),
            (None, Some(p)) => Verifier::public_key_file(p)
                .map(Some)
                .map_err(|e| ("jwt_public_key", e.to_string(), "a PEM file holding an RSA or EC (P-256) public key")),
            (None, None) => Ok(None),
        }
    }

    /// The relay's own settings.
    pub fn settings(&self) -> RelaySettings {
        RelaySettings {
            protocol: self.protocol,
            echo_sender: self.echo_sender,
            join_path_room: self.join_path_room,
            mailbox: MailboxLimits {
                max_messages: self.queue_max_messages,
                max_bytes: self.queue_max_bytes,
                overflow: self.overflow,
            },
            heartbeat: (!self.heartbeat_interval.is_zero())
                .then_some(Heartbeat { interval: self.heartbeat_interval, misses: self.heartbeat_misses }),
            rate: (self.rate_limit > 0.0).then(|| RateLimit {
                per_second: self.rate_limit,
                burst: if self.rate_burst == 0 { (self.rate_limit.ceil() as u32).max(1) } else { self.rate_burst },
            }),
            max_bad_frames: self.max_bad_frames,
            max_per_ip: (self.max_connections_per_ip > 0).then_some(self.max_connections_per_ip),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_check_and_become_the_relay_defaults() {
        let s = RelaySection::default();
        assert_eq!(s.check(), Ok(()));
        let r = s.settings();
        assert!(r.echo_sender && r.rate.is_none() && r.heartbeat.is_some());
        let limited = RelaySection { rate_limit: 2.5, ..RelaySection::default() }.settings();
        assert_eq!(limited.rate.map(|r| r.burst), Some(3));
    }

    #[test]
    fn each_mistake_is_named() {
        let bad = [
            RelaySection { queue_max_messages: 0, ..RelaySection::default() },
            RelaySection { heartbeat_misses: 0, ..RelaySection::default() },
            RelaySection { rate_limit: -1.0, ..RelaySection::default() },
            RelaySection { max_bad_frames: 0, ..RelaySection::default() },
        ];
        let fields: Vec<_> = bad.iter().map(|s| s.check().err().map(|e| e.0)).collect();
        assert_eq!(
            fields,
            [Some("queue_max_messages"), Some("heartbeat_misses"), Some("rate_limit"), Some("max_bad_frames")]
        );
    }
}
