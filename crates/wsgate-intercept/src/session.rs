//! A session's view of its route's breakpoints: which message to hold, and the
//! listing of what it holds.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use wsgate_core::{Direction, SessionId};

use crate::board::{HeldFrame, RouteIntercepts};
use crate::breakpoint::Breakpoint;

#[derive(Debug)]
pub struct SessionIntercepts {
    route: Arc<RouteIntercepts>,
    seen: u64,
    armed: Arc<[Arc<Breakpoint>]>,
    /// It listed a frame once: at its end, what it still lists is taken off.
    listed: bool,
}

impl SessionIntercepts {
    pub fn new(route: Arc<RouteIntercepts>) -> Self {
        let (seen, armed) = route.armed();
        Self { route, seen, armed, listed: false }
    }

    /// The breakpoint that holds this whole data message, if any. With none armed on
    /// the route (the usual case), one atomic load.
    #[inline]
    pub fn check(&mut self, direction: Direction, payload: &[u8]) -> Option<Arc<Breakpoint>> {
        if self.route.version() != self.seen {
            (self.seen, self.armed) = self.route.armed();
        }
        if self.armed.is_empty() {
            return None;
        }
        self.armed.iter().find(|b| b.matches(direction, payload)).cloned()
    }

    /// Lists a frame `bp` holds; its id, for `Command::Release`, and how long it may
    /// wait.
    pub fn hold(
        &mut self,
        bp: &Breakpoint,
        session: SessionId,
        direction: Direction,
        binary: bool,
        payload: Bytes,
    ) -> (u64, Duration) {
        self.listed = true;
        let held_at = Utc::now();
        let expires_at = held_at + bp.timeout;
        let frame = HeldFrame {
            id: 0,
            breakpoint: bp.id,
            session,
            route: bp.route.clone(),
            direction,
            binary,
            payload,
            held_at,
            expires_at,
        };
        (self.route.listing().add(frame), bp.timeout)
    }

    /// Takes a frame off the list: it left (released, expired, or its side failed).
    pub fn unlist(&self, id: u64) {
        self.route.listing().remove(id);
    }

    /// Takes the session's frames off the list: it is over.
    pub fn end(&self, session: SessionId) {
        if self.listed {
            self.route.listing().forget_session(session);
        }
    }
}
