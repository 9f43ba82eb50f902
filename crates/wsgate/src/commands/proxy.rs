//! `wsgate proxy --upstream URL` — the inspecting proxy.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::ArgMatches;
use figment::Figment;
use tokio::net::TcpListener;
use wsgate_proxy::{Proxy, ProxyConfig, QueueConfig, ResolverConfig};

use crate::cli::ProxyArgs;
use crate::config::{Config, ConfigError, load};
use crate::gateway::Gateway;

pub fn exec(args: ProxyArgs, m: &ArgMatches) -> ExitCode {
    let sources = crate::sources::collect(m, args.serve.config.clone());
    let (cfg, fig) = match load(&sources) {
        Ok(c) => c,
        Err(e) => return super::usage_error(&e),
    };
    if let Err(e) = cfg.validate_for_proxy(&fig) {
        return super::usage_error(&e);
    }
    let proxy_cfg = match plan(&cfg, &fig) {
        Ok(p) => p,
        Err(e) => return super::usage_error(&e),
    };
    crate::logging::init(&cfg.log_level, cfg.log_format);
    let rt = match super::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wsgate proxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cfg, proxy_cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wsgate proxy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Turns the validated config into the proxy's own config, loading TLS material
/// (errors name the field that pointed at the bad file).
pub fn plan(cfg: &Config, fig: &Figment) -> Result<ProxyConfig, ConfigError> {
    let invalid = |path: &str, msg: String| crate::config::load_invalid(fig, path, msg, None);
    let p = &cfg.proxy;
    let upstream_tls = wsgate_protocol::tls::client_config(p.upstream_ca.as_deref())
        .map_err(|e| invalid("proxy.upstream_ca", e.to_string()))?;
    let listener_tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => Some(wsgate_protocol::tls::server_config(cert, key).map_err(|e| {
            let field = if e.to_string().contains("private key") { "tls_key" } else { "tls_cert" };
            invalid(field, e.to_string())
        })?),
        _ => None,
    };
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
    Ok(pc)
}

async fn run(cfg: Config, proxy_cfg: ProxyConfig) -> anyhow::Result<()> {
    let listener = TcpListener::bind(cfg.listen).await.with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let listen_addr = listener.local_addr()?;
    let gateway = Gateway::start(&cfg).await?;
    let scheme = if proxy_cfg.listener_tls.is_some() { "wss" } else { "ws" };
    let target = match (&proxy_cfg.upstream, &proxy_cfg.resolver) {
        (_, Some(r)) => format!("resolver {}", r.url),
        (Some(u), None) => u.to_string(),
        (None, None) => String::new(),
    };
    let proxy = Proxy::new(
        proxy_cfg,
        gateway.bus.clone(),
        gateway.registry.clone(),
        gateway.shutdown.clone(),
        gateway.sessions.clone(),
    );
    let accept = tokio::spawn(wsgate_proxy::serve(listener, Arc::clone(&proxy)));
    gateway.control.set_ready(true);
    // One machine-readable line on stdout: scripts and tests read the bound ports here.
    println!("wsgate proxy: listen={listen_addr} control={} upstream={target}", gateway.control_addr);
    tracing::info!(%listen_addr, control = %gateway.control_addr, "proxy ready: {scheme}://{listen_addr} → {target}");
    let deadline = cfg.shutdown_timeout;
    gateway.run_until_signal(deadline).await?;
    let _ = accept.await;
    Ok(())
}
