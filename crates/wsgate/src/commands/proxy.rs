//! `wsgate proxy --upstream URL` — the inspecting proxy.

use clap::ArgMatches;
use figment::Figment;
use std::process::ExitCode;
use wsgate_proxy::{Proxy, ProxyConfig, QueueConfig, ResolverConfig};

use crate::cli::ProxyArgs;
use crate::config::{Config, ConfigError};

pub fn exec(args: ProxyArgs, m: &ArgMatches) -> ExitCode {
    let planned = super::configure(m, args.serve.config.clone(), |cfg, fig| {
        cfg.validate_for_proxy(fig)?;
        plan(cfg, fig)
    });
    match planned {
        Ok((cfg, proxy_cfg)) => super::serve("proxy", run(cfg, proxy_cfg)),
        Err(code) => code,
    }
}

/// Turns the validated config into the proxy's own config, loading TLS material
/// (errors name the field that pointed at the bad file).
pub fn plan(cfg: &Config, fig: &Figment) -> Result<ProxyConfig, ConfigError> {
    let invalid = |path: &str, msg: String| crate::config::load_invalid(fig, path, msg, None);
    let p = &cfg.proxy;
    let upstream_tls = wsgate_protocol::tls::client_config(p.upstream_ca.as_deref())
        .map_err(|e| invalid("proxy.upstream_ca", e.to_string()))?;
    let listener_tls = super::listener_tls(cfg, fig)?;
    let forward_headers =
        p.forward_headers.iter().filter_map(|h| http::HeaderName::from_bytes(h.as_bytes()).ok()).collect();
    let mut pc = ProxyConfig::new(
        p.upstream.clone().unwrap_or_else(|| url::Url::parse("ws://127.0.0.1/").expect("literal URL")),
        upstream_tls,
    );
    pc.upstream = p.upstream.clone();
    pc.resolver = p.resolver_url.clone().map(|url| ResolverConfig {
        url,
        timeout: p.resolver_timeout,
        retries: p.resolver_retries,
    });
    pc.accept_early = p.accept_early;
    pc.queue =
        QueueConfig { max_messages: p.queue_max_messages, max_bytes: p.queue_max_bytes, timeout: p.queue_timeout };
    pc.forward_headers = forward_headers;
    pc.max_message_size = cfg.limits.max_message_size;
    pc.max_connections = cfg.limits.max_connections;
    pc.idle_timeout = (!cfg.limits.idle_timeout.is_zero()).then_some(cfg.limits.idle_timeout);
    pc.connect_timeout = p.connect_timeout;
    pc.handshake_timeout = cfg.limits.handshake_timeout;
    pc.listener_tls = listener_tls;
    pc.deflate = cfg.deflate.policy();
    pc.expose_errors = p.expose_errors;
    Ok(pc)
}

async fn run(cfg: Config, proxy_cfg: ProxyConfig) -> anyhow::Result<()> {
    let target = match (&proxy_cfg.upstream, &proxy_cfg.resolver) {
        (_, Some(r)) => format!("resolver {}", r.url),
        (Some(u), None) => u.to_string(),
        (None, None) => String::new(),
    };
    crate::gateway::run_server(&cfg, "proxy", &format!("upstream={target}"), |listener, gateway| {
        let proxy = Proxy::new(
            proxy_cfg,
            gateway.bus.clone(),
            gateway.registry.clone(),
            gateway.shutdown.clone(),
            gateway.sessions.clone(),
        );
        tokio::spawn(wsgate_proxy::serve(listener, proxy))
    })
    .await
}
