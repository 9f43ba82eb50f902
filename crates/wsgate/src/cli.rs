//! Command-line definitions. Every config-bearing flag is a string here: typing
//! happens once, in the config layer, so a bad value gets the same message whether it
//! came from a flag, a variable or the file.

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "wsgate",
    version,
    about = "Inspect, proxy, mock, record and load-test WebSocket traffic",
    long_about = "wsgate: every WebSocket connection it touches is a session with a lifecycle and a message log, \
visible live on the control plane (API, /api/live, /metrics).\n\n\
Every flag can also be set as WSGATE_<FLAG> in the environment or in the YAML file given with --config \
(see `wsgate config default`). Precedence: flag > WSGATE_* > websocket-multiplex variables > file > defaults.",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspecting proxy: clients connect here and reach `upstream + path + query`.
    Proxy(Box<ProxyArgs>),
    /// Mock server: sessions answered by wsgate itself.
    Mock(Box<MockArgs>),
    /// Relay hub: clients in rooms (by default the request path), every message
    /// fanned out to the room; envelope mode adds join/leave, unicast, acks.
    Relay(Box<RelayArgs>),
    /// Everything the config declares: its routes (proxy and mock handlers on one
    /// listener; SIGHUP reloads them), the control plane and the store; with no
    /// config, the control plane (API, outbound connections, history) alone.
    Serve(Box<ServeArgs>),
    /// Interactive client: stdin lines become messages, messages go to stdout,
    /// lifecycle and close codes to stderr.
    Connect(Box<ConnectArgs>),
    /// Client-side replay: a recorded session's client messages sent to a real
    /// server, each reply compared with the recorded one (exit 1 at the first
    /// difference).
    Replay(Box<ReplayArgs>),
    /// Read session history from the store.
    History {
        #[command(subcommand)]
        command: HistoryCommand,
    },
    /// Load generation against any WebSocket endpoint.
    Bench {
        #[command(subcommand)]
        command: Box<wsgate_bench::BenchCommand>,
    },
    /// Validate a configuration, or print the documented default.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum HistoryCommand {
    /// Sessions, newest first.
    List(Box<HistoryListArgs>),
    /// One session: its facts, lifecycle, errors and message count.
    Show(Box<HistoryIdArgs>),
    /// One session's JSONL transcript (docs/transcript.md).
    Export(Box<HistoryIdArgs>),
}

/// Where the history is.
#[derive(Debug, Args)]
pub struct HistoryStore {
    /// YAML configuration file (its store section is used).
    #[arg(long, short = 'c', env = "WSGATE_CONFIG", value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// History store: sqlite://PATH (default sqlite://wsgate.db) or postgres://USER@HOST/DB.
    #[arg(long, env = "WSGATE_STORE", value_name = "URL")]
    pub store: Option<String>,
}

#[derive(Debug, Args)]
pub struct HistoryListArgs {
    #[command(flatten)]
    pub at: HistoryStore,
    /// Only this state (REQUESTED, CONNECTING, CONNECTED, DISCONNECTED, FAILED).
    #[arg(long)]
    pub state: Option<String>,
    /// Only this kind (proxy, relay, mock, outbound).
    #[arg(long)]
    pub kind: Option<String>,
    /// Only this route.
    #[arg(long)]
    pub route: Option<String>,
    /// Only paths starting with this.
    #[arg(long)]
    pub path: Option<String>,
    /// Only sessions older than this id (the next page).
    #[arg(long)]
    pub before: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct HistoryIdArgs {
    #[command(flatten)]
    pub at: HistoryStore,
    /// The session id.
    pub id: String,
    /// JSON instead of text (show only).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// A transcript (`wsgate history export ID > FILE`).
    pub file: std::path::PathBuf,
    /// The server to replay against (ws:// or wss://, path and query included).
    #[arg(long, value_name = "URL")]
    pub against: String,
    /// A JSONPath (RFC 9535) whose values may differ from the recording, e.g.
    /// '$.ts' (repeatable).
    #[arg(long, value_name = "JSONPATH")]
    pub ignore: Vec<String>,
    /// Seconds to wait for each expected reply (and to connect).
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    pub timeout: f64,
    /// Schedule speed: 2.0 sends the client's messages twice as fast as recorded.
    #[arg(long, default_value_t = 1.0, value_name = "X")]
    pub speed: f64,
    /// One JSON object on stdout: {"ok":..., "line":..., "at":..., "expected":..., "got":...}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// ws:// or wss:// URL.
    pub url: String,
    /// Request header, `Name: value` (repeatable).
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Subprotocol to offer (repeatable).
    #[arg(long, short = 's', value_name = "NAME")]
    pub subprotocol: Vec<String>,
    /// Reconnect with jittered exponential backoff when the connection drops.
    #[arg(long)]
    pub reconnect: bool,
    /// Reconnect attempts before giving up (0 = no limit).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub max_attempts: u32,
    /// After stdin ends, keep printing replies this long (seconds) before closing.
    #[arg(long, default_value_t = 0.0, value_name = "SECONDS")]
    pub wait: f64,
    /// Read stdin as bytes: each read becomes one binary message.
    #[arg(long)]
    pub binary: bool,
    /// Print one JSON event per line on stdout (lifecycle, messages, close).
    #[arg(long)]
    pub json: bool,
    /// Extra CA certificate (PEM) to trust for wss://.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<std::path::PathBuf>,
    /// DNS + TCP + TLS + upgrade timeout (seconds).
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub timeout: f64,
    /// Offer permessage-deflate.
    #[arg(long)]
    pub deflate: bool,
    /// Close code sent when stdin ends (1000-1003, 1007-1014, 3000-4999).
    #[arg(long, default_value_t = 1000, value_name = "CODE")]
    pub close_code: u16,
    /// Close reason sent with it (at most 123 bytes of UTF-8).
    #[arg(long, default_value = "", value_name = "TEXT")]
    pub close_reason: String,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the layered configuration (file, environment, flags) and print the result.
    Check(Box<CheckArgs>),
    /// Print the default configuration as documented YAML.
    Default,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub proxy: ProxyOnly,
}

/// Flags every serving command takes.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// YAML configuration file.
    #[arg(long, short = 'c', env = "WSGATE_CONFIG", value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Address clients connect to.
    #[arg(long, env = "WSGATE_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Control plane address (dashboard, API, /metrics).
    #[arg(long, env = "WSGATE_CONTROL", value_name = "ADDR")]
    pub control: Option<String>,
    /// Also serve GET /metrics alone (no token) on this address.
    #[arg(long, env = "WSGATE_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Bearer token for the control plane (required beyond loopback).
    #[arg(long, env = "WSGATE_ADMIN_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Origin (scheme://host[:port]) whose pages may use the control plane (repeatable).
    #[arg(long, env = "WSGATE_CONTROL_ORIGIN", value_name = "ORIGIN", value_delimiter = ',')]
    pub control_origin: Vec<String>,
    /// Host name the control plane answers to besides IP addresses and localhost (repeatable).
    #[arg(long, env = "WSGATE_CONTROL_HOST", value_name = "NAME", value_delimiter = ',')]
    pub control_host: Vec<String>,
    /// PEM certificate chain: serve wss://.
    #[arg(long, env = "WSGATE_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<String>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "WSGATE_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<String>,
    /// Log filter (error, warn, info, debug, trace or a directive).
    #[arg(long, env = "WSGATE_LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log format: text or json.
    #[arg(long, env = "WSGATE_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Graceful shutdown deadline (e.g. 10s).
    #[arg(long, env = "WSGATE_SHUTDOWN_TIMEOUT", value_name = "DURATION")]
    pub shutdown_timeout: Option<String>,
    /// Largest message in bytes (close 1009 above it).
    #[arg(long, env = "WSGATE_MAX_MESSAGE_SIZE", value_name = "BYTES")]
    pub max_message_size: Option<String>,
    /// Concurrent client connections (HTTP 503 beyond).
    #[arg(long, env = "WSGATE_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<String>,
    /// Close sessions idle this long (0s = never).
    #[arg(long, env = "WSGATE_IDLE_TIMEOUT", value_name = "DURATION")]
    pub idle_timeout: Option<String>,
    /// Time a client has to finish its upgrade request.
    #[arg(long, env = "WSGATE_HANDSHAKE_TIMEOUT", value_name = "DURATION")]
    pub handshake_timeout: Option<String>,
    /// Payload bytes shown per message on the live stream.
    #[arg(long, env = "WSGATE_PAYLOAD_CAP", value_name = "BYTES")]
    pub payload_cap: Option<String>,
    /// Events queued per live-stream subscriber.
    #[arg(long, env = "WSGATE_LIVE_QUEUE", value_name = "N")]
    pub live_queue: Option<String>,
    /// Negotiate permessage-deflate (RFC 7692) on each side.
    #[arg(long, env = "WSGATE_DEFLATE")]
    pub deflate: bool,
    /// Largest LZ77 window wsgate compresses with (9..=15).
    #[arg(long, env = "WSGATE_DEFLATE_WINDOW_BITS", value_name = "BITS")]
    pub deflate_window_bits: Option<String>,
    /// Ask peers to reset their compressor after every message.
    #[arg(long, env = "WSGATE_DEFLATE_NO_CONTEXT_TAKEOVER")]
    pub deflate_no_context_takeover: bool,
    /// zlib compression level (0..=9).
    #[arg(long, env = "WSGATE_DEFLATE_LEVEL", value_name = "LEVEL")]
    pub deflate_level: Option<String>,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Let POST /api/connections reach private, loopback and link-local addresses
    /// when the control plane is bound beyond loopback.
    #[arg(long, env = "WSGATE_ALLOW_PRIVATE_TARGETS")]
    pub allow_private_targets: bool,
    /// DNS + TCP + TLS + upgrade for one outbound connection attempt.
    #[arg(long, env = "WSGATE_OUTBOUND_CONNECT_TIMEOUT", value_name = "DURATION")]
    pub outbound_connect_timeout: Option<String>,
    /// Extra CA (PEM) trusted for wss:// outbound connections, besides the system roots.
    #[arg(long, env = "WSGATE_OUTBOUND_CA", value_name = "FILE")]
    pub outbound_ca: Option<String>,
}

/// Where and how session history is kept.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// History store: sqlite://PATH (default sqlite://wsgate.db), postgres://USER@HOST/DB or memory://.
    #[arg(long, env = "WSGATE_STORE", value_name = "URL")]
    pub store: Option<String>,
    /// Do not record sessions.
    #[arg(long, env = "WSGATE_NO_STORE", conflicts_with = "store")]
    pub no_store: bool,
    /// When the store falls behind: drop (traffic never waits) or strict (traffic waits).
    #[arg(long, env = "WSGATE_RECORD", value_name = "MODE")]
    pub record: Option<String>,
    /// Payload bytes stored per message (default 65536).
    #[arg(long, env = "WSGATE_STORE_PAYLOAD_CAP", value_name = "BYTES")]
    pub store_payload_cap: Option<String>,
    /// What history keeps of payloads: full, headers or sample:N (default full).
    #[arg(long, env = "WSGATE_STORE_PAYLOADS", value_name = "POLICY")]
    pub store_payloads: Option<String>,
    /// Delete sessions that ended longer ago than this (e.g. 7d).
    #[arg(long, env = "WSGATE_RETENTION", value_name = "DURATION")]
    pub retention: Option<String>,
    /// Keep at most this many messages; the oldest go first.
    #[arg(long, env = "WSGATE_RETENTION_MESSAGES", value_name = "N")]
    pub retention_messages: Option<String>,
    /// Request header to redact before storing (repeatable).
    #[arg(long, env = "WSGATE_REDACT_HEADER", value_name = "NAME", value_delimiter = ',')]
    pub redact_header: Vec<String>,
    /// This gateway's name in a shared store (default: host name).
    #[arg(long, env = "WSGATE_INSTANCE", value_name = "NAME")]
    pub instance: Option<String>,
    /// How long the hold on the instance name lasts unless renewed.
    #[arg(long, env = "WSGATE_INSTANCE_LEASE", value_name = "DURATION")]
    pub instance_lease: Option<String>,
}

/// Flags of the proxy itself.
#[derive(Debug, Args)]
pub struct ProxyOnly {
    /// Upstream base URL (ws:// or wss://); the client's path and query are appended.
    #[arg(long, short = 'u', env = "WSGATE_UPSTREAM", value_name = "URL")]
    pub upstream: Option<String>,
    /// Resolve the upstream per connection with GET <URL><path> (falls back to --upstream).
    #[arg(long, env = "WSGATE_RESOLVER_URL", value_name = "URL", alias = "dynamic-upstream")]
    pub resolver_url: Option<String>,
    /// Timeout of one resolver request.
    #[arg(long, env = "WSGATE_RESOLVER_TIMEOUT", value_name = "DURATION")]
    pub resolver_timeout: Option<String>,
    /// Resolver retries before falling back.
    #[arg(long, env = "WSGATE_RESOLVER_RETRIES", value_name = "N")]
    pub resolver_retries: Option<String>,
    /// Rules file (YAML) transforming what the proxy forwards (docs/rules.md).
    #[arg(long, env = "WSGATE_PROXY_RULES", value_name = "FILE")]
    pub proxy_rules: Option<std::path::PathBuf>,
    /// Seed for the route's rules and faults, so every random choice repeats.
    #[arg(long, env = "WSGATE_PROXY_SEED", value_name = "N")]
    pub proxy_seed: Option<u64>,
    /// Accept clients at once and queue their messages until the upstream is connected.
    #[arg(long, env = "WSGATE_ACCEPT_EARLY")]
    pub accept_early: bool,
    /// A client accepted on a path closes the older live sessions on that path.
    #[arg(long, env = "WSGATE_REPLACE_SAME_PATH")]
    pub replace_same_path: bool,
    /// Accept-early queue bound in messages.
    #[arg(long, env = "WSGATE_QUEUE_MAX_MESSAGES", value_name = "N")]
    pub queue_max_messages: Option<String>,
    /// Accept-early queue bound in bytes.
    #[arg(long, env = "WSGATE_QUEUE_MAX_BYTES", value_name = "BYTES")]
    pub queue_max_bytes: Option<String>,
    /// Accept-early: drop queued messages older than this (with an event).
    #[arg(long, env = "WSGATE_QUEUE_TIMEOUT", value_name = "DURATION")]
    pub queue_timeout: Option<String>,
    /// Extra request header to forward upstream (repeatable).
    #[arg(long, env = "WSGATE_FORWARD_HEADER", value_name = "NAME", value_delimiter = ',')]
    pub forward_header: Vec<String>,
    /// Removed from the front of the client's path before it goes upstream
    /// (`/api`: `/api/orders` → upstream + `/orders`).
    #[arg(long, env = "WSGATE_STRIP_PREFIX", value_name = "PATH")]
    pub strip_prefix: Option<String>,
    /// Extra CA (PEM) trusted for wss:// upstreams.
    #[arg(long, env = "WSGATE_UPSTREAM_CA", value_name = "FILE")]
    pub upstream_ca: Option<String>,
    /// DNS + TCP + TLS + upgrade timeout towards the upstream.
    #[arg(long, env = "WSGATE_CONNECT_TIMEOUT", value_name = "DURATION")]
    pub connect_timeout: Option<String>,
    /// Tell a client refused with 502/504 why the upstream failed (its URL, the DNS or
    /// TLS error) instead of a generic reason. The detail is always in the session
    /// record and the logs.
    #[arg(long, env = "WSGATE_EXPOSE_UPSTREAM_ERRORS")]
    pub expose_upstream_errors: bool,
}

#[derive(Debug, Args)]
pub struct ProxyArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub proxy: ProxyOnly,
}

#[derive(Debug, Args)]
pub struct MockArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Echo every text and binary message back unchanged.
    #[arg(long, env = "WSGATE_ECHO")]
    pub echo: bool,
    /// Play this script to every session: MockForge JSONL lines or a wsgate transcript.
    #[arg(long, env = "WSGATE_REPLAY", value_name = "FILE")]
    pub replay: Option<std::path::PathBuf>,
    /// Play this stored session to every session: its id in the store (--store), as
    /// `wsgate history list` shows it.
    #[arg(long, env = "WSGATE_REPLAY_SESSION", value_name = "ID")]
    pub replay_session: Option<String>,
    /// Answer each client message by the first matching rule of this YAML file (docs/rules.md).
    #[arg(long, env = "WSGATE_RULES", value_name = "FILE")]
    pub rules: Option<std::path::PathBuf>,
    /// Replay schedule speed (2.0 plays twice as fast).
    #[arg(long, env = "WSGATE_SPEED", value_name = "X")]
    pub speed: Option<f64>,
    /// Start the script over after its last step.
    #[arg(long = "loop", id = "loop", env = "WSGATE_LOOP")]
    pub looped: bool,
    /// Seed for random template values ({{uuid}}, {{randInt}}) of a replay or rules, so runs repeat.
    #[arg(long, env = "WSGATE_SEED", value_name = "N")]
    pub seed: Option<u64>,
    /// Send each session JSON events an OpenAI-compatible model generates from this
    /// narrative, e.g. "five minutes of live stock trading".
    #[arg(long, env = "WSGATE_AI_NARRATIVE", value_name = "TEXT")]
    pub ai_narrative: Option<String>,
    /// The chat-completions API's base URL (https://api.openai.com/v1).
    #[arg(long, env = "WSGATE_AI_URL", value_name = "URL")]
    pub ai_url: Option<String>,
    /// The model name sent with the request.
    #[arg(long, env = "WSGATE_AI_MODEL", value_name = "NAME")]
    pub ai_model: Option<String>,
    /// The environment variable holding the API key [default: OPENAI_API_KEY, sent
    /// only when set].
    #[arg(long, env = "WSGATE_AI_KEY_ENV", value_name = "VAR")]
    pub ai_key_env: Option<String>,
    /// Events per session (then a close with 1000).
    #[arg(long, env = "WSGATE_AI_COUNT", value_name = "N")]
    pub ai_count: Option<String>,
    /// Events per second.
    #[arg(long, env = "WSGATE_AI_RATE", value_name = "PER_SECOND")]
    pub ai_rate: Option<String>,
    /// Write each session's generated stream here, for --replay.
    #[arg(long, env = "WSGATE_AI_RECORD", value_name = "FILE")]
    pub ai_record: Option<String>,
    /// Longest wait for the endpoint's answer, and between its chunks (then 1014).
    #[arg(long, env = "WSGATE_AI_TIMEOUT", value_name = "DURATION")]
    pub ai_timeout: Option<String>,
    /// A subprotocol to accept (repeatable).
    #[arg(long, env = "WSGATE_SUBPROTOCOL", value_name = "NAME", value_delimiter = ',')]
    pub subprotocol: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RelayArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    /// websocket-relay's config file, read as is: server.port (all interfaces),
    /// tls.enabled/cert_file/key_file, metrics.enabled/port (/metrics alone on that port).
    #[arg(long, value_name = "FILE")]
    pub config_file: Option<std::path::PathBuf>,
    /// raw (every message unchanged to the room named by the path) or envelope (JSON
    /// join/leave/publish/send, acks, errors; WarpSocket's shape).
    #[arg(long, env = "WSGATE_PROTOCOL", value_name = "PROTOCOL")]
    pub protocol: Option<String>,
    /// Senders do not get their own messages back.
    #[arg(long, env = "WSGATE_NO_ECHO_SENDER")]
    pub no_echo_sender: bool,
    /// Envelope clients start in no room (they join by command).
    #[arg(long, env = "WSGATE_NO_JOIN_PATH_ROOM")]
    pub no_join_path_room: bool,
    /// A subprotocol to accept (repeatable).
    #[arg(long, env = "WSGATE_RELAY_SUBPROTOCOL", value_name = "NAME", value_delimiter = ',')]
    pub relay_subprotocol: Vec<String>,
    /// A browser origin allowed (repeatable); other origins get 403.
    #[arg(long, env = "WSGATE_RELAY_ORIGIN", value_name = "ORIGIN", value_delimiter = ',')]
    pub relay_origin: Vec<String>,
    /// Messages waiting for one member before --overflow applies.
    #[arg(long, env = "WSGATE_MEMBER_QUEUE_MESSAGES", value_name = "N")]
    pub member_queue_messages: Option<String>,
    /// Bytes waiting for one member before --overflow applies.
    #[arg(long, env = "WSGATE_MEMBER_QUEUE_BYTES", value_name = "BYTES")]
    pub member_queue_bytes: Option<String>,
    /// A full member queue: drop_oldest, drop_newest, or disconnect (1013).
    #[arg(long, env = "WSGATE_OVERFLOW", value_name = "POLICY")]
    pub overflow: Option<String>,
    /// Ping every member this often (0s = no heartbeats).
    #[arg(long, env = "WSGATE_HEARTBEAT_INTERVAL", value_name = "DURATION")]
    pub heartbeat_interval: Option<String>,
    /// Pings a member may leave unanswered before it is closed (1001).
    #[arg(long, env = "WSGATE_HEARTBEAT_MISSES", value_name = "N")]
    pub heartbeat_misses: Option<String>,
    /// Messages per second one connection may send (0 = no limit; over it: 1008).
    #[arg(long, env = "WSGATE_RATE_LIMIT", value_name = "PER_SECOND")]
    pub rate_limit: Option<String>,
    /// Messages a connection may send at once before the rate applies.
    #[arg(long, env = "WSGATE_RATE_BURST", value_name = "N")]
    pub rate_burst: Option<String>,
    /// Malformed envelope frames answered before the connection is closed (1008).
    #[arg(long, env = "WSGATE_MAX_BAD_FRAMES", value_name = "N")]
    pub max_bad_frames: Option<String>,
    /// Clients must present a JWT signed with this HS256 secret (Bearer or ?token=).
    #[arg(long, env = "WSGATE_JWT_SECRET", value_name = "SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Clients must present a JWT verified by this RSA or EC public key (PEM file).
    #[arg(long, env = "WSGATE_JWT_PUBLIC_KEY", value_name = "FILE")]
    pub jwt_public_key: Option<String>,
    /// Connections one client address may hold (0 = no limit; beyond: HTTP 429).
    #[arg(long, env = "WSGATE_MAX_CONNECTIONS_PER_IP", value_name = "N")]
    pub max_connections_per_ip: Option<String>,
}
