//! One session's faults: what happens to each of its messages, decided in the order
//! they come, from a random sequence of its own per direction — so with a seed, the
//! same messages meet the same faults however the two directions interleave.

use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng as _;
use rand::rngs::StdRng;
use tokio::time::Instant;

use crate::plan::{DisconnectPlan, Flow, Plan, chance};
use crate::switch::FaultSwitch;

/// What to do with one whole data message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decision {
    /// Not delivered.
    pub drop: bool,
    /// Delivered twice.
    pub duplicate: bool,
    /// Delivered cut to this many bytes ([`cut`]).
    pub truncate: Option<usize>,
    /// Delivered no sooner than this (latency, throttling). Later messages of the same
    /// direction are held behind it: order is kept.
    pub hold_until: Option<Instant>,
    /// End the session once this message is handled ([`SessionFaults::disconnect`] says how).
    pub disconnect: bool,
}

impl Decision {
    /// Whether it changes anything.
    pub fn is_nothing(&self) -> bool {
        *self == Decision::default()
    }
}

/// A session's view of its route's faults.
#[derive(Debug)]
pub struct SessionFaults {
    switch: Arc<FaultSwitch>,
    /// The switch's version this session applies.
    seen: u64,
    plan: Option<Arc<Plan>>,
    rng: [StdRng; 2],
    /// The last hold given in each direction: a later message is never due earlier.
    held_until: [Option<Instant>; 2],
    /// When each direction's throttle has delivered what it was given.
    throttle_free: [Option<Instant>; 2],
    messages: u64,
    /// When the current plan took effect for this session.
    since: Instant,
}

impl SessionFaults {
    pub fn new(switch: Arc<FaultSwitch>) -> Self {
        let mut s = Self {
            switch,
            seen: 0,
            plan: None,
            rng: [StdRng::seed_from_u64(0), StdRng::seed_from_u64(1)],
            held_until: [None; 2],
            throttle_free: [None; 2],
            messages: 0,
            since: Instant::now(),
        };
        s.refresh();
        s
    }

    /// Picks up a change of the route's faults (one atomic load when there is none);
    /// whether any fault acts on the session now.
    #[inline]
    pub fn active(&mut self) -> bool {
        if self.switch.version() != self.seen {
            self.refresh();
        }
        self.plan.is_some()
    }

    #[cold]
    fn refresh(&mut self) {
        let (version, plan) = self.switch.current();
        self.seen = version;
        self.plan = plan.filter(|p| p.acts_on_sessions());
        let seed = self.plan.as_ref().and_then(|p| p.spec.seed);
        self.rng = match seed {
            Some(s) => [StdRng::seed_from_u64(s), StdRng::seed_from_u64(s ^ 0x9e37_79b9_7f4a_7c15)],
            None => [rand::make_rng(), rand::make_rng()],
        };
        self.held_until = [None; 2];
        self.throttle_free = [None; 2];
        self.messages = 0;
        self.since = Instant::now();
    }

    /// Decides the fate of a `len`-byte data message going `flow`. Call only while
    /// [`SessionFaults::active`].
    pub fn decide(&mut self, flow: Flow, len: usize, now: Instant) -> Decision {
        let Some(plan) = &self.plan else { return Decision::default() };
        let f = flow as usize;
        let p = &plan.flows[f];
        let rng = &mut self.rng[f];
        let mut d = Decision::default();
        self.messages += 1;
        if let Some(DisconnectPlan { after_messages: Some(n), .. }) = &plan.disconnect {
            d.disconnect = self.messages >= *n;
        }
        if chance(rng, p.drop) {
            d.drop = true;
            return d;
        }
        d.duplicate = chance(rng, p.duplicate);
        let mut len = len;
        if let Some((rate, bytes)) = p.truncate
            && bytes < len
            && chance(rng, rate)
        {
            d.truncate = Some(bytes);
            len = bytes;
        }
        let mut due = now;
        if let Some(l) = &p.latency {
            due += l.sample(rng);
        }
        if let Some(rate) = p.throttle {
            // Delivered once its bytes have passed at the rate, after what came before.
            let sent = if d.duplicate { 2 * len } else { len } as f64;
            let start = self.throttle_free[f].map_or(now, |t| t.max(now));
            let free = start + Duration::from_secs_f64(sent / rate as f64);
            self.throttle_free[f] = Some(free);
            due = due.max(free);
        }
        if let Some(prev) = self.held_until[f] {
            due = due.max(prev);
        }
        if due > now {
            self.held_until[f] = Some(due);
            d.hold_until = Some(due);
        }
        d
    }

    /// When the session is to be ended by time, if it is.
    pub fn disconnect_at(&self) -> Option<Instant> {
        let after = self.plan.as_ref()?.disconnect.as_ref()?.after?;
        Some(self.since + after)
    }

    /// How a disconnect ends the session: a close code and reason, or `None` for
    /// abruptly (no close frame). Meaningful once a decision said `disconnect` or
    /// [`SessionFaults::disconnect_at`] came.
    pub fn disconnect(&self) -> Option<(u16, String)> {
        self.plan.as_ref()?.disconnect.as_ref()?.close.clone()
    }
}

/// `payload` cut to at most `bytes`; a text message at a character boundary, so it
/// stays valid UTF-8 (the receiver would otherwise fail the connection with 1007,
/// which is a different fault).
pub fn cut(payload: &bytes::Bytes, bytes: usize, text: bool) -> bytes::Bytes {
    let mut end = bytes.min(payload.len());
    if text && let Ok(s) = std::str::from_utf8(payload) {
        while !s.is_char_boundary(end) {
            end -= 1;
        }
    }
    payload.slice(..end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::FaultSpec;

    fn switch(yaml: &str) -> Arc<FaultSwitch> {
        let spec: FaultSpec = serde_yaml::from_str(yaml).unwrap();
        let s = Arc::new(FaultSwitch::default());
        s.set(Some(spec)).unwrap();
        s
    }

    fn outcomes(s: &Arc<FaultSwitch>, n: usize) -> Vec<Decision> {
        let mut f = SessionFaults::new(s.clone());
        assert!(f.active());
        let now = Instant::now();
        (0..n).map(|i| f.decide(if i % 3 == 0 { Flow::FromClient } else { Flow::ToClient }, 100, now)).collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_outcome_and_another_differs() {
        let spec = "seed: 7\ndrop: { rate: 0.3 }\nduplicate: { rate: 0.3 }\ntruncate: { rate: 0.5, bytes: 10 }";
        let a = outcomes(&switch(spec), 200);
        assert_eq!(a, outcomes(&switch(spec), 200));
        assert_ne!(a, outcomes(&switch(&spec.replace("seed: 7", "seed: 8")), 200));
        let drops = a.iter().filter(|d| d.drop).count();
        assert!((30..90).contains(&drops), "{drops} of 200 dropped at 0.3");
        assert!(a.iter().any(|d| d.truncate == Some(10)));
    }

    #[test]
    fn directions_draw_from_their_own_sequences() {
        // One direction's outcomes do not depend on how many messages the other had.
        let s = switch("seed: 1\ndrop: { rate: 0.5 }");
        let now = Instant::now();
        let mut a = SessionFaults::new(s.clone());
        let mut b = SessionFaults::new(s);
        a.active();
        b.active();
        for _ in 0..17 {
            b.decide(Flow::FromClient, 1, now);
        }
        let to_a: Vec<_> = (0..50).map(|_| a.decide(Flow::ToClient, 1, now).drop).collect();
        let to_b: Vec<_> = (0..50).map(|_| b.decide(Flow::ToClient, 1, now).drop).collect();
        assert_eq!(to_a, to_b);
    }

    #[test]
    fn latency_keeps_order_and_throttle_spaces_messages() {
        let s = switch("seed: 3\nlatency: { uniform: { min: 0ms, max: 100ms }, direction: to_client }");
        let mut f = SessionFaults::new(s);
        f.active();
        let now = Instant::now();
        let dues: Vec<_> = (0..100).map(|_| f.decide(Flow::ToClient, 1, now).hold_until.unwrap_or(now)).collect();
        assert!(dues.windows(2).all(|w| w[0] <= w[1]), "a later message never overtakes");
        assert_eq!(f.decide(Flow::FromClient, 1, now).hold_until, None, "the other direction is untouched");

        let s = switch("throttle: { bytes_per_sec: 1000 }");
        let mut f = SessionFaults::new(s);
        f.active();
        let d1 = f.decide(Flow::ToClient, 500, now).hold_until.unwrap();
        let d2 = f.decide(Flow::ToClient, 500, now).hold_until.unwrap();
        assert_eq!((d1 - now, d2 - now), (Duration::from_millis(500), Duration::from_secs(1)));
    }

    #[test]
    fn disconnect_after_messages_and_time_and_switching() {
        let s = switch("disconnect: { after_messages: 3, after: 10s }");
        let mut f = SessionFaults::new(s.clone());
        f.active();
        let now = Instant::now();
        let d: Vec<_> = (0..3).map(|_| f.decide(Flow::ToClient, 1, now).disconnect).collect();
        assert_eq!(d, [false, false, true]);
        assert_eq!(f.disconnect(), Some((1011, "fault: disconnect".to_owned())));
        assert!(f.disconnect_at().is_some());
        // Switched off at run time: the session sees it at its next message.
        s.set(None).unwrap();
        assert!(!f.active());
        s.set(Some(serde_yaml::from_str("disconnect: { after_messages: 1, abrupt: true }").unwrap())).unwrap();
        assert!(f.active());
        assert!(f.decide(Flow::FromClient, 1, now).disconnect);
        assert_eq!(f.disconnect(), None, "abrupt: no close frame");
    }

    #[test]
    fn cut_keeps_text_whole_characters() {
        let b = bytes::Bytes::from("héllo");
        assert_eq!(&cut(&b, 2, true)[..], b"h");
        assert_eq!(&cut(&b, 2, false)[..], b"h\xc3");
        assert_eq!(&cut(&b, 100, true)[..], "héllo".as_bytes());
    }
}
