//! Echo mode: every text and binary message goes back unchanged. Everything else —
//! reads, bursts, inject/close, idle, shutdown, the close handshake, the final state —
//! is the server loop's (`wsgate_session::server`); replies are queued through the
//! outbox and written once per burst.

use wsgate_protocol::Message;
use wsgate_session::{Behaviour, Outbox};

/// Sends every data message back.
#[derive(Debug, Default, Clone, Copy)]
pub struct Echo;

impl Behaviour for Echo {
    #[inline]
    fn on_message(&mut self, msg: Message, out: &mut Outbox<'_>) {
        out.send(msg);
    }
}
