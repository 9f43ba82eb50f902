//! A checked [`FaultSpec`] made ready to apply: per direction, what each message
//! risks. Built once per change of a route's faults and shared by its sessions.

use std::time::Duration;

use rand::RngExt as _;
use rand_distr::Distribution as _;

use crate::spec::{FaultDirection, FaultError, FaultSpec};

/// One direction of a session, as faults see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// What the client receives (from the upstream, or the mock).
    ToClient = 0,
    /// What the client sends.
    FromClient = 1,
}

impl Flow {
    fn applies(self, d: FaultDirection) -> bool {
        match d {
            FaultDirection::Both => true,
            FaultDirection::ToClient => self == Flow::ToClient,
            FaultDirection::FromClient => self == Flow::FromClient,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Delay {
    Fixed(Duration),
    /// In seconds.
    Uniform(rand_distr::Uniform<f64>),
    /// In seconds; negative draws are 0.
    Normal(rand_distr::Normal<f64>),
}

impl Delay {
    pub(crate) fn sample(&self, rng: &mut impl rand::Rng) -> Duration {
        let secs = match self {
            Delay::Fixed(d) => return *d,
            Delay::Uniform(u) => u.sample(rng),
            Delay::Normal(n) => n.sample(rng),
        };
        Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(crate::spec::MAX_DELAY).min(crate::spec::MAX_DELAY)
    }
}

/// What one direction's messages risk.
#[derive(Debug, Clone, Default)]
pub(crate) struct FlowPlan {
    pub latency: Option<Delay>,
    pub drop: f64,
    pub duplicate: f64,
    /// (rate, bytes kept)
    pub truncate: Option<(f64, usize)>,
    pub throttle: Option<u64>,
}

impl FlowPlan {
    pub(crate) fn is_empty(&self) -> bool {
        self.latency.is_none()
            && self.drop == 0.0
            && self.duplicate == 0.0
            && self.truncate.is_none()
            && self.throttle.is_none()
    }
}

/// How sessions end early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisconnectPlan {
    pub after_messages: Option<u64>,
    pub after: Option<Duration>,
    /// `None`: abrupt (no close frame).
    pub close: Option<(u16, String)>,
}

/// A route's faults, ready to apply.
#[derive(Debug, Clone)]
pub struct Plan {
    pub spec: FaultSpec,
    pub(crate) flows: [FlowPlan; 2],
    pub disconnect: Option<DisconnectPlan>,
}

/// The close code a disconnect sends when its spec names none: 1011, "the server
/// met a condition that prevented it from fulfilling the request".
pub const DISCONNECT_CODE: u16 = 1011;

impl Plan {
    pub fn new(spec: FaultSpec) -> Result<Plan, FaultError> {
        spec.check()?;
        let flows = [Flow::ToClient, Flow::FromClient].map(|flow| {
            let mut p = FlowPlan::default();
            if let Some(l) = spec.latency.iter().find(|l| flow.applies(l.direction)) {
                p.latency = match (l.fixed, l.uniform, l.normal) {
                    (Some(d), _, _) => Some(Delay::Fixed(d)),
                    (_, Some(u), _) => rand_distr::Uniform::new_inclusive(u.min.as_secs_f64(), u.max.as_secs_f64())
                        .ok()
                        .map(Delay::Uniform),
                    (_, _, Some(n)) => {
                        rand_distr::Normal::new(n.mean.as_secs_f64(), n.stddev.as_secs_f64()).ok().map(Delay::Normal)
                    }
                    _ => None,
                };
            }
            let rate = |c: Option<crate::spec::Chance>| c.filter(|c| flow.applies(c.direction)).map_or(0.0, |c| c.rate);
            p.drop = rate(spec.drop);
            p.duplicate = rate(spec.duplicate);
            p.truncate = spec.truncate.filter(|t| flow.applies(t.direction)).map(|t| (t.rate, t.bytes));
            p.throttle = spec.throttle.filter(|t| flow.applies(t.direction)).map(|t| t.bytes_per_sec);
            p
        });
        let disconnect = spec.disconnect.as_ref().map(|d| DisconnectPlan {
            after_messages: d.after_messages,
            after: d.after,
            close: (!d.abrupt).then(|| {
                let reason = d.reason.clone().unwrap_or_else(|| "fault: disconnect".to_owned());
                (d.code.unwrap_or(DISCONNECT_CODE), reason)
            }),
        });
        Ok(Plan { spec, flows, disconnect })
    }

    /// Whether sessions have anything to apply (refusals act before there is one).
    pub(crate) fn acts_on_sessions(&self) -> bool {
        self.disconnect.is_some() || self.flows.iter().any(|f| !f.is_empty())
    }
}

/// Draws `true` with probability `p` (no draw at all for 0, so a fault that is off
/// does not shift the others' random sequence).
#[inline]
pub(crate) fn chance(rng: &mut impl rand::Rng, p: f64) -> bool {
    p > 0.0 && (p >= 1.0 || rng.random::<f64>() < p)
}
