//! Live tickets: a browser cannot set `Authorization` on a WebSocket, and `?token=`
//! puts the long-lived admin token into URLs (history, proxy logs, screenshots).
//! `POST /api/live/ticket` — authenticated like any API call — hands out a random
//! ticket instead, good for one WebSocket upgrade (`?ticket=`) within [`TICKET_TTL`].
//!
//! Tickets live in a bounded map ([`MAX_TICKETS`]); issuing into a full map (after
//! dropping expired ones) is refused with 503 rather than evicting a ticket someone is
//! about to use. The clock is tokio's, so tests pause and advance it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use base64::Engine as _;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use utoipa::ToSchema;

use crate::ControlPlane;
use crate::error::{ApiError, ErrorBody};

/// How long a ticket stays good.
pub const TICKET_TTL: Duration = Duration::from_secs(30);
/// Most tickets outstanding at once. A page asks for one right before it opens its
/// socket, so a handful are live at a time; the bound only stops a runaway script.
pub const MAX_TICKETS: usize = 1024;
/// Random bytes per ticket (256 bits: not guessable within 30 s, or ever).
const TICKET_BYTES: usize = 32;

/// Why no ticket was issued.
#[derive(Debug, thiserror::Error)]
pub enum TicketError {
    #[error("{MAX_TICKETS} live tickets are outstanding; retry once some are used or expire")]
    Full,
    #[error("the system random number generator failed: {0}")]
    Random(getrandom::Error),
}

/// The outstanding tickets. The lock is held for a map operation only, never across
/// an `.await`.
#[derive(Debug, Default)]
pub struct Tickets {
    map: Mutex<HashMap<String, Instant>>,
}

impl Tickets {
    /// A new ticket, good until `TICKET_TTL` from now.
    pub fn issue(&self) -> Result<String, TicketError> {
        let mut raw = [0u8; TICKET_BYTES];
        getrandom::fill(&mut raw).map_err(TicketError::Random)?;
        let ticket = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TICKETS {
            map.retain(|_, expires| *expires > now);
        }
        if map.len() >= MAX_TICKETS {
            return Err(TicketError::Full);
        }
        map.insert(ticket.clone(), now + TICKET_TTL);
        Ok(ticket)
    }

    /// Whether `offered` is an outstanding, unexpired ticket; it is spent either way.
    /// (A map lookup hashes with a per-process random key before comparing, so its
    /// timing says nothing useful about a 256-bit secret.)
    pub fn redeem(&self, offered: &str) -> bool {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(offered).is_some_and(|expires| expires > Instant::now())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or_default()
    }
}

/// The answer of `POST /api/live/ticket`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"ticket": "q3Z0bC1yYW5kb20tYnl0ZXMtZ28taGVyZS0wMTIzNDU2Nzg", "expires_in": 30}))]
pub struct TicketBody {
    /// Pass as `?ticket=` on one WebSocket upgrade (`/api/live`, a tap).
    pub ticket: String,
    /// Seconds the ticket stays good.
    pub expires_in: u64,
}

/// `POST /api/live/ticket`.
#[utoipa::path(
    post,
    path = "/api/live/ticket",
    // Not `live`: that tag is the WebSocket routes (scripts/schemathesis.sh expects 101/426 there).
    tag = "tickets",
    summary = "A single-use ticket for one WebSocket upgrade",
    description = "For browsers, which cannot set `Authorization` on a WebSocket: pass the ticket as \
                   `?ticket=` when opening `/api/live` or a tap, instead of `?token=`, so the admin \
                   token never lands in a URL. Good once, for 30 seconds. Needs no body.",
    responses(
        (status = 201, description = "A ticket", body = TicketBody),
        (status = 503, description = "Too many tickets outstanding; retry shortly", body = ErrorBody,
         headers(("Retry-After" = String, description = "Seconds to wait"))),
    ),
)]
pub async fn issue(State(cp): State<ControlPlane>) -> Result<(StatusCode, Json<TicketBody>), ApiError> {
    let ticket = cp.inner.tickets.issue()?;
    Ok((StatusCode::CREATED, Json(TicketBody { ticket, expires_in: TICKET_TTL.as_secs() })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_ticket_works_once_and_expires() {
        let t = Tickets::default();
        let a = t.issue().expect("ticket");
        assert_eq!(a.len(), 43);
        assert!(!t.redeem("not-a-ticket"));
        assert!(t.redeem(&a));
        assert!(!t.redeem(&a), "single use");
        let b = t.issue().expect("ticket");
        assert_ne!(a, b);
        tokio::time::advance(TICKET_TTL - Duration::from_millis(1)).await;
        let c = t.issue().expect("ticket");
        assert!(t.redeem(&c));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!t.redeem(&b), "expired");
        assert_eq!(t.len(), 0, "redeeming removes even an expired ticket");
    }

    #[tokio::test(start_paused = true)]
    async fn the_map_is_bounded() {
        let t = Tickets::default();
        for _ in 0..MAX_TICKETS {
            t.issue().expect("ticket");
        }
        assert!(matches!(t.issue(), Err(TicketError::Full)));
        tokio::time::advance(TICKET_TTL).await;
        assert!(t.issue().is_ok(), "expired tickets make room");
        assert_eq!(t.len(), 1);
    }
}
