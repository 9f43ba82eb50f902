//! Close-frame payloads (`wsgate_protocol::close`): parsing what a peer sends, and
//! encoding what wsgate sends (the control API lets an operator pick code and reason).
//!
//! Properties:
//! - `CloseFrame::parse` never panics; it accepts exactly the empty payload and "a
//!   sendable code + UTF-8 reason", with the specific error otherwise;
//! - a parsed payload of at most 125 bytes (a real control frame) encodes back to the
//!   same bytes;
//! - `CloseFrame::encode` of any code and reason fits a control frame (≤ 125 bytes),
//!   cuts the reason on a character boundary, and parses back when the code is
//!   sendable.
//!
//! Input: `[mode]` then, for an even mode, a close payload as on the wire (`\x03\xe8`
//! and a reason); for an odd one, a code (2 bytes, big-endian) and a reason (invalid
//! UTF-8 replaced) to encode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsgate_protocol::frame::ProtocolError;
use wsgate_protocol::{CloseCode, CloseFrame};

fuzz_target!(|data: &[u8]| {
    let mut input = wsgate_fuzz::Input::new(data);
    if input.byte() & 1 == 0 {
        check_parse(input.rest());
    } else {
        let code = input.u16();
        check_encode(code, &String::from_utf8_lossy(input.rest()));
    }
});

fn check_parse(payload: &[u8]) {
    let parsed = CloseFrame::parse(payload);
    match payload {
        [] => assert_eq!(parsed, Ok(None)),
        [_] => assert_eq!(parsed, Err(ProtocolError::CloseFrameTooShort)),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            let want = if !CloseCode::is_sendable(code) {
                Err(ProtocolError::InvalidCloseCode(code))
            } else {
                match std::str::from_utf8(reason) {
                    Ok(r) => Ok(Some(CloseFrame::new(code, r))),
                    Err(_) => Err(ProtocolError::InvalidUtf8),
                }
            };
            assert_eq!(parsed, want);
            if let Ok(Some(f)) = parsed
                && payload.len() <= 125
            {
                assert_eq!(&f.encode()[..], payload, "a parsed close payload must encode back unchanged");
            }
        }
    }
}

fn check_encode(code: u16, reason: &str) {
    let wire = CloseFrame::new(code, reason).encode();
    assert!(wire.len() <= 125, "close payload of {} bytes does not fit a control frame", wire.len());
    assert_eq!(u16::from_be_bytes([wire[0], wire[1]]), code);
    let sent = std::str::from_utf8(&wire[2..]).expect("the reason is cut on a character boundary");
    assert!(reason.starts_with(sent), "the reason is cut, never changed");
    if reason.len() <= 123 {
        assert_eq!(sent, reason, "a reason that fits is sent whole");
    }
    if CloseCode::is_sendable(code) {
        assert_eq!(CloseFrame::parse(&wire), Ok(Some(CloseFrame::new(code, sent))));
    }
}
