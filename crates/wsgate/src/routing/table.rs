//! The live route table: one handler per planned route behind the listener's
//! [`Router`], rebuilt and swapped whole when the config is reloaded.
//!
//! A reload builds fresh handlers (a changed upstream is a new `Proxy`); sessions
//! already running hold the handler that answered them, so they keep their upstream
//! and settings until they end. A route keeps its connection-limit semaphore across
//! reloads while its name and limit stay the same, so its live sessions still count.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wsgate_control::reload::{Reload, RouteInfo, RouteTable};
use wsgate_core::{EventBus, Registry};
use wsgate_listener::{DynHandler, Route, Router};
use wsgate_mock::Mock;
use wsgate_proxy::Proxy;
use wsgate_relay::{Hub, Relay};

use super::plan::{Handler, Mode, RoutePlan, plan};
use crate::config::{Config, Sources, load};
use crate::gateway::Gateway;

/// What every handler reports into.
struct Parts {
    bus: Arc<EventBus>,
    registry: Arc<Registry>,
    /// Rooms of every relay route, kept across reloads.
    hub: Arc<Hub>,
    /// Every route's faults, by name, kept across reloads.
    faults: Arc<wsgate_faults::FaultBoard>,
    /// Every proxy route's breakpoints, by name, kept across reloads.
    intercepts: Arc<wsgate_intercept::InterceptBoard>,
    shutdown: CancellationToken,
    sessions: TaskTracker,
}

struct State {
    generation: u64,
    plans: Vec<RoutePlan>,
    /// Per route name: its limit and the semaphore enforcing it.
    limits: HashMap<Arc<str>, (usize, Arc<Semaphore>)>,
    restart_needed: Vec<String>,
}

pub struct Routing {
    router: Arc<Router>,
    parts: Parts,
    /// Where the config came from at start: a reload reads the same file, variables
    /// and flags again.
    sources: Sources,
    mode: Mode,
    /// The settings in force since start, to name those a reload cannot apply.
    started: Config,
    state: Mutex<State>,
}

impl std::fmt::Debug for Routing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routing").field("mode", &self.mode).finish_non_exhaustive()
    }
}

impl Routing {
    pub fn new(plans: Vec<RoutePlan>, gateway: &Gateway, sources: Sources, mode: Mode, cfg: &Config) -> Arc<Self> {
        let parts = Parts {
            bus: gateway.bus.clone(),
            registry: gateway.registry.clone(),
            hub: gateway.hub.clone(),
            faults: gateway.faults.clone(),
            intercepts: gateway.intercepts.clone(),
            shutdown: gateway.shutdown.clone(),
            sessions: gateway.sessions.clone(),
        };
        let mut limits = HashMap::new();
        let routes = build(&parts, &plans, &mut limits);
        Arc::new(Self {
            router: Router::new(routes),
            parts,
            sources,
            mode,
            started: cfg.clone(),
            state: Mutex::new(State { generation: 1, plans, limits, restart_needed: Vec::new() }),
        })
    }

    pub fn router(&self) -> Arc<Router> {
        self.router.clone()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn build(parts: &Parts, plans: &[RoutePlan], limits: &mut HashMap<Arc<str>, (usize, Arc<Semaphore>)>) -> Vec<Route> {
    let mut kept = HashMap::new();
    parts.faults.retain(&|name| plans.iter().any(|p| &*p.name == name));
    let is_proxy = |name: &str| plans.iter().any(|p| &*p.name == name && matches!(p.handler, Handler::Proxy(_)));
    parts.intercepts.retain(&is_proxy);
    let routes = plans
        .iter()
        .map(|p| {
            // Checked when planned; a reload that leaves a route's `faults:` as it was
            // keeps what the API set since.
            let faults = || {
                let switch = parts.faults.switch(&p.name);
                switch.set_default_seed(p.seed());
                if let Err(e) = switch.configure(p.faults.clone()) {
                    tracing::error!(route = %p.name, error = %e, "faults not applied");
                }
                switch
            };
            let handler: Arc<dyn DynHandler> = match &p.handler {
                Handler::Proxy(cfg) => {
                    let faults = faults();
                    // The fallback mock answers as the same route, with its faults.
                    let fallback = p.fallback.clone().map(|mut m| {
                        m.served.faults = Some(faults.clone());
                        let mock = Mock::new(
                            m,
                            parts.bus.clone(),
                            parts.registry.clone(),
                            parts.shutdown.clone(),
                            parts.sessions.clone(),
                        );
                        mock as Arc<dyn DynHandler>
                    });
                    Proxy::with_fallback(
                        wsgate_proxy::ProxyConfig {
                            faults,
                            intercepts: parts.intercepts.route(&p.name),
                            ..(**cfg).clone()
                        },
                        parts.bus.clone(),
                        parts.registry.clone(),
                        parts.shutdown.clone(),
                        parts.sessions.clone(),
                        fallback,
                    )
                }
                Handler::Relay(cfg) => Relay::new(
                    (**cfg).clone(),
                    parts.hub.clone(),
                    parts.bus.clone(),
                    parts.registry.clone(),
                    parts.shutdown.clone(),
                    parts.sessions.clone(),
                ),
                Handler::Mock(cfg) => Mock::new(
                    {
                        let mut cfg = cfg.clone();
                        cfg.served.faults = Some(faults());
                        cfg
                    },
                    parts.bus.clone(),
                    parts.registry.clone(),
                    parts.shutdown.clone(),
                    parts.sessions.clone(),
                ),
            };
            let limit = p.max_connections.map(|max| {
                let sem = match limits.get(&p.name) {
                    Some((m, sem)) if *m == max => sem.clone(),
                    _ => Arc::new(Semaphore::new(max)),
                };
                kept.insert(p.name.clone(), (max, sem.clone()));
                sem
            });
            Route {
                name: p.name.clone(),
                path: p.path.clone(),
                host: p.host.clone(),
                origins: p.origins.clone(),
                limit,
                handler,
            }
        })
        .collect();
    *limits = kept;
    routes
}

fn info(p: &RoutePlan) -> RouteInfo {
    RouteInfo {
        name: p.name.to_string(),
        path: p.path.to_string(),
        host: p.host.clone(),
        kind: p.kind().as_str().into(),
        target: p.target(),
        origins: p.origins.clone(),
        max_connections: p.max_connections,
    }
}

/// Settings a reload read but cannot apply: they belong to sockets and stores opened
/// at start.
fn restart_needed(old: &Config, new: &Config) -> Vec<String> {
    let mut changed = Vec::new();
    let mut check = |name: &str, differs: bool| {
        if differs {
            changed.push(name.to_owned());
        }
    };
    check("listen", old.listen != new.listen);
    check("control", old.control != new.control);
    check("metrics_listen", old.metrics_listen != new.metrics_listen);
    check("admin_token", old.admin_token != new.admin_token);
    check("control_origins", old.control_origins != new.control_origins);
    check("control_hosts", old.control_hosts != new.control_hosts);
    check("tls_cert", old.tls_cert != new.tls_cert || old.tls_key != new.tls_key);
    check("store", old.store.url != new.store.url || old.store.enabled != new.store.enabled);
    check("limits.max_connections", old.limits.max_connections != new.limits.max_connections);
    check("limits.handshake_timeout", old.limits.handshake_timeout != new.limits.handshake_timeout);
    check("log_level", old.log_level != new.log_level);
    changed
}

impl Reload for Routing {
    fn reload(&self) -> Result<RouteTable, String> {
        let (cfg, fig) = load(&self.sources).map_err(|e| e.to_string())?;
        let plans = plan(&cfg, &fig, self.mode).map_err(|e| e.to_string())?;
        let mut st = self.state();
        let routes = build(&self.parts, &plans, &mut st.limits);
        self.router.swap(routes);
        st.generation += 1;
        st.plans = plans;
        st.restart_needed = restart_needed(&self.started, &cfg);
        Ok(table(&st))
    }

    fn table(&self) -> RouteTable {
        table(&self.state())
    }
}

fn table(st: &State) -> RouteTable {
    RouteTable {
        generation: st.generation,
        routes: st.plans.iter().map(info).collect(),
        restart_needed: st.restart_needed.clone(),
    }
}
