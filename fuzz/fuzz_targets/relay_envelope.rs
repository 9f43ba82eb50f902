//! The relay's envelope frames (`wsgate_relay::envelope::parse`, every text frame an
//! envelope client sends; docs/relay-protocol.md).
//!
//! Properties:
//! - parsing never panics;
//! - what it accepts keeps its bounds: rooms of 1..=MAX_ROOM_LEN bytes, 1..=MAX_RECIPIENTS
//!   recipients;
//! - every frame the server would answer with — the error for a refused frame, the
//!   ack or heartbeat echoing the client's `id` verbatim, a publication carrying the
//!   client's `data` verbatim — is one valid JSON object.
//!
//! Input: the frame's bytes, as the client sent them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsgate_core::SessionId;
use wsgate_relay::envelope::{self, AckInfo, ClientFrame, MAX_RECIPIENTS, MAX_ROOM_LEN, Payload};

fn object(b: &[u8]) {
    let v: serde_json::Value = serde_json::from_slice(b).unwrap_or_else(|e| {
        panic!("the server wrote invalid JSON ({e}): {}", String::from_utf8_lossy(b))
    });
    assert!(v.is_object(), "not an object: {v}");
}

fuzz_target!(|data: &[u8]| {
    match envelope::parse(data) {
        Err(r) => object(&envelope::error(r.id.as_ref(), &r.error)),
        Ok(frame) => {
            let room_ok = |r: &str| (1..=MAX_ROOM_LEN).contains(&r.len());
            let (id, payload) = match &frame {
                ClientFrame::Join { id, room } | ClientFrame::Leave { id, room } => {
                    assert!(room_ok(room), "room {room:?}");
                    (id, None)
                }
                ClientFrame::Publish { id, room, data, .. } => {
                    assert!(room.as_deref().is_none_or(room_ok), "room {room:?}");
                    (id, Some(data))
                }
                ClientFrame::Send { id, to, data, .. } => {
                    assert!((1..=MAX_RECIPIENTS).contains(&to.ids().len()));
                    (id, Some(data))
                }
                ClientFrame::Heartbeat { id } | ClientFrame::Ack { id } => (id, None),
            };
            if let Some(id) = id {
                object(&envelope::ack(id, AckInfo { room: Some("/r"), offset: Some(1), delivered: Some(2) }));
            }
            object(&envelope::heartbeat(id.as_ref()));
            if let Some(p) = payload {
                object(&envelope::publication("/r", 7, Some(SessionId::new()), p, Some(1)));
                object(&envelope::direct(None, p, None));
                if let Payload::Json(j) = p {
                    let _: serde_json::Value = serde_json::from_slice(j).expect("data is JSON");
                }
            }
        }
    }
});
