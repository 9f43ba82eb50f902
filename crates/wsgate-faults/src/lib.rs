//! Faults: a chaos layer for mock and proxy routes, a WebSocket toxiproxy.
//!
//! A route's faults are a [`FaultSpec`] (config `faults:`, or the control API at run
//! time), checked and compiled into a [`Plan`] held by the route's [`FaultSwitch`]
//! (all switches: the gateway's [`FaultBoard`]). Each session keeps a
//! [`SessionFaults`], which decides per whole data message — drop, duplicate,
//! truncate, hold until (latency, throttle), disconnect — from its own seeded random
//! sequence per direction; handlers (the proxy's pump, the served-session loop) carry
//! the decisions out, holding delayed messages in a [`Held`] queue, and mark each
//! message a fault touched (`wsgate_core::Mark::Fault`). Refusals act at the
//! handshake ([`FaultSwitch::refuse`]).

mod hold;
mod plan;
mod session;
pub mod spec;
mod switch;

pub use hold::Held;
pub use plan::{DISCONNECT_CODE, DisconnectPlan, Flow, Plan};
pub use session::{Decision, SessionFaults, cut};
pub use spec::{FaultError, FaultSpec};
pub use switch::{FaultBoard, FaultSwitch};
