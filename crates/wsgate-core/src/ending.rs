//! How a session ended, and the one way it becomes the final DISCONNECTED transition.
//!
//! Every handler that serves or opens connections — mock, proxy (pump, handshake and
//! early paths), and outbound — ends a session through [`Ending::finish`]. It lives in
//! wsgate-core, below all of them, rather than in `wsgate-session`: the outbound
//! client (`wsgate-client`) needs it too, and should not pull in the listener and
//! hyper just for a type with no I/O.

use wsgate_protocol::CloseCode;

use crate::kinds::ReasonKind;
use crate::session::{Initiator, SessionHandle, State, TransitionDetail};

/// The close code, reason and initiator a session ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    pub code: u16,
    pub reason: Option<String>,
    pub initiator: Initiator,
    /// Why, when the gateway had a reason of its own (`replaced`): the final
    /// transition's `reason_kind`.
    pub kind: Option<ReasonKind>,
}

impl Ending {
    pub fn new(code: u16, reason: Option<String>, initiator: Initiator) -> Self {
        Self { code, reason, initiator, kind: None }
    }

    /// A close started by us (or an operator) with this code and reason.
    pub fn closed(code: u16, reason: &str, initiator: Initiator) -> Self {
        Self { code, reason: Some(reason.to_owned()), initiator, kind: None }
    }

    /// `initiator` went away without a close frame (1006, which is never sent).
    pub fn dropped(initiator: Initiator) -> Self {
        Self {
            code: CloseCode::ABNORMAL,
            reason: Some("connection dropped without a close frame".into()),
            initiator,
            kind: None,
        }
    }

    /// The session stopped with nobody having closed it (e.g. the close handshake
    /// timed out before either side said anything): 1006 by the gateway.
    pub fn unexplained() -> Self {
        Self { code: CloseCode::ABNORMAL, reason: None, initiator: Initiator::Gateway, kind: None }
    }

    /// The final transition's detail.
    pub fn detail(self) -> TransitionDetail {
        TransitionDetail {
            close_code: Some(self.code),
            close_reason: self.reason,
            initiator: Some(self.initiator),
            reason_kind: self.kind,
            ..Default::default()
        }
    }

    /// Records the final DISCONNECTED transition (ignored if the session already
    /// ended), without waiting for parked events: for paths that return at once,
    /// where dropping the handle hands what is parked to the bus.
    pub fn record(self, session: &mut SessionHandle) {
        session.transition(State::Disconnected, self.detail());
    }

    /// Records the final DISCONNECTED transition and settles the session: under
    /// `--record strict` the task waits until every event is delivered, so the
    /// recorder sees the whole session before its task (and permit) is gone.
    pub async fn finish(self, session: &mut SessionHandle) {
        self.record(session);
        session.settle().await;
    }
}
