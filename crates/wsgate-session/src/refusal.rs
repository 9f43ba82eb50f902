//! A handshake refused by the route's faults (`refuse: { status, rate }`): the one
//! place mock and proxy routes answer it, so both record it the same way — the
//! session FAILED with `reason_kind: fault` and the status, visible live and in
//! history like any refused connection.

use http::StatusCode;
use wsgate_core::{Initiator, ReasonKind, SessionHandle, State, TransitionDetail};
use wsgate_faults::FaultSwitch;
use wsgate_listener::{Body, plain};

/// The refusal to answer instead of 101, when a refusal fault strikes this
/// connection (the session, already opened, is recorded FAILED).
pub fn refused_by_fault(faults: &FaultSwitch, session: &mut SessionHandle, who: &str) -> Option<http::Response<Body>> {
    let status = StatusCode::from_u16(faults.refuse()?).ok()?;
    let reason = format!("fault: handshake refused with {}", status.as_u16());
    session.transition(
        State::Failed,
        TransitionDetail {
            reason: Some(reason.clone()),
            reason_kind: Some(ReasonKind::Fault),
            http_status: Some(status.as_u16()),
            initiator: Some(Initiator::Gateway),
            ..Default::default()
        },
    );
    Some(plain(status, &format!("{who}: {reason} (the route's faults; session {})", session.id())))
}
