//! What history keeps of each message's payload: chosen per route, because a busy
//! feed whose timing matters more than its content should not cost what a debugging
//! session does.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;

/// `full` (every payload, up to the store's cap), `headers` (opcode, size, time and
/// flags only: enough for timing and lifecycle debugging at any rate) or `sample:N`
/// (one message in N kept whole — the first, then every Nth — the others as headers).
/// Applied by the recorder only: the live stream always shows payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PayloadPolicy {
    #[default]
    Full,
    Headers,
    Sample(NonZeroU32),
}

impl PayloadPolicy {
    /// Whether the message numbered `seq` (from 1) keeps its payload.
    #[inline]
    pub fn keeps(self, seq: u64) -> bool {
        match self {
            Self::Full => true,
            Self::Headers => false,
            Self::Sample(n) => seq.saturating_sub(1).is_multiple_of(u64::from(n.get())),
        }
    }
}

/// Why a payload policy did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a payload policy: use full, headers, or sample:N (keep 1 message in N whole, N >= 1)")]
pub struct BadPayloadPolicy(pub String);

impl FromStr for PayloadPolicy {
    type Err = BadPayloadPolicy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadPayloadPolicy(s.to_owned());
        match s.trim().to_ascii_lowercase().as_str() {
            "full" => Ok(Self::Full),
            "headers" => Ok(Self::Headers),
            other => {
                let n = other.strip_prefix("sample:").ok_or_else(bad)?;
                n.trim().parse::<NonZeroU32>().map(Self::Sample).map_err(|_| bad())
            }
        }
    }
}

impl fmt::Display for PayloadPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full => f.write_str("full"),
            Self::Headers => f.write_str("headers"),
            Self::Sample(n) => write!(f, "sample:{n}"),
        }
    }
}

impl serde::Serialize for PayloadPolicy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PayloadPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_print_and_keep_what_they_say() {
        for s in ["full", "headers", "sample:1", "sample:100"] {
            assert_eq!(s.parse::<PayloadPolicy>().unwrap().to_string(), s);
        }
        assert_eq!(" Headers ".parse::<PayloadPolicy>(), Ok(PayloadPolicy::Headers));
        for bad in ["", "none", "sample", "sample:0", "sample:-1", "sample:x", "sample:99999999999"] {
            assert!(bad.parse::<PayloadPolicy>().is_err(), "{bad:?}");
        }
        let kept = |p: &str| (1..=7).filter(|&s| p.parse::<PayloadPolicy>().unwrap().keeps(s)).collect::<Vec<_>>();
        assert_eq!(kept("full"), [1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(kept("headers"), [0u64; 0]);
        assert_eq!(kept("sample:3"), [1, 4, 7]);
    }
}
