//! The server side of a session, written once for every handler that answers
//! WebSocket clients (mock today; replay and relay next; the proxy for its client
//! side). It sits below the handlers and above the session model: it knows sessions
//! (`wsgate-core`), the protocol and the listener, never the store or the control
//! plane, and never another handler.
//!
//! - [`upgrade`]: validate the upgrade, choose the subprotocol, accept
//!   permessage-deflate, open the session (REQUESTED), build the 101, and hand back
//!   the upgraded transport once hyper has written it; [`upgrade::connected`] is the
//!   CONNECTED step.
//! - [`server`]: the message loop for sessions wsgate answers itself — inject and close
//!   commands (an inject refused `busy` at [`HIGH_WATER`]), idle timeout, shutdown,
//!   the close handshake with its deadline, `--record strict` settling, burst
//!   batching — calling a [`Behaviour`] for what to answer.
//! - faults (`wsgate-faults`): the loop applies its route's faults to what the client
//!   sends and receives; [`refused_by_fault`] answers a handshake a fault refuses.
//! - [`endpoint`]: the two put together: a handler's whole answer to an upgrade
//!   request, given the behaviour to run.
//!
//! How a session ends is [`wsgate_core::Ending`]: the one final-transition type every
//! handler (this loop, the proxy's pump and early paths, outbound) records through.

pub mod behaviour;
pub mod endpoint;
mod faults;
mod refusal;
pub mod server;
pub mod upgrade;

pub use behaviour::{Behaviour, Outbox};
pub use endpoint::{Endpoint, EndpointConfig, Served};
pub use refusal::refused_by_fault;
pub use server::{ServerConfig, run};
pub use upgrade::{PendingUpgrade, Upgrade, connected};
/// Bounds what a peer that is not reading can make the gateway hold: at this much
/// unwritten output an inject is refused (503 `busy`).
pub use wsgate_core::HIGH_WATER;
pub use wsgate_core::{COMMAND_QUEUE, Ending};
