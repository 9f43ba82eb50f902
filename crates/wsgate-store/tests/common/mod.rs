//! What the store's test suites share.

use wsgate_core::{SessionKind, State};
use wsgate_store::SessionRow;

/// An open proxy session of `instance` on route `r`, with nothing recorded yet.
pub fn session_row(instance: &str, path: &str) -> SessionRow {
    SessionRow {
        id: wsgate_core::SessionId::new(),
        instance: instance.into(),
        kind: SessionKind::Proxy,
        route: "r".into(),
        path: path.into(),
        client_addr: None,
        headers: Vec::new(),
        subprotocol: None,
        upstream: None,
        state: State::Connected,
        opened_at: chrono::Utc::now(),
        closed_at: None,
        close_code: None,
        close_reason: None,
        initiator: None,
        failure: None,
        failure_kind: None,
        http_status: None,
        messages_in: 0,
        messages_out: 0,
        bytes_in: 0,
        bytes_out: 0,
        messages_dropped: 0,
    }
}
