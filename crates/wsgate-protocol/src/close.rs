//! Close frames (RFC 6455 §5.5.1, §7.4).

use bytes::{BufMut, Bytes, BytesMut};

use crate::frame::ProtocolError;

/// Named close codes wsgate sends itself.
pub struct CloseCode;

impl CloseCode {
    pub const NORMAL: u16 = 1000;
    /// Sent to every session on graceful shutdown.
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const POLICY: u16 = 1008;
    /// Message over the configured size limit.
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
    /// The upstream could not be reached after the client was accepted early.
    pub const BAD_GATEWAY: u16 = 1014;
    /// Status for "no status received" — never sent on the wire, only reported.
    pub const NO_STATUS: u16 = 1005;
    /// Status for "connection dropped without a close frame" — never sent on the wire.
    pub const ABNORMAL: u16 = 1006;

    /// Whether `code` may appear in a close frame on the wire.
    pub fn is_sendable(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// A parsed close frame payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    pub code: u16,
    pub reason: String,
}

impl CloseFrame {
    pub fn new(code: u16, reason: impl Into<String>) -> Self {
        Self { code, reason: reason.into() }
    }

    /// Parses and validates a close payload: empty, or a sendable code followed by a
    /// UTF-8 reason.
    pub fn parse(payload: &[u8]) -> Result<Option<Self>, ProtocolError> {
        match payload.len() {
            0 => Ok(None),
            1 => Err(ProtocolError::CloseFrameTooShort),
            _ => {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                if !CloseCode::is_sendable(code) {
                    return Err(ProtocolError::InvalidCloseCode(code));
                }
                let reason = simdutf8::basic::from_utf8(&payload[2..]).map_err(|_| ProtocolError::InvalidUtf8)?;
                Ok(Some(Self { code, reason: reason.to_owned() }))
            }
        }
    }

    /// Encodes the payload, cutting the reason at a character boundary so the frame
    /// stays within the 125-byte control-frame limit.
    pub fn encode(&self) -> Bytes {
        let mut reason = self.reason.as_str();
        while reason.len() > 123 {
            let mut cut = 123;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason = &reason[..cut];
        }
        let mut b = BytesMut::with_capacity(2 + reason.len());
        b.put_u16(self.code);
        b.extend_from_slice(reason.as_bytes());
        b.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_encode() {
        let f = CloseFrame::new(4001, "bye");
        assert_eq!(CloseFrame::parse(&f.encode()).unwrap(), Some(f));
        assert_eq!(CloseFrame::parse(b"").unwrap(), None);
        assert!(CloseFrame::parse(b"\x03").is_err());
        assert!(CloseFrame::parse(&[0x03, 0xED]).is_err()); // 1005
        assert!(CloseFrame::parse(&[0x03, 0xE8, 0xFF]).is_err()); // bad utf8
        let long = CloseFrame::new(1000, "é".repeat(100));
        assert!(long.encode().len() <= 125);
    }
}
