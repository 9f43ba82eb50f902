//! permessage-deflate (`wsgate_protocol::deflate`): negotiation on arbitrary
//! `Sec-WebSocket-Extensions` values, inflating arbitrary bytes within a limit, and
//! compress → inflate round trips.
//!
//! Properties:
//! - `accept_offer` (server) and `accept_answer` (client) never panic on any header
//!   values; what they accept is within range, is a valid header value, and parses
//!   back to the same parameters from its own `to_header` (the server's answer is
//!   what the client reads);
//! - our client's offer, answered by our server, is accepted by our client with the
//!   same parameters, for every pair of policies; the agreed codecs then carry
//!   messages both ways unchanged;
//! - `Inflater` on arbitrary input never panics, never returns more than the limit
//!   (a deflate bomb stops there), and ends every fragment;
//! - `Deflater` → `Inflater` returns every message unchanged, for every level, window
//!   and context-takeover setting and every fragmentation; a limit of exactly the
//!   message's size is enough, one byte less is `MessageTooLarge`.
//!
//! Input: `[mode]`, then by mode (`mode % 5`):
//! - 0, server reads an offer: `[policy bits][policy flags]` + header values, one per
//!   line (`permessage-deflate; client_max_window_bits`);
//! - 1, client reads an answer: the same;
//! - 2, negotiate: `[client bits][client flags][server bits][server flags]` +
//!   messages;
//! - 3, inflate arbitrary bytes: `[reset][limit: u16 BE]` + records (see
//!   `wsgate_fuzz::records`: `[fin flag][length: u16 BE][compressed bytes]`);
//! - 4, round trip: `[level][window bits][reset]` + messages.
//!
//! Policy bits are `9 + b % 7`; policy flags: bit 0 = ask for no context takeover,
//! bits 1.. = level. Messages are records, bit 0 of a record's flags ending the
//! message.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use wsgate_fuzz::records;
use wsgate_protocol::deflate::{
    DeflateParams, DeflatePolicy, Deflater, Inflater, accept_answer, accept_offer, client_offer,
};
use wsgate_protocol::frame::ProtocolError;

/// A policy within what config validation allows (window 9..=15, level 0..=9).
fn policy(bits: u8, flags: u8) -> DeflatePolicy {
    DeflatePolicy {
        max_window_bits: 9 + bits % 7,
        request_no_context_takeover: flags & 1 == 1,
        level: u32::from((flags >> 1) % 10),
    }
}

/// One message as its fragments.
type Message<'a> = Vec<&'a [u8]>;

/// Records grouped into messages: a record with flag bit 0 ends one.
fn messages(data: &[u8]) -> Vec<Message<'_>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    for (flags, bytes) in records(data) {
        current.push(bytes);
        if flags & 1 == 1 {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let mut input = wsgate_fuzz::Input::new(data);
    match input.byte() % 5 {
        mode @ (0 | 1) => {
            let policy = policy(input.byte(), input.byte());
            let text = String::from_utf8_lossy(input.rest());
            let values: Vec<&str> = text.split('\n').collect();
            if mode == 0 {
                offer(&values, &policy);
            } else {
                answer(&values, &policy);
            }
        }
        2 => {
            let client = policy(input.byte(), input.byte());
            let server = policy(input.byte(), input.byte());
            negotiate(&client, &server, &messages(input.rest()));
        }
        3 => {
            let reset = input.byte() & 1 == 1;
            let limit = usize::from(input.u16());
            inflate(reset, limit, &records(input.rest()));
        }
        _ => {
            let level = u32::from(input.byte() % 10);
            let bits = 9 + input.byte() % 7;
            let reset = input.byte() & 1 == 1;
            let messages = messages(input.rest());
            let mut tx = Deflater::new(level, bits, reset);
            let mut rx = Inflater::new(bits, reset);
            for m in &messages {
                carry(&mut tx, &mut rx, m);
            }
            if let Some(m) = messages.first() {
                one_byte_short(level, bits, m);
            }
        }
    }
});

fn check_params(p: &DeflateParams) {
    for bits in [p.server_max_window_bits, p.client_max_window_bits].into_iter().flatten() {
        assert!((8..=15).contains(&bits), "window bits {bits} out of range");
    }
    let header = p.to_header();
    assert!(http::HeaderValue::from_str(&header).is_ok(), "{header:?} is not a header value");
    // Both sides can build their codecs from what was agreed.
    let _ = p.codecs(true, 6);
    let _ = p.codecs(false, 6);
}

fn offer(values: &[&str], policy: &DeflatePolicy) {
    let Some(p) = accept_offer(values.iter().copied(), policy) else { return };
    check_params(&p);
    if let Some(bits) = p.server_max_window_bits {
        assert!((9..=policy.max_window_bits).contains(&bits), "server window {bits} beyond policy {policy:?}");
    }
    assert!(p.client_no_context_takeover || !policy.request_no_context_takeover);
    // Our answer, offered again, gives the same parameters (accept_offer is idempotent).
    let header = p.to_header();
    assert_eq!(accept_offer([header.as_str()], policy), Some(p), "answer {header:?} re-parsed differently");
    // A client that offered no window limit of its own reads our answer as we meant it.
    // (A client limit of 8 is the client's own choice, which wsgate as a client never
    // makes and declines; see `accept_answer`.)
    if p.client_max_window_bits != Some(8) {
        let client = DeflatePolicy::default();
        assert_eq!(accept_answer([header.as_str()], &client), Ok(Some(p)), "client misreads answer {header:?}");
    }
}

fn answer(values: &[&str], policy: &DeflatePolicy) {
    let Ok(Some(p)) = accept_answer(values.iter().copied(), policy) else { return };
    check_params(&p);
    // wsgate never compresses with a window it cannot honour (zlib has no 8).
    if let Some(bits) = p.client_max_window_bits {
        assert!(bits >= 9, "client window {bits} accepted");
    }
    let header = p.to_header();
    assert_eq!(accept_answer([header.as_str()], policy), Ok(Some(p)), "answer {header:?} re-parsed differently");
}

fn negotiate(client: &DeflatePolicy, server: &DeflatePolicy, messages: &[Message]) {
    let offer = client_offer(client);
    let agreed = accept_offer([offer.as_str()], server).expect("our server accepts our client's offer");
    check_params(&agreed);
    let answer = agreed.to_header();
    let seen = accept_answer([answer.as_str()], client).expect("our client accepts our server's answer");
    assert_eq!(seen, Some(agreed), "client and server disagree: offer {offer:?}, answer {answer:?}");
    let (mut server_tx, mut server_rx) = agreed.codecs(true, server.level);
    let (mut client_tx, mut client_rx) = agreed.codecs(false, client.level);
    for (i, m) in messages.iter().enumerate() {
        if i.is_multiple_of(2) {
            carry(&mut client_tx, &mut server_rx, m);
        } else {
            carry(&mut server_tx, &mut client_rx, m);
        }
    }
}

/// Compresses `m` fragment by fragment and inflates it back within a limit of exactly
/// its size, which must be enough.
fn carry(tx: &mut Deflater, rx: &mut Inflater, m: &Message) {
    let fragments: Vec<&[u8]> = if m.is_empty() { vec![&[]] } else { m.clone() };
    let whole: Vec<u8> = fragments.iter().flat_map(|f| f.iter().copied()).collect();
    let compressed: Vec<_> =
        fragments.iter().enumerate().map(|(i, f)| tx.compress(f, i + 1 == fragments.len())).collect();
    let mut out = BytesMut::new();
    for (i, c) in compressed.iter().enumerate() {
        rx.inflate(c, i + 1 == compressed.len(), &mut out, whole.len()).expect("our own compressed data inflates");
    }
    assert_eq!(&out[..], &whole[..], "round trip changed the message");
}

/// With fresh codecs, a limit one byte below the message's size is refused.
fn one_byte_short(level: u32, bits: u8, m: &Message) {
    let whole: Vec<u8> = m.iter().flat_map(|f| f.iter().copied()).collect();
    if whole.is_empty() {
        return;
    }
    let mut tx = Deflater::new(level, bits, false);
    let mut rx = Inflater::new(bits, false);
    let mut out = BytesMut::new();
    let mut result = Ok(());
    for (i, f) in m.iter().enumerate() {
        let fin = i + 1 == m.len();
        result = rx.inflate(&tx.compress(f, fin), fin, &mut out, whole.len() - 1);
        if result.is_err() {
            break;
        }
    }
    assert!(
        matches!(result, Err(ProtocolError::MessageTooLarge { .. })),
        "a {}-byte message passed a limit of {}: {result:?}",
        whole.len(),
        whole.len() - 1
    );
    assert!(out.len() < whole.len());
}

/// Arbitrary bytes as a stream of compressed messages (records, flag bit 0 = `fin`),
/// each within `limit`.
fn inflate(reset: bool, limit: usize, fragments: &[(u8, &[u8])]) {
    let mut rx = Inflater::new(15, reset);
    let mut out = BytesMut::new();
    for (i, (flags, f)) in fragments.iter().enumerate() {
        let fin = flags & 1 == 1 || i + 1 == fragments.len();
        match rx.inflate(f, fin, &mut out, limit) {
            Ok(()) => {
                assert!(out.len() <= limit, "{} bytes out, limit {limit}", out.len());
                if fin {
                    // The next message starts with the whole limit again.
                    out.clear();
                }
            }
            Err(ProtocolError::MessageTooLarge { size, limit: l }) => {
                assert_eq!(l, limit);
                assert!(size > limit);
                assert!(out.len() <= limit, "{} bytes out, limit {limit}", out.len());
                return;
            }
            Err(ProtocolError::InvalidCompression) => return,
            Err(e) => panic!("inflate failed with an unexpected error: {e}"),
        }
    }
}
