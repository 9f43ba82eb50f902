//! The gateway's breakpoints, each route's armed list, and the frames held now.
//!
//! Sessions read their route's list through [`RouteIntercepts`]: a version number
//! they compare on every message and a list they copy only when it changed. The held
//! frames are listed here for the API; the frames themselves wait in their sessions'
//! pumps, which alone decide when one leaves (released, expired, session over) and
//! take it off this list.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use wsgate_core::{Direction, SessionId};

use crate::breakpoint::Breakpoint;

/// At most this many breakpoints per gateway: each one is tested against every
/// message of its route.
pub const MAX_BREAKPOINTS: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterceptError {
    #[error("no breakpoint {0}")]
    NoBreakpoint(u64),
    #[error("already {MAX_BREAKPOINTS} breakpoints: remove one first")]
    TooMany,
}

/// A frame held at a breakpoint, as the API lists it.
#[derive(Debug, Clone)]
pub struct HeldFrame {
    pub id: u64,
    pub breakpoint: u64,
    pub session: SessionId,
    pub route: String,
    pub direction: Direction,
    pub binary: bool,
    pub payload: Bytes,
    pub held_at: DateTime<Utc>,
    /// When its breakpoint's timeout forwards it unchanged.
    pub expires_at: DateTime<Utc>,
}

/// One route's armed breakpoints.
#[derive(Debug, Default)]
pub struct RouteIntercepts {
    /// Bumped on every change; sessions compare it on each message.
    version: AtomicU64,
    armed: RwLock<Arc<[Arc<Breakpoint>]>>,
    listing: Arc<Listing>,
}

impl RouteIntercepts {
    #[inline]
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub(crate) fn armed(&self) -> (u64, Arc<[Arc<Breakpoint>]>) {
        let armed = self.armed.read().unwrap_or_else(|e| e.into_inner());
        (self.version(), armed.clone())
    }

    fn arm(&self, list: Arc<[Arc<Breakpoint>]>) {
        *self.armed.write().unwrap_or_else(|e| e.into_inner()) = list;
        self.version.fetch_add(1, Ordering::Release);
    }

    pub(crate) fn listing(&self) -> &Listing {
        &self.listing
    }
}

/// The frames held now, by id, for the API (the frames themselves wait in their
/// sessions' pumps); and the ids' source.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    next: AtomicU64,
    frames: Mutex<BTreeMap<u64, HeldFrame>>,
}

impl Listing {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, HeldFrame>> {
        self.frames.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lists `frame` under a new id, which it returns.
    pub(crate) fn add(&self, mut frame: HeldFrame) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        frame.id = id;
        self.lock().insert(id, frame);
        id
    }

    pub(crate) fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    pub(crate) fn forget_session(&self, session: SessionId) {
        self.lock().retain(|_, f| f.session != session);
    }
}

/// Every breakpoint of the gateway and every route's armed list: one per gateway,
/// shared by the proxy routes and the control plane, kept across reloads.
#[derive(Debug, Default)]
pub struct InterceptBoard {
    next: AtomicU64,
    breakpoints: Mutex<BTreeMap<u64, Arc<Breakpoint>>>,
    routes: Mutex<HashMap<String, Arc<RouteIntercepts>>>,
    listing: Arc<Listing>,
}

impl InterceptBoard {
    /// The route's intercepts, made on first use and kept across reloads.
    pub fn route(&self, route: &str) -> Arc<RouteIntercepts> {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        routes
            .entry(route.to_owned())
            .or_insert_with(|| Arc::new(RouteIntercepts { listing: self.listing.clone(), ..Default::default() }))
            .clone()
    }

    /// Forgets routes a reload removed, and their breakpoints.
    pub fn retain(&self, keep: &dyn Fn(&str) -> bool) {
        self.routes.lock().unwrap_or_else(|e| e.into_inner()).retain(|name, _| keep(name));
        self.breakpoints.lock().unwrap_or_else(|e| e.into_inner()).retain(|_, b| keep(&b.route));
    }

    /// Arms `bp` (checked by [`Breakpoint::new`]) on its route; the route's sessions
    /// hold from their next message.
    pub fn add(&self, mut bp: Breakpoint) -> Result<Arc<Breakpoint>, InterceptError> {
        let mut all = self.breakpoints.lock().unwrap_or_else(|e| e.into_inner());
        if all.len() >= MAX_BREAKPOINTS {
            return Err(InterceptError::TooMany);
        }
        bp.id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let bp = Arc::new(bp);
        all.insert(bp.id, bp.clone());
        self.rearm(&all, &bp.route);
        Ok(bp)
    }

    /// Disarms breakpoint `id`. Frames it holds stay held until released or expired:
    /// the caller decides (the API forwards them).
    pub fn remove(&self, id: u64) -> Result<Arc<Breakpoint>, InterceptError> {
        let mut all = self.breakpoints.lock().unwrap_or_else(|e| e.into_inner());
        let bp = all.remove(&id).ok_or(InterceptError::NoBreakpoint(id))?;
        self.rearm(&all, &bp.route);
        Ok(bp)
    }

    fn rearm(&self, all: &BTreeMap<u64, Arc<Breakpoint>>, route: &str) {
        let list: Arc<[Arc<Breakpoint>]> = all.values().filter(|b| b.route == route).cloned().collect();
        self.route(route).arm(list);
    }

    /// Every breakpoint, oldest first.
    pub fn breakpoints(&self) -> Vec<Arc<Breakpoint>> {
        self.breakpoints.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    /// Every frame held now, oldest first.
    pub fn held(&self) -> Vec<HeldFrame> {
        self.listing.lock().values().cloned().collect()
    }

    /// How many breakpoints are armed and how many frames are held now (metrics).
    pub fn counts(&self) -> (usize, usize) {
        let armed = self.breakpoints.lock().unwrap_or_else(|e| e.into_inner()).len();
        (armed, self.listing.lock().len())
    }

    /// One held frame.
    pub fn held_frame(&self, id: u64) -> Option<HeldFrame> {
        self.listing.lock().get(&id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::breakpoint::Way;

    #[test]
    fn breakpoints_arm_their_route_only_and_a_reload_forgets_removed_routes() {
        let board = InterceptBoard::default();
        let a = board.route("a");
        let b = board.route("b");
        let (va, vb) = (a.version(), b.version());
        let bp = board.add(Breakpoint::new("a".into(), Way::Both, None, None, None).unwrap()).unwrap();
        assert_eq!(bp.id, 1);
        assert!(a.version() > va && b.version() == vb);
        assert_eq!(a.armed().1.len(), 1);
        assert!(b.armed().1.is_empty());
        assert_eq!(board.remove(9).unwrap_err(), InterceptError::NoBreakpoint(9));
        assert_eq!(board.remove(1).unwrap().id, 1);
        assert!(a.armed().1.is_empty());

        board.add(Breakpoint::new("b".into(), Way::Both, None, None, None).unwrap()).unwrap();
        board.retain(&|name| name == "a");
        assert!(board.breakpoints().is_empty());
        for _ in 0..MAX_BREAKPOINTS {
            board.add(Breakpoint::new("a".into(), Way::Both, None, None, None).unwrap()).unwrap();
        }
        let more = board.add(Breakpoint::new("a".into(), Way::Both, None, None, None).unwrap());
        assert_eq!(more.unwrap_err(), InterceptError::TooMany);
    }
}
