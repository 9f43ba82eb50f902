//! The table that ties each config field to its flag, its `WSGATE_*` variable and its
//! help text — the single place `config default`, the error messages and the flag
//! layer read from.

/// One configurable field.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// Dotted path in the YAML file.
    pub path: &'static str,
    /// Long flag (without `--`), which is also the clap argument id with `-` → `_`.
    pub flag: &'static str,
    pub help: &'static str,
}

impl Key {
    pub fn env(&self) -> String {
        format!("WSGATE_{}", self.flag.replace('-', "_").to_uppercase())
    }
    pub fn arg_id(&self) -> String {
        self.flag.replace('-', "_")
    }
}

macro_rules! keys {
    ($( $path:literal, $flag:literal, $help:literal; )*) => {
        pub const KEYS: &[Key] = &[ $( Key { path: $path, flag: $flag, help: $help }, )* ];
    };
}

keys! {
    "listen", "listen", "Address clients connect to (host:port; port 0 picks a free one).";
    "control", "control", "Address of the control plane: API, live stream and /metrics. Beyond loopback it needs admin_token.";
    "metrics_listen", "metrics-listen", "Also serve GET /metrics alone, with no token, on this address (what websocket-relay's metrics.port did).";
    "admin_token", "admin-token", "Bearer token required by the control plane (Authorization: Bearer; browsers open WebSockets with a ticket from POST /api/live/ticket, or ?token=).";
    "control_origins", "control-origin", "Origin (scheme://host[:port]) whose web pages may use the control plane: its WebSockets and, with CORS, its API (repeatable). Its own origin needs no listing.";
    "control_hosts", "control-host", "Host name the control plane answers to besides IP addresses and localhost, e.g. behind a reverse proxy (repeatable; DNS rebinding guard).";
    "log_level", "log-level", "Log filter: error, warn, info, debug, trace, or a tracing directive (RUST_LOG also works).";
    "log_format", "log-format", "Log format: text or json.";
    "tls_cert", "tls-cert", "PEM certificate chain: serve wss:// on listen.";
    "tls_key", "tls-key", "PEM private key for tls_cert.";
    "shutdown_timeout", "shutdown-timeout", "On SIGINT/SIGTERM, how long to wait for sessions to close after sending 1001.";
    "limits.max_message_size", "max-message-size", "Largest message in bytes from either side; above it the sender is closed with 1009.";
    "limits.max_connections", "max-connections", "Concurrent client connections; beyond it new clients get HTTP 503.";
    "limits.idle_timeout", "idle-timeout", "Close a session after this long without a frame (0s = never).";
    "limits.handshake_timeout", "handshake-timeout", "Time a client has to send its upgrade request (slowloris guard).";
    "deflate.enabled", "deflate", "Negotiate permessage-deflate (RFC 7692) on each side (~300 KiB per compressing connection).";
    "deflate.max_window_bits", "deflate-window-bits", "Largest LZ77 window wsgate compresses with, 9..=15 (smaller saves memory).";
    "deflate.no_context_takeover", "deflate-no-context-takeover", "Ask peers to reset their compressor after every message.";
    "deflate.level", "deflate-level", "zlib compression level, 0..=9.";
    "live.payload_cap", "payload-cap", "Payload bytes shown per message on the live stream; longer ones are cut and flagged.";
    "live.queue", "live-queue", "Events queued per live-stream subscriber before they are dropped (and counted).";
    "proxy.upstream", "upstream", "Upstream base URL (ws:// or wss://); the client's path and query are appended.";
    "proxy.resolver_url", "resolver-url", "Resolve the upstream per connection: GET <resolver-url><path> answers the URL (text or {\"url\":..}). Falls back to upstream.";
    "proxy.resolver_timeout", "resolver-timeout", "Timeout of one resolver request.";
    "proxy.resolver_retries", "resolver-retries", "Resolver retries after a failure, before falling back.";
    "proxy.accept_early", "accept-early", "Accept the client at once and queue its messages until the upstream is connected.";
    "proxy.replace_same_path", "replace-same-path", "A client accepted on a path closes the older live sessions on it (1000, reason_kind replaced).";
    "proxy.queue_max_messages", "queue-max-messages", "Accept-early queue bound, in messages.";
    "proxy.queue_max_bytes", "queue-max-bytes", "Accept-early queue bound, in bytes.";
    "proxy.queue_timeout", "queue-timeout", "Accept-early: queued messages older than this are dropped, each with an event.";
    "proxy.forward_headers", "forward-header", "Extra request header forwarded to the upstream (repeatable), besides the default allowlist.";
    "proxy.strip_prefix", "strip-prefix", "Removed from the front of the client's path before it is appended to the upstream (/api: /api/orders goes to upstream/orders).";
    "proxy.upstream_ca", "upstream-ca", "Extra CA certificate (PEM) trusted for wss:// upstreams, besides the system roots.";
    "proxy.connect_timeout", "connect-timeout", "DNS + TCP + TLS + upgrade towards the upstream.";
    "proxy.seed", "proxy-seed", "Seed for every random choice of the proxy route: its rules' {{uuid}} and {{randInt}}, and its faults when their spec has no seed (docs/faults.md), so runs repeat.";
    "proxy.rules", "proxy-rules", "Rules file (YAML) whose rules transform what the proxy forwards: rewrite, drop, delay or answer a matching message (docs/rules.md).";
    "proxy.expose_errors", "expose-upstream-errors", "Tell a client refused with 502/504 why (upstream URL, DNS/TLS error) instead of a generic reason; the detail is always in the session record and the logs.";
    "mock.echo", "echo", "wsgate mock: echo every text and binary message back unchanged.";
    "mock.replay", "replay", "wsgate mock: play this script to every session: MockForge JSONL lines or a wsgate transcript (docs/mock.md).";
    "mock.replay_session", "replay-session", "wsgate mock: play this stored session (its id in the configured store) to every session, as --replay plays its export (docs/mock.md).";
    "mock.rules", "rules", "wsgate mock: answer each client message by the first matching rule of this YAML file: respond, broadcast, close, with per-session state (docs/rules.md).";
    "mock.speed", "speed", "wsgate mock --replay: schedule speed (2.0 plays twice as fast; default 1.0).";
    "mock.loop", "loop", "wsgate mock --replay: start the script over after its last step.";
    "mock.seed", "seed", "wsgate mock --replay or --rules: seed for every random template value ({{uuid}}, {{randInt}}), so runs repeat.";
    "mock.subprotocols", "subprotocol", "wsgate mock: a subprotocol to accept (repeatable).";
    "mock.ai.narrative", "ai-narrative", "wsgate mock: send each session a stream of JSON events an OpenAI-compatible model generates from this narrative (docs/mock.md, Generated event streams).";
    "mock.ai.url", "ai-url", "wsgate mock --ai-narrative: the chat-completions API's base URL, e.g. https://api.openai.com/v1 (/chat/completions is appended unless the URL ends with it).";
    "mock.ai.model", "ai-model", "wsgate mock --ai-narrative: the model name sent with the request.";
    "mock.ai.api_key_env", "ai-key-env", "wsgate mock --ai-narrative: the environment variable holding the API key, sent as Authorization: Bearer (unset: OPENAI_API_KEY, sent only when set; a variable named here must be set).";
    "mock.ai.count", "ai-count", "wsgate mock --ai-narrative: events per session; after the last, the session closes with 1000.";
    "mock.ai.rate", "ai-rate", "wsgate mock --ai-narrative: events per second.";
    "mock.ai.record", "ai-record", "wsgate mock --ai-narrative: write each session's generated stream to this file, as a transcript wsgate mock --replay plays (later sessions: NAME-2.EXT, NAME-3.EXT, ...).";
    "mock.ai.timeout", "ai-timeout", "wsgate mock --ai-narrative: how long the endpoint may take to answer, and between two chunks of its answer, before the session closes with 1014.";
    "relay.protocol", "protocol", "wsgate relay: raw (every message unchanged to the room named by the path) or envelope (JSON join/leave/publish/send; WarpSocket's shape).";
    "relay.echo_sender", "no-echo-sender", "wsgate relay: a sender gets its own messages back, as the Go websocket-relay does (--no-echo-sender turns it off).";
    "relay.join_path_room", "no-join-path-room", "wsgate relay: envelope clients start in the room named by their path, as raw ones always do (--no-join-path-room: in no room until they join).";
    "relay.subprotocols", "relay-subprotocol", "wsgate relay: a subprotocol to accept (repeatable).";
    "relay.origins", "relay-origin", "wsgate relay: a browser origin allowed (repeatable; scheme://host[:port] or \"*\"); other origins get 403. Unset: every origin.";
    "relay.queue_max_messages", "member-queue-messages", "wsgate relay: messages waiting for one member before the overflow policy applies.";
    "relay.queue_max_bytes", "member-queue-bytes", "wsgate relay: bytes waiting for one member before the overflow policy applies.";
    "relay.overflow", "overflow", "wsgate relay: a full member queue drops the oldest message (drop_oldest), the newest (drop_newest), or closes the member with 1013 (disconnect).";
    "relay.heartbeat_interval", "heartbeat-interval", "wsgate relay: ping every member this often (0s = no heartbeats).";
    "relay.heartbeat_misses", "heartbeat-misses", "wsgate relay: pings a member may leave unanswered before it is closed with 1001.";
    "relay.rate_limit", "rate-limit", "wsgate relay: messages per second one connection may send (0 = no limit); over it the connection is closed with 1008.";
    "relay.rate_burst", "rate-burst", "wsgate relay: messages a connection may send at once before the rate applies (0: the rate).";
    "relay.max_bad_frames", "max-bad-frames", "wsgate relay: malformed envelope frames answered with an error frame before the connection is closed with 1008.";
    "relay.max_connections_per_ip", "max-connections-per-ip", "wsgate relay: connections one client address may hold (0 = no limit); beyond it HTTP 429.";
    "relay.jwt_secret", "jwt-secret", "wsgate relay: clients must present a JWT (Authorization: Bearer, or ?token=) signed with this HS256 secret; a rooms claim limits their rooms.";
    "relay.jwt_public_key", "jwt-public-key", "wsgate relay: clients must present a JWT that verifies with this RSA (RS256) or EC P-256 (ES256) public key, PEM.";
    "store.enabled", "no-store", "Record every session's lifecycle and messages in the store (the flag --no-store turns it off).";
    "store.url", "store", "Where history is kept: sqlite://PATH (created on first run), postgres://USER@HOST/DB, or memory://.";
    "store.record", "record", "When the store falls behind: drop (traffic never waits; drops are counted and shown on the session) or strict (traffic waits; every message is stored).";
    "store.payload_cap", "store-payload-cap", "Payload bytes stored per message; longer ones are cut and flagged truncated.";
    "store.payloads", "store-payloads", "What history keeps of payloads: full (up to the cap), headers (opcode, size, time only: any rate) or sample:N (1 message in N whole); a route's record_payloads overrides it.";
    "store.retention", "retention", "Delete sessions that ended longer ago than this, e.g. 7d (0s = keep forever).";
    "store.retention_messages", "retention-messages", "Keep at most this many messages overall; the oldest go first (0 = no limit).";
    "store.redact_headers", "redact-header", "Request header redacted before it is stored (repeatable), besides Authorization, Cookie and Set-Cookie.";
    "store.instance", "instance", "This gateway's name in a shared store (default: host name). A running gateway holds it: a second one with the same name and store is refused.";
    "store.instance_lease", "instance-lease", "How long the hold on the instance name lasts unless renewed (every third of it); a crashed gateway's open sessions are closed once it runs out. 1s to 24h.";
    "outbound.allow_private_targets", "allow-private-targets", "Let POST /api/connections reach private, loopback and link-local addresses when the control plane is bound beyond loopback.";
    "outbound.connect_timeout", "outbound-connect-timeout", "DNS + TCP + TLS + upgrade for one outbound connection attempt.";
    "outbound.ca", "outbound-ca", "Extra CA certificate (PEM) trusted for wss:// outbound connections, besides the system roots.";
}

pub fn by_path(path: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.path == path)
}
