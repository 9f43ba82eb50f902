//! The bench's message payloads: deterministic, so every received message can be
//! checked byte for byte against what was sent without keeping a copy of it.
//!
//! A payload of `size` bytes for message `seq` of stream `stream` sent at `ts`
//! (nanoseconds since the run's epoch) is
//!
//! ```text
//! header: seq, then ts              fill: the 64-character base64url alphabet, repeated,
//!   binary: 2 × u64 little-endian         starting at an offset that depends on stream
//!   text:   2 × 16 hex digits,            and seq (so a message from another connection
//!           least significant first       or a stale one does not compare equal)
//! ```
//!
//! Below the header's length the payload is the header's first `size` bytes: the
//! check is still byte for byte, and because the fastest-changing byte (the low byte
//! of `seq`) comes first, even a 1-byte payload tells consecutive messages apart. Text
//! payloads are all ASCII, so they are valid UTF-8 at every size.

use std::fmt;

use bytes::BytesMut;

/// The fill alphabet: 64 printable ASCII characters.
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const HEX: &[u8; 16] = b"0123456789abcdef";
/// Header length of a binary payload: seq and ts as two little-endian u64.
pub(crate) const BINARY_HEADER: usize = 16;
/// Header length of a text payload: seq and ts as 16 hex digits each.
pub(crate) const TEXT_HEADER: usize = 32;

/// How payloads of one run are built and checked. Holds a precomputed copy of the fill
/// so building is two `memcpy`s and checking two `memcmp`s.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    size: usize,
    text: bool,
    /// `size + 64` bytes of the alphabet, repeated: a fill starting at any of the 64
    /// offsets is a plain slice of it.
    template: Box<[u8]>,
}

/// How a received payload differs from the expected one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mismatch {
    Length { expected: usize, got: usize },
    Byte { index: usize, expected: u8, got: u8 },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Length { expected, got } => write!(f, "length {got}, expected {expected}"),
            Self::Byte { index, expected, got } => {
                write!(f, "byte {index} is {got:#04x}, expected {expected:#04x}")
            }
        }
    }
}

impl Pattern {
    pub(crate) fn new(size: usize, text: bool) -> Self {
        let template = (0..size + ALPHABET.len()).map(|i| ALPHABET[i % ALPHABET.len()]).collect();
        Self { size, text, template }
    }

    pub(crate) fn size(&self) -> usize {
        self.size
    }

    pub(crate) fn is_text(&self) -> bool {
        self.text
    }

    /// Length of the full (seq, ts) header; a payload at least this long can be
    /// parsed without knowing what was sent (fan-out subscribers need that).
    pub(crate) fn header_len(&self) -> usize {
        if self.text { TEXT_HEADER } else { BINARY_HEADER }
    }

    fn header(&self, seq: u64, ts: u64) -> [u8; TEXT_HEADER] {
        let mut h = [0u8; TEXT_HEADER];
        if self.text {
            for (field, out) in [seq, ts].into_iter().zip(h.chunks_exact_mut(16)) {
                for (i, digit) in out.iter_mut().enumerate() {
                    *digit = HEX[((field >> (4 * i)) & 0xf) as usize];
                }
            }
        } else {
            h[..8].copy_from_slice(&seq.to_le_bytes());
            h[8..16].copy_from_slice(&ts.to_le_bytes());
        }
        h
    }

    fn fill_offset(stream: u64, seq: u64) -> usize {
        (stream.wrapping_mul(13).wrapping_add(seq) % ALPHABET.len() as u64) as usize
    }

    /// Appends the payload of (`stream`, `seq`, `ts`) to `out`.
    pub(crate) fn write(&self, out: &mut BytesMut, stream: u64, seq: u64, ts: u64) {
        let head_len = self.header_len().min(self.size);
        out.reserve(self.size);
        out.extend_from_slice(&self.header(seq, ts)[..head_len]);
        let off = Self::fill_offset(stream, seq);
        out.extend_from_slice(&self.template[off..off + self.size - head_len]);
    }

    /// Checks `got` byte for byte against the payload of (`stream`, `seq`, `ts`).
    pub(crate) fn verify(&self, got: &[u8], stream: u64, seq: u64, ts: u64) -> Result<(), Mismatch> {
        if got.len() != self.size {
            return Err(Mismatch::Length { expected: self.size, got: got.len() });
        }
        let head_len = self.header_len().min(self.size);
        let header = self.header(seq, ts);
        let off = Self::fill_offset(stream, seq);
        let fill = &self.template[off..off + self.size - head_len];
        if got[..head_len] == header[..head_len] && got[head_len..] == *fill {
            return Ok(());
        }
        // Slow path, only on a mismatch: say where.
        let expected = header[..head_len].iter().chain(fill.iter());
        let (index, (e, g)) = expected
            .zip(got.iter())
            .enumerate()
            .find(|(_, (e, g))| e != g)
            .map(|(i, (e, g))| (i, (*e, *g)))
            .unwrap_or((0, (0, 0)));
        Err(Mismatch::Byte { index, expected: e, got: g })
    }

    /// Reads (seq, ts) from a payload with a full header.
    pub(crate) fn parse_header(&self, got: &[u8]) -> Option<(u64, u64)> {
        if got.len() < self.header_len() {
            return None;
        }
        if self.text {
            let field = |digits: &[u8]| {
                digits.iter().enumerate().try_fold(0u64, |acc, (i, d)| {
                    let v = match d {
                        b'0'..=b'9' => d - b'0',
                        b'a'..=b'f' => d - b'a' + 10,
                        _ => return None,
                    };
                    Some(acc | (u64::from(v) << (4 * i)))
                })
            };
            Some((field(&got[..16])?, field(&got[16..32])?))
        } else {
            let seq = u64::from_le_bytes(got[..8].try_into().ok()?);
            let ts = u64::from_le_bytes(got[8..16].try_into().ok()?);
            Some((seq, ts))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(p: &Pattern, stream: u64, seq: u64, ts: u64) -> BytesMut {
        let mut b = BytesMut::new();
        p.write(&mut b, stream, seq, ts);
        b
    }

    #[test]
    fn every_size_round_trips_and_text_is_utf8() {
        for text in [false, true] {
            for size in [0, 1, 2, 15, 16, 17, 31, 32, 33, 64, 1000, 70_000] {
                let p = Pattern::new(size, text);
                let b = build(&p, 3, 12345, 987_654_321);
                assert_eq!(b.len(), size);
                assert_eq!(p.verify(&b, 3, 12345, 987_654_321), Ok(()));
                if text {
                    assert!(std::str::from_utf8(&b).is_ok());
                }
                if size >= p.header_len() {
                    assert_eq!(p.parse_header(&b), Some((12345, 987_654_321)));
                }
            }
        }
    }

    #[test]
    fn any_changed_byte_is_found() {
        for text in [false, true] {
            let p = Pattern::new(100, text);
            let good = build(&p, 1, 7, 42);
            for i in 0..100 {
                let mut bad = good.clone();
                bad[i] ^= 0x01;
                assert_eq!(
                    p.verify(&bad, 1, 7, 42),
                    Err(Mismatch::Byte { index: i, expected: good[i], got: good[i] ^ 0x01 })
                );
            }
            assert!(matches!(p.verify(&good[..99], 1, 7, 42), Err(Mismatch::Length { .. })));
        }
    }

    #[test]
    fn neighbours_differ_even_at_one_byte() {
        for text in [false, true] {
            let p = Pattern::new(1, text);
            let a = build(&p, 0, 1, 0);
            assert!(p.verify(&a, 0, 2, 0).is_err(), "text={text}");
        }
        // a message of another stream or seq does not pass for this one
        let p = Pattern::new(64, false);
        let a = build(&p, 0, 5, 9);
        assert!(p.verify(&a, 1, 5, 9).is_err());
        assert!(p.verify(&a, 0, 6, 9).is_err());
        assert!(p.verify(&a, 0, 5, 10).is_err());
    }
}
