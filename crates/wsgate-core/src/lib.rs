//! The session model every wsgate handler shares.
//!
//! A handler (proxy, relay, mock, outbound) owns its connections and moves frames; it
//! reports what happens through a [`SessionHandle`]: lifecycle transitions, frames
//! seen, errors. The handle publishes those as [`SessionEvent`]s on the [`EventBus`],
//! where observers (live stream, metrics, later the store and the recorder) each read
//! from their own bounded queue, and keeps the [`Registry`] of live sessions that the
//! control plane lists and sends commands (inject, close) through.
//!
//! Nothing here does I/O: it is the vocabulary, not the machinery.

pub mod bus;
pub mod command;
pub mod ending;
pub mod event;
pub mod id;
pub mod kinds;
pub mod marks;
pub mod path_filter;
pub mod payloads;
pub mod registry;
pub mod session;

pub use bus::{EventBus, EventBusBuilder, ObserverQueue, Overflow, Pending};
pub use command::{COMMAND_QUEUE, CommandSender, Commands, HIGH_WATER, InjectAck, InjectRefused, InjectReply, Verdict};
pub use ending::Ending;
pub use event::{DeliveryRun, Direction, LogEntry, MessageEvent, QueueEvent, QueueOutcome, SessionEvent, SharedLog};
pub use id::SessionId;
pub use kinds::{ErrorKind, ReasonKind};
pub use marks::{Mark, Marks};
pub use path_filter::path_matches;
pub use payloads::{BadPayloadPolicy, PayloadPolicy};
pub use registry::{Command, CommandError, Registry, SessionSnapshot, Target};
pub use session::{
    CloseInfo, Initiator, RUN_FLUSH, SessionHandle, SessionInfo, SessionKind, State, Totals, Transition,
    TransitionDetail,
};
