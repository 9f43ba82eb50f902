//! Generated event streams (MockForge's AI event mode): each session asks an
//! OpenAI-compatible chat-completions endpoint for `count` JSON events that tell the
//! route's narrative ("five minutes of live stock trading"), reads the answer as it
//! streams, and sends the events to the client at the route's rate.
//!
//! - `settings`: what a route is told, checked once at start (endpoint, model, key,
//!   count, rate, timeout, recording).
//! - `client`: the one HTTP request (`POST .../chat/completions`, `stream: true`) and
//!   the answer's chunks, each wait bounded by the timeout.
//! - `answer`: the answer as events, chunk by chunk: `sse` (its server-sent events,
//!   down to the text deltas), then `events` (the text as JSON Lines, one event a
//!   line).
//! - `generator`: the task that ties them together per session, records what was
//!   generated (`record`), and hands events to the session through a bounded channel.
//! - `behaviour`: the session's side: events sent at the rate by ticks, the ending
//!   (a normal close after the last event, or an error event and a close for a
//!   failure — never a hang).

mod answer;
mod behaviour;
mod client;
mod error;
mod events;
mod generator;
mod record;
mod settings;
mod sse;

pub use answer::{AnswerReader, Read};
pub use behaviour::AiStream;
pub use error::AiError;
pub use settings::{AiOptions, AiSettings, AiSettingsError, DEFAULT_KEY_ENV, DEFAULT_TIMEOUT, MAX_COUNT, MAX_RATE};
