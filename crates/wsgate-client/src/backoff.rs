//! Jittered exponential backoff between connection attempts.
//!
//! "Full jitter": before retry `n` (from 0) the wait is uniformly random in
//! `[0, min(max_delay, base · factorⁿ)]`. Of the usual schemes it spreads a crowd of
//! clients that lost the same server at the same moment the most evenly, so they do
//! not come back in synchronized waves. The random source is a seeded
//! [`fastrand::Rng`] that tests pass in, so delays are reproducible.

use std::time::Duration;

/// How retries are spaced and when to give up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    /// Ceiling of the first retry's delay.
    pub base: Duration,
    /// Growth of the ceiling per retry (≥ 1).
    pub factor: f64,
    /// Largest ceiling, however many retries.
    pub max_delay: Duration,
    /// Connection attempts in a row that may fail before giving up (≥ 1). A connection
    /// that succeeds starts the count again.
    pub max_attempts: u32,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self { base: Duration::from_millis(200), factor: 2.0, max_delay: Duration::from_secs(10), max_attempts: 5 }
    }
}

/// Why a [`BackoffPolicy`] cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidBackoff {
    #[error("max_attempts must be at least 1")]
    NoAttempts,
    #[error("the backoff factor must be a number of at least 1, not {0}")]
    Factor(f64),
    #[error("the largest delay ({max:?}) is below the base delay ({base:?})")]
    MaxBelowBase { base: Duration, max: Duration },
}

impl BackoffPolicy {
    pub fn validate(&self) -> Result<(), InvalidBackoff> {
        if self.max_attempts == 0 {
            return Err(InvalidBackoff::NoAttempts);
        }
        if !(self.factor.is_finite() && self.factor >= 1.0) {
            return Err(InvalidBackoff::Factor(self.factor));
        }
        if self.max_delay < self.base {
            return Err(InvalidBackoff::MaxBelowBase { base: self.base, max: self.max_delay });
        }
        Ok(())
    }

    /// The ceiling of retry `n`'s delay (from 0): `min(max_delay, base · factorⁿ)`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let exp = i32::try_from(retry).unwrap_or(i32::MAX);
        let secs = self.base.as_secs_f64() * self.factor.powi(exp);
        // Grows to infinity (or NaN for 0 · ∞) quickly: clamp before converting.
        if secs.is_finite() && secs < self.max_delay.as_secs_f64() {
            Duration::from_secs_f64(secs)
        } else {
            self.max_delay
        }
    }
}

/// The retry state of one connection: failures in a row and the random source.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    failures: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    /// A backoff seeded from the OS.
    pub fn new(policy: BackoffPolicy) -> Self {
        Self::with_rng(policy, fastrand::Rng::new())
    }

    /// A backoff drawing from `rng` (`fastrand::Rng::with_seed(n)` in tests).
    pub fn with_rng(policy: BackoffPolicy, rng: fastrand::Rng) -> Self {
        Self { policy, failures: 0, rng }
    }

    pub fn policy(&self) -> &BackoffPolicy {
        &self.policy
    }

    /// Attempts that failed in a row since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Records a failed attempt. Returns the wait before the next one, or `None` when
    /// `max_attempts` attempts in a row have now failed.
    pub fn on_failure(&mut self) -> Option<Duration> {
        self.failures = self.failures.saturating_add(1);
        if self.failures >= self.policy.max_attempts {
            return None;
        }
        Some(self.jitter(self.failures - 1))
    }

    /// Records that an established connection was lost: the count starts again, and
    /// the first reconnect waits at most `base`.
    pub fn on_lost(&mut self) -> Duration {
        self.failures = 0;
        self.jitter(0)
    }

    /// Records a successful connection.
    pub fn on_connected(&mut self) {
        self.failures = 0;
    }

    fn jitter(&mut self, retry: u32) -> Duration {
        let ceiling = self.policy.ceiling(retry);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.rng.u64(0..=nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_attempts: u32) -> BackoffPolicy {
        BackoffPolicy {
            base: Duration::from_millis(100),
            factor: 2.0,
            max_delay: Duration::from_millis(1000),
            max_attempts,
        }
    }

    #[test]
    fn ceilings_grow_exponentially_up_to_the_maximum() {
        let p = policy(10);
        let ms: Vec<u128> = (0..7).map(|n| p.ceiling(n).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000, 1000]);
        // Far past overflow of the float, still the maximum.
        assert_eq!(p.ceiling(u32::MAX), Duration::from_millis(1000));
        let flat = BackoffPolicy { factor: 1.0, ..p };
        assert_eq!(flat.ceiling(50), Duration::from_millis(100));
    }

    #[test]
    fn delays_are_full_jitter_below_the_ceiling_and_reproducible() {
        let run = |seed| {
            let mut b = Backoff::with_rng(policy(8), fastrand::Rng::with_seed(seed));
            std::iter::from_fn(|| b.on_failure()).collect::<Vec<_>>()
        };
        let a = run(7);
        // max_attempts 8: seven waits, between the eight attempts.
        assert_eq!(a.len(), 7);
        for (n, d) in a.iter().enumerate() {
            assert!(*d <= policy(8).ceiling(n as u32), "retry {n}: {d:?}");
        }
        assert_eq!(a, run(7), "same seed, same delays");
        assert_ne!(a, run(8), "another seed, other delays");
    }

    #[test]
    fn jitter_covers_the_whole_range() {
        // Full jitter, not "equal jitter": both halves of [0, ceiling] occur.
        let mut b = Backoff::with_rng(policy(2), fastrand::Rng::with_seed(1));
        let delays: Vec<Duration> = (0..200).map(|_| b.on_lost()).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(100)));
        assert!(delays.iter().any(|d| *d < Duration::from_millis(25)));
        assert!(delays.iter().any(|d| *d > Duration::from_millis(75)));
    }

    #[test]
    fn gives_up_after_max_attempts_in_a_row() {
        let mut b = Backoff::with_rng(policy(3), fastrand::Rng::with_seed(3));
        assert!(b.on_failure().is_some());
        assert!(b.on_failure().is_some());
        assert_eq!(b.on_failure(), None, "the third failure in a row is the last");
        assert_eq!(b.failures(), 3);
        // One attempt only: the first failure ends it.
        let mut once = Backoff::with_rng(policy(1), fastrand::Rng::with_seed(3));
        assert_eq!(once.on_failure(), None);
    }

    #[test]
    fn success_and_loss_start_the_count_again() {
        let mut b = Backoff::with_rng(policy(3), fastrand::Rng::with_seed(5));
        b.on_failure();
        b.on_failure();
        b.on_connected();
        assert_eq!(b.failures(), 0);
        assert!(b.on_failure().is_some() && b.on_failure().is_some());
        assert!(b.on_lost() <= Duration::from_millis(100));
        assert_eq!(b.failures(), 0);
        assert!(b.on_failure().is_some());
    }

    #[test]
    fn invalid_policies() {
        assert_eq!(policy(0).validate(), Err(InvalidBackoff::NoAttempts));
        assert!(matches!(BackoffPolicy { factor: 0.5, ..policy(1) }.validate(), Err(InvalidBackoff::Factor(_))));
        assert!(matches!(BackoffPolicy { factor: f64::NAN, ..policy(1) }.validate(), Err(InvalidBackoff::Factor(_))));
        let inverted = BackoffPolicy { max_delay: Duration::from_millis(10), ..policy(1) };
        assert!(matches!(inverted.validate(), Err(InvalidBackoff::MaxBelowBase { .. })));
        assert_eq!(BackoffPolicy::default().validate(), Ok(()));
    }
}
