//! `wsgate_protocol::utf8::Utf8Validator` fed arbitrary bytes in arbitrary chunks,
//! checked against `std::str::from_utf8` on the whole input.
//!
//! `feed` returns `false` as soon as the bytes so far cannot be the start of valid
//! UTF-8; `is_complete` says the stream ended on a character boundary. So:
//! - valid input: every `feed` is true and the validator ends complete;
//! - input that is a valid prefix cut inside a character: every `feed` is true and
//!   it ends incomplete;
//! - invalid input: `feed` turns false on exactly the chunk holding the first byte
//!   that makes the stream invalid — not earlier (a false alarm), not later (slow).
//!
//! Input: `[cut count][cuts…]` then the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsgate_protocol::utf8::Utf8Validator;

/// The length of the shortest prefix of `data` that is already invalid, if any.
fn invalid_at(data: &[u8]) -> Option<usize> {
    let e = std::str::from_utf8(data).err()?;
    e.error_len()?;
    let v = e.valid_up_to();
    // The invalid sequence starts at `v`; find the byte that proves it (at most 4 on).
    (v + 1..=data.len()).find(|&n| std::str::from_utf8(&data[v..n]).is_err_and(|e| e.error_len().is_some()))
}

fuzz_target!(|data: &[u8]| {
    let mut input = wsgate_fuzz::Input::new(data);
    let cuts = input.cuts(8);
    let data = input.rest();
    let pieces = wsgate_fuzz::chunks(data, cuts);
    let mut v = Utf8Validator::default();
    let mut fed = 0usize;
    // (offset where the failing piece starts, offset where it ends)
    let mut failed = None;
    for p in &pieces {
        let ok = v.feed(p);
        if !ok {
            failed = Some((fed, fed + p.len()));
            break;
        }
        fed += p.len();
    }
    match (std::str::from_utf8(data), invalid_at(data)) {
        (Ok(_), _) => {
            assert_eq!(failed, None, "valid UTF-8 rejected");
            assert!(v.is_complete(), "valid UTF-8 left incomplete");
        }
        (Err(_), None) => {
            assert_eq!(failed, None, "a valid prefix rejected");
            assert!(!v.is_complete(), "a truncated character reported complete");
        }
        (Err(_), Some(n)) => {
            // The first `n` bytes prove it invalid: the piece delivering byte n-1 fails.
            let (start, end) = failed.expect("invalid UTF-8 accepted");
            assert!(end >= n, "rejected at bytes {start}..{end}, before byte {} proved it invalid", n - 1);
            assert!(start < n, "rejected only at bytes {start}..{end}; byte {} already proved it invalid", n - 1);
        }
    }
});
