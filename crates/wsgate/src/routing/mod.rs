//! The gateway's routes: planned from the config ([`plan`]), built into the
//! listener's [`Router`] with one handler per route ([`table`]), and swapped whole on
//! reload (SIGHUP or `POST /api/reload`).

mod plan;
mod session_script;
mod table;

pub use plan::{Mode, RoutePlan, plan};
pub use table::Routing;
