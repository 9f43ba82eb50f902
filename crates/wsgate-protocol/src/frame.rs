//! Frame header parsing and encoding (RFC 6455 §5.2) and payload masking.

use bytes::{Buf, Bytes, BytesMut};

/// Which end of the connection we are: servers expect masked frames and send unmasked
/// ones; clients the other way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

/// A frame opcode. Reserved opcodes never get past the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    pub fn as_u8(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    pub fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }

    /// The lowercase name used in events and transcripts.
    pub fn name(self) -> &'static str {
        match self {
            Self::Continuation => "continuation",
            Self::Text => "text",
            Self::Binary => "binary",
            Self::Close => "close",
            Self::Ping => "ping",
            Self::Pong => "pong",
        }
    }
}

/// One frame with an unmasked payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    /// RSV1: set on the first frame of a compressed message when permessage-deflate is
    /// in use. Kept so a later deflate layer can see it; rejected by the decoder unless
    /// allowed.
    pub rsv1: bool,
    pub opcode: OpCode,
    pub payload: Bytes,
}

impl Frame {
    pub fn new(opcode: OpCode, payload: impl Into<Bytes>) -> Self {
        Self { fin: true, rsv1: false, opcode, payload: payload.into() }
    }
    pub fn text(payload: impl Into<Bytes>) -> Self {
        Self::new(OpCode::Text, payload)
    }
    pub fn binary(payload: impl Into<Bytes>) -> Self {
        Self::new(OpCode::Binary, payload)
    }
    pub fn ping(payload: impl Into<Bytes>) -> Self {
        Self::new(OpCode::Ping, payload)
    }
    pub fn pong(payload: impl Into<Bytes>) -> Self {
        Self::new(OpCode::Pong, payload)
    }
    pub fn with_fin(mut self, fin: bool) -> Self {
        self.fin = fin;
        self
    }
}

/// A violation of RFC 6455 by the peer. Each maps to the close code the RFC asks for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    #[error("control frame is fragmented or longer than 125 bytes")]
    BadControlFrame,
    #[error("client frame is not masked")]
    UnmaskedClientFrame,
    #[error("server frame is masked")]
    MaskedServerFrame,
    #[error("64-bit payload length with its most significant bit set")]
    LengthMsbSet,
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge { size: u64, limit: usize },
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    MessageTooLarge { size: usize, limit: usize },
    #[error("continuation frame without a message in progress")]
    UnexpectedContinuation,
    #[error("new data frame while a fragmented message is in progress")]
    ExpectedContinuation,
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
    #[error("close frame payload of one byte")]
    CloseFrameTooShort,
    #[error("close code {0} may not be sent on the wire")]
    InvalidCloseCode(u16),
    #[error("compressed data is corrupt")]
    InvalidCompression,
    #[error("RSV1 set on a continuation or control frame")]
    MisplacedRsv1,
}

impl ProtocolError {
    /// The close code to send when failing the connection for this error.
    pub fn close_code(&self) -> u16 {
        match self {
            Self::FrameTooLarge { .. } | Self::MessageTooLarge { .. } => 1009,
            Self::InvalidUtf8 => 1007,
            _ => 1002,
        }
    }
}

/// Cuts frames out of a read buffer. Holds no buffer itself, so the caller decides
/// how much memory a connection keeps between frames.
#[derive(Debug, Clone)]
pub struct Decoder {
    role: Role,
    max_frame: usize,
    allow_rsv1: bool,
}

/// Largest possible frame header: 2 + 8 (length) + 4 (mask).
pub const MAX_HEADER: usize = 14;

/// Most room the decoder reserves ahead for a partly received frame.
pub const MAX_RESERVE: usize = 1 << 20;

impl Decoder {
    pub fn new(role: Role, max_frame: usize) -> Self {
        Self { role, max_frame, allow_rsv1: false }
    }

    /// Accept RSV1 (permessage-deflate negotiated).
    pub fn allow_rsv1(mut self, allow: bool) -> Self {
        self.allow_rsv1 = allow;
        self
    }

    /// Bytes still missing before the frame at the start of `buf` is complete, or
    /// `None` if the header itself is incomplete.
    pub fn missing(&self, buf: &[u8]) -> Option<usize> {
        let (header_len, payload_len, _) = parse_lengths(buf)?;
        // The length is the peer's, up to 2^64-1, and nothing has checked it against a
        // limit yet: add without overflowing (found by fuzzing: it panicked).
        let total = payload_len.saturating_add(header_len as u64);
        Some(usize::try_from(total.saturating_sub(buf.len() as u64)).unwrap_or(usize::MAX))
    }

    /// Takes one complete frame off the front of `buf`, unmasking it in place.
    /// `Ok(None)` means more bytes are needed.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let b0 = buf[0];
        let b1 = buf[1];
        let fin = b0 & 0x80 != 0;
        let rsv1 = b0 & 0x40 != 0;
        if b0 & 0x30 != 0 || (rsv1 && !self.allow_rsv1) {
            return Err(ProtocolError::ReservedBits);
        }
        let opcode = OpCode::from_u8(b0 & 0x0F).ok_or(ProtocolError::ReservedOpcode(b0 & 0x0F))?;
        let masked = b1 & 0x80 != 0;
        match (self.role, masked) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedClientFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedServerFrame),
            _ => {}
        }
        let len7 = b1 & 0x7F;
        if opcode.is_control() && (!fin || len7 > 125) {
            return Err(ProtocolError::BadControlFrame);
        }
        let Some((header_len, payload_len, _)) = parse_lengths(buf) else {
            return Ok(None);
        };
        // RFC 6455 §5.2: "the most significant bit MUST be 0". Such a header is
        // malformed (1002), not merely a frame over our size limit (1009).
        if payload_len >> 63 != 0 {
            return Err(ProtocolError::LengthMsbSet);
        }
        // The length is the peer's, up to 2^64-1. With no practical limit (a config may
        // set one near usize::MAX) `header_len + payload_len` can overflow, which wrapped
        // to a tiny total in release builds: check it (found by fuzzing).
        let total = match usize::try_from(payload_len).ok().and_then(|p| p.checked_add(header_len)) {
            Some(total) if payload_len <= self.max_frame as u64 => total,
            _ => return Err(ProtocolError::FrameTooLarge { size: payload_len, limit: self.max_frame }),
        };
        if buf.len() < total {
            // Room for what is likely to arrive soon, not for everything the header
            // claims: a 10-byte header must not make us allocate up to the limit (or
            // panic with "capacity overflow" when there is none). The buffer grows as
            // the bytes actually come (found by fuzzing).
            buf.reserve((total - buf.len()).min(MAX_RESERVE));
            return Ok(None);
        }
        let mask = masked.then(|| {
            let m = &buf[header_len - 4..header_len];
            [m[0], m[1], m[2], m[3]]
        });
        buf.advance(header_len);
        let mut payload = buf.split_to(payload_len as usize);
        if let Some(mask) = mask {
            apply_mask(&mut payload, mask);
        }
        Ok(Some(Frame { fin, rsv1, opcode, payload: payload.freeze() }))
    }
}

/// (header length, payload length, masked) once the header is complete.
fn parse_lengths(buf: &[u8]) -> Option<(usize, u64, bool)> {
    if buf.len() < 2 {
        return None;
    }
    let masked = buf[1] & 0x80 != 0;
    let len7 = buf[1] & 0x7F;
    let (ext, payload_len) = match len7 {
        126 => {
            if buf.len() < 4 {
                return None;
            }
            (2, u16::from_be_bytes([buf[2], buf[3]]) as u64)
        }
        127 => {
            if buf.len() < 10 {
                return None;
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (8, u64::from_be_bytes(b))
        }
        n => (0, n as u64),
    };
    let header_len = 2 + ext + if masked { 4 } else { 0 };
    if buf.len() < header_len {
        return None;
    }
    Some((header_len, payload_len, masked))
}

/// Writes one frame into `dst`: header built on the stack, payload copied once and
/// masked in place when `mask` is given (client role).
pub fn encode_frame(dst: &mut BytesMut, frame_head: (bool, bool, OpCode), payload: &[u8], mask: Option<[u8; 4]>) {
    let (fin, rsv1, opcode) = frame_head;
    let mut head = [0u8; MAX_HEADER];
    head[0] = (fin as u8) << 7 | (rsv1 as u8) << 6 | opcode.as_u8();
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    let mut n = if len < 126 {
        head[1] = mask_bit | len as u8;
        2
    } else if len <= u16::MAX as usize {
        head[1] = mask_bit | 126;
        head[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        head[1] = mask_bit | 127;
        head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    if let Some(m) = mask {
        head[n..n + 4].copy_from_slice(&m);
        n += 4;
    }
    dst.reserve(n + len);
    dst.extend_from_slice(&head[..n]);
    let start = dst.len();
    dst.extend_from_slice(payload);
    if let Some(m) = mask {
        apply_mask(&mut dst[start..], m);
    }
}

/// A fresh random masking key (RFC 6455 §5.3 asks for an unpredictable one).
pub fn random_mask() -> [u8; 4] {
    fastrand::u32(..).to_ne_bytes()
}

/// XORs `buf` with the 4-byte `mask`, eight bytes at a time.
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3]]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let v = u64::from_ne_bytes(w) ^ wide;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(role_out: Role, payload: &[u8], opcode: OpCode, fin: bool) -> Frame {
        let mut buf = BytesMut::new();
        let mask = (role_out == Role::Client).then(random_mask);
        encode_frame(&mut buf, (fin, false, opcode), payload, mask);
        let role_in = if role_out == Role::Client { Role::Server } else { Role::Client };
        let dec = Decoder::new(role_in, 1 << 24);
        let f = dec.decode(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty());
        f
    }

    #[test]
    fn lengths_at_every_boundary_roundtrip_both_roles() {
        for len in [0usize, 1, 7, 8, 9, 125, 126, 127, 65535, 65536, 100_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            for role in [Role::Client, Role::Server] {
                let f = roundtrip(role, &payload, OpCode::Binary, true);
                assert_eq!(&f.payload[..], &payload[..], "len {len} role {role:?}");
            }
        }
    }

    #[test]
    fn partial_input_asks_for_more_then_completes() {
        let mut full = BytesMut::new();
        encode_frame(&mut full, (true, false, OpCode::Text), b"hello world", Some([1, 2, 3, 4]));
        let dec = Decoder::new(Role::Server, 1024);
        for cut in 0..full.len() {
            let mut part = BytesMut::from(&full[..cut]);
            assert_eq!(dec.decode(&mut part).unwrap(), None, "cut at {cut}");
        }
        let mut all = full.clone();
        assert_eq!(&dec.decode(&mut all).unwrap().unwrap().payload[..], b"hello world");
    }

    #[test]
    fn protocol_violations_are_typed() {
        let dec = Decoder::new(Role::Server, 16);
        let cases: &[(&[u8], ProtocolError)] = &[
            (&[0x81, 0x00], ProtocolError::UnmaskedClientFrame),
            (&[0xC1, 0x80, 0, 0, 0, 0], ProtocolError::ReservedBits),
            (&[0x83, 0x80, 0, 0, 0, 0], ProtocolError::ReservedOpcode(3)),
            (&[0x09, 0x80, 0, 0, 0, 0], ProtocolError::BadControlFrame),
            (&[0x89, 0xFE, 0, 200], ProtocolError::BadControlFrame),
            (&[0x82, 0x91, 0, 0, 0, 0], ProtocolError::FrameTooLarge { size: 17, limit: 16 }),
            (&[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4], ProtocolError::LengthMsbSet),
            (
                &[0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4],
                ProtocolError::FrameTooLarge { size: u64::MAX >> 1, limit: 16 },
            ),
        ];
        for (bytes, want) in cases {
            let mut b = BytesMut::from(*bytes);
            assert_eq!(dec.decode(&mut b).unwrap_err(), *want);
        }
        assert_eq!(ProtocolError::LengthMsbSet.close_code(), 1002);
        let client = Decoder::new(Role::Client, 16);
        let mut b = BytesMut::from(&[0x81u8, 0x80, 0, 0, 0, 0][..]);
        assert_eq!(client.decode(&mut b).unwrap_err(), ProtocolError::MaskedServerFrame);
    }

    /// Fuzzing found `missing` overflowing on a 64-bit length (a debug-build panic,
    /// a wrong answer in release).
    #[test]
    fn missing_takes_any_length() {
        let dec = Decoder::new(Role::Client, 16);
        let header = [0x82, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
        assert_eq!(dec.missing(&header), Some(usize::MAX - header.len()));
        assert_eq!(dec.missing(&[0x82, 0x7E, 0x00, 0x05, b'a']), Some(4));
    }

    /// Fuzzing found that with no practical limit (`usize::MAX`, which a config may
    /// give) a header claiming 2^64-1 bytes overflowed the total (wrapping to a tiny
    /// frame in release builds) and a huge claim made `reserve` panic with "capacity
    /// overflow". Now the first is too large and the second reserves a bounded amount.
    #[test]
    fn unbounded_limit_survives_huge_lengths() {
        let dec = Decoder::new(Role::Client, usize::MAX);
        // 2^64-1 has the most significant bit set, which RFC 6455 forbids outright.
        let mut b = BytesMut::from(&[0x82, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00][..]);
        assert!(matches!(dec.decode(&mut b), Err(ProtocolError::LengthMsbSet)));
        // The fuzzer's input claimed 0x8effffff82810151 bytes (also MSB set, so now a
        // 1002); the same claim without that bit must only reserve a bounded amount.
        let mut b = BytesMut::from(&[0x82, 0x7F, 0x0E, 0xFF, 0xFF, 0xFF, 0x82, 0x81, 0x01, 0x51, 0x77][..]);
        assert_eq!(dec.decode(&mut b), Ok(None));
        assert!(b.capacity() <= b.len() + MAX_RESERVE + 64, "reserved {} bytes", b.capacity());
        // With an ordinary limit, a claim within it reserves no more than MAX_RESERVE.
        let dec = Decoder::new(Role::Client, 1 << 30);
        let mut b = BytesMut::from(&[0x82, 0x7F, 0, 0, 0, 0, 0x3F, 0xFF, 0xFF, 0xFF][..]);
        assert_eq!(dec.decode(&mut b), Ok(None));
        assert!(b.capacity() <= b.len() + MAX_RESERVE + 64, "reserved {} bytes", b.capacity());
    }

    #[test]
    fn mask_matches_bytewise_definition() {
        let mask = [0xA1, 0x02, 0xF3, 0x44];
        for len in 0..40 {
            let mut fast: Vec<u8> = (0..len as u8).collect();
            let slow: Vec<u8> = fast.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
            apply_mask(&mut fast, mask);
            assert_eq!(fast, slow);
        }
    }
}
