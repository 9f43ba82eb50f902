//! A route's faults, changeable while it runs: the control API sets them
//! (`PUT /api/routes/{name}/faults`), sessions pick the change up at their next
//! message (one atomic load each while nothing changes), and the board keeps each
//! route's switch by name so a reload keeps what an operator set.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rand::SeedableRng as _;
use rand::rngs::StdRng;

use crate::plan::{Plan, chance};
use crate::spec::{FaultError, FaultSpec};

/// One route's faults.
#[derive(Debug, Default)]
pub struct FaultSwitch {
    /// Bumped on every change; 0: never set.
    version: AtomicU64,
    plan: RwLock<Option<Arc<Plan>>>,
    /// What the config said last, so a reload that leaves it as it was keeps what
    /// the API set since.
    configured: Mutex<Option<FaultSpec>>,
    /// Handshake refusals are drawn per connection, for the whole route.
    refusals: Mutex<Option<StdRng>>,
    /// The seed a spec without one gets: the route's own `--seed` (`mock.seed`,
    /// `proxy.seed`), so one seed makes every random choice of the route repeat.
    default_seed: Mutex<Option<u64>>,
}

impl FaultSwitch {
    /// The seed for specs that give none (the route's `--seed`); set before
    /// [`FaultSwitch::configure`].
    pub fn set_default_seed(&self, seed: Option<u64>) {
        *self.default_seed.lock().unwrap_or_else(|e| e.into_inner()) = seed;
    }

    /// Sets (or with `None`, or an empty spec, clears) the route's faults. A spec
    /// without a seed takes the route's (what [`FaultSwitch::spec`] then shows).
    pub fn set(&self, spec: Option<FaultSpec>) -> Result<(), FaultError> {
        let default_seed = *self.default_seed.lock().unwrap_or_else(|e| e.into_inner());
        let spec = spec.filter(|s| !s.is_empty()).map(|mut s| {
            s.seed = s.seed.or(default_seed);
            s
        });
        let plan = spec.map(Plan::new).transpose()?.map(Arc::new);
        let rng = plan.as_ref().and_then(|p| p.spec.refuse.map(|_| p.spec.seed));
        *self.refusals.lock().unwrap_or_else(|e| e.into_inner()) =
            rng.map(|seed| seed.map_or_else(rand::make_rng, StdRng::seed_from_u64));
        *self.plan.write().unwrap_or_else(|e| e.into_inner()) = plan;
        self.version.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// The config's faults for this route, at start and at each reload: applied when
    /// they differ from what the config said before (so an unchanged config does not
    /// undo what an operator set through the API).
    pub fn configure(&self, spec: Option<FaultSpec>) -> Result<(), FaultError> {
        if let Some(s) = &spec {
            s.check()?;
        }
        let mut configured = self.configured.lock().unwrap_or_else(|e| e.into_inner());
        if *configured == spec && self.version() != 0 {
            return Ok(());
        }
        self.set(spec.clone())?;
        *configured = spec;
        Ok(())
    }

    /// The faults in force, as set.
    pub fn spec(&self) -> Option<FaultSpec> {
        self.current().1.map(|p| p.spec.clone())
    }

    /// Whether faults were ever set on the route (sessions of a route that never had
    /// any skip them entirely).
    #[inline]
    pub fn ever_set(&self) -> bool {
        self.version() != 0
    }

    #[inline]
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub(crate) fn current(&self) -> (u64, Option<Arc<Plan>>) {
        let plan = self.plan.read().unwrap_or_else(|e| e.into_inner());
        (self.version(), plan.clone())
    }

    /// The status to refuse a new connection with, when a refusal fault strikes it.
    pub fn refuse(&self) -> Option<u16> {
        if self.version() == 0 {
            return None;
        }
        let (_, plan) = self.current();
        let refuse = plan?.spec.refuse?;
        let mut rng = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        chance(rng.as_mut()?, refuse.rate).then_some(refuse.status)
    }
}

/// Every route's switch, by route name: one per gateway, shared by the routes'
/// handlers and the control plane.
#[derive(Debug, Default)]
pub struct FaultBoard {
    routes: Mutex<HashMap<String, Arc<FaultSwitch>>>,
}

impl FaultBoard {
    /// The route's switch, made on first use and kept across reloads.
    pub fn switch(&self, route: &str) -> Arc<FaultSwitch> {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        routes.entry(route.to_owned()).or_default().clone()
    }

    /// The route's switch, if the route exists.
    pub fn get(&self, route: &str) -> Option<Arc<FaultSwitch>> {
        self.routes.lock().unwrap_or_else(|e| e.into_inner()).get(route).cloned()
    }

    /// Forgets routes a reload removed.
    pub fn retain(&self, keep: &dyn Fn(&str) -> bool) {
        self.routes.lock().unwrap_or_else(|e| e.into_inner()).retain(|name, _| keep(name));
    }

    /// Route names with faults in force, and their specs.
    pub fn active(&self) -> Vec<(String, FaultSpec)> {
        let routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = routes.iter().filter_map(|(n, s)| Some((n.clone(), s.spec()?))).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_repeat_with_a_seed_and_a_reload_keeps_what_the_api_set() {
        let spec = |s: &str| serde_yaml::from_str::<FaultSpec>(s).unwrap();
        let draws = |seed: u64| {
            let s = FaultSwitch::default();
            s.set(Some(spec(&format!("seed: {seed}\nrefuse: {{ status: 503, rate: 0.5 }}")))).unwrap();
            (0..64).map(|_| s.refuse()).collect::<Vec<_>>()
        };
        assert_eq!(draws(4), draws(4));
        assert!(draws(4).contains(&Some(503)) && draws(4).contains(&None));

        let s = FaultSwitch::default();
        assert_eq!(s.refuse(), None);
        s.configure(Some(spec("drop: { rate: 0.5 }"))).unwrap();
        s.set(Some(spec("drop: { rate: 1.0 }"))).unwrap();
        s.configure(Some(spec("drop: { rate: 0.5 }"))).unwrap();
        assert_eq!(s.spec().unwrap().drop.unwrap().rate, 1.0, "an unchanged config keeps the API's");
        s.configure(None).unwrap();
        assert_eq!(s.spec(), None, "a changed config applies");
        assert!(s.set(Some(spec("drop: { rate: 2.0 }"))).is_err());

        // The route's seed fills a spec without one, and not one with its own.
        s.set_default_seed(Some(9));
        s.set(Some(spec("drop: { rate: 0.5 }"))).unwrap();
        assert_eq!(s.spec().unwrap().seed, Some(9));
        s.set(Some(spec("seed: 3\ndrop: { rate: 0.5 }"))).unwrap();
        assert_eq!(s.spec().unwrap().seed, Some(3));
    }
}
