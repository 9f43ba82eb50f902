//! What an inject command answers, and the capacity every session's command queue
//! shares.
//!
//! An inject is acknowledged by the session task that carries it out, so the control
//! plane can tell the operator the truth: sent, refused because the peer is not
//! reading (the side's output buffer is at its high-water mark: 503 `busy`), or
//! refused because the session has no such side (409). Without the answer an inject
//! into a stalled peer could only be buffered without bound or dropped in silence.

use std::task::{Context, Poll};

use tokio::sync::{mpsc, oneshot};

use crate::registry::{Command, Target};

/// Capacity of every session's command queue (inject/close from the control plane);
/// a full queue refuses with [`crate::CommandError::Busy`] (HTTP 503).
pub const COMMAND_QUEUE: usize = 64;

/// The sending end of a session's command queue (held by the registry).
pub type CommandSender = mpsc::Sender<Box<Command>>;

/// The receiving end of a session's command queue, owned by its task.
///
/// Commands travel boxed. A channel allocates its first block of slots with the
/// session, and every live session has one: a boxed slot is 8 bytes where a `Command`
/// is 56, so an idle session's queue costs a few hundred bytes rather than 2 KiB (the
/// relay holds tens of thousands of idle sessions). A command is rare; its box is not.
#[derive(Debug)]
pub struct Commands(mpsc::Receiver<Box<Command>>);

impl Commands {
    /// A queue of `capacity` commands.
    pub fn channel(capacity: usize) -> (CommandSender, Self) {
        let (tx, rx) = mpsc::channel(capacity);
        (tx, Self(rx))
    }

    /// The next command; `None` once every sender is gone. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Command> {
        self.0.recv().await.map(|c| *c)
    }

    /// Poll form of [`Commands::recv`].
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Command>> {
        self.0.poll_recv(cx).map(|c| c.map(|c| *c))
    }
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
