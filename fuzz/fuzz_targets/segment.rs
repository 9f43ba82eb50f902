//! Stored message segments (`wsgate_store::segment`, SQLite schema 5): what the store
//! reads back from a file that may be damaged.
//!
//! Properties:
//! - decoding any index and payload bytes gives frames or a `Damaged` error, never a
//!   panic, and never more frames than asked for;
//! - decoded frames are in strictly rising seq order, above the cursor, each with a
//!   payload no longer than the stored bytes;
//! - what decodes re-encodes to a segment that decodes to the same frames (the store
//!   re-encodes when retention cuts a segment), with the same totals.
//!
//! Input: `[first seq: 2 bytes][cursor: 1 byte][limit: 1 byte][index length: 2 bytes]`,
//! then the index, then the payloads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsgate_core::SessionId;
use wsgate_store::segment::{decode, encode};

fuzz_target!(|data: &[u8]| {
    let mut input = wsgate_fuzz::Input::new(data);
    let first_seq = u64::from(input.u16());
    let after = u64::from(input.byte());
    let limit = usize::from(input.byte()).max(1);
    let index_len = usize::from(input.u16());
    let index = input.take(index_len).to_vec();
    let payloads = bytes::Bytes::copy_from_slice(input.rest());
    let id = SessionId::default();
    let Ok(frames) = decode(id, first_seq, &index, payloads.clone(), after, limit) else { return };
    assert!(frames.len() <= limit);
    assert!(frames.windows(2).all(|w| w[0].seq < w[1].seq), "seqs rise");
    assert!(frames.iter().all(|m| m.seq > after && m.payload.len() <= payloads.len()));
    if frames.is_empty() {
        return;
    }
    let again = encode(&frames);
    let back = decode(id, again.first_seq, &again.index, again.payloads.clone().into(), 0, usize::MAX)
        .expect("a segment we encoded decodes");
    assert_eq!(back, frames, "decode(encode(frames)) == frames");
    assert_eq!((again.frames, again.msgs_in + again.msgs_out), (frames.len() as u64, frames.len() as u64));
});
