//! Helpers shared by the fuzz targets (`fuzz_targets/*.rs`, one per parser of
//! untrusted input; see docs/fuzzing.md).
//!
//! Every target reads its input the same way: a few leading bytes of settings (role,
//! limits, how to cut the input into reads), then the untrusted bytes themselves in
//! their natural form — frames as on the wire, header lines, YAML, JSON, HTTP
//! requests. So a seed in `fuzz/corpus/<target>/` is readable and easy to write, and
//! a crash artifact shows what the peer sent. [`Input`] reads the settings; [`chunks`]
//! cuts the bytes into the pieces a socket could deliver.

/// Reads a fuzz input front to back. Reading past the end yields zeros and empty
/// slices, so every input is usable.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// The next byte (0 past the end).
    pub fn byte(&mut self) -> u8 {
        let (&b, rest) = self.data.split_first().unwrap_or((&0, &[]));
        self.data = rest;
        b
    }

    /// The next two bytes, big-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    /// The next `n` bytes (fewer at the end).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// A count byte, then that many bytes (at most `max`): how a target reads its list
    /// of read sizes for [`chunks`].
    pub fn cuts(&mut self, max: u8) -> &'a [u8] {
        let n = self.byte() % (max + 1);
        self.take(usize::from(n))
    }

    /// Everything not read yet.
    pub fn rest(self) -> &'a [u8] {
        self.data
    }
}

/// Splits `data` into consecutive pieces whose lengths are taken from `cuts`, cycling
/// through it (a cut of 0 is a zero-length piece); an empty `cuts` means one piece.
/// Every byte of `data` is in exactly one piece, in order.
pub fn chunks<'a>(data: &'a [u8], cuts: &[u8]) -> Vec<&'a [u8]> {
    if cuts.iter().all(|&c| c == 0) {
        return vec![data];
    }
    let mut out = Vec::new();
    let mut rest = data;
    for &c in cuts.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (head, tail) = rest.split_at(usize::from(c).min(rest.len()));
        out.push(head);
        rest = tail;
    }
    out
}

/// Records of the form `[flags][length: u16 BE][bytes]`, until the input ends (a short
/// last record takes what is left). How targets read lists of binary pieces — message
/// fragments, compressed data — where no separator byte is safe.
pub fn records(data: &[u8]) -> Vec<(u8, &[u8])> {
    let mut input = Input::new(data);
    let mut out = Vec::new();
    while !input.data.is_empty() {
        let flags = input.byte();
        let len = input.u16();
        out.push((flags, input.take(usize::from(len))));
    }
    out
}

/// A frame-size limit picked from the values where the decoder's branches change:
/// 0, the control-frame limit, the 7-bit/16-bit/64-bit length boundaries, limits
/// larger than any input, and no limit at all (a config may say so).
pub fn frame_limit(selector: u8) -> usize {
    const LIMITS: [usize; 9] = [0, 1, 125, 126, 65_535, 65_536, 1 << 20, 16 << 20, usize::MAX];
    LIMITS[usize::from(selector) % LIMITS.len()]
}
