//! permessage-deflate (RFC 7692): negotiating it, and compressing and inflating
//! messages — incrementally, frame by frame, so the proxy can inspect and re-encode a
//! fragmented compressed message without holding all of it.
//!
//! Memory: a deflate context costs ~256 KiB at 15 window bits and an inflate context
//! ~40 KiB, which is why it is off by default where thousands of idle connections
//! matter (the proxy) and configurable with smaller windows.

use bytes::{Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::frame::ProtocolError;

/// The four bytes a sync flush ends with; stripped from and re-added to each message.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// What this side is willing to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflatePolicy {
    /// Largest LZ77 window we compress with (9..=15; zlib cannot do 8, so an offer
    /// that asks us for 8 is declined).
    pub max_window_bits: u8,
    /// Ask the peer to reset its compressor after every message (saves the peer's
    /// memory between messages, costs ratio).
    pub request_no_context_takeover: bool,
    /// zlib level 0..=9.
    pub level: u32,
}

impl Default for DeflatePolicy {
    fn default() -> Self {
        Self { max_window_bits: 15, request_no_context_takeover: false, level: 6 }
    }
}

/// The parameters both sides agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeflateParams {
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    /// `None` = 15 (not negotiated).
    pub server_max_window_bits: Option<u8>,
    pub client_max_window_bits: Option<u8>,
}

impl DeflateParams {
    /// The `Sec-WebSocket-Extensions` value describing these parameters.
    pub fn to_header(&self) -> String {
        let mut s = String::from("permessage-deflate");
        if self.server_no_context_takeover {
            s.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            s.push_str("; client_no_context_takeover");
        }
        if let Some(b) = self.server_max_window_bits {
            s.push_str(&format!("; server_max_window_bits={b}"));
        }
        if let Some(b) = self.client_max_window_bits {
            s.push_str(&format!("; client_max_window_bits={b}"));
        }
        s
    }

    /// Compressor and inflater for one side: the server compresses with the server_*
    /// parameters and inflates with the client_* ones, the client the other way round.
    pub fn codecs(&self, server: bool, level: u32) -> (Deflater, Inflater) {
        let (own_bits, own_reset, peer_bits, peer_reset) = if server {
            (
                self.server_max_window_bits,
                self.server_no_context_takeover,
                self.client_max_window_bits,
                self.client_no_context_takeover,
            )
        } else {
            (
                self.client_max_window_bits,
                self.client_no_context_takeover,
                self.server_max_window_bits,
                self.server_no_context_takeover,
            )
        };
        (
            Deflater::new(level, own_bits.unwrap_or(15).max(9), own_reset),
            Inflater::new(peer_bits.unwrap_or(15), peer_reset),
        )
    }
}

/// Why an extension header could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    #[error("server answered with an extension we did not offer: {0}")]
    Unoffered(String),
    #[error("invalid permessage-deflate parameter: {0}")]
    BadParam(String),
}

/// One offer (or answer) of permessage-deflate, as written in the header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: the parameter without a value (client says "you may limit me").
    client_max_window_bits: Option<Option<u8>>,
}

fn parse_bits(v: Option<&str>) -> Result<Option<u8>, NegotiationError> {
    match v {
        None => Ok(None),
        Some(v) => {
            let v = v.trim().trim_matches('"');
            match v.parse::<u8>() {
                Ok(b) if (8..=15).contains(&b) && v.len() <= 2 && !v.starts_with('0') => Ok(Some(b)),
                _ => Err(NegotiationError::BadParam(format!("window bits {v:?}"))),
            }
        }
    }
}

/// Parses every permessage-deflate offer in the header values; offers with unknown or
/// repeated parameters are skipped (RFC 7692 §5: the server must decline them).
fn parse_offers<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Result<Offer, NegotiationError>> {
    let mut out = Vec::new();
    for value in values {
        for ext in value.split(',') {
            let mut parts = ext.split(';').map(str::trim);
            if parts.next() != Some("permessage-deflate") {
                continue;
            }
            let mut o = Offer::default();
            let mut seen = Vec::new();
            let mut res = Ok(());
            for p in parts.filter(|p| !p.is_empty()) {
                let (name, val) = match p.split_once('=') {
                    Some((n, v)) => (n.trim(), Some(v)),
                    None => (p, None),
                };
                if seen.contains(&name) {
                    res = Err(NegotiationError::BadParam(format!("{name} repeated")));
                    break;
                }
                seen.push(name);
                let r = match name {
                    "server_no_context_takeover" if val.is_none() => {
                        o.server_no_context_takeover = true;
                        Ok(())
                    }
                    "client_no_context_takeover" if val.is_none() => {
                        o.client_no_context_takeover = true;
                        Ok(())
                    }
                    "server_max_window_bits" if val.is_some() => parse_bits(val).map(|b| o.server_max_window_bits = b),
                    "client_max_window_bits" => parse_bits(val).map(|b| o.client_max_window_bits = Some(b)),
                    other => Err(NegotiationError::BadParam(other.to_owned())),
                };
                if r.is_err() {
                    res = r;
                    break;
                }
            }
            out.push(res.map(|_| o));
        }
    }
    out
}

/// Server side: picks the first acceptable offer and returns the agreed parameters
/// (whose [`DeflateParams::to_header`] is the answer), or `None` to decline.
pub fn accept_offer<'a>(values: impl IntoIterator<Item = &'a str>, policy: &DeflatePolicy) -> Option<DeflateParams> {
    for offer in parse_offers(values).into_iter().flatten() {
        let server_bits = match offer.server_max_window_bits {
            // zlib cannot compress with an 8-bit window: decline rather than lie.
            Some(b) if b < 9 => continue,
            Some(b) => Some(b.min(policy.max_window_bits)),
            None if policy.max_window_bits < 15 => Some(policy.max_window_bits),
            None => None,
        };
        return Some(DeflateParams {
            server_no_context_takeover: offer.server_no_context_takeover,
            client_no_context_takeover: offer.client_no_context_takeover || policy.request_no_context_takeover,
            server_max_window_bits: server_bits,
            // We inflate with a full window, so we never limit the client; echo its
            // own limit if it stated one.
            client_max_window_bits: offer.client_max_window_bits.flatten(),
        });
    }
    None
}

/// Client side: the offer to send.
pub fn client_offer(policy: &DeflatePolicy) -> String {
    let mut s = String::from("permessage-deflate; client_max_window_bits");
    if policy.max_window_bits < 15 {
        s = format!("permessage-deflate; client_max_window_bits={}", policy.max_window_bits.max(9));
    }
    if policy.request_no_context_takeover {
        s.push_str("; server_no_context_takeover");
    }
    s
}

/// Client side: checks the server's answer against our offer.
pub fn accept_answer<'a>(
    values: impl IntoIterator<Item = &'a str>,
    policy: &DeflatePolicy,
) -> Result<Option<DeflateParams>, NegotiationError> {
    let values: Vec<&str> = values.into_iter().collect();
    if values.iter().all(|v| v.trim().is_empty()) {
        return Ok(None);
    }
    let mut offers = parse_offers(values.iter().copied());
    if offers.len() != 1 {
        return Err(NegotiationError::Unoffered(values.join(", ")));
    }
    let a = offers.remove(0)?;
    let client_bits = match a.client_max_window_bits {
        Some(Some(b)) if b < 9 => {
            return Err(NegotiationError::BadParam("client_max_window_bits=8 (unsupported)".into()));
        }
        Some(Some(b)) => Some(b),
        Some(None) => {
            return Err(NegotiationError::BadParam("client_max_window_bits needs a value in an answer".into()));
        }
        None if policy.max_window_bits < 15 => Some(policy.max_window_bits.max(9)),
        None => None,
    };
    Ok(Some(DeflateParams {
        server_no_context_takeover: a.server_no_context_takeover,
        client_no_context_takeover: a.client_no_context_takeover,
        server_max_window_bits: a.server_max_window_bits,
        client_max_window_bits: client_bits,
    }))
}

/// Compresses messages, one fragment at a time.
pub struct Deflater {
    z: Compress,
    reset_each_message: bool,
    level: u32,
    bits: u8,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater").field("bits", &self.bits).finish()
    }
}

impl Deflater {
    pub fn new(level: u32, window_bits: u8, reset_each_message: bool) -> Self {
        Self {
            z: Compress::new_with_window_bits(Compression::new(level), false, window_bits),
            reset_each_message,
            level,
            bits: window_bits,
        }
    }

    /// Compresses one fragment of a message; `fin` ends the message (its trailing
    /// `00 00 ff ff` is removed, as the RFC requires).
    pub fn compress(&mut self, input: &[u8], fin: bool) -> Bytes {
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        let mut consumed = 0usize;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            let before_in = self.z.total_in();
            // Compression of in-memory buffers cannot fail.
            let _ = self.z.compress_vec(&input[consumed..], &mut out, FlushCompress::Sync);
            consumed += (self.z.total_in() - before_in) as usize;
            // zlib's rule: the flush is complete once all input is taken and it
            // stopped with output space to spare.
            if consumed == input.len() && out.len() < out.capacity() {
                break;
            }
        }
        if fin {
            if out.ends_with(&TAIL) {
                out.truncate(out.len() - 4);
            }
            if out.is_empty() {
                // Nothing was pending (e.g. an empty message after another one): one
                // empty stored block, which the receiver completes with the tail.
                out.push(0x00);
            }
            if self.reset_each_message {
                self.z.reset();
            }
        }
        Bytes::from(out)
    }

    pub fn level(&self) -> u32 {
        self.level
    }
}

/// Inflates messages, one fragment at a time, within a size limit.
pub struct Inflater {
    z: Decompress,
    reset_each_message: bool,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater").finish()
    }
}

impl Inflater {
    pub fn new(window_bits: u8, reset_each_message: bool) -> Self {
        // Inflating with a window at least as large as the sender's is always safe.
        let _ = window_bits;
        Self { z: Decompress::new_with_window_bits(false, 15), reset_each_message }
    }

    /// Inflates one fragment of a compressed message into `out`; `fin` ends it. Fails
    /// with `MessageTooLarge` once `out` would exceed `limit` (a deflate bomb stops
    /// there), or `InvalidCompression` on corrupt data.
    pub fn inflate(&mut self, input: &[u8], fin: bool, out: &mut BytesMut, limit: usize) -> Result<(), ProtocolError> {
        self.feed(input, out, limit)?;
        if fin {
            self.feed(&TAIL, out, limit)?;
            if self.reset_each_message {
                self.z.reset(false);
            }
        }
        Ok(())
    }

    fn feed(&mut self, mut input: &[u8], out: &mut BytesMut, limit: usize) -> Result<(), ProtocolError> {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let before_in = self.z.total_in();
            let before_out = self.z.total_out();
            let status = self
                .z
                .decompress(input, &mut buf, FlushDecompress::Sync)
                .map_err(|_| ProtocolError::InvalidCompression)?;
            let used = (self.z.total_in() - before_in) as usize;
            let produced = (self.z.total_out() - before_out) as usize;
            input = &input[used..];
            if out.len() + produced > limit {
                return Err(ProtocolError::MessageTooLarge { size: out.len() + produced, limit });
            }
            out.extend_from_slice(&buf[..produced]);
            match status {
                Status::StreamEnd => return Err(ProtocolError::InvalidCompression),
                _ if input.is_empty() && produced < buf.len() => return Ok(()),
                _ if used == 0 && produced == 0 => return Err(ProtocolError::InvalidCompression),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(params: DeflateParams, messages: &[&[u8]], fragments: usize) {
        let (mut tx, _) = params.codecs(true, 6);
        let (_, mut rx) = params.codecs(false, 6);
        for m in messages {
            let chunk = (m.len() / fragments).max(1);
            let pieces: Vec<&[u8]> = if m.is_empty() { vec![&m[..]] } else { m.chunks(chunk).collect() };
            let mut out = BytesMut::new();
            for (i, p) in pieces.iter().enumerate() {
                let fin = i + 1 == pieces.len();
                let c = tx.compress(p, fin);
                rx.inflate(&c, fin, &mut out, 1 << 24).unwrap();
            }
            assert_eq!(&out[..], *m);
        }
    }

    #[test]
    fn messages_roundtrip_with_and_without_context_takeover() {
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 7 + i / 1000) as u8).collect();
        let msgs: Vec<&[u8]> = vec![b"Hello", b"Hello", b"", &big, b"\x00\xff"];
        for reset in [false, true] {
            for fragments in [1, 3] {
                let p = DeflateParams {
                    server_no_context_takeover: reset,
                    client_no_context_takeover: reset,
                    ..Default::default()
                };
                roundtrip(p, &msgs, fragments);
            }
        }
        roundtrip(DeflateParams { server_max_window_bits: Some(9), ..Default::default() }, &msgs, 2);
    }

    #[test]
    fn rfc_example_hello() {
        // RFC 7692 §7.2.3.1: "Hello" compressed without context takeover.
        let mut rx = Inflater::new(15, false);
        let mut out = BytesMut::new();
        rx.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], true, &mut out, 100).unwrap();
        assert_eq!(&out[..], b"Hello");
    }

    #[test]
    fn bombs_stop_at_the_limit_and_garbage_fails() {
        let mut tx = Deflater::new(9, 15, false);
        let c = tx.compress(&vec![0u8; 1 << 20], true);
        assert!(c.len() < 5000);
        let mut rx = Inflater::new(15, false);
        let err = rx.inflate(&c, true, &mut BytesMut::new(), 64 * 1024).unwrap_err();
        assert!(matches!(err, ProtocolError::MessageTooLarge { .. }));
        let mut rx = Inflater::new(15, false);
        assert!(rx.inflate(&[0xff, 0xff, 0xff, 0x00, 0x12], true, &mut BytesMut::new(), 100).is_err());
    }

    #[test]
    fn negotiation() {
        let policy = DeflatePolicy::default();
        let p = accept_offer(["permessage-deflate; client_max_window_bits"], &policy).unwrap();
        assert_eq!(p.to_header(), "permessage-deflate");
        let p = accept_offer(["permessage-deflate; server_max_window_bits=10; client_no_context_takeover"], &policy)
            .unwrap();
        assert_eq!(p.server_max_window_bits, Some(10));
        assert!(p.client_no_context_takeover);
        assert!(accept_offer(["permessage-deflate; server_max_window_bits=8"], &policy).is_none());
        assert!(accept_offer(["permessage-deflate; bogus"], &policy).is_none());
        assert!(accept_offer(["x-webkit-deflate-frame"], &policy).is_none());
        // The first acceptable offer wins.
        let p = accept_offer(["permessage-deflate; server_max_window_bits=8, permessage-deflate"], &policy).unwrap();
        assert_eq!(p, DeflateParams::default());
        let a = accept_answer(["permessage-deflate; server_no_context_takeover"], &policy).unwrap().unwrap();
        assert!(a.server_no_context_takeover);
        assert_eq!(accept_answer([""], &policy).unwrap(), None);
        assert!(accept_answer(["permessage-deflate; client_max_window_bits"], &policy).is_err());
    }
}
