//! Why a transcript line was refused.

use crate::line::FrameType;

/// A line the reader refused, or a read that failed: which line, and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("transcript line {line}: {kind}")]
pub struct TranscriptError {
    /// 1-based, counting blank lines too (what an editor shows).
    pub line: u64,
    pub kind: ErrorKind,
}

/// What is wrong with a line.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    /// The underlying reader failed; the reader stops.
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    /// The line is longer than the reader's limit; the reader stops (it cannot tell
    /// where the next line starts without reading this one whole).
    #[error("longer than {max} bytes")]
    TooLong { max: usize },
    #[error("not a JSON object (each line is one `{{..}}`)")]
    NotAnObject,
    /// Not JSON, or a known field with the wrong type or value (serde's message names
    /// the field or value and the column).
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("missing `{0}`")]
    Missing(&'static str),
    #[error("format version {found} is newer than this wsgate reads (up to {supported}); upgrade wsgate")]
    NewerVersion { found: u64, supported: u32 },
    #[error("format version 0 does not exist (the first is 1)")]
    VersionZero,
    #[error("the first line must describe the session (`\"type\":\"session\"`), not a frame")]
    HeaderNotFirst,
    #[error("a second session line (only the first line describes the session)")]
    HeaderAgain,
    #[error("`{field}` is out of range (years 0000 to 9999)")]
    DateOutOfRange { field: &'static str },
    #[error("`t` is out of range (at most about 8.9 years, ±2^48 µs)")]
    TimeOutOfRange,
    #[error("`opcode` {found} does not match type {ty} (opcode {})", ty.opcode())]
    OpcodeMismatch { found: u8, ty: FrameType },
    #[error("a {0} frame needs its payload in `text` or `base64`")]
    NoPayload(FrameType),
    #[error("a {0} frame has both `text` and `base64` (exactly one holds the payload)")]
    TwoPayloads(FrameType),
    #[error("`base64` is not standard padded base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("a close frame's payload is `code` and `reason`, not `{0}`")]
    PayloadOnClose(&'static str),
    #[error("`{field}` belongs on close frames, not on a {ty} frame")]
    CloseFieldOnData { field: &'static str, ty: FrameType },
    #[error("`reason` without `code` (an empty close frame has neither)")]
    ReasonWithoutCode,
}
