//! Intercept: what Burp and ZAP call breakpoints, for a proxy route. A breakpoint
//! names a route, a direction and optionally a matcher (a regex, or a JSONPath with an
//! optional expected value: `wsgate_rules::Matcher`); every whole data message it
//! matches is held by its session's pump before it is forwarded, until an operator
//! forwards it, edits then forwards it, or drops it (`Command::Release`), or until the
//! breakpoint's timeout forwards it unchanged.
//!
//! - [`InterceptBoard`]: the gateway's breakpoints and the frames held now, for the
//!   control API (`/api/intercepts`).
//! - [`RouteIntercepts`]: one route's armed breakpoints, switched at run time.
//! - [`SessionIntercepts`]: a session's view of them; with none armed, a message
//!   costs one atomic load (the route's version), so intercept off costs a route
//!   nothing measurable.

mod board;
mod breakpoint;
mod session;

pub use board::{HeldFrame, InterceptBoard, InterceptError, RouteIntercepts};
pub use breakpoint::{Breakpoint, BreakpointError, DEFAULT_TIMEOUT, MAX_TIMEOUT, Way};
pub use session::SessionIntercepts;
