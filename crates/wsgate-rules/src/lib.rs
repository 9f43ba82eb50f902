//! Rules: what wsgate does with a message it sees, written once in a YAML file and
//! run by two roles. The mock answers a client by them (`respond`, `broadcast`,
//! `close`); a proxy route transforms the frames it forwards (`rewrite`, `drop`,
//! `delay`, or an answer in place). Both keep per-session state (counters, captured
//! values) that later matches and templates read.
//!
//! - [`load`]: the file read and checked once, at start: every refusal a
//!   [`RulesError`] with `file:line:column`, every unknown key refused;
//! - [`rule`]: what a loaded file is ([`Rules`]);
//! - [`conversation`]: one session's evaluation ([`Conversation`]: state, a seeded
//!   RNG, `{{seq}}`), with the mock's entry point [`Conversation::on_client`] and the
//!   proxy's [`Conversation::transform`], whose no-match path neither parses JSON nor
//!   allocates;
//! - [`edit`]: JSONPath set and delete on a message;
//! - [`template`] and [`matcher`]: the templated text and the `waitFor` matchers the
//!   replay mock shares.
//!
//! Depends on no other wsgate crate: a handler crate never imports another, and both
//! the mock and the proxy use this one.

pub mod conversation;
pub mod edit;
pub mod load;
pub mod matcher;
pub mod rule;
pub mod template;

pub use conversation::{Answer, Conversation, Flow, Forward, Reaction, Transform};
pub use load::{RulesError, RulesErrorKind};
pub use rule::{Role, Rules};
