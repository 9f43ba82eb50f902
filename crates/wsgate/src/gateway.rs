//! Wiring shared by every serving command: the event bus and its observers, the
//! registry, the control plane, and the shutdown sequence.
//!
//! Start: open the store (migrating it) and claim this gateway's instance name
//! (`wsgate_store::lease`): refused while another running gateway holds it, and the
//! claim applies the restart rule. Then build the bus with the control plane's
//! observers and the recorder, and keep the lease renewed in the background, which
//! also applies the restart rule to gateways that stopped without releasing theirs.
//!
//! Shutdown (SIGINT/SIGTERM): cancel the root token → listeners stop accepting and
//! every session closes both sides with 1001 → wait for the session tasks with the
//! configured deadline → flush the recorder (every queued event is committed) →
//! release the lease → stop the control plane → exit 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wsgate_control::{ControlConfig, ControlPlane, OutboundContext};
use wsgate_core::{EventBus, Overflow, Registry};
use wsgate_store::recorder::{RecorderConfig, RecorderStats};
use wsgate_store::retention::Retention;
use wsgate_store::{Lease, Store, StoreError, WriterPriority};

use wsgate_control::reload::Reload as _;
use wsgate_listener::ListenerConfig;

use crate::config::{Config, RecordMode, Sources};
use crate::routing::{Mode, RoutePlan, Routing};

/// Events queued for the recorder. Large because a burst of small messages is cheap to
/// hold and the writer commits thousands of rows at a time.
const STORE_QUEUE: usize = 65_536;
/// Payload the recorder's queue may hold, whatever the event count: with large
/// messages this bound comes first (1 024 messages of 64 KiB).
const STORE_QUEUE_BYTES: usize = 64 << 20;

/// The store and what records into it.
pub struct History {
    stop: CancellationToken,
    /// Completes once the recorder has committed everything.
    recorded: tokio::sync::oneshot::Receiver<()>,
    lease: Keeper,
}

/// The task keeping this run's lease, and what it needs to release it.
struct Keeper {
    store: Arc<dyn Store>,
    lease: Lease,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// Another running gateway holds this instance name in this store. Like a bad
/// config, a flag fixes it: the process exits 64 (`commands::serve`).
#[derive(Debug, thiserror::Error)]
#[error(
    "{busy}\n  fix: give this gateway another name with --instance (WSGATE_INSTANCE, store.instance), or use another --store than {store}"
)]
pub struct InstanceInUse {
    busy: StoreError,
    store: String,
}

/// Opens the configured store and claims the instance name, which applies the
/// restart rule.
async fn open_store(cfg: &Config) -> anyhow::Result<Option<(Arc<dyn Store>, Lease)>> {
    if !cfg.store.enabled {
        return Ok(None);
    }
    let url: wsgate_store::StoreUrl = cfg.store.url.parse()?;
    let store = wsgate_store::open_with(&url, writer_priority(cfg.store.record))
        .await
        .with_context(|| format!("cannot open the store {url}"))?;
    let lease = Lease::new(cfg.store.instance_name(), cfg.store.instance_lease);
    let claimed = match store.claim(&lease).await {
        Ok(c) => c,
        Err(busy @ StoreError::InstanceBusy { .. }) => {
            return Err(InstanceInUse { busy, store: url.to_string() }.into());
        }
        Err(e) => return Err(e).context("cannot claim the instance name in the store"),
    };
    let instance = &lease.instance;
    if let Some(last) = &claimed.replaced {
        tracing::warn!(
            instance,
            host = last.host,
            pid = last.pid,
            started = %last.started_at,
            "the last run of this instance stopped without releasing it (a crash or a kill)"
        );
    }
    if claimed.closed > 0 {
        tracing::warn!(closed = claimed.closed, "closed sessions whose gateway is gone (gateway stopped)");
    }
    tracing::info!(store = %url, instance, run = %lease.run, lease = ?lease.ttl, "recording sessions");
    Ok(Some((store, lease)))
}

/// `--record drop` keeps history off the traffic's CPU; under `--record strict`
/// traffic waits for the writer anyway, so the writer runs at its priority.
fn writer_priority(mode: RecordMode) -> WriterPriority {
    match mode {
        RecordMode::Drop => WriterPriority::Background,
        RecordMode::Strict => WriterPriority::Traffic,
    }
}

/// Renews `lease` every third of its TTL and, each time, closes the sessions of
/// gateways whose lease has run out (a `kill -9` on another host, say).
async fn keep_lease(store: Arc<dyn Store>, lease: Lease, stop: CancellationToken) {
    let instance = lease.instance.as_str();
    let mut tick = tokio::time::interval(lease.ttl / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is now: the claim has just been made
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match store.renew(&lease).await {
            Ok(()) => {}
            Err(StoreError::LeaseLost { .. }) => {
                // Not renewed for a whole TTL (this process or the store stalled):
                // another gateway may have closed this one's open sessions in the store.
                tracing::error!(instance, "the lease on this instance was lost; claiming it again");
                match store.claim(&lease).await {
                    Ok(_) => tracing::warn!(instance, "claimed this instance again"),
                    Err(e) => {
                        tracing::error!(instance, error = %e, "cannot claim this instance again; retrying");
                        continue;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(instance, error = %e, "cannot renew the lease on this instance; retrying");
                continue;
            }
        }
        match store.close_expired(&lease).await {
            Ok(0) => {}
            Ok(closed) => {
                tracing::warn!(closed, "closed sessions of a gateway whose lease ran out (gateway stopped)")
            }
            Err(e) => tracing::warn!(error = %e, "cannot close the sessions of stopped gateways; retrying"),
        }
    }
}

pub struct Gateway {
    pub bus: Arc<EventBus>,
    pub registry: Arc<Registry>,
    /// Rooms of every relay route (the control plane publishes and inspects here).
    pub hub: Arc<wsgate_relay::Hub>,
    /// Every proxy and mock route's faults (the control plane switches them).
    pub faults: Arc<wsgate_faults::FaultBoard>,
    /// Every proxy route's intercept breakpoints and held frames (`/api/intercepts`).
    pub intercepts: Arc<wsgate_intercept::InterceptBoard>,
    pub control: ControlPlane,
    pub control_addr: SocketAddr,
    /// Cancelled on SIGINT/SIGTERM; handlers watch it.
    pub shutdown: CancellationToken,
    /// Session tasks, drained with a deadline at shutdown.
    pub sessions: TaskTracker,
    pub history: Option<History>,
    control_stop: CancellationToken,
    control_task: tokio::task::JoinHandle<std::io::Result<()>>,
    observers: TaskTracker,
}

impl Gateway {
    /// Builds the bus and binds and starts the control plane.
    pub async fn start(cfg: &Config) -> anyhow::Result<Self> {
        // Everything that can fail comes before the claim, so a failed start does not
        // leave the name held.
        let outbound_tls = wsgate_protocol::tls::client_config(cfg.outbound.ca.as_deref())
            .context("outbound.ca (--outbound-ca): cannot build the TLS client configuration")?;
        // Checked by validation already; parsed again here into the control plane's types.
        let (origins, hosts) = cfg.control_guard(&figment::Figment::new())?;
        let listener = TcpListener::bind(cfg.control)
            .await
            .with_context(|| format!("cannot bind the control plane on {}", cfg.control))?;
        let control_addr = listener.local_addr()?;
        let metrics_listener = match cfg.metrics_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot bind the metrics listener (metrics_listen) on {addr}"))?,
            ),
            None => None,
        };
        let (store, lease) = open_store(cfg).await?.unzip();
        let mut builder = EventBus::builder();
        let observers_q = wsgate_control::register_observers(&mut builder);
        let store_q = store.as_ref().map(|_| {
            let overflow = match cfg.store.record {
                RecordMode::Drop => Overflow::DropMessages,
                RecordMode::Strict => Overflow::Wait,
            };
            builder.bounded_log_keeper("store", STORE_QUEUE, STORE_QUEUE_BYTES, overflow)
        });
        let bus = builder.build();
        let stats = Arc::new(RecorderStats::default());
        let registry = Arc::new(Registry::default());
        let shutdown = CancellationToken::new();
        let sessions = TaskTracker::new();
        let control_stop = CancellationToken::new();
        let observers = TaskTracker::new();
        // Outbound sessions are the gateway's like any other: its shutdown closes them
        // with 1001 and its drain waits for them.
        let outbound = OutboundContext {
            connect_timeout: cfg.outbound.connect_timeout,
            allow_private_targets: cfg.outbound.allow_private_targets,
            control_is_loopback: cfg.control.ip().is_loopback(),
            tls: outbound_tls,
            max_message_size: cfg.limits.max_message_size,
            shutdown: shutdown.clone(),
            sessions: sessions.clone(),
        };
        let hub = wsgate_relay::Hub::new();
        let faults = Arc::new(wsgate_faults::FaultBoard::default());
        let intercepts = Arc::new(wsgate_intercept::InterceptBoard::default());
        let control = ControlPlane::start(
            ControlConfig {
                relay: Some(hub.clone()),
                faults: Some(faults.clone()),
                intercepts: Some(intercepts.clone()),
                admin_token: cfg.admin_token.clone().filter(|t| !t.is_empty()),
                payload_cap: cfg.live.payload_cap,
                live_queue: cfg.live.queue,
                store: store.clone(),
                recorder: store.as_ref().map(|_| stats.clone()),
                outbound: Some(outbound),
                origins,
                hosts,
            },
            registry.clone(),
            bus.clone(),
            observers_q,
            control_stop.clone(),
            &observers,
        );
        let task = tokio::spawn(wsgate_control::serve(listener, control.router(), control_stop.clone()));
        if let Some(l) = metrics_listener {
            tokio::spawn(wsgate_control::serve(l, control.metrics_router(), control_stop.clone()));
        }
        let history = match (store, store_q, lease) {
            (Some(store), Some(queue), Some(lease)) => {
                let stop = CancellationToken::new();
                let rec_cfg = RecorderConfig {
                    instance: cfg.store.instance_name(),
                    payload_cap: cfg.store.payload_cap,
                    redact: cfg.store.redact_headers.clone(),
                    ..Default::default()
                };
                let recorded = wsgate_store::recorder::spawn(
                    store.clone(),
                    queue,
                    rec_cfg,
                    stats.clone(),
                    stop.clone(),
                    writer_priority(cfg.store.record),
                )
                .context("cannot start the recorder's thread")?;
                let retention = Retention {
                    max_age: Some(cfg.store.retention).filter(|d| !d.is_zero()),
                    max_messages: Some(cfg.store.retention_messages).filter(|n| *n > 0),
                    every: Duration::from_secs(60),
                    chunk: 5000,
                };
                observers.spawn(wsgate_store::retention::run(store.clone(), retention, control_stop.clone()));
                let keeper_stop = CancellationToken::new();
                let keeper = tokio::spawn(keep_lease(store.clone(), lease.clone(), keeper_stop.clone()));
                Some(History { stop, recorded, lease: Keeper { store, lease, stop: keeper_stop, task: keeper } })
            }
            _ => None,
        };
        Ok(Self {
            bus,
            registry,
            hub,
            faults,
            intercepts,
            control,
            control_addr,
            shutdown,
            sessions,
            history,
            control_stop,
            control_task: task,
            observers,
        })
    }

    /// Waits for SIGINT or SIGTERM (reloading the routes on SIGHUP), then runs the
    /// shutdown sequence.
    pub async fn run_until_signal(self, deadline: Duration, signals: StopSignals) -> anyhow::Result<()> {
        signals.wait(&self.control).await;
        tracing::info!("shutting down: closing sessions with 1001");
        self.shutdown(deadline).await
    }

    pub async fn shutdown(self, deadline: Duration) -> anyhow::Result<()> {
        self.control.set_ready(false);
        self.shutdown.cancel();
        self.sessions.close();
        if tokio::time::timeout(deadline, self.sessions.wait()).await.is_err() {
            tracing::warn!(live = self.registry.live_count(), "shutdown deadline passed; dropping remaining sessions");
        }
        if let Some(h) = self.history {
            // The sessions have ended, so their last events are queued: record them all.
            h.stop.cancel();
            if tokio::time::timeout(deadline, h.recorded).await.is_err() {
                tracing::warn!("the store did not finish writing before the shutdown deadline");
            }
            // Every session is recorded as ended: the name is free for the next run.
            let k = h.lease;
            k.stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(2), k.task).await;
            match tokio::time::timeout(Duration::from_secs(2), k.store.release(&k.lease)).await {
                Ok(Ok(())) => tracing::debug!(instance = k.lease.instance, "released the instance"),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot release the instance; it frees when its lease expires")
                }
                Err(_) => {
                    tracing::warn!("the store did not release the instance in time; it frees when its lease expires")
                }
            }
        }
        self.control_stop.cancel();
        self.observers.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.observers.wait()).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.control_task).await;
        Ok(())
    }
}

/// Runs a route table until SIGINT/SIGTERM: binds `cfg.listen` (unless `wsgate serve`
/// has no routes and no config file, when the control plane runs alone), starts the
/// gateway, serves the routes, prints the ready line scripts and tests read
/// (`wsgate NAME: listen=ADDR control=ADDR …`), reloads the routes on SIGHUP, then
/// shuts down in order.
pub async fn run_routes(cfg: &Config, name: &str, detail: &str, routes: Routes) -> anyhow::Result<()> {
    let Routes { plans, tls, sources, mode } = routes;
    let serve_listener = mode != Mode::Serve || !plans.is_empty() || sources.file.is_some();
    let listener = if serve_listener {
        Some(bind_clients(cfg.listen).with_context(|| format!("cannot listen on {}", cfg.listen))?)
    } else {
        None
    };
    let signals = StopSignals::register();
    let gateway = Gateway::start(cfg).await?;
    let routing = Routing::new(plans, &gateway, sources, mode, cfg);
    let names: Vec<String> = routing.table().routes.into_iter().map(|r| r.name).collect();
    let mut accept = None;
    let mut listen = String::new();
    if let Some(listener) = listener {
        listen = format!("listen={} ", listener.local_addr()?);
        gateway.control.set_routes(routing.clone());
        let lcfg = ListenerConfig {
            tls,
            max_connections: cfg.limits.max_connections,
            handshake_timeout: cfg.limits.handshake_timeout,
        };
        let (shutdown, sessions) = (gateway.shutdown.clone(), gateway.sessions.clone());
        accept = Some(tokio::spawn(wsgate_listener::serve(listener, lcfg, routing.router(), shutdown, sessions)));
    }
    gateway.control.set_ready(true);
    let routes = if mode == Mode::Serve { format!(" routes={}", names.join(",")) } else { String::new() };
    println!("wsgate {name}: {listen}control={} {detail}{routes}", gateway.control_addr);
    tracing::info!(control = %gateway.control_addr, routes = ?names, "{name} ready {listen}{detail}");
    gateway.run_until_signal(cfg.shutdown_timeout, signals).await?;
    if let Some(a) = accept {
        let _ = a.await;
    }
    Ok(())
}

/// Pending connections the client listener queues before it accepts them. tokio's
/// `bind` asks for 128, which a relay's thousand subscribers connecting at once
/// overflow (SYNs dropped, clients retrying after a second); the kernel caps it at
/// `net.core.somaxconn` anyway.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds the client listener with [`LISTEN_BACKLOG`] (address reuse as tokio's `bind`).
fn bind_clients(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// What [`run_routes`] serves: the planned routes, the listener's TLS, and where the
/// config came from (a reload reads it again).
pub struct Routes {
    pub plans: Vec<RoutePlan>,
    pub tls: Option<Arc<wsgate_protocol::tls::ServerConfig>>,
    pub sources: Sources,
    pub mode: Mode,
}

/// The signals a gateway answers: SIGINT and SIGTERM stop it, each SIGHUP reloads
/// its routes. Registered before the gateway says it is ready: until a handler is
/// in place a signal takes its default action, and SIGHUP's ends the process — a
/// reload sent the moment the ready line appeared killed the gateway.
pub struct StopSignals {
    #[cfg(unix)]
    unix: Option<[tokio::signal::unix::Signal; 3]>,
}

impl StopSignals {
    pub fn register() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let all = (signal(SignalKind::hangup()), signal(SignalKind::interrupt()), signal(SignalKind::terminate()));
            let unix = match all {
                (Ok(hup), Ok(int), Ok(term)) => Some([hup, int, term]),
                _ => None,
            };
            Self { unix }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// Until SIGINT or SIGTERM; each SIGHUP meanwhile reloads the routes.
    async fn wait(self, control: &ControlPlane) {
        #[cfg(unix)]
        if let Some([mut hup, mut int, mut term]) = self.unix {
            loop {
                tokio::select! {
                    _ = int.recv() => return,
                    _ = term.recv() => return,
                    _ = hup.recv() => {
                        if control.reload().is_none() {
                            tracing::warn!("SIGHUP: this gateway has no routes to reload");
                        }
                    }
                }
            }
        }
        let _ = control;
        let _ = tokio::signal::ctrl_c().await;
    }
}
