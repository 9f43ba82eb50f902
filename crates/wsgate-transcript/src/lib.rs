//! The JSONL transcript of a session, as a typed format: what
//! `GET /api/sessions/{id}/export` and `wsgate history export` write and
//! `wsgate mock --replay` reads (`docs/transcript.md`).
//!
//! A transcript is a [`Header`] line (`{"type":"session",..}`) followed by one
//! [`Frame`] line per frame the gateway saw. [`to_line`] and [`write`] encode a line;
//! [`Reader`] reads them back from any `BufRead`, naming the line and the fault of
//! anything it refuses ([`TranscriptError`]).
//!
//! The format only grows: fields are added, never renamed or removed, so the reader
//! ignores fields it does not know and refuses a `version` newer than [`VERSION`].
//!
//! This crate knows no other wsgate crate: the store converts its rows into these
//! types, and a handler can read a transcript without depending on the store.

mod error;
mod line;
mod read;
mod write;

pub use error::{ErrorKind, TranscriptError};
pub use line::{Close, Direction, Frame, FrameType, Header, Initiator, Line, Offset, Payload, SessionKind};
pub use read::{DEFAULT_MAX_LINE, Reader, parse_line};
pub use write::{Encode, to_line, write};

/// The format version this crate writes and the newest it reads.
pub const VERSION: u32 = 1;
