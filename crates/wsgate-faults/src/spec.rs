//! What a route's faults are, as written in a config file (`faults:` on a route) or
//! sent to the control API (`PUT /api/routes/{name}/faults`): one typed shape for
//! both, checked once by [`FaultSpec::check`] and compiled into a [`crate::Plan`].
//!
//! ```yaml
//! faults:
//!   seed: 42                                   # every random choice repeats
//!   latency:                                   # one, or a list (one per direction)
//!     - { fixed: 100ms, direction: to_client }
//!     - { uniform: { min: 10ms, max: 50ms }, direction: from_client }
//!     # or { normal: { mean: 50ms, stddev: 10ms } }
//!   drop: { rate: 0.1 }                        # direction: both by default
//!   duplicate: { rate: 0.05 }
//!   truncate: { rate: 0.2, bytes: 16 }
//!   throttle: { bytes_per_sec: 10000, direction: to_client }
//!   disconnect: { after_messages: 100, after: 30s, code: 1011, reason: chaos }  # or abrupt: true
//!   refuse: { status: 503, rate: 0.5 }
//! ```
//!
//! Directions are the client's: `to_client` is what the client receives (from the
//! upstream, or the mock), `from_client` what it sends.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Longest latency or disconnect delay accepted: a typo such as `100h` should not
/// park a session for days.
pub const MAX_DELAY: Duration = Duration::from_secs(3600);

/// A route's faults. Every field is optional; an empty spec injects nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct FaultSpec {
    /// Seed for every random choice: the same seed and the same messages give the
    /// same outcome. Without one, each session draws its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Added delay before delivery; messages keep their order.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "one_or_many")]
    pub latency: Vec<Latency>,
    /// Messages not delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drop: Option<Chance>,
    /// Messages delivered twice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<Chance>,
    /// Messages cut to their first `bytes` (text at a character boundary, so it stays
    /// valid UTF-8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncate: Option<Truncate>,
    /// Delivery limited to this many payload bytes per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttle: Option<Throttle>,
    /// End each session after a number of messages (both directions) or a time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disconnect: Option<Disconnect>,
    /// Refuse the WebSocket handshake with an HTTP status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refuse: Option<Refuse>,
}

/// Whose messages a fault acts on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum FaultDirection {
    /// What the client receives.
    ToClient,
    /// What the client sends.
    FromClient,
    #[default]
    Both,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Latency {
    /// The same delay for every message (`100ms`).
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "100ms"))]
    pub fixed: Option<Duration>,
    /// A delay drawn evenly between `min` and `max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uniform: Option<Uniform>,
    /// A delay drawn from a normal distribution (negative draws count as 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normal: Option<Normal>,
    #[serde(default)]
    pub direction: FaultDirection,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Uniform {
    #[serde(with = "humantime_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "10ms"))]
    pub min: Duration,
    #[serde(with = "humantime_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "50ms"))]
    pub max: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Normal {
    #[serde(with = "humantime_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "50ms"))]
    pub mean: Duration,
    #[serde(with = "humantime_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "10ms"))]
    pub stddev: Duration,
}

/// A fault that strikes each message with a probability.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Chance {
    /// From 0 (never) to 1 (every message).
    pub rate: f64,
    #[serde(default)]
    pub direction: FaultDirection,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Truncate {
    /// From 0 to 1; 1 when absent.
    #[serde(default = "always")]
    pub rate: f64,
    /// Bytes kept.
    pub bytes: usize,
    #[serde(default)]
    pub direction: FaultDirection,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Throttle {
    pub bytes_per_sec: u64,
    #[serde(default)]
    pub direction: FaultDirection,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Disconnect {
    /// After this many messages, counted in both directions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_messages: Option<u64>,
    /// After this long (from the session's start, or from when the faults were set,
    /// whichever is later).
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "30s"))]
    pub after: Option<Duration>,
    /// The close code sent to the client (and the upstream); 1011 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Drop the connections without a close frame (the client sees 1006).
    #[serde(default)]
    pub abrupt: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Refuse {
    /// The HTTP status answered instead of 101 (400–599).
    pub status: u16,
    /// From 0 to 1; 1 when absent.
    #[serde(default = "always")]
    pub rate: f64,
}

fn always() -> f64 {
    1.0
}

/// `latency:` takes one entry or a list. A visitor rather than an untagged enum, whose
/// error would say only "did not match any variant": this one says what is wrong.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Latency>, D::Error> {
    use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};

    struct OneOrMany;
    impl<'de> serde::de::Visitor<'de> for OneOrMany {
        type Value = Vec<Latency>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a latency ({fixed: 100ms}, {uniform: {min, max}}, {normal: {mean, stddev}}) or a list of them")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            Vec::deserialize(SeqAccessDeserializer::new(seq))
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            Latency::deserialize(MapAccessDeserializer::new(map)).map(|l| vec![l])
        }
    }
    d.deserialize_any(OneOrMany)
}

/// A spec that does not make sense: the field (a dotted path under `faults`), what
/// is wrong, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("faults.{field}: {problem} ({fix})")]
pub struct FaultError {
    pub field: String,
    pub problem: String,
    pub fix: &'static str,
}

fn bad(field: impl Into<String>, problem: impl Into<String>, fix: &'static str) -> FaultError {
    FaultError { field: field.into(), problem: problem.into(), fix }
}

fn check_rate(field: &str, rate: f64) -> Result<(), FaultError> {
    if (0.0..=1.0).contains(&rate) {
        Ok(())
    } else {
        Err(bad(
            format!("{field}.rate"),
            format!("{rate} is not a probability"),
            "a number from 0 (never) to 1 (always)",
        ))
    }
}

fn check_delay(field: &str, d: Duration) -> Result<(), FaultError> {
    if d <= MAX_DELAY { Ok(()) } else { Err(bad(field, format!("{d:?} is longer than the limit"), "at most 1h")) }
}

/// Whether `code` may be sent in a close frame (RFC 6455 §7.4).
pub fn sendable_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

impl FaultSpec {
    /// Checks every value; the first problem found is the error.
    pub fn check(&self) -> Result<(), FaultError> {
        for (i, l) in self.latency.iter().enumerate() {
            let field = if self.latency.len() == 1 { "latency".to_owned() } else { format!("latency[{i}]") };
            let set = [l.fixed.is_some(), l.uniform.is_some(), l.normal.is_some()];
            if set.iter().filter(|s| **s).count() != 1 {
                return Err(bad(
                    field,
                    "needs exactly one distribution",
                    "one of fixed: 100ms, uniform: {min, max}, normal: {mean, stddev}",
                ));
            }
            if let Some(d) = l.fixed {
                check_delay(&format!("{field}.fixed"), d)?;
            }
            if let Some(u) = l.uniform {
                check_delay(&format!("{field}.uniform.max"), u.max)?;
                if u.min > u.max {
                    return Err(bad(format!("{field}.uniform"), "min is above max", "min <= max"));
                }
            }
            if let Some(n) = l.normal {
                check_delay(&format!("{field}.normal.mean"), n.mean)?;
                check_delay(&format!("{field}.normal.stddev"), n.stddev)?;
            }
        }
        let directions = self.latency.iter().map(|l| l.direction);
        for (i, a) in directions.clone().enumerate() {
            if directions.clone().skip(i + 1).any(|b| overlap(a, b)) {
                return Err(bad(
                    "latency",
                    "two entries act on the same direction",
                    "one entry per direction: to_client, from_client (or one for both)",
                ));
            }
        }
        if let Some(c) = self.drop {
            check_rate("drop", c.rate)?;
        }
        if let Some(c) = self.duplicate {
            check_rate("duplicate", c.rate)?;
        }
        if let Some(t) = self.truncate {
            check_rate("truncate", t.rate)?;
        }
        if let Some(t) = self.throttle
            && t.bytes_per_sec == 0
        {
            return Err(bad(
                "throttle.bytes_per_sec",
                "0 would never deliver",
                "a positive number of bytes per second",
            ));
        }
        if let Some(d) = &self.disconnect {
            if d.after_messages.is_none() && d.after.is_none() {
                return Err(bad(
                    "disconnect",
                    "says neither when nor after how many messages",
                    "set after_messages: N or after: 30s",
                ));
            }
            if d.after_messages == Some(0) {
                return Err(bad(
                    "disconnect.after_messages",
                    "0 messages",
                    "at least 1 (or refuse: to refuse the handshake)",
                ));
            }
            if let Some(t) = d.after {
                check_delay("disconnect.after", t)?;
            }
            if let Some(code) = d.code {
                if d.abrupt {
                    return Err(bad(
                        "disconnect.code",
                        "an abrupt disconnect sends no close frame",
                        "drop code, or abrupt",
                    ));
                }
                if !sendable_close_code(code) {
                    return Err(bad(
                        "disconnect.code",
                        format!("{code} cannot be sent in a close frame"),
                        "1000-1003, 1007-1014 or 3000-4999",
                    ));
                }
            }
            if d.reason.as_ref().is_some_and(|r| r.len() > 123) {
                return Err(bad("disconnect.reason", "longer than a close frame holds", "at most 123 bytes"));
            }
        }
        if let Some(r) = self.refuse {
            check_rate("refuse", r.rate)?;
            if !(400..=599).contains(&r.status) {
                return Err(bad(
                    "refuse.status",
                    format!("{} is not an error status", r.status),
                    "an HTTP status from 400 to 599, e.g. 503",
                ));
            }
        }
        Ok(())
    }

    /// Whether it injects anything at all.
    pub fn is_empty(&self) -> bool {
        let FaultSpec { seed: _, latency, drop, duplicate, truncate, throttle, disconnect, refuse } = self;
        latency.is_empty()
            && drop.is_none()
            && duplicate.is_none()
            && truncate.is_none()
            && throttle.is_none()
            && disconnect.is_none()
            && refuse.is_none()
    }
}

fn overlap(a: FaultDirection, b: FaultDirection) -> bool {
    a == b || a == FaultDirection::Both || b == FaultDirection::Both
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Result<FaultSpec, String> {
        let spec: FaultSpec = serde_yaml::from_str(s).map_err(|e| e.to_string())?;
        spec.check().map_err(|e| e.to_string())?;
        Ok(spec)
    }

    #[test]
    fn the_documented_example_parses() {
        let spec = yaml(
            "seed: 42
latency:
  - { fixed: 100ms, direction: to_client }
  - { uniform: { min: 10ms, max: 50ms }, direction: from_client }
drop: { rate: 0.1 }
duplicate: { rate: 0.05 }
truncate: { rate: 0.2, bytes: 16 }
throttle: { bytes_per_sec: 10000, direction: to_client }
disconnect: { after_messages: 100, after: 30s, code: 1011, reason: chaos }
refuse: { status: 503, rate: 0.5 }
",
        )
        .unwrap();
        assert_eq!(spec.latency.len(), 2);
        assert_eq!(spec.latency[0].fixed, Some(Duration::from_millis(100)));
        assert_eq!(spec.drop.unwrap().direction, FaultDirection::Both);
        // One entry without a list.
        assert_eq!(yaml("latency: { normal: { mean: 50ms, stddev: 10ms } }").unwrap().latency.len(), 1);
        // JSON round trip (the control API's body).
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<FaultSpec>(&json).unwrap(), spec);
    }

    #[test]
    fn bad_specs_name_the_field_and_the_fix() {
        for (text, want) in [
            ("drop: { rate: 1.5 }", "faults.drop.rate: 1.5 is not a probability"),
            (
                "latency: { fixed: 1ms, uniform: { min: 1ms, max: 2ms } }",
                "faults.latency: needs exactly one distribution",
            ),
            ("latency: { uniform: { min: 5ms, max: 2ms } }", "faults.latency.uniform: min is above max"),
            (
                "latency: [ { fixed: 1ms }, { fixed: 2ms, direction: to_client } ]",
                "two entries act on the same direction",
            ),
            ("latency: { fixed: 2h }", "faults.latency.fixed"),
            ("refuse: { status: 200 }", "faults.refuse.status: 200 is not an error status"),
            ("disconnect: { abrupt: true }", "faults.disconnect: says neither"),
            ("disconnect: { after_messages: 3, code: 1006 }", "1006 cannot be sent"),
            ("disconnect: { after_messages: 3, code: 1000, abrupt: true }", "abrupt disconnect sends no close frame"),
            ("throttle: { bytes_per_sec: 0 }", "0 would never deliver"),
            ("dropp: { rate: 0.1 }", "unknown field `dropp`"),
            ("latency: { fixed: 1ms, direction: sideways }", "unknown variant `sideways`"),
        ] {
            let err = yaml(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
        assert!(FaultSpec::default().is_empty());
    }
}
