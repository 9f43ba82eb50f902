//! `wsgate_protocol::WsStream`, the message level every endpoint role runs (mock,
//! control-plane live stream and taps, bench client): a peer's arbitrary bytes arrive
//! over an in-memory socket in arbitrary pieces, with reads that are not ready in
//! between, and `recv` is polled until the connection ends.
//!
//! Properties:
//! - nothing panics, and the connection ends: every poll makes progress;
//! - what `recv` returns is valid: text is UTF-8, messages are within the size limit,
//!   control payloads ≤ 125 bytes, close codes sendable;
//! - reads that split input anywhere, or return "not ready", change nothing: the same
//!   messages and the same ending as reading everything at once (`recv` is
//!   cancel-safe);
//! - what we wrote back is well-formed for the peer: a pong per ping received before
//!   the close, at most one close frame and nothing after it, and after a protocol
//!   violation a close frame with the code the RFC asks for.
//!
//! Input: `[flags][frame limit][message limit: u16 BE][cut count][cuts…][pending
//! count][pendings…]` then the peer's bytes as on the wire. flags: bit 0 = we are the
//! server (the peer masks; a zero mask key keeps seeds readable), bit 1 =
//! permessage-deflate negotiated, bits 2 and 3 = server / client no context takeover.
//! The frame limit selects from `wsgate_fuzz::frame_limit`; each pending byte `i`
//! makes the read before piece `i` "not ready" once.
#![no_main]

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use wsgate_protocol::deflate::DeflateParams;
use wsgate_protocol::frame::{Decoder, OpCode};
use wsgate_protocol::{CloseCode, CloseFrame, Message, Role, WsConfig, WsError, WsStream};

/// An in-memory socket: reads come from a script, writes are kept.
struct Wire {
    reads: VecDeque<Option<Vec<u8>>>,
    written: Vec<u8>,
}

impl AsyncRead for Wire {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.reads.pop_front() {
            // End of stream.
            None => Poll::Ready(Ok(())),
            // Not ready this time.
            Some(None) => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Some(Some(mut data)) => {
                let n = data.len().min(buf.remaining());
                buf.put_slice(&data[..n]);
                if n < data.len() {
                    let rest = data.split_off(n);
                    self.reads.push_front(Some(rest));
                }
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl AsyncWrite for Wire {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.written.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// How a run went: the messages `recv` returned, then how it ended.
#[derive(Debug, PartialEq, Eq)]
struct Run {
    messages: Vec<Message>,
    end: String,
}

fn run(
    role: Role,
    config: WsConfig,
    params: Option<DeflateParams>,
    reads: VecDeque<Option<Vec<u8>>>,
) -> (Run, Vec<u8>) {
    let n_reads = reads.len();
    let mut ws = WsStream::new(Wire { reads, written: Vec::new() }, role, config, Bytes::new()).with_deflate(params, 6);
    let mut cx = Context::from_waker(Waker::noop());
    let mut messages = Vec::new();
    // Each poll either returns, consumes a scripted read, or decodes a frame out of
    // what was read; so a bound proportional to the script is a bound on progress.
    let mut budget = 4 * (n_reads + 1) + 64 * 1024;
    let end = loop {
        budget = budget.checked_sub(1).expect("recv stopped making progress");
        match ws.poll_recv(&mut cx) {
            Poll::Pending => continue,
            Poll::Ready(Ok(m)) => {
                check_message(&m, &config);
                messages.push(m);
            }
            Poll::Ready(Err(e)) => break e,
        }
    };
    let end_text = match &end {
        WsError::Io(e) => format!("io: {e}"),
        other => other.to_string(),
    };
    // What every caller does after an error: send what is queued (the close frame a
    // protocol error calls for), then drop the connection.
    {
        let mut flush = std::pin::pin!(ws.flush_best_effort());
        while flush.as_mut().poll(&mut cx).is_pending() {}
    }
    let written = ws.get_ref().written.clone();
    check_replies(role, &messages, &end, &written);
    (Run { messages, end: end_text }, written)
}

fn check_message(m: &Message, config: &WsConfig) {
    match m {
        Message::Text(b) => {
            assert!(std::str::from_utf8(b).is_ok(), "text message is not UTF-8");
            assert!(b.len() <= config.max_message_size);
        }
        Message::Binary(b) => assert!(b.len() <= config.max_message_size),
        Message::Ping(b) | Message::Pong(b) => assert!(b.len() <= 125),
        Message::Close(Some(c)) => assert!(CloseCode::is_sendable(c.code), "close code {} delivered", c.code),
        Message::Close(None) => {}
    }
}

/// Decodes what we wrote as the peer would, and checks it answers what we received.
fn check_replies(role: Role, received: &[Message], end: &WsError, written: &[u8]) {
    let peer = if role == Role::Server { Role::Client } else { Role::Server };
    let dec = Decoder::new(peer, 1 << 24).allow_rsv1(true);
    let mut buf = BytesMut::from(written);
    let mut frames = Vec::new();
    while let Some(f) = dec.decode(&mut buf).expect("we write valid frames") {
        frames.push(f);
    }
    assert!(buf.is_empty(), "we wrote a partial frame");
    let closes: Vec<usize> =
        frames.iter().enumerate().filter(|(_, f)| f.opcode == OpCode::Close).map(|(i, _)| i).collect();
    assert!(closes.len() <= 1, "we sent {} close frames", closes.len());
    if let Some(&i) = closes.first() {
        assert_eq!(i + 1, frames.len(), "we sent frames after our close");
        let close = CloseFrame::parse(&frames[i].payload).expect("our close frame is valid");
        if let WsError::Protocol(e) = end {
            assert_eq!(close.map(|c| c.code), Some(e.close_code()), "{e} closed with the wrong code");
        }
    } else if let WsError::Protocol(e) = end {
        panic!("protocol error {e} without a close frame");
    }
    // One pong per ping received while we had not sent our close, in order.
    let pings: Vec<&Bytes> = received
        .iter()
        .take_while(|m| !matches!(m, Message::Close(_)))
        .filter_map(|m| if let Message::Ping(p) = m { Some(p) } else { None })
        .collect();
    let pongs: Vec<&Bytes> = frames.iter().filter(|f| f.opcode == OpCode::Pong).map(|f| &f.payload).collect();
    assert_eq!(pings, pongs, "pongs do not answer the pings");
}

fuzz_target!(|data: &[u8]| {
    let mut input = wsgate_fuzz::Input::new(data);
    let flags = input.byte();
    let frame_limit = input.byte();
    let message_limit = input.u16();
    let cuts = input.cuts(8);
    let pendings = input.cuts(8);
    let wire = input.rest();
    let role = if flags & 1 == 1 { Role::Server } else { Role::Client };
    let config = WsConfig {
        max_frame_size: wsgate_fuzz::frame_limit(frame_limit),
        max_message_size: usize::from(message_limit),
    };
    let params = (flags & 2 != 0).then_some(DeflateParams {
        server_no_context_takeover: flags & 4 != 0,
        client_no_context_takeover: flags & 8 != 0,
        ..DeflateParams::default()
    });

    let whole = run(role, config, params, VecDeque::from([Some(wire.to_vec())])).0;
    let mut reads: VecDeque<Option<Vec<u8>>> = VecDeque::new();
    for (i, c) in wsgate_fuzz::chunks(wire, cuts).into_iter().enumerate() {
        if pendings.iter().any(|&p| usize::from(p) == i) {
            reads.push_back(None);
        }
        // A zero-length read is end of stream; the chunking only splits.
        if !c.is_empty() {
            reads.push_back(Some(c.to_vec()));
        }
    }
    let pieces = run(role, config, params, reads).0;
    assert_eq!(whole, pieces, "split or delayed reads changed what recv returned");
});
