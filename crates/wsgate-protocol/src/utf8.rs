//! Incremental UTF-8 validation, so a text message split across fragments fails as
//! soon as an invalid byte arrives instead of after the whole message is buffered.

/// Validates a byte stream chunk by chunk. Keeps at most three bytes: the unfinished
/// tail of a multi-byte character.
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    pending: [u8; 4],
    pending_len: usize,
}

impl Utf8Validator {
    /// Feeds the next chunk. Returns `false` as soon as the stream cannot be UTF-8.
    pub fn feed(&mut self, mut chunk: &[u8]) -> bool {
        // First finish a character left incomplete by the previous chunk.
        while self.pending_len > 0 {
            let Some((&b, rest)) = chunk.split_first() else {
                return true;
            };
            self.pending[self.pending_len] = b;
            self.pending_len += 1;
            chunk = rest;
            match std::str::from_utf8(&self.pending[..self.pending_len]) {
                Ok(_) => self.pending_len = 0,
                Err(e) if e.error_len().is_some() => return false,
                Err(_) if self.pending_len == 4 => return false,
                Err(_) => {}
            }
        }
        match simdutf8::compat::from_utf8(chunk) {
            Ok(_) => true,
            Err(e) => match e.error_len() {
                Some(_) => false,
                None => {
                    let tail = &chunk[e.valid_up_to()..];
                    self.pending[..tail.len()].copy_from_slice(tail);
                    self.pending_len = tail.len();
                    true
                }
            },
        }
    }

    /// Whether the stream ended on a character boundary.
    pub fn is_complete(&self) -> bool {
        self.pending_len == 0
    }

    pub fn reset(&mut self) {
        self.pending_len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_anywhere_matches_whole() {
        let s = "κόσμε 𝄞 ascii €".as_bytes();
        for cut in 0..=s.len() {
            let mut v = Utf8Validator::default();
            assert!(v.feed(&s[..cut]));
            assert!(v.feed(&s[cut..]));
            assert!(v.is_complete(), "cut {cut}");
        }
    }

    #[test]
    fn fails_fast_on_bad_byte() {
        let mut v = Utf8Validator::default();
        assert!(v.feed(b"abc\xce"));
        assert!(!v.feed(b"\x41"));
        let mut v = Utf8Validator::default();
        assert!(!v.feed(b"\xed\xa0\x80")); // surrogate
        let mut v = Utf8Validator::default();
        assert!(v.feed(b"\xf0\x9d"));
        assert!(!v.is_complete());
    }
}
