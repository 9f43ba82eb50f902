//! One breakpoint: where it holds (route, direction), what (a matcher, or every whole
//! data message), and for how long at most.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use wsgate_core::Direction;
use wsgate_rules::matcher::{Matcher, MatcherError};

/// How long a frame waits for an operator unless the breakpoint says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest a breakpoint may hold a frame: a session's direction stands still for
/// as long, and an operator who walked away should not freeze it for longer.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// The directions a breakpoint holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Way {
    #[default]
    Both,
    ClientToUpstream,
    UpstreamToClient,
}

impl Way {
    pub fn holds(self, d: Direction) -> bool {
        match self {
            Way::Both => true,
            Way::ClientToUpstream => d == Direction::ClientToUpstream,
            Way::UpstreamToClient => d == Direction::UpstreamToClient,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BreakpointError {
    #[error("match: {0}")]
    Match(#[from] MatcherError),
    #[error("equals needs a match that is a JSONPath (starting with $)")]
    EqualsWithoutPath,
    #[error("timeout_ms must be from 1 to 3600000 (an hour); got {0}")]
    Timeout(u64),
}

/// A breakpoint on one route.
#[derive(Debug)]
pub struct Breakpoint {
    pub id: u64,
    pub route: String,
    pub way: Way,
    /// The matcher as given (`None`: every whole data message).
    pub pattern: Option<String>,
    pub equals: Option<Value>,
    pub timeout: Duration,
    pub created_at: DateTime<Utc>,
    matcher: Option<Matcher>,
    hits: AtomicU64,
}

impl Breakpoint {
    /// Checks a breakpoint as an operator gave it; `id` is set when the board arms it.
    pub fn new(
        route: String,
        way: Way,
        pattern: Option<String>,
        equals: Option<Value>,
        timeout_ms: Option<u64>,
    ) -> Result<Breakpoint, BreakpointError> {
        let timeout = match timeout_ms {
            None => DEFAULT_TIMEOUT,
            Some(ms) if ms == 0 || u128::from(ms) > MAX_TIMEOUT.as_millis() => {
                return Err(BreakpointError::Timeout(ms));
            }
            Some(ms) => Duration::from_millis(ms),
        };
        let pattern = pattern.filter(|p| !p.is_empty());
        let matcher = match &pattern {
            Some(p) => Some(Matcher::parse(p, equals.clone())?),
            None if equals.is_some() => return Err(BreakpointError::EqualsWithoutPath),
            None => None,
        };
        Ok(Breakpoint {
            id: 0,
            route,
            way,
            pattern,
            equals,
            timeout,
            created_at: Utc::now(),
            matcher,
            hits: AtomicU64::new(0),
        })
    }

    /// Whether it holds this whole data message. Matchers read text: a binary message
    /// is matched when it is UTF-8, as the route's rules do.
    pub fn matches(&self, direction: Direction, payload: &[u8]) -> bool {
        if !self.way.holds(direction) {
            return false;
        }
        let hit = match &self.matcher {
            None => true,
            Some(m) => std::str::from_utf8(payload).is_ok_and(|t| m.matches(t).is_some()),
        };
        if hit {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    /// Messages it has held.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_directions_and_limits() {
        let bp = |p: Option<&str>, e: Option<Value>, t| Breakpoint::new("r".into(), Way::Both, p.map(Into::into), e, t);
        let every = bp(None, None, None).unwrap();
        assert_eq!(every.timeout, DEFAULT_TIMEOUT);
        assert!(every.matches(Direction::ClientToUpstream, b"\xff binary"));
        let empty = bp(Some(""), None, None).unwrap();
        assert!(empty.pattern.is_none() && empty.matches(Direction::UpstreamToClient, b"x"));

        let re = bp(Some("hold-me"), None, Some(5)).unwrap();
        assert!(re.matches(Direction::ClientToUpstream, b"please hold-me"));
        assert!(!re.matches(Direction::ClientToUpstream, b"pass"));
        assert_eq!(re.hits(), 1);

        let path = bp(Some("$.type"), Some(Value::from("order")), None).unwrap();
        assert!(path.matches(Direction::ClientToUpstream, br#"{"type":"order"}"#));
        assert!(!path.matches(Direction::ClientToUpstream, br#"{"type":"quote"}"#));

        let one_way = Breakpoint::new("r".into(), Way::UpstreamToClient, None, None, None).unwrap();
        assert!(!one_way.matches(Direction::ClientToUpstream, b"x"));
        assert!(one_way.matches(Direction::UpstreamToClient, b"x"));

        assert!(matches!(bp(Some("("), None, None), Err(BreakpointError::Match(_))));
        assert!(matches!(bp(Some("$["), None, None), Err(BreakpointError::Match(_))));
        assert_eq!(bp(None, Some(Value::Null), None).unwrap_err(), BreakpointError::EqualsWithoutPath);
        assert!(matches!(bp(Some("x"), Some(Value::Null), None), Err(BreakpointError::Match(_))));
        assert_eq!(bp(None, None, Some(0)).unwrap_err(), BreakpointError::Timeout(0));
        assert_eq!(bp(None, None, Some(3_600_001)).unwrap_err(), BreakpointError::Timeout(3_600_001));
        assert!(bp(None, None, Some(3_600_000)).is_ok());
    }
}
