//! What an inject command answers, and the capacity every session's command queue
//! shares.
//!
//! An inject is acknowledged by the session task that carries it out, so the control
//! plane can tell the operator the truth: sent, refused because the peer is not
//! reading (the side's output buffer is at its high-water mark: 503 `busy`), or
//! refused because the session has no such side (409). Without the answer an inject
//! into a stalled peer could only be buffered without bound or dropped in silence.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::registry::{Command, Target};

/// Capacity of every session's command queue (inject/close from the control plane);
/// a full queue refuses with [`crate::CommandError::Busy`] (HTTP 503).
pub const COMMAND_QUEUE: usize = 64;

/// A session's command queue: a bounded queue with one consumer, the session's task.
///
/// Written here rather than taken from `tokio::sync::mpsc` for its size: every live
/// session holds one, and a channel allocates its first block of slots with it
/// (800 bytes with boxed commands), where this is one small allocation until a
/// command comes — and commands are rare. The relay holds tens of thousands of idle
/// sessions.
struct Shared {
    capacity: usize,
    /// Commands queued: polled without the lock, since the session's task looks at
    /// its queue on every wake-up and it is nearly always empty.
    queued: AtomicUsize,
    /// Senders alive: 0 ends `recv`.
    senders: AtomicUsize,
    waker: AtomicWaker,
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    /// Empty (and unallocated) nearly always.
    queue: VecDeque<Command>,
    receiver_gone: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // Plain data: a panic elsewhere while holding it leaves it usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Why [`CommandSender::try_send`] did not queue a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// [`COMMAND_QUEUE`] commands already wait.
    Full,
    /// The session's task is gone.
    Closed,
}

/// The sending end of a session's command queue (held by the registry).
pub struct CommandSender(Arc<Shared>);

impl std::fmt::Debug for CommandSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandSender").field("capacity", &self.0.capacity).finish_non_exhaustive()
    }
}

impl Clone for CommandSender {
    fn clone(&self) -> Self {
        self.0.senders.fetch_add(1, Ordering::Relaxed);
        Self(self.0.clone())
    }
}

impl Drop for CommandSender {
    fn drop(&mut self) {
        // The last sender gone: the receiver's `recv` answers `None` from now on.
        if self.0.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.waker.wake();
        }
    }
}

impl CommandSender {
    /// Queues a command without waiting.
    pub fn try_send(&self, cmd: Command) -> Result<(), SendError> {
        {
            let mut st = self.0.lock();
            if st.receiver_gone {
                return Err(SendError::Closed);
            }
            if st.queue.len() >= self.0.capacity {
                return Err(SendError::Full);
            }
            st.queue.push_back(cmd);
            self.0.queued.fetch_add(1, Ordering::Release);
        }
        self.0.waker.wake();
        Ok(())
    }
}

/// The receiving end of a session's command queue, owned by its task.
pub struct Commands(Arc<Shared>);

impl std::fmt::Debug for Commands {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commands").field("capacity", &self.0.capacity).finish_non_exhaustive()
    }
}

impl Drop for Commands {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.receiver_gone = true;
        st.queue = VecDeque::new();
    }
}

impl Commands {
    /// A queue of `capacity` commands.
    pub fn channel(capacity: usize) -> (CommandSender, Self) {
        let shared = Arc::new(Shared {
            capacity: capacity.max(1),
            queued: AtomicUsize::new(0),
            senders: AtomicUsize::new(1),
            waker: AtomicWaker::new(),
            state: Mutex::new(QueueState::default()),
        });
        (CommandSender(shared.clone()), Self(shared))
    }

    /// The next command; `None` once every sender is gone. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Command> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Poll form of [`Commands::recv`].
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Command>> {
        if self.0.queued.load(Ordering::Acquire) == 0 {
            if self.0.senders.load(Ordering::Acquire) == 0 {
                return Poll::Ready(None);
            }
            self.0.waker.register(cx.waker());
            // A command (or the last sender's drop) between the check and the
            // registration would be missed otherwise.
            if self.0.queued.load(Ordering::Acquire) == 0 {
                if self.0.senders.load(Ordering::Acquire) == 0 {
                    return Poll::Ready(None);
                }
                return Poll::Pending;
            }
        }
        let mut st = self.0.lock();
        let Some(cmd) = st.queue.pop_front() else { return Poll::Pending };
        self.0.queued.fetch_sub(1, Ordering::Release);
        if st.queue.is_empty() {
            // Back to holding nothing: a burst of commands is not kept for life.
            st.queue = VecDeque::new();
        }
        Poll::Ready(Some(cmd))
    }
}

/// What an operator decided for a frame held at an intercept breakpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Forward it as it came.
    Forward,
    /// Forward this instead: a text (`binary == false`) or binary message.
    Edit { payload: Bytes, binary: bool },
    /// Never forward it.
    Drop,
}

/// Output queued for one peer at or above which a session adds nothing more to it on
/// its own initiative: an inject (or an outbound send) is refused
/// [`InjectRefused::Busy`], and the proxy stops reading the other side. Declared once,
/// so the proxy's pump, the server loop and outbound sessions bound alike.
pub const HIGH_WATER: usize = 256 * 1024;

/// Why a session did not send an injected message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectRefused {
    /// The addressed peer is not reading: what waits to be written to it is at the
    /// high-water mark. Transient: retry later (HTTP 503).
    #[error("the {} side is not reading: {buffered} bytes already wait to be written to it; retry later", side(*.to))]
    Busy { to: Target, buffered: usize },
    /// The session has no such peer (a mock or replay session has no upstream, an
    /// outbound one no client). `why` says what the session is instead (HTTP 409).
    #[error("this session has no {} side: {why}", side(*.to))]
    NoSuchSide { to: Target, why: &'static str },
    /// The addressed side is closing: nothing more can be sent to it (HTTP 409).
    #[error("the {} side is closing: nothing more can be sent to it", side(*.to))]
    Closing { to: Target },
}

fn side(t: Target) -> &'static str {
    match t {
        Target::Client => "client",
        Target::Upstream => "upstream",
    }
}

/// The answer an inject waits for: carried inside `Command::Inject`, answered once by
/// the session task. A detached ack (nobody waits: raw taps, tests) answers into the
/// void; the session still refuses what it cannot hold.
#[derive(Debug, Default)]
pub struct InjectAck(Option<oneshot::Sender<Result<(), InjectRefused>>>);

/// The receiving end of an [`InjectAck`].
pub type InjectReply = oneshot::Receiver<Result<(), InjectRefused>>;

impl InjectAck {
    /// An ack and the receiver the caller awaits.
    pub fn channel() -> (Self, InjectReply) {
        let (tx, rx) = oneshot::channel();
        (Self(Some(tx)), rx)
    }

    /// An ack nobody waits for.
    pub fn detached() -> Self {
        Self(None)
    }

    /// Answers the caller (if one still waits).
    pub fn send(self, result: Result<(), InjectRefused>) {
        if let Some(tx) = self.0 {
            let _ = tx.send(result);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close() -> Command {
        Command::Close { code: 1000, reason: String::new(), kind: None }
    }

    #[tokio::test]
    async fn a_full_queue_refuses_a_gone_task_is_closed_and_the_last_sender_ends_recv() {
        let (tx, mut rx) = Commands::channel(2);
        let waiter = tokio::spawn(async move {
            let first = rx.recv().await;
            (first, rx)
        });
        tx.try_send(close()).unwrap();
        let (first, mut rx) = waiter.await.unwrap();
        assert!(matches!(first, Some(Command::Close { code: 1000, .. })));
        tx.try_send(close()).unwrap();
        tx.try_send(close()).unwrap();
        assert_eq!(tx.try_send(close()), Err(SendError::Full));
        let other = tx.clone();
        drop(tx);
        assert!(rx.recv().await.is_some() && rx.recv().await.is_some());
        let ended = tokio::spawn(async move { rx.recv().await.is_none() });
        tokio::task::yield_now().await;
        drop(other);
        assert!(ended.await.unwrap(), "recv answers None once every sender is gone");
        let (tx, rx) = Commands::channel(1);
        drop(rx);
        assert_eq!(tx.try_send(close()), Err(SendError::Closed));
    }
}
