//! Layering and validation. Every value is its own named provider, so an error can
//! say exactly where the bad value came from: the file (with its path), an
//! environment variable, or a flag.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use figment::providers::{Format, Serialized, Yaml};
use figment::value::{Dict, Map, Tag, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::Config;
use super::keys::{self, KEYS};

/// Values that stay strings even when they look like numbers or booleans.
const TEXT_KEYS: &[&str] = &[
    "admin_token",
    "control_origins",
    "control_hosts",
    "log_level",
    "tls_cert",
    "tls_key",
    "proxy.upstream",
    "proxy.resolver_url",
    "proxy.upstream_ca",
    "proxy.strip_prefix",
    "outbound.ca",
    "proxy.forward_headers",
    "mock.subprotocols",
    "mock.replay",
    "mock.replay_session",
    "mock.ai.url",
    "mock.ai.model",
    "mock.ai.api_key_env",
    "mock.ai.narrative",
    "mock.ai.record",
    "mock.rules",
    "proxy.rules",
    "store.url",
    "store.payloads",
    "store.redact_headers",
    "store.instance",
    "relay.jwt_secret",
    "relay.jwt_public_key",
    "relay.subprotocols",
    "relay.origins",
];

/// Keys that take a list (a repeatable flag, or a comma-separated variable).
const LIST_KEYS: &[&str] = &[
    "proxy.forward_headers",
    "mock.subprotocols",
    "relay.subprotocols",
    "relay.origins",
    "store.redact_headers",
    "control_origins",
    "control_hosts",
];

/// Longest duration any setting takes. Durations become deadlines (`now + d`), and
/// adding one the clock cannot represent (~300 billion years, which humantime parses)
/// panics where the proxy dials, queues or idles; a century is longer than any real
/// timeout. (Found by the config fuzz target, which checks that a valid config's
/// durations can all become deadlines.)
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Where values come from, lowest precedence first (after the defaults).
#[derive(Debug, Default, Clone)]
pub struct Sources {
    pub file: Option<PathBuf>,
    /// websocket-multiplex's names: `(variable, value)`.
    pub compat_env: Vec<(String, String)>,
    /// Values from websocket-relay's config file (`wsgate relay --config-file`).
    pub compat_file: Vec<super::websocket_relay::CompatValue>,
    /// `(config path, source description, raw values)` from `WSGATE_*` variables.
    pub env: Vec<(&'static str, String, Vec<String>)>,
    /// `(config path, source description, raw values)` from flags.
    pub flags: Vec<(&'static str, String, Vec<String>)>,
}

/// A configuration that cannot be used. Printed as is, then the process exits 64.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {message}")]
    File { path: String, message: String },
    #[error("invalid config: `{field}` from {origin}: {message}\n  fix: {fix}")]
    Invalid { field: String, origin: String, message: String, fix: String },
}

/// One value from one place.
struct Single {
    name: String,
    path: &'static str,
    value: Value,
}

impl Provider for Single {
    fn metadata(&self) -> Metadata {
        Metadata::named(Cow::Owned(self.name.clone()))
    }
    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut value = self.value.clone();
        for part in self.path.rsplit('.') {
            let mut d = Dict::new();
            d.insert(part.to_owned(), value);
            value = Value::Dict(Tag::Default, d);
        }
        let dict = value.into_dict().unwrap_or_default();
        Ok(Map::from([(Profile::Default, dict)]))
    }
}

fn typed(path: &str, raw: &[String]) -> Value {
    let one = |s: &String| {
        if TEXT_KEYS.contains(&path) {
            Value::from(s.clone())
        } else {
            s.parse().unwrap_or_else(|_| Value::from(s.clone()))
        }
    };
    if LIST_KEYS.contains(&path) {
        Value::from(raw.iter().map(|s| Value::from(s.clone())).collect::<Vec<_>>())
    } else {
        raw.last().map(one).unwrap_or_else(|| Value::from(String::new()))
    }
}

/// websocket-multiplex's variables mapped onto wsgate's fields.
fn compat(name: &str, value: &str) -> Option<(&'static str, Value)> {
    Some(match name {
        // websocket-multiplex listens on every interface; so do we when PORT is used.
        "PORT" => ("listen", Value::from(format!("0.0.0.0:{value}"))),
        // The control plane stays on loopback: beyond it wsgate requires a token.
        "MASTER_PORT" => ("control", Value::from(format!("127.0.0.1:{value}"))),
        "UPSTREAM_URL" => ("proxy.upstream", Value::from(value.to_owned())),
        "DYNAMIC_UPSTREAM_CONFIG_URL" => ("proxy.resolver_url", Value::from(value.to_owned())),
        "LOG_LEVEL" => ("log_level", Value::from(value.to_lowercase())),
        // Milliseconds there; a duration string here.
        "MESSAGE_QUEUE_TIMEOUT" => ("proxy.queue_timeout", Value::from(format!("{value}ms"))),
        _ => return None,
    })
}

/// The names websocket-multiplex reads, in the order they are applied.
pub const COMPAT_ENV: &[&str] =
    &["PORT", "MASTER_PORT", "UPSTREAM_URL", "DYNAMIC_UPSTREAM_CONFIG_URL", "LOG_LEVEL", "MESSAGE_QUEUE_TIMEOUT"];

fn fix_for(path: &str) -> String {
    match keys::by_path(path) {
        Some(k) => format!("{} (flag --{}, env {}, file key `{}`)", k.help, k.flag, k.env(), k.path),
        None => "see `wsgate config default` for every field and its meaning".into(),
    }
}

/// Builds the layered config and extracts it. Semantic checks that depend on the
/// command are in [`Config::validate_for_proxy`] and friends.
pub fn load(sources: &Sources) -> Result<(Config, Figment), ConfigError> {
    let mut fig = Figment::from(Serialized::defaults(Config::default()));
    if let Some(path) = &sources.file {
        let shown = path.display().to_string();
        match std::fs::read_to_string(path) {
            Err(e) => return Err(ConfigError::File { path: shown, message: e.to_string() }),
            Ok(text) if text.trim().is_empty() => {}
            Ok(_) => fig = fig.merge(Yaml::file_exact(path)),
        }
    }
    layer(fig, sources)
}

/// Like [`load`], with the config file's text given instead of read from
/// `sources.file`: the same layering, for the fuzz target (`fuzz/fuzz_targets/config.rs`)
/// and anything else that holds a config in memory.
pub fn load_yaml(text: &str, sources: &Sources) -> Result<(Config, Figment), ConfigError> {
    let mut fig = Figment::from(Serialized::defaults(Config::default()));
    if !text.trim().is_empty() {
        fig = fig.merge(Yaml::string(text));
    }
    layer(fig, sources)
}

/// Everything above the file: websocket-multiplex variables, `WSGATE_*`, flags; then
/// the typed extraction.
fn layer(mut fig: Figment, sources: &Sources) -> Result<(Config, Figment), ConfigError> {
    for (name, path, value) in &sources.compat_file {
        fig = fig.merge(Single { name: name.clone(), path, value: value.clone() });
    }
    for (name, value) in &sources.compat_env {
        if let Some((path, value)) = compat(name, value) {
            fig = fig.merge(Single { name: format!("environment variable {name} (websocket-multiplex)"), path, value });
        }
    }
    for (path, name, raw) in sources.env.iter().chain(&sources.flags) {
        fig = fig.merge(Single { name: name.clone(), path, value: typed(path, raw) });
    }
    let cfg: Config = fig.extract().map_err(|e| from_figment(e, sources))?;
    Ok((cfg, fig))
}

fn from_figment(e: figment::Error, sources: &Sources) -> ConfigError {
    let field = if e.path.is_empty() { "(top level)".to_owned() } else { e.path.join(".") };
    // In a file, the position of the bad key (an unknown key's own, else the field's).
    let key = match &e.kind {
        figment::error::Kind::UnknownField(name, _) => e.path.iter().cloned().chain([name.clone()]).collect::<Vec<_>>(),
        _ => e.path.clone(),
    };
    let source = match &e.metadata {
        Some(m) => match &m.source {
            Some(figment::Source::File(p)) => match super::locate::in_file(p, &key.join(".")) {
                Some(at) if !key.is_empty() => format!("config file {}:{at}", p.display()),
                _ => format!("config file {}", p.display()),
            },
            _ => m.name.to_string(),
        },
        None => {
            sources.file.as_ref().map(|p| format!("config file {}", p.display())).unwrap_or_else(|| "defaults".into())
        }
    };
    let message = e.kind.to_string();
    let fix = if let figment::error::Kind::UnknownField(name, expected) = &e.kind {
        let known: Vec<_> = expected.iter().map(|s| s.to_string()).collect();
        format!("remove or rename `{name}`; known fields here: {}", known.join(", "))
    } else {
        fix_for(&field)
    };
    ConfigError::Invalid { field, origin: source, message, fix }
}

/// Where the value of `path` came from.
pub fn source_of(fig: &Figment, path: &str) -> String {
    match fig.find_metadata(path) {
        Some(m) => match &m.source {
            // With the line and column when the key can be found in the file.
            Some(figment::Source::File(p)) => match super::locate::in_file(p, path) {
                Some(at) => format!("config file {}:{at}", p.display()),
                None => format!("config file {}", p.display()),
            },
            _ if m.name == "Serialized" || m.name.contains("Serialized") => "the defaults".into(),
            _ => m.name.to_string(),
        },
        None => "the defaults".into(),
    }
}

pub fn invalid(fig: &Figment, path: &str, message: impl Into<String>, fix: Option<String>) -> ConfigError {
    ConfigError::Invalid {
        field: path.to_owned(),
        origin: source_of(fig, path),
        message: message.into(),
        fix: fix.unwrap_or_else(|| fix_for(path)),
    }
}

impl Config {
    /// Checks shared by every serving command.
    pub fn validate_common(&self, fig: &Figment) -> Result<(), ConfigError> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            let path = if self.tls_cert.is_some() { "tls_key" } else { "tls_cert" };
            return Err(invalid(
                fig,
                path,
                "tls_cert and tls_key go together",
                Some("give both --tls-cert and --tls-key, or neither".into()),
            ));
        }
        if !is_loopback(&self.control) && self.admin_token.as_deref().is_none_or(str::is_empty) {
            return Err(invalid(
                fig,
                "control",
                format!(
                    "the control plane on {} is reachable beyond loopback without an admin token; it can inject into live traffic",
                    self.control
                ),
                Some("set --admin-token (or WSGATE_ADMIN_TOKEN), or bind --control to 127.0.0.1".into()),
            ));
        }
        self.control_guard(fig)?;
        if let Err(e) = crate::logging::parse_level(&self.log_level) {
            return Err(invalid(fig, "log_level", e.to_string(), None));
        }
        if self.limits.max_message_size == 0 {
            return Err(invalid(fig, "limits.max_message_size", "must be greater than 0", None));
        }
        if self.limits.max_connections == 0 {
            return Err(invalid(fig, "limits.max_connections", "must be greater than 0", None));
        }
        if !(9..=15).contains(&self.deflate.max_window_bits) {
            return Err(invalid(fig, "deflate.max_window_bits", "must be between 9 and 15", None));
        }
        if self.deflate.level > 9 {
            return Err(invalid(fig, "deflate.level", "must be between 0 and 9", None));
        }
        if self.live.queue == 0 {
            return Err(invalid(fig, "live.queue", "must be greater than 0", None));
        }
        if self.store.enabled {
            self.store_url(fig)?;
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(24 * 3600)).contains(&self.store.instance_lease) {
            return Err(invalid(fig, "store.instance_lease", "must be between 1s and 24h", None));
        }
        for h in &self.store.redact_headers {
            if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                return Err(invalid(fig, "store.redact_headers", format!("{h:?} is not a valid header name"), None));
            }
        }
        for (path, d) in self.durations() {
            if d > MAX_DURATION {
                return Err(invalid(fig, path, format!("{d:?} is longer than the 100 years allowed"), None));
            }
        }
        Ok(())
    }

    /// The parsed `control_origins` and `control_hosts`, each checked by the control
    /// plane's own parser.
    pub fn control_guard(
        &self,
        fig: &Figment,
    ) -> Result<(Vec<wsgate_control::guard::AllowedOrigin>, Vec<wsgate_control::guard::AllowedHost>), ConfigError> {
        use wsgate_control::guard::{AllowedHost, AllowedOrigin};
        let origins = self
            .control_origins
            .iter()
            .map(|o| AllowedOrigin::parse(o).map_err(|e| invalid(fig, "control_origins", e.to_string(), None)))
            .collect::<Result<_, _>>()?;
        let hosts = self
            .control_hosts
            .iter()
            .map(|h| AllowedHost::parse(h).map_err(|e| invalid(fig, "control_hosts", e.to_string(), None)))
            .collect::<Result<_, _>>()?;
        Ok((origins, hosts))
    }

    /// The parsed store URL (the error names the field and where it came from).
    pub fn store_url(&self, fig: &Figment) -> Result<wsgate_store::StoreUrl, ConfigError> {
        self.store.url.parse().map_err(|e: wsgate_store::StoreError| invalid(fig, "store.url", e.to_string(), None))
    }

    /// Every duration setting, with its path.
    pub fn durations(&self) -> [(&'static str, Duration); 9] {
        [
            ("shutdown_timeout", self.shutdown_timeout),
            ("limits.idle_timeout", self.limits.idle_timeout),
            ("limits.handshake_timeout", self.limits.handshake_timeout),
            ("proxy.resolver_timeout", self.proxy.resolver_timeout),
            ("proxy.queue_timeout", self.proxy.queue_timeout),
            ("proxy.connect_timeout", self.proxy.connect_timeout),
            ("store.retention", self.store.retention),
            ("outbound.connect_timeout", self.outbound.connect_timeout),
            ("relay.heartbeat_interval", self.relay.heartbeat_interval),
        ]
    }

    /// Checks for `wsgate mock`.
    pub fn validate_for_mock(&self, fig: &Figment) -> Result<(), ConfigError> {
        self.validate_common(fig)?;
        if !self.mock.enabled() {
            return Err(ConfigError::Invalid {
                field: "mock.echo".into(),
                origin: "nowhere (no mode is set)".into(),
                message: "the mock needs a mode".into(),
                fix: "pass --echo, --replay FILE, --replay-session ID, --rules FILE or --ai-narrative TEXT (or WSGATE_ECHO=true, WSGATE_REPLAY=FILE, WSGATE_RULES=FILE, mock.echo / mock.replay / mock.replay_session / mock.rules / mock.ai in the config file)".into(),
            });
        }
        self.mock.check().map_err(|(field, msg, fix)| invalid(fig, &format!("mock.{field}"), msg, Some(fix.into())))?;
        Ok(())
    }

    /// Checks for `wsgate relay`.
    pub fn validate_for_relay(&self, fig: &Figment) -> Result<(), ConfigError> {
        self.validate_common(fig)?;
        self.relay
            .check()
            .map_err(|(field, message, fix)| invalid(fig, &format!("relay.{field}"), message, Some(fix.into())))?;
        if let Some(origins) = &self.relay.origins {
            for o in origins {
                if o != "*" && !super::routes::is_origin(o) {
                    let fix = "an origin is scheme://host[:port], e.g. https://app.example.com (no path), or \"*\"";
                    return Err(invalid(fig, "relay.origins", format!("{o:?} is not an origin"), Some(fix.into())));
                }
            }
        }
        Ok(())
    }

    /// Checks for `wsgate proxy`.
    pub fn validate_for_proxy(&self, fig: &Figment) -> Result<(), ConfigError> {
        self.validate_common(fig)?;
        let p = &self.proxy;
        if p.upstream.is_none() && p.resolver_url.is_none() {
            return Err(ConfigError::Invalid {
                field: "proxy.upstream".into(),
                origin: "nowhere (it is not set)".into(),
                message: "the proxy needs an upstream".into(),
                fix: "pass --upstream ws://host:port (or WSGATE_UPSTREAM, UPSTREAM_URL, or proxy.upstream in the config file), or --resolver-url".into(),
            });
        }
        p.check().map_err(|(field, message)| invalid(fig, &format!("proxy.{field}"), message, None))?;
        Ok(())
    }
}

impl super::ProxySection {
    /// The checks a `proxy:` section gets wherever it is (top level or a route), bar
    /// the upstream being set, which each place words its own way. The error is the
    /// field within the section and what is wrong with it.
    pub(crate) fn check(&self) -> Result<(), (&'static str, String)> {
        if let Some(u) = &self.upstream
            && !matches!(u.scheme(), "ws" | "wss")
        {
            return Err(("upstream", format!("{u} is not a ws:// or wss:// URL")));
        }
        if let Some(u) = &self.resolver_url
            && !matches!(u.scheme(), "http" | "https")
        {
            return Err(("resolver_url", format!("{u} is not an http:// or https:// URL")));
        }
        if let Some(f) = &self.fallback {
            if self.accept_early {
                let why = "a client accepted early is answered before the upstream fails: nothing to fall back from";
                return Err(("fallback", format!("{why}; drop accept_early or the fallback")));
            }
            f.check().map_err(|(field, message, fix)| ("fallback", format!("{field}: {message} ({fix})")))?;
        }
        for h in &self.forward_headers {
            if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                return Err(("forward_headers", format!("{h:?} is not a valid header name")));
            }
        }
        if self.queue_max_messages == 0 {
            return Err(("queue_max_messages", "must be greater than 0".into()));
        }
        if self.queue_max_bytes == 0 {
            return Err(("queue_max_bytes", "must be greater than 0".into()));
        }
        Ok(())
    }
}

fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// Every key's documentation, for `config default`.
pub fn documented_keys() -> &'static [keys::Key] {
    KEYS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(yaml: &str) -> Result<(), ConfigError> {
        let (cfg, fig) = load_yaml(yaml, &Sources::default())?;
        cfg.validate_common(&fig)
    }

    /// The config fuzz target's deadline check: durations that validated but panicked
    /// once the proxy turned them into deadlines (`Instant + Duration` overflows).
    #[test]
    fn durations_too_long_for_a_deadline_are_invalid() {
        assert!(check("proxy:\n  connect_timeout: 99years\nlimits:\n  idle_timeout: 5m\n").is_ok());
        for yaml in [
            "proxy:\n  connect_timeout: 300000000000y\n",
            "limits:\n  idle_timeout: 9223372036854775807s\n",
            "proxy:\n  queue_timeout: 101y\n",
        ] {
            match check(yaml) {
                Err(ConfigError::Invalid { field, message, .. }) => {
                    assert!(yaml.contains(field.rsplit('.').next().unwrap_or_default()), "{field}");
                    assert!(message.contains("100 years"), "{message}");
                }
                other => panic!("{yaml:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn control_origins_and_hosts_are_checked() {
        assert!(check("control_origins: [http://localhost:5173]\ncontrol_hosts: [wsgate.example]\n").is_ok());
        for (yaml, field, says) in [
            ("control_origins: [localhost:5173]\n", "control_origins", "only http:// and https://"),
            ("control_origins: [http://a.example/app]\n", "control_origins", "use http://a.example"),
            ("control_hosts: [wsgate.example:443]\n", "control_hosts", "no scheme, port or path"),
        ] {
            match check(yaml) {
                Err(ConfigError::Invalid { field: f, message, .. }) => {
                    assert_eq!(f, field, "{yaml}");
                    assert!(message.contains(says), "{message}");
                }
                other => panic!("{yaml:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn load_yaml_layers_like_load() {
        let sources = Sources { compat_env: vec![("UPSTREAM_URL".into(), "ws://env:1/".into())], ..Sources::default() };
        let (cfg, fig) = load_yaml("proxy:\n  upstream: ws://file:1/\n", &sources).expect("loads");
        assert_eq!(cfg.proxy.upstream.map(String::from).as_deref(), Some("ws://env:1/"));
        assert!(source_of(&fig, "proxy.upstream").contains("UPSTREAM_URL"));
        assert!(load_yaml("  \n", &Sources::default()).is_ok());
        assert!(matches!(load_yaml("proxy: [", &Sources::default()), Err(ConfigError::Invalid { .. })));
    }
}
