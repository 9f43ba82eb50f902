//! The live progress bar (stderr) and the counters it reads.
//!
//! Connections never touch the bar: each one stores its own running count into its own
//! cache-line-sized slot (a plain atomic store, no read-modify-write, no line shared
//! with another connection), and one task sums the slots a few times a second.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// How often the bar is redrawn.
const TICK: Duration = Duration::from_millis(250);

/// One connection's running count, alone on its cache line so that connections on
/// different cores never contend for it.
#[repr(align(64))]
#[derive(Debug, Default)]
pub(crate) struct Slot(AtomicU64);

impl Slot {
    /// Only the owning connection writes, so a store (not an add) is enough.
    #[inline]
    pub(crate) fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
}

/// Per-connection counters for the progress bar.
#[derive(Debug)]
pub(crate) struct Slots(Box<[Slot]>);

impl Slots {
    pub(crate) fn new(n: usize) -> Arc<Self> {
        Arc::new(Self((0..n).map(|_| Slot::default()).collect()))
    }

    pub(crate) fn get(&self, i: usize) -> &Slot {
        &self.0[i]
    }

    pub(crate) fn total(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

/// A shared counter for rare events (connects, failures): updated once per
/// connection, never per message.
#[derive(Debug, Default)]
pub(crate) struct Tally(AtomicU64);

impl Tally {
    pub(crate) fn add(&self, n: u64) -> u64 {
        self.0.fetch_add(n, Ordering::Relaxed) + n
    }
    pub(crate) fn sub(&self, n: u64) {
        self.0.fetch_sub(n, Ordering::Relaxed);
    }
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    pub(crate) fn max(&self, v: u64) {
        self.0.fetch_max(v, Ordering::Relaxed);
    }
}

/// Messages per second over the last ticks, smoothed so the figure is readable.
#[derive(Debug)]
pub(crate) struct RateMeter {
    last: Instant,
    last_count: u64,
    rate: f64,
}

impl RateMeter {
    pub(crate) fn new() -> Self {
        Self { last: Instant::now(), last_count: 0, rate: 0.0 }
    }

    pub(crate) fn update(&mut self, count: u64) -> f64 {
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64();
        if dt > 0.0 {
            let instant = count.saturating_sub(self.last_count) as f64 / dt;
            self.rate = if self.rate == 0.0 { instant } else { 0.6 * instant + 0.4 * self.rate };
        }
        self.last = now;
        self.last_count = count;
        self.rate
    }
}

/// A running progress bar, redrawn by its own task until [`Progress::finish`].
#[derive(Debug)]
pub(crate) struct Progress {
    bar: ProgressBar,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts a bar of `len` steps (a spinner without). `update` runs every tick to set
    /// the position and message. Hidden (and `update` never run) when `enabled` is
    /// false or stderr is not a terminal.
    pub(crate) fn start(
        enabled: bool,
        len: Option<u64>,
        template: &str,
        mut update: impl FnMut(&ProgressBar) + Send + 'static,
    ) -> Self {
        let stop = CancellationToken::new();
        if !enabled || !std::io::stderr().is_terminal() {
            return Self { bar: ProgressBar::hidden(), stop, task: None };
        }
        let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        let task_bar = bar.clone();
        let task_stop = stop.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = task_stop.cancelled() => break,
                    _ = tick.tick() => update(&task_bar),
                }
            }
        });
        Self { bar, stop, task: Some(task) }
    }

    /// Stops redrawing and removes the bar, so the summary prints on a clean screen.
    pub(crate) async fn finish(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.bar.finish_and_clear();
    }
}

/// `12345.6` → `12.3k`, for the bar's message.
pub(crate) fn short_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2}M", r / 1e6)
    } else if r >= 1e4 {
        format!("{:.1}k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}
