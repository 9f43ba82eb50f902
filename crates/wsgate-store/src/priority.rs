//! Whose CPU history may take: the traffic's, or only what traffic leaves.
//!
//! Under `--record drop` traffic must never wait for history, and that includes
//! waiting for the CPU: a writer that competes with the proxy at equal priority
//! keeps up by slowing the proxy down (recording cost a saturated proxy 30–80 % of
//! its throughput), and the recorder's queue never fills, so nothing is dropped
//! and traffic pays. At background priority the scheduler gives history the CPU the
//! proxy does not use: below saturation that is all it needs and every frame is
//! kept; at saturation the queue fills and frames are dropped and counted, as the
//! mode promises. `--record strict` keeps the writer at the traffic's priority,
//! since there traffic waits for it anyway.

/// The priority of history's threads (the recorder and the store's writer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriterPriority {
    /// The same as traffic (`--record strict`; tests and tools).
    #[default]
    Traffic,
    /// The lowest: only CPU that traffic leaves (`--record drop`).
    Background,
}

/// Lowest nice value: a runnable nice-19 thread gets about 1.5 % of a core that a
/// nice-0 thread also wants, and all of an idle one.
#[cfg(target_os = "linux")]
const BACKGROUND_NICE: i32 = 19;

impl WriterPriority {
    /// Applies this priority to the calling thread. Lowering a thread's priority
    /// needs no privilege; if the system refuses anyway, history runs at the
    /// traffic's priority and says so.
    pub fn apply_to_current_thread(self) {
        if self == WriterPriority::Traffic {
            return;
        }
        #[cfg(target_os = "linux")]
        {
            // On Linux the nice value is a thread's, not the process's: given a
            // thread id, this lowers that thread alone.
            let tid = rustix::thread::gettid();
            if let Err(error) = rustix::process::setpriority_process(Some(tid), BACKGROUND_NICE) {
                tracing::warn!(%error, "cannot lower the history writer's priority; it competes with traffic");
            }
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The nice value of the calling thread, as the kernel reports it (field 19 of
    /// `/proc/thread-self/stat`, counted after the command name's closing paren).
    fn nice_of_this_thread() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("procfs");
        let after_name = &stat[stat.rfind(')').expect("stat format") + 2..];
        after_name.split(' ').nth(16).expect("nice field").parse().expect("a number")
    }

    #[test]
    fn background_lowers_only_the_calling_thread() {
        let before = nice_of_this_thread();
        let lowered = std::thread::spawn(|| {
            WriterPriority::Background.apply_to_current_thread();
            nice_of_this_thread()
        })
        .join()
        .expect("thread");
        assert_eq!(lowered, BACKGROUND_NICE.max(before));
        assert_eq!(nice_of_this_thread(), before, "the rest of the process keeps its priority");
        let unchanged = std::thread::spawn(|| {
            WriterPriority::Traffic.apply_to_current_thread();
            nice_of_this_thread()
        })
        .join()
        .expect("thread");
        assert_eq!(unchanged, before);
    }
}
