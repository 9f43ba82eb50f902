//! `wsgate_protocol::frame::Decoder` on arbitrary bytes in arbitrary chunkings, both
//! roles, with and without RSV1 allowed.
//!
//! Properties:
//! - never panics, and every decoded frame consumes bytes (no endless loop);
//! - `missing` answers for any bytes; `Ok(None)` only while the frame at the front is really incomplete (`missing`
//!   agrees);
//! - a decoded frame obeys the rules the decoder enforces (control frames final and
//!   ≤ 125 bytes, payload within the limit, RSV1 only when allowed);
//! - chunking does not matter: fed in pieces or all at once, the same frames come
//!   out, followed by the same error or the same undecoded rest;
//! - round trip: a decoded frame re-encoded with `encode_frame` (masked when the peer
//!   masks) decodes to the same frame, consuming exactly the encoding.
//!
//! Input: `[flags][cut count][cuts…]` then the bytes as on the wire. flags: bit 0 =
//! we are the server (frames must be masked), bit 1 = RSV1 allowed, bits 2.. = the
//! frame limit (`wsgate_fuzz::frame_limit`). A seed `\x05\x00` + a masked frame is a
//! server with a 125-byte limit reading it in one piece.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use wsgate_protocol::frame::{Decoder, Frame, ProtocolError, Role, encode_frame};

/// What a stream of bytes decodes to: its frames, then either an error or the bytes
/// left waiting for more input.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    frames: Vec<Frame>,
    end: Result<Vec<u8>, ProtocolError>,
}

fn decode_all(dec: &Decoder, pieces: &[&[u8]], limit: usize, allow_rsv1: bool) -> Outcome {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            match dec.decode(&mut buf) {
                Ok(Some(f)) => {
                    assert!(buf.len() + 2 <= before, "a frame must consume at least its 2-byte header");
                    assert!(f.payload.len() <= limit, "payload of {} over limit {limit}", f.payload.len());
                    if f.opcode.is_control() {
                        assert!(f.fin && f.payload.len() <= 125, "bad control frame passed: {f:?}");
                    }
                    assert!(allow_rsv1 || !f.rsv1, "RSV1 passed without being allowed");
                    frames.push(f);
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "Ok(None) must not consume");
                    if let Some(n) = dec.missing(&buf) {
                        assert!(n > 0, "Ok(None) although `missing` says the frame is complete");
                    }
                    break;
                }
                Err(e) => return Outcome { frames, end: Err(e) },
            }
        }
    }
    Outcome { frames, end: Ok(buf.to_vec()) }
}

fuzz_target!(|data: &[u8]| {
    let mut input = wsgate_fuzz::Input::new(data);
    let flags = input.byte();
    let cuts = input.cuts(8);
    let wire = input.rest();
    let role = if flags & 1 == 1 { Role::Server } else { Role::Client };
    let allow_rsv1 = flags & 2 != 0;
    let limit = wsgate_fuzz::frame_limit(flags >> 2);
    let dec = Decoder::new(role, limit).allow_rsv1(allow_rsv1);
    // `missing` is public and takes any buffer, before the decoder checked anything.
    let _ = dec.missing(wire);

    let chunked = decode_all(&dec, &wsgate_fuzz::chunks(wire, cuts), limit, allow_rsv1);
    let whole = decode_all(&dec, &[wire], limit, allow_rsv1);
    assert_eq!(chunked, whole, "chunking changed the result");

    // Round trip: what we decoded, we can encode, and it decodes to itself. A server
    // decodes frames a client masked; a client decodes unmasked ones.
    let mask = (role == Role::Server).then_some([0xa5, 0x01, 0x7f, 0x80]);
    for f in &whole.frames {
        let mut wire = BytesMut::new();
        encode_frame(&mut wire, (f.fin, f.rsv1, f.opcode), &f.payload, mask);
        let len = wire.len();
        let again = dec.decode(&mut wire).expect("re-encoded frame must decode").expect("and be complete");
        assert_eq!(&again, f, "round trip changed the frame");
        assert!(wire.is_empty(), "round trip left {} of {len} bytes", wire.len());
    }
});
