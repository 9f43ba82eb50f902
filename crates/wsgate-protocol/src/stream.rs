//! A message-level WebSocket connection: fragments assembled, UTF-8 checked, pings
//! answered, the close handshake completed. The proxy does not use this (it forwards
//! frames as they are); every endpoint role does.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::close::{CloseCode, CloseFrame};
use crate::deflate::{DeflateParams, Deflater, Inflater};
use crate::frame::{Decoder, Frame, OpCode, ProtocolError, Role, encode_frame, random_mask};
use crate::io::{poll_fill, release_if_empty};
use crate::utf8::Utf8Validator;

/// Queued output above this is written before more input is decoded.
const FLUSH_AT: usize = 64 * 1024;

/// Limits for one connection.
#[derive(Debug, Clone, Copy)]
pub struct WsConfig {
    /// Largest single frame accepted (close 1009 above it).
    pub max_frame_size: usize,
    /// Largest assembled message accepted (close 1009 above it).
    pub max_message_size: usize,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self { max_frame_size: 16 << 20, max_message_size: 64 << 20 }
    }
}

/// A whole message or a control frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Validated UTF-8.
    Text(Bytes),
    Binary(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    Close(Option<CloseFrame>),
}

impl Message {
    pub fn text(s: impl Into<String>) -> Self {
        Self::Text(Bytes::from(s.into()))
    }

    /// Its frame's opcode and payload, as sent (a close frame's code and reason
    /// encoded): what a session records of it.
    pub fn to_parts(&self) -> (OpCode, Bytes) {
        match self {
            Self::Text(b) => (OpCode::Text, b.clone()),
            Self::Binary(b) => (OpCode::Binary, b.clone()),
            Self::Ping(b) => (OpCode::Ping, b.clone()),
            Self::Pong(b) => (OpCode::Pong, b.clone()),
            Self::Close(c) => (OpCode::Close, c.as_ref().map(CloseFrame::encode).unwrap_or_default()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WsError {
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// The peer went away without a close frame.
    #[error("connection closed without a close frame")]
    Abnormal,
    /// The close handshake finished; nothing more can be read or sent.
    #[error("connection is closed")]
    Closed,
}

/// A WebSocket connection over any byte stream.
pub struct WsStream<T> {
    io: T,
    role: Role,
    decoder: Decoder,
    config: WsConfig,
    rd: BytesMut,
    wr: BytesMut,
    frag: Option<(OpCode, BytesMut)>,
    utf8: Utf8Validator,
    close_sent: bool,
    close_received: bool,
    eof: bool,
    /// permessage-deflate, when negotiated: our compressor and the peer's inflater.
    deflate: Option<Box<(Deflater, Inflater)>>,
    /// The message being received is compressed (RSV1 on its first frame).
    inflating: bool,
}

impl<T: AsyncRead + AsyncWrite + Unpin> WsStream<T> {
    /// Wraps a stream whose handshake is done. `leftover` holds bytes read past it.
    pub fn new(io: T, role: Role, config: WsConfig, leftover: Bytes) -> Self {
        Self {
            io,
            role,
            decoder: Decoder::new(role, config.max_frame_size),
            config,
            rd: BytesMut::from(&leftover[..]),
            wr: BytesMut::new(),
            frag: None,
            utf8: Utf8Validator::default(),
            close_sent: false,
            close_received: false,
            eof: false,
            deflate: None,
            inflating: false,
        }
    }

    /// Turns on permessage-deflate with the negotiated parameters: outgoing messages
    /// are compressed, incoming compressed ones inflated.
    pub fn with_deflate(mut self, params: Option<DeflateParams>, level: u32) -> Self {
        if let Some(p) = params {
            self.deflate = Some(Box::new(p.codecs(self.role == Role::Server, level)));
            self.decoder = self.decoder.clone().allow_rsv1(true);
        }
        self
    }

    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// Bytes queued and not yet written: a peer that does not read makes it grow, so
    /// callers that queue on their own initiative (injects) check it against a bound.
    #[inline]
    pub fn buffered(&self) -> usize {
        self.wr.len()
    }

    pub fn is_closed(&self) -> bool {
        self.close_sent && self.close_received
    }

    fn mask(&self) -> Option<[u8; 4]> {
        (self.role == Role::Client).then(random_mask)
    }

    /// Queues a frame without writing it.
    pub fn feed_frame(&mut self, frame: &Frame) -> Result<(), WsError> {
        if self.close_sent {
            return Err(WsError::Closed);
        }
        if frame.opcode == OpCode::Close {
            self.close_sent = true;
        }
        let mask = self.mask();
        encode_frame(&mut self.wr, (frame.fin, frame.rsv1, frame.opcode), &frame.payload, mask);
        Ok(())
    }

    /// Queues a message without writing it (compressed when permessage-deflate is on).
    pub fn feed(&mut self, msg: &Message) -> Result<(), WsError> {
        let data = |opcode: OpCode, b: &Bytes, deflate: &mut Option<Box<(Deflater, Inflater)>>| match deflate {
            Some(d) => Frame { fin: true, rsv1: true, opcode, payload: d.0.compress(b, true) },
            None => Frame::new(opcode, b.clone()),
        };
        let frame = match msg {
            Message::Text(b) => data(OpCode::Text, b, &mut self.deflate),
            Message::Binary(b) => data(OpCode::Binary, b, &mut self.deflate),
            Message::Ping(b) => Frame::ping(b.clone()),
            Message::Pong(b) => Frame::pong(b.clone()),
            Message::Close(c) => Frame::new(OpCode::Close, c.as_ref().map(CloseFrame::encode).unwrap_or_default()),
        };
        self.feed_frame(&frame)
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> Result<(), WsError> {
        poll_fn(|cx| self.poll_flush_wr(cx)).await
    }

    fn poll_flush_wr(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        while !self.wr.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.wr))?;
            if n == 0 {
                return Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero).into()));
            }
            self.wr.advance(n);
        }
        release_if_empty(&mut self.wr);
        ready!(Pin::new(&mut self.io).poll_flush(cx))?;
        Poll::Ready(Ok(()))
    }

    pub async fn send(&mut self, msg: Message) -> Result<(), WsError> {
        self.feed(&msg)?;
        self.flush().await
    }

    /// Sends a close frame (if not yet sent) and waits for the peer's, with no
    /// deadline of its own: wrap in a timeout.
    pub async fn close(&mut self, code: u16, reason: &str) -> Result<(), WsError> {
        if !self.close_sent {
            self.feed(&Message::Close(Some(CloseFrame::new(code, reason))))?;
        }
        self.flush().await?;
        while !self.close_received {
            match self.recv().await {
                Ok(_) => {}
                Err(WsError::Closed) => break,
                Err(e) => return Err(e),
            }
        }
        let _ = self.io.shutdown().await;
        Ok(())
    }

    /// Receives the next message. Cancel-safe: partial input and queued replies stay
    /// buffered for the next call.
    pub async fn recv(&mut self) -> Result<Message, WsError> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Poll form of [`WsStream::recv`].
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Message, WsError>> {
        loop {
            // Queued writes (replies, echoes) are flushed once per burst: before we
            // wait for the socket, or when they pile up.
            if self.close_received || self.wr.len() >= FLUSH_AT {
                ready!(self.poll_flush_wr(cx))?;
            }
            if self.close_received {
                if self.close_sent && self.role == Role::Server {
                    let _ = Pin::new(&mut self.io).poll_shutdown(cx);
                }
                return Poll::Ready(Err(WsError::Closed));
            }
            match self.decoder.decode(&mut self.rd) {
                Ok(Some(frame)) => {
                    release_if_empty(&mut self.rd);
                    match self.on_frame(frame) {
                        Ok(Some(msg)) => return Poll::Ready(Ok(msg)),
                        Ok(None) => continue,
                        Err(e) => return Poll::Ready(Err(self.fail(e))),
                    }
                }
                Ok(None) => {}
                Err(e) => return Poll::Ready(Err(self.fail(e))),
            }
            if !self.wr.is_empty() {
                ready!(self.poll_flush_wr(cx))?;
            }
            if self.eof {
                return Poll::Ready(Err(WsError::Abnormal));
            }
            let n = ready!(poll_fill(&mut self.io, cx, &mut self.rd))?;
            if n == 0 {
                self.eof = true;
            }
        }
    }

    /// Queues the close frame a protocol error calls for; the caller should flush
    /// (best effort) and drop the connection.
    fn fail(&mut self, e: ProtocolError) -> WsError {
        if !self.close_sent {
            let _ = self.feed(&Message::Close(Some(CloseFrame::new(e.close_code(), e.to_string()))));
        }
        self.close_received = true;
        WsError::Protocol(e)
    }

    /// Writes whatever is queued (e.g. the close frame after a protocol error).
    pub async fn flush_best_effort(&mut self) {
        let _ = self.flush().await;
        let _ = self.io.shutdown().await;
    }

    fn on_frame(&mut self, mut frame: Frame) -> Result<Option<Message>, ProtocolError> {
        if frame.rsv1 && (frame.opcode.is_control() || frame.opcode == OpCode::Continuation) {
            return Err(ProtocolError::MisplacedRsv1);
        }
        match frame.opcode {
            OpCode::Text | OpCode::Binary if self.frag.is_none() => self.inflating = frame.rsv1,
            _ => {}
        }
        if self.inflating && matches!(frame.opcode, OpCode::Text | OpCode::Binary | OpCode::Continuation) {
            let Some(d) = self.deflate.as_mut() else { return Err(ProtocolError::ReservedBits) };
            let so_far = self.frag.as_ref().map_or(0, |(_, b)| b.len());
            let mut out = BytesMut::new();
            d.1.inflate(&frame.payload, frame.fin, &mut out, self.config.max_message_size.saturating_sub(so_far))?;
            frame.payload = out.freeze();
        }
        match frame.opcode {
            OpCode::Ping => {
                if !self.close_sent {
                    let mask = self.mask();
                    encode_frame(&mut self.wr, (true, false, OpCode::Pong), &frame.payload, mask);
                }
                Ok(Some(Message::Ping(frame.payload)))
            }
            OpCode::Pong => Ok(Some(Message::Pong(frame.payload))),
            OpCode::Close => {
                let close = CloseFrame::parse(&frame.payload)?;
                self.close_received = true;
                if !self.close_sent {
                    // Echo the code, as RFC 6455 §5.5.1 suggests.
                    let reply = close
                        .as_ref()
                        .map(|c| CloseFrame::new(c.code, ""))
                        .unwrap_or(CloseFrame::new(CloseCode::NORMAL, ""));
                    let _ = self.feed(&Message::Close(Some(reply)));
                }
                Ok(Some(Message::Close(close)))
            }
            OpCode::Text | OpCode::Binary => {
                if self.frag.is_some() {
                    return Err(ProtocolError::ExpectedContinuation);
                }
                if frame.payload.len() > self.config.max_message_size {
                    return Err(ProtocolError::MessageTooLarge {
                        size: frame.payload.len(),
                        limit: self.config.max_message_size,
                    });
                }
                if frame.opcode == OpCode::Text {
                    self.utf8.reset();
                    if !self.utf8.feed(&frame.payload) || (frame.fin && !self.utf8.is_complete()) {
                        return Err(ProtocolError::InvalidUtf8);
                    }
                }
                if frame.fin {
                    return Ok(Some(if frame.opcode == OpCode::Text {
                        Message::Text(frame.payload)
                    } else {
                        Message::Binary(frame.payload)
                    }));
                }
                self.frag = Some((frame.opcode, BytesMut::from(&frame.payload[..])));
                Ok(None)
            }
            OpCode::Continuation => {
                let Some((opcode, buf)) = self.frag.as_mut() else {
                    return Err(ProtocolError::UnexpectedContinuation);
                };
                let size = buf.len() + frame.payload.len();
                if size > self.config.max_message_size {
                    return Err(ProtocolError::MessageTooLarge { size, limit: self.config.max_message_size });
                }
                if *opcode == OpCode::Text
                    && (!self.utf8.feed(&frame.payload) || (frame.fin && !self.utf8.is_complete()))
                {
                    return Err(ProtocolError::InvalidUtf8);
                }
                buf.extend_from_slice(&frame.payload);
                if !frame.fin {
                    return Ok(None);
                }
                let (opcode, buf) = self.frag.take().ok_or(ProtocolError::UnexpectedContinuation)?;
                let payload = buf.freeze();
                Ok(Some(if opcode == OpCode::Text { Message::Text(payload) } else { Message::Binary(payload) }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fragmented_text_ping_and_close_over_a_pipe() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut client = WsStream::new(a, Role::Client, WsConfig::default(), Bytes::new());
        let mut server = WsStream::new(b, Role::Server, WsConfig::default(), Bytes::new());
        client.feed_frame(&Frame::text("hel").with_fin(false)).unwrap();
        client.feed_frame(&Frame::ping("p")).unwrap();
        client.feed_frame(&Frame::new(OpCode::Continuation, "lo")).unwrap();
        client.flush().await.unwrap();
        assert_eq!(server.recv().await.unwrap(), Message::Ping(Bytes::from("p")));
        assert_eq!(server.recv().await.unwrap(), Message::Text(Bytes::from("hello")));
        // the server answered the ping
        let pong = tokio::spawn(async move {
            let m = client.recv().await.unwrap();
            (client, m)
        });
        server.send(Message::Close(Some(CloseFrame::new(4001, "bye")))).await.unwrap();
        let (mut client, m) = pong.await.unwrap();
        assert_eq!(m, Message::Pong(Bytes::from("p")));
        assert_eq!(client.recv().await.unwrap(), Message::Close(Some(CloseFrame::new(4001, "bye"))));
        client.flush().await.unwrap();
        assert_eq!(server.recv().await.unwrap(), Message::Close(Some(CloseFrame::new(4001, ""))));
    }

    #[tokio::test]
    async fn invalid_utf8_fails_with_1007() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut client = WsStream::new(a, Role::Client, WsConfig::default(), Bytes::new());
        let mut server = WsStream::new(b, Role::Server, WsConfig::default(), Bytes::new());
        client.feed_frame(&Frame::text(&b"\xff"[..])).unwrap();
        client.flush().await.unwrap();
        let err = server.recv().await.unwrap_err();
        assert!(matches!(err, WsError::Protocol(ProtocolError::InvalidUtf8)));
        server.flush_best_effort().await;
        assert!(matches!(client.recv().await.unwrap(), Message::Close(Some(CloseFrame { code: 1007, .. }))));
    }
}
