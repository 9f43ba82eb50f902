//! Wiring shared by every serving command: the event bus and its observers, the
//! registry, the control plane, and the shutdown sequence.
//!
//! Start: open the store (migrating it) and apply the restart rule, then build the
//! bus with the control plane's observers and the recorder.
//!
//! Shutdown (SIGINT/SIGTERM): cancel the root token → listeners stop accepting and
//! every session closes both sides with 1001 → wait for the session tasks with the
//! configured deadline → flush the recorder (every queued event is committed) →
//! stop the control plane → exit 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wsgate_control::{ControlConfig, ControlPlane, OutboundContext};
use wsgate_core::{EventBus, Overflow, Registry};
use wsgate_store::Store;
use wsgate_store::recorder::{RecorderConfig, RecorderStats};
use wsgate_store::retention::Retention;

use crate::config::{Config, RecordMode};

/// Events queued for the recorder. Large because a burst of small messages is cheap to
/// hold and the writer commits thousands of rows at a time.
const STORE_QUEUE: usize = 65_536;

/// The store and what records into it.
pub struct History {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// Opens the configured store and applies the restart rule.
async fn open_store(cfg: &Config) -> anyhow::Result<Option<Arc<dyn Store>>> {
    if !cfg.store.enabled {
        return Ok(None);
    }
    let url: wsgate_store::StoreUrl = cfg.store.url.parse()?;
    let store = wsgate_store::open(&url).await.with_context(|| format!("cannot open the store {url}"))?;
    let instance = cfg.store.instance_name();
    let closed = store.close_orphans(&instance).await.context("cannot close sessions left open by the last run")?;
    if closed > 0 {
        tracing::warn!(closed, instance, "closed sessions left open by the last run (gateway stopped)");
    }
    tracing::info!(store = %url, instance, "recording sessions");
    Ok(Some(store))
}

pub struct Gateway {
    pub bus: Arc<EventBus>,
    pub registry: Arc<Registry>,
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
        let store = open_store(cfg).await?;
        let mut builder = EventBus::builder();
        let observers_q = wsgate_control::register_observers(&mut builder);
        let store_q = store.as_ref().map(|_| {
            let overflow = match cfg.store.record {
                RecordMode::Drop => Overflow::DropMessages,
                RecordMode::Strict => Overflow::Wait,
            };
            builder.observer_with("store", STORE_QUEUE, overflow)
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
            tls: wsgate_protocol::tls::client_config(cfg.outbound.ca.as_deref())
                .context("outbound.ca (--outbound-ca): cannot build the TLS client configuration")?,
            max_message_size: cfg.limits.max_message_size,
            shutdown: shutdown.clone(),
            sessions: sessions.clone(),
        };
        let control = ControlPlane::start(
            ControlConfig {
                admin_token: cfg.admin_token.clone().filter(|t| !t.is_empty()),
                payload_cap: cfg.live.payload_cap,
                live_queue: cfg.live.queue,
                store: store.clone(),
                recorder: store.as_ref().map(|_| stats.clone()),
                outbound: Some(outbound),
            },
            registry.clone(),
            bus.clone(),
            observers_q,
            control_stop.clone(),
            &observers,
        );
        let listener = TcpListener::bind(cfg.control)
            .await
            .with_context(|| format!("cannot bind the control plane on {}", cfg.control))?;
        let control_addr = listener.local_addr()?;
        let task = tokio::spawn(wsgate_control::serve(listener, control.router(), control_stop.clone()));
        let history = match (store, store_q) {
            (Some(store), Some(queue)) => {
                let stop = CancellationToken::new();
                let rec_cfg = RecorderConfig {
                    instance: cfg.store.instance_name(),
                    payload_cap: cfg.store.payload_cap,
                    redact: cfg.store.redact_headers.clone(),
                    ..Default::default()
                };
                let task = tokio::spawn(wsgate_store::recorder::run(
                    store.clone(),
                    queue,
                    rec_cfg,
                    stats.clone(),
                    stop.clone(),
                ));
                let retention = Retention {
                    max_age: Some(cfg.store.retention).filter(|d| !d.is_zero()),
                    max_messages: Some(cfg.store.retention_messages).filter(|n| *n > 0),
                    every: Duration::from_secs(60),
                    chunk: 5000,
                };
                observers.spawn(wsgate_store::retention::run(store.clone(), retention, control_stop.clone()));
                Some(History { stop, task })
            }
            _ => None,
        };
        Ok(Self {
            bus,
            registry,
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

    /// Waits for SIGINT or SIGTERM, then runs the shutdown sequence.
    pub async fn run_until_signal(self, deadline: Duration) -> anyhow::Result<()> {
        wait_for_signal().await;
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
            if tokio::time::timeout(deadline, h.task).await.is_err() {
                tracing::warn!("the store did not finish writing before the shutdown deadline");
            }
        }
        self.control_stop.cancel();
        self.observers.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.observers.wait()).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.control_task).await;
        Ok(())
    }
}

/// Runs one serving handler until SIGINT/SIGTERM: binds `cfg.listen`, starts the
/// gateway, lets `start` spawn the accept loop, prints the ready line scripts and
/// tests read (`wsgate NAME: listen=ADDR control=ADDR …`), then shuts down in order.
pub async fn run_server<F>(cfg: &Config, name: &str, detail: &str, start: F) -> anyhow::Result<()>
where
    F: FnOnce(TcpListener, &Gateway) -> tokio::task::JoinHandle<()>,
{
    let listener = TcpListener::bind(cfg.listen).await.with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let listen_addr = listener.local_addr()?;
    let gateway = Gateway::start(cfg).await?;
    let accept = start(listener, &gateway);
    gateway.control.set_ready(true);
    println!("wsgate {name}: listen={listen_addr} control={} {detail}", gateway.control_addr);
    tracing::info!(%listen_addr, control = %gateway.control_addr, "{name} ready {detail}");
    gateway.run_until_signal(cfg.shutdown_timeout).await?;
    let _ = accept.await;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
