//! From the validated config to the route table's plan: each route's match, limits
//! and its handler's own config, with TLS material loaded (a bad file is an error
//! naming the field, before anything starts or a reload is applied).
//!
//! `wsgate proxy`, `wsgate mock` and `wsgate relay` are one-route shorthands: their top-level section
//! becomes a catch-all route (`/*`) after any `routes:` the config declares.

use std::sync::Arc;
use std::time::Duration;

use figment::Figment;
use wsgate_listener::{ListenerConfig, PathPattern};
use wsgate_mock::{MockConfig, MockMode, ReplaySettings, RulesSettings};
use wsgate_proxy::{ProxyConfig, QueueConfig, ResolverConfig};
use wsgate_relay::RelayConfig;
use wsgate_session::Served;

use crate::config::{
    Config, ConfigError, MockSection, ProxySection, RelaySection, RouteKind, route_error, routes_file,
};

/// How long a served session's close handshake may take once started.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Which command is planning: what its top-level section adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `wsgate proxy`: `proxy:` is required and becomes the catch-all route `default`.
    Proxy,
    /// `wsgate mock`: `mock:` is required and becomes the catch-all route `mock`.
    Mock,
    /// `wsgate relay`: `relay:` becomes the catch-all route `relay`.
    Relay,
    /// `wsgate serve`: `routes:`, plus a catch-all from `proxy:` or `mock:` if set.
    Serve,
}

/// The handler a route runs, configured.
#[derive(Debug, Clone)]
pub enum Handler {
    Proxy(Box<ProxyConfig>),
    Mock(MockConfig),
    Relay(Box<RelayConfig>),
}

#[derive(Debug, Clone)]
pub struct RoutePlan {
    pub name: Arc<str>,
    pub path: PathPattern,
    pub host: Option<String>,
    pub origins: Option<Vec<String>>,
    pub max_connections: Option<usize>,
    pub handler: Handler,
    /// The config's faults for the route (checked); the live ones are its switch's.
    pub faults: Option<wsgate_faults::FaultSpec>,
    /// A proxy route's fallback mock, for clients whose upstream cannot be reached.
    pub fallback: Option<MockConfig>,
}

impl RoutePlan {
    pub fn kind(&self) -> RouteKind {
        match self.handler {
            Handler::Proxy(_) => RouteKind::Proxy,
            Handler::Mock(_) => RouteKind::Mock,
            Handler::Relay(_) => RouteKind::Relay,
        }
    }

    /// The route's own seed (`--seed`, `--proxy-seed`): its faults' when their spec
    /// has none.
    pub fn seed(&self) -> Option<u64> {
        match &self.handler {
            Handler::Proxy(p) => p.seed,
            Handler::Mock(m) => match &m.mode {
                MockMode::Replay(r) => r.seed,
                MockMode::Rules(r) => r.seed,
                MockMode::Echo | MockMode::Ai(_) => None,
            },
            Handler::Relay(_) => None,
        }
    }

    /// Where it sends clients, for logs and `GET /api/routes`.
    pub fn target(&self) -> String {
        let fallback = self.fallback.as_ref().map(|m| format!(" (fallback: mock {})", mock_target(&m.mode)));
        let target = match &self.handler {
            Handler::Proxy(p) => match (&p.resolver, &p.upstream) {
                (Some(r), _) => format!("resolver {}", r.url),
                (None, Some(u)) => u.to_string(),
                (None, None) => String::new(),
            },
            Handler::Mock(m) => mock_target(&m.mode),
            Handler::Relay(r) => format!("rooms ({})", r.settings.protocol.as_str()),
        };
        target + fallback.as_deref().unwrap_or_default()
    }
}

/// A mock's mode as `GET /api/routes` shows it.
fn mock_target(mode: &MockMode) -> String {
    match mode {
        MockMode::Echo => "echo".into(),
        MockMode::Replay(r) => format!("replay {}", r.source),
        MockMode::Ai(a) => a.describe(),
        MockMode::Rules(r) => format!("rules {}", r.rules.source),
    }
}

/// The effective limits of one route, and what its history keeps of payloads: its
/// own, else the top-level ones.
struct Limits {
    max_message_size: usize,
    idle_timeout: Option<Duration>,
    payloads: wsgate_core::PayloadPolicy,
}

/// Validates `cfg` for `mode` and plans every route, in match order.
pub fn plan(cfg: &Config, fig: &Figment, mode: Mode) -> Result<Vec<RoutePlan>, ConfigError> {
    match mode {
        Mode::Proxy => cfg.validate_for_proxy(fig)?,
        Mode::Mock => cfg.validate_for_mock(fig)?,
        Mode::Relay => cfg.validate_for_relay(fig)?,
        Mode::Serve => cfg.validate_common(fig)?,
    }
    cfg.validate_routes(fig)?;
    let file = routes_file(fig);
    let top = Limits {
        max_message_size: cfg.limits.max_message_size,
        idle_timeout: (!cfg.limits.idle_timeout.is_zero()).then_some(cfg.limits.idle_timeout),
        payloads: cfg.store.payloads,
    };
    let mut plans = Vec::new();
    for (i, r) in cfg.routes.iter().enumerate() {
        let limits = Limits {
            max_message_size: r.limits.max_message_size.unwrap_or(top.max_message_size),
            idle_timeout: match r.limits.idle_timeout {
                Some(d) => (!d.is_zero()).then_some(d),
                None => top.idle_timeout,
            },
            payloads: r.record_payloads.unwrap_or(top.payloads),
        };
        let name: Arc<str> = r.name.as_str().into();
        if let Some(f) = &r.faults {
            if r.relay.is_some() {
                let fix = "faults apply to proxy and mock routes; move them to one";
                return Err(route_error(file.as_ref(), i, "faults", "a relay route has no faults", fix));
            }
            f.check().map_err(|e| route_error(file.as_ref(), i, &format!("faults.{}", e.field), e.problem, e.fix))?;
        }
        let handler = match (&r.proxy, &r.mock) {
            _ if r.relay.is_some() => {
                let section = r.relay.as_ref().unwrap_or(&cfg.relay);
                let relay = relay_config(cfg, section, &name, &limits)
                    .map_err(|(field, msg, fix)| route_error(file.as_ref(), i, &format!("relay.{field}"), msg, fix))?;
                Handler::Relay(Box::new(relay))
            }
            (Some(p), _) => {
                Handler::Proxy(Box::new(proxy_config(cfg, p, &name, &limits).map_err(|(field, msg)| {
                    let fix = if field == "rules" { RULES_FIX } else { "point it at a readable PEM file" };
                    route_error(file.as_ref(), i, &format!("proxy.{field}"), msg, fix)
                })?))
            }
            (None, Some(m)) => Handler::Mock(
                mock_config(cfg, m, &name, &limits)
                    .map_err(|(field, msg, fix)| route_error(file.as_ref(), i, &format!("mock.{field}"), msg, fix))?,
            ),
            // Refused by `validate_routes` already; said again rather than panicking.
            (None, None) => {
                let fix = "add `proxy: {upstream: ws://...}` or `mock: {echo: true}`";
                return Err(route_error(file.as_ref(), i, "", format!("route {name:?} has no handler"), fix));
            }
        };
        let fallback = match r.proxy.as_ref().and_then(|p| p.fallback.as_deref()) {
            Some(m) => Some(mock_config(cfg, m, &name, &limits).map_err(|(field, msg, fix)| {
                route_error(file.as_ref(), i, &format!("proxy.fallback.{field}"), msg, fix)
            })?),
            None => None,
        };
        plans.push(RoutePlan {
            name,
            // Validated above.
            path: PathPattern::parse(&r.path).map_err(|m| route_error(file.as_ref(), i, "path", m, ""))?,
            host: r.host.as_ref().map(|h| h.to_ascii_lowercase()),
            origins: r.origins.clone(),
            max_connections: r.limits.max_connections,
            handler,
            faults: r.faults.clone(),
            fallback,
        });
    }
    let catch_all = |name: &str, handler| RoutePlan {
        name: name.into(),
        path: PathPattern::Prefix(String::new()),
        host: None,
        origins: if mode == Mode::Relay { cfg.relay.origins.clone() } else { None },
        max_connections: None,
        handler,
        faults: cfg.faults.clone(),
        fallback: None,
    };
    let proxy_set = cfg.proxy.upstream.is_some() || cfg.proxy.resolver_url.is_some();
    if mode == Mode::Serve && proxy_set && cfg.mock.enabled() {
        return Err(crate::config::load_invalid(
            fig,
            "mock.echo",
            "both the top-level proxy and mock are set: both would take every path",
            Some("declare them as `routes:` with their own paths, or keep one".into()),
        ));
    }
    if let Some(f) = &cfg.faults {
        if mode == Mode::Relay {
            let fix = "faults apply to proxy and mock routes";
            return Err(crate::config::load_invalid(fig, "faults", "the relay has no faults", Some(fix.to_owned())));
        }
        f.check().map_err(|e| {
            crate::config::load_invalid(fig, &format!("faults.{}", e.field), e.problem, Some(e.fix.into()))
        })?;
    }
    let invalid = |field: &str, msg: String| {
        let fix = (field == "rules").then(|| RULES_FIX.to_owned());
        crate::config::load_invalid(fig, &format!("proxy.{field}"), msg, fix)
    };
    if mode == Mode::Proxy || (mode == Mode::Serve && proxy_set) {
        let p = proxy_config(cfg, &cfg.proxy, "default", &top).map_err(|(f, m)| invalid(f, m))?;
        let fallback = match cfg.proxy.fallback.as_deref() {
            Some(m) => Some(mock_config(cfg, m, "default", &top).map_err(|(field, msg, fix)| {
                crate::config::load_invalid(fig, &format!("proxy.fallback.{field}"), msg, Some(fix.into()))
            })?),
            None => None,
        };
        plans.push(RoutePlan { fallback, ..catch_all("default", Handler::Proxy(Box::new(p))) });
    } else if mode == Mode::Relay {
        let relay = relay_config(cfg, &cfg.relay, "relay", &top).map_err(|(field, msg, fix)| {
            crate::config::load_invalid(fig, &format!("relay.{field}"), msg, Some(fix.into()))
        })?;
        plans.push(catch_all("relay", Handler::Relay(Box::new(relay))));
    } else if mode == Mode::Mock || (mode == Mode::Serve && cfg.mock.enabled()) {
        let mock = mock_config(cfg, &cfg.mock, "mock", &top).map_err(|(field, msg, fix)| {
            crate::config::load_invalid(fig, &format!("mock.{field}"), msg, Some(fix.into()))
        })?;
        plans.push(catch_all("mock", Handler::Mock(mock)));
    }
    Ok(plans)
}

/// The proxy's own config from a `proxy:` section; the error is `(field, message)`.
fn proxy_config(
    cfg: &Config,
    p: &ProxySection,
    route: &str,
    limits: &Limits,
) -> Result<ProxyConfig, (&'static str, String)> {
    let upstream_tls =
        wsgate_protocol::tls::client_config(p.upstream_ca.as_deref()).map_err(|e| ("upstream_ca", e.to_string()))?;
    let placeholder = || url::Url::parse("ws://127.0.0.1/").expect("literal URL");
    let mut pc = ProxyConfig::new(p.upstream.clone().unwrap_or_else(placeholder), upstream_tls);
    pc.route = route.into();
    pc.seed = p.seed;
    pc.payloads = limits.payloads;
    pc.upstream = p.upstream.clone();
    pc.resolver = p.resolver_url.clone().map(|url| ResolverConfig {
        url,
        timeout: p.resolver_timeout,
        retries: p.resolver_retries,
    });
    pc.strip_prefix = p.strip_prefix.clone();
    pc.accept_early = p.accept_early;
    pc.replace_same_path = p.replace_same_path;
    pc.queue =
        QueueConfig { max_messages: p.queue_max_messages, max_bytes: p.queue_max_bytes, timeout: p.queue_timeout };
    pc.forward_headers =
        p.forward_headers.iter().filter_map(|h| http::HeaderName::from_bytes(h.as_bytes()).ok()).collect();
    pc.max_message_size = limits.max_message_size;
    pc.max_connections = cfg.limits.max_connections;
    pc.idle_timeout = limits.idle_timeout;
    pc.connect_timeout = p.connect_timeout;
    pc.handshake_timeout = cfg.limits.handshake_timeout;
    pc.deflate = cfg.deflate.policy();
    pc.expose_errors = p.expose_errors;
    pc.rules = match &p.rules {
        Some(path) => Some(Arc::new(load_rules(path, wsgate_rules::Role::Proxy).map_err(|m| ("rules", m))?)),
        None => None,
    };
    Ok(pc)
}

/// What every served route (mock, relay) shares: its sessions' negotiation and limits.
fn served(cfg: &Config, route: &str, subprotocols: &[String], limits: &Limits) -> Served {
    Served {
        route: route.into(),
        payloads: limits.payloads,
        subprotocols: subprotocols.to_vec(),
        deflate: cfg.deflate.policy(),
        max_message_size: limits.max_message_size,
        close_timeout: CLOSE_TIMEOUT,
        idle_timeout: limits.idle_timeout,
        // The route's switch, from the gateway's board (`routing::table`).
        faults: None,
    }
}

/// A relay route's config, with its token check (a key file it cannot use is
/// `(field, message, fix)`).
fn relay_config(
    cfg: &Config,
    r: &RelaySection,
    route: &str,
    limits: &Limits,
) -> Result<RelayConfig, (&'static str, String, &'static str)> {
    Ok(RelayConfig {
        served: served(cfg, route, &r.subprotocols, limits),
        settings: r.settings(),
        auth: r.verifier()?.map(std::sync::Arc::new),
    })
}

/// What to do about a script the mock cannot play.
const SCRIPT_FIX: &str = "fix the line named (docs/mock.md describes both script formats)";

/// What to do about a stored session the mock cannot play.
const SESSION_FIX: &str = "`wsgate history list` shows the sessions the store holds (--store names the store)";

/// What to do about a rules file wsgate cannot use.
const RULES_FIX: &str = "fix what the line and column name (docs/rules.md describes the format)";

/// What to do about generated-stream settings that cannot be used.
const AI_FIX: &str = "check the mock.ai settings (docs/mock.md, Generated event streams)";

/// Reads and checks a rules file for `role`; the error is its `file:line:column: what`.
fn load_rules(path: &std::path::Path, role: wsgate_rules::Role) -> Result<wsgate_rules::Rules, String> {
    let env = |name: &str| std::env::var(name).ok();
    wsgate_rules::Rules::load(path, role, &env).map_err(|e| e.to_string())
}

/// A mock route's config; a replay's script, a stored session or a rules file is read
/// and checked here, so a bad one stops the start (the message names the file, line
/// and, for rules, column). The error is `(field, message, fix)`.
fn mock_config(
    cfg: &Config,
    m: &MockSection,
    route: &str,
    limits: &Limits,
) -> Result<MockConfig, (&'static str, String, &'static str)> {
    let replay = |source: String, script| {
        MockMode::Replay(Arc::new(ReplaySettings {
            source,
            script,
            speed: m.speed.unwrap_or(1.0),
            looped: m.looped,
            seed: m.seed,
        }))
    };
    // One mode at most: `MockSection::check` said so.
    let mode = match (&m.replay, &m.replay_session, &m.ai) {
        _ if m.rules.is_some() => {
            let path = m.rules.as_deref().unwrap_or(std::path::Path::new(""));
            let rules = load_rules(path, wsgate_rules::Role::Mock).map_err(|msg| ("rules", msg, RULES_FIX))?;
            MockMode::Rules(Arc::new(RulesSettings::new(Arc::new(rules), m.seed)))
        }
        (Some(path), _, _) => {
            let env = |name: &str| std::env::var(name).ok();
            let script =
                wsgate_mock::script::Script::load(path, &env).map_err(|e| ("replay", e.to_string(), SCRIPT_FIX))?;
            replay(path.display().to_string(), script)
        }
        (None, Some(id), _) => {
            let script = super::session_script::load(cfg, id).map_err(|e| ("replay_session", e, SESSION_FIX))?;
            replay(format!("session {id}"), script)
        }
        // Its settings were checked with the section (`config/ai.rs`); what is left
        // to fail here is building the HTTP client.
        (None, None, Some(ai)) => {
            let settings = wsgate_mock::ai::AiSettings::new(ai.options()).map_err(|e| ("ai", e.to_string(), AI_FIX))?;
            MockMode::Ai(Arc::new(settings))
        }
        (None, None, None) => MockMode::Echo,
    };
    Ok(MockConfig {
        served: served(cfg, route, &m.subprotocols, limits),
        mode,
        // Unused behind a router: the gateway's one listener accepts for every route.
        listener: ListenerConfig {
            tls: None,
            max_connections: cfg.limits.max_connections,
            handshake_timeout: cfg.limits.handshake_timeout,
        },
    })
}
