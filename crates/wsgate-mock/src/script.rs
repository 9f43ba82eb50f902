//! A replay script: what a mock session sends, what it waits for, and when. Read
//! once when the mock starts; every session plays its own copy of the schedule.
//!
//! Two formats, told apart by the first line:
//!
//! - **wsgate's transcript** (`docs/transcript.md`, what `wsgate history export`
//!   writes): a session line, then frames. Frames the peer sent *to* the client
//!   (`upstream_to_client`, `gateway_to_client`) are replayed as recorded, byte for
//!   byte, at their `t`; frames the client sent (`client_to_upstream`,
//!   `client_to_gateway`) become waits for the client's next message; the session's
//!   close frame from the peer's side is replayed as a close with its code.
//! - **MockForge's lines**: `{"ts":0,"dir":"out","text":"HELLO {{uuid}}","waitFor":"^READY$"}`.
//!   `ts` is milliseconds from the session's start (a schedule, not a pause after
//!   each line); `dir` is `out` (sent to the client, the default) or `in` (a message
//!   the mock waits for); `text` is templated (`template.rs`), `base64` is a binary
//!   message; `waitFor` (a regex, or a JSONPath starting with `$`, with `equals`)
//!   makes an `out` line wait for a matching client message before it is sent;
//!   `timeout` (ms) and `onTimeout` (`"continue"`, or `{"close": CODE, "reason": ".."}`)
//!   bound that wait; `close` (`1000` or `{"code": 1000, "reason": "bye"}`) closes.
//!
//! Every refused line is a [`ScriptError`] naming the file, the line and what is
//! wrong with it, so `wsgate mock --replay` exits at once rather than failing a
//! client later.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;
use wsgate_transcript::{Line, Payload};

use wsgate_rules::matcher::Matcher;
use wsgate_rules::template::Template;

/// A line longer than this is refused (a transcript's own limit is 64 MiB).
const MAX_LINE: usize = 64 << 20;

#[derive(Debug)]
pub struct Script {
    pub steps: Vec<Step>,
}

#[derive(Debug)]
pub struct Step {
    /// The script's line, for logs and errors.
    pub line: u64,
    /// When it is due, from the session's start (before `--speed`).
    pub at: Duration,
    /// Waited for first, when set.
    pub wait: Option<Wait>,
    pub action: Action,
}

#[derive(Debug)]
pub enum Action {
    Text(Template),
    /// A recorded text message, sent as recorded (no template expansion).
    RecordedText(Bytes),
    Binary(Bytes),
    Close {
        code: u16,
        reason: String,
    },
    /// Nothing to send: the step only waits (`dir: in`, a client frame of a transcript).
    Nothing,
}

#[derive(Debug)]
pub struct Wait {
    /// `None`: any text or binary message from the client.
    pub matcher: Option<Matcher>,
    pub timeout: Option<Duration>,
    pub on_timeout: OnTimeout,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnTimeout {
    /// Go on with the next step as if the message had come.
    Continue,
    Close {
        code: u16,
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ScriptError {
    pub file: String,
    /// 1-based; 0 for the file as a whole (cannot be read, empty).
    pub line: u64,
    pub message: String,
}

/// One MockForge line, as written (unknown fields are refused: a typo such as
/// `waitfor` would otherwise silently never wait).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct MfLine {
    #[serde(default)]
    ts: f64,
    #[serde(default)]
    dir: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    base64: Option<String>,
    #[serde(default)]
    wait_for: Option<String>,
    #[serde(default)]
    equals: Option<serde_json::Value>,
    #[serde(default)]
    timeout: Option<f64>,
    #[serde(default)]
    on_timeout: Option<serde_json::Value>,
    #[serde(default)]
    close: Option<serde_json::Value>,
}

impl Script {
    /// Reads and checks the script at `path`; `env` resolves `{{env NAME}}`.
    pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Script, ScriptError> {
        let file = path.display().to_string();
        let text = std::fs::read(path).map_err(|e| ScriptError {
            file: file.clone(),
            line: 0,
            message: format!("cannot read the script: {e}"),
        })?;
        Self::parse(&file, &text, env)
    }

    /// Parses a script's bytes; `file` names it in errors.
    pub fn parse(file: &str, text: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Script, ScriptError> {
        let err = |line: u64, message: String| ScriptError { file: file.to_owned(), line, message };
        let first = text
            .split(|b| *b == b'\n')
            .map(|l| l.trim_ascii())
            .find(|l| !l.is_empty())
            .ok_or_else(|| err(0, "the script is empty: expected JSON lines (docs/mock.md)".into()))?;
        let is_transcript = serde_json::from_slice::<serde_json::Value>(first)
            .ok()
            .is_some_and(|v| v.get("type").and_then(|t| t.as_str()) == Some("session"));
        let steps = if is_transcript { transcript_steps(text, &err)? } else { mockforge_steps(text, env, &err)? };
        if steps.is_empty() {
            return Err(err(0, "the script has no steps".into()));
        }
        Ok(Script { steps })
    }
}

fn transcript_steps(text: &[u8], err: &dyn Fn(u64, String) -> ScriptError) -> Result<Vec<Step>, ScriptError> {
    let mut reader = wsgate_transcript::Reader::new(text).with_max_line(MAX_LINE);
    let mut steps = Vec::new();
    // A client message waited for stays pending until the next step sends: several
    // client frames in a row are waited for one by one.
    loop {
        let line = match reader.next() {
            None => break,
            Some(Err(e)) => return Err(err(e.line, e.kind.to_string())),
            Some(Ok(l)) => l,
        };
        let number = reader.line();
        let Line::Frame(f) = line else { continue };
        let at = Duration::from_micros(f.t.micros().max(0) as u64);
        let from_client = f.dir.is_from_client();
        // A frame a fault or rule dropped never reached the client: the replay does
        // not send it either.
        if !from_client && f.marks.iter().any(|m| m == "dropped") {
            continue;
        }
        let action = match (&f.payload, from_client) {
            (Payload::Text(_) | Payload::Binary(_) | Payload::Continuation(_), true) => {
                steps.push(Step {
                    line: number,
                    at,
                    wait: Some(Wait { matcher: None, timeout: None, on_timeout: OnTimeout::Continue }),
                    action: Action::Nothing,
                });
                continue;
            }
            // The client's own close, pings and pongs are the client's business.
            (_, true) => continue,
            (Payload::Text(t), false) => Action::RecordedText(t.clone()),
            (Payload::Binary(b), false) => Action::Binary(b.clone()),
            (Payload::Close(c), false) => match c {
                Some(c) => Action::Close { code: c.code, reason: c.reason.clone() },
                None => Action::Close { code: 1000, reason: String::new() },
            },
            // Fragments, pings and pongs are the connection's, not the conversation's.
            (_, false) => continue,
        };
        steps.push(Step { line: number, at, wait: None, action });
    }
    Ok(steps)
}

fn mockforge_steps(
    text: &[u8],
    env: &dyn Fn(&str) -> Option<String>,
    err: &dyn Fn(u64, String) -> ScriptError,
) -> Result<Vec<Step>, ScriptError> {
    let mut steps = Vec::new();
    for (i, raw) in text.split(|b| *b == b'\n').enumerate() {
        let number = i as u64 + 1;
        let raw = raw.trim_ascii();
        if raw.is_empty() || raw.starts_with(b"//") || raw.starts_with(b"#") {
            continue;
        }
        if raw.len() > MAX_LINE {
            return Err(err(number, format!("the line is longer than {MAX_LINE} bytes")));
        }
        let l: MfLine = serde_json::from_slice(raw).map_err(|e| {
            err(number, format!("not a script line ({e}); expected {{\"ts\":MS,\"dir\":\"out\",\"text\":\"...\"}}"))
        })?;
        steps.push(mockforge_step(number, l, env).map_err(|m| err(number, m))?);
    }
    Ok(steps)
}

fn mockforge_step(line: u64, l: MfLine, env: &dyn Fn(&str) -> Option<String>) -> Result<Step, String> {
    if !(l.ts.is_finite() && l.ts >= 0.0 && l.ts < 1e12) {
        return Err(format!("`ts` must be milliseconds from the session's start (0 or more), not {}", l.ts));
    }
    let at = Duration::from_secs_f64(l.ts / 1000.0);
    let inbound = match l.dir.as_deref() {
        None | Some("out") => false,
        Some("in") => true,
        Some(other) => {
            return Err(format!("`dir` is \"out\" (sent to the client) or \"in\" (waited for), not {other:?}"));
        }
    };
    let timeout = match l.timeout {
        None => None,
        Some(ms) if ms.is_finite() && ms > 0.0 && ms < 1e12 => Some(Duration::from_secs_f64(ms / 1000.0)),
        Some(ms) => return Err(format!("`timeout` must be a positive number of milliseconds, not {ms}")),
    };
    let on_timeout = match &l.on_timeout {
        None => OnTimeout::Continue,
        Some(v) => on_timeout(v)?,
    };
    if l.on_timeout.is_some() && timeout.is_none() {
        return Err("`onTimeout` needs a `timeout` (milliseconds)".into());
    }
    let matcher = match &l.wait_for {
        Some(spec) => Some(Matcher::parse(spec, l.equals.clone()).map_err(|e| format!("`waitFor`: {e}"))?),
        None if l.equals.is_some() => return Err("`equals` needs a `waitFor` JSONPath".into()),
        None => None,
    };
    let payloads = usize::from(l.text.is_some()) + usize::from(l.base64.is_some()) + usize::from(l.close.is_some());
    if payloads > 1 {
        return Err("a line has one of `text`, `base64` and `close`".into());
    }
    if inbound {
        if l.base64.is_some() || l.close.is_some() {
            return Err("an `in` line waits for the client: it has `waitFor` or `text`, not `base64` or `close`".into());
        }
        // `text` on an `in` line is the exact message expected.
        let matcher = match (matcher, &l.text) {
            (Some(m), _) => Some(m),
            (None, Some(t)) => {
                Some(Matcher::parse(&format!("^{}$", regex::escape(t)), None).map_err(|e| format!("`text`: {e}"))?)
            }
            (None, None) => None,
        };
        return Ok(Step { line, at, wait: Some(Wait { matcher, timeout, on_timeout }), action: Action::Nothing });
    }
    let action = if let Some(t) = &l.text {
        Action::Text(Template::parse(t, env).map_err(|e| format!("`text`: {e}"))?)
    } else if let Some(b) = &l.base64 {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b)
            .map_err(|e| format!("`base64` is not standard padded base64: {e}"))?;
        Action::Binary(bytes.into())
    } else if let Some(c) = &l.close {
        let (code, reason) = close_of(c)?;
        Action::Close { code, reason }
    } else if matcher.is_some() {
        Action::Nothing
    } else {
        return Err("an `out` line sends `text`, `base64` or `close`".into());
    };
    let wait = (matcher.is_some() || timeout.is_some()).then_some(Wait { matcher, timeout, on_timeout });
    Ok(Step { line, at, wait, action })
}

fn on_timeout(v: &serde_json::Value) -> Result<OnTimeout, String> {
    if v.as_str() == Some("continue") {
        return Ok(OnTimeout::Continue);
    }
    match v.get("close") {
        Some(code) => {
            let (code, _) = close_of(code)?;
            let reason = v.get("reason").and_then(|r| r.as_str()).unwrap_or("timeout").to_owned();
            check_reason(&reason)?;
            Ok(OnTimeout::Close { code, reason })
        }
        None => Err(format!("`onTimeout` is \"continue\" or {{\"close\": CODE, \"reason\": \"...\"}}, not {v}")),
    }
}

/// A close as the script gives it: `1000` or `{"code": 1000, "reason": "bye"}`.
fn close_of(v: &serde_json::Value) -> Result<(u16, String), String> {
    let (code, reason) = match v {
        serde_json::Value::Object(o) => {
            (o.get("code").and_then(|c| c.as_u64()), o.get("reason").and_then(|r| r.as_str()).unwrap_or(""))
        }
        other => (other.as_u64(), ""),
    };
    let code = code
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| wsgate_protocol::CloseCode::is_sendable(*c))
        .ok_or_else(|| format!("a close code is 1000-1003, 1007-1014 or 3000-4999, not {v}"))?;
    check_reason(reason)?;
    Ok((code, reason.to_owned()))
}

fn check_reason(reason: &str) -> Result<(), String> {
    // The close frame's payload is at most 125 bytes, two of them the code.
    if reason.len() > 123 {
        return Err(format!("a close reason is at most 123 bytes, not {}", reason.len()));
    }
    Ok(())
}
