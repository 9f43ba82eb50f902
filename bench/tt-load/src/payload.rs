//! Payloads that can be checked byte for byte without keeping a copy of what was sent.
//!
//! Message `seq` of connection `conn`, sent at `ts` (ns since the run's epoch), is
//!
//! ```text
//! header: seq, then ts                 fill: a 64-character ASCII alphabet, repeated,
//!   binary: two u64, little-endian           from an offset that depends on conn and seq
//!   text:   two 16-digit hex numbers          (so an echo from another connection or an
//!                                             older message does not compare equal)
//! ```
//!
//! A payload shorter than its header is the header's first `size` bytes; `seq`'s low
//! byte comes first in binary, so even one byte tells consecutive messages apart. Text
//! payloads are ASCII: valid UTF-8 at any size.
//!
//! The layout follows the idea of wsgate-bench's payloads but is written separately:
//! this client is meant to share as little as possible with what it measures.

use std::fmt;

use bytes::BytesMut;

const ALPHABET: &[u8; 64] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz+/";
const HEX: &[u8; 16] = b"0123456789abcdef";
const BINARY_HEADER: usize = 16;
const TEXT_HEADER: usize = 32;

/// How the payloads of one run are built and checked: two `memcpy`s to build, two
/// `memcmp`s to check.
#[derive(Debug)]
pub struct Pattern {
    size: usize,
    text: bool,
    /// `size + 64` bytes of the alphabet: the fill at any offset is a slice of it.
    template: Box<[u8]>,
}

/// How an echo differs from what was sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Mismatch {
    Length { expected: usize, got: usize },
    Byte { index: usize, expected: u8, got: u8 },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Length { expected, got } => write!(f, "length {got}, expected {expected}"),
            Self::Byte { index, expected, got } => write!(f, "byte {index} is {got:#04x}, expected {expected:#04x}"),
        }
    }
}

impl Pattern {
    pub fn new(size: usize, text: bool) -> Self {
        let template = (0..size + ALPHABET.len()).map(|i| ALPHABET[i % ALPHABET.len()]).collect();
        Self { size, text, template }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    pub fn is_text(&self) -> bool {
        self.text
    }

    /// The header bytes and how many of them this payload carries.
    fn header(&self, seq: u64, ts: u64) -> ([u8; TEXT_HEADER], usize) {
        let mut h = [0u8; TEXT_HEADER];
        if self.text {
            for (i, v) in [seq, ts].into_iter().enumerate() {
                for d in 0..16 {
                    h[i * 16 + d] = HEX[((v >> (60 - 4 * d)) & 0xf) as usize];
                }
            }
            (h, TEXT_HEADER.min(self.size))
        } else {
            h[..8].copy_from_slice(&seq.to_le_bytes());
            h[8..16].copy_from_slice(&ts.to_le_bytes());
            (h, BINARY_HEADER.min(self.size))
        }
    }

    fn fill(&self, conn: u64, seq: u64, header_len: usize) -> &[u8] {
        // 37 is odd, so connections 0..63 all start at different offsets.
        let offset = (conn.wrapping_mul(37).wrapping_add(seq) % ALPHABET.len() as u64) as usize;
        &self.template[offset..offset + self.size - header_len]
    }

    /// Appends the payload to `buf`. `buf` is expected empty; once the previous
    /// payload split off it has been dropped, `reserve` reuses its allocation.
    pub fn write(&self, buf: &mut BytesMut, conn: u64, seq: u64, ts: u64) {
        buf.reserve(self.size);
        let (h, n) = self.header(seq, ts);
        buf.extend_from_slice(&h[..n]);
        buf.extend_from_slice(self.fill(conn, seq, n));
    }

    /// Checks `got` against the payload of (`conn`, `seq`, `ts`).
    pub fn verify(&self, got: &[u8], conn: u64, seq: u64, ts: u64) -> Result<(), Mismatch> {
        if got.len() != self.size {
            return Err(Mismatch::Length { expected: self.size, got: got.len() });
        }
        let (h, n) = self.header(seq, ts);
        let fill = self.fill(conn, seq, n);
        if got[..n] == h[..n] && got[n..] == *fill {
            return Ok(());
        }
        // Slow path, only on a mismatch: find the first differing byte.
        let expected = h[..n].iter().chain(fill);
        let (index, (e, g)) = expected.zip(got).enumerate().find(|(_, (e, g))| e != g).unwrap_or((0, (&0, &0)));
        Err(Mismatch::Byte { index, expected: *e, got: *g })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(p: &Pattern, conn: u64, seq: u64, ts: u64) -> Vec<u8> {
        let mut b = BytesMut::new();
        p.write(&mut b, conn, seq, ts);
        b.to_vec()
    }

    #[test]
    fn round_trips_at_every_size_in_both_kinds() {
        for text in [false, true] {
            for size in [0, 1, 7, 16, 31, 32, 33, 64, 1000] {
                let p = Pattern::new(size, text);
                let b = build(&p, 3, 42, 1_234_567);
                assert_eq!(b.len(), size);
                assert_eq!(p.verify(&b, 3, 42, 1_234_567), Ok(()));
                if text {
                    assert!(std::str::from_utf8(&b).is_ok());
                }
            }
        }
    }

    #[test]
    fn another_message_connection_or_time_does_not_verify() {
        for text in [false, true] {
            let p = Pattern::new(64, text);
            let b = build(&p, 3, 42, 1_000);
            assert!(p.verify(&b, 3, 43, 1_000).is_err(), "seq");
            assert!(p.verify(&b, 4, 42, 1_000).is_err(), "connection");
            assert!(p.verify(&b, 3, 42, 1_001).is_err(), "timestamp");
            assert_eq!(p.verify(&b[..63], 3, 42, 1_000), Err(Mismatch::Length { expected: 64, got: 63 }));
        }
        let p = Pattern::new(1, false);
        assert!(p.verify(&build(&p, 0, 1, 0), 0, 2, 0).is_err(), "a 1-byte payload still carries seq");
    }

    #[test]
    fn names_the_first_differing_byte() {
        let p = Pattern::new(64, false);
        let mut b = build(&p, 0, 9, 5);
        b[40] ^= 0xff;
        let expected = b[40] ^ 0xff;
        assert_eq!(p.verify(&b, 0, 9, 5), Err(Mismatch::Byte { index: 40, expected, got: b[40] }));
    }
}
