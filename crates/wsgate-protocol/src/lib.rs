//! The WebSocket wire protocol as wsgate speaks it, in every role.
//!
//! wsgate has its own RFC 6455 codec rather than a general-purpose WebSocket crate
//! because a faithful proxy needs things those crates decide for you: frames are
//! forwarded one by one (fragments stay fragments), pings and close frames are
//! *forwarded* rather than answered locally, buffers are sized by the caller so an
//! idle connection costs almost nothing, and the payload of every frame is a
//! `bytes::Bytes` that observers can share without a copy.
//!
//! Layers, bottom up:
//! - [`frame`]: header parsing and encoding, masking, the [`Decoder`] that cuts frames
//!   out of a read buffer;
//! - [`close`] and [`utf8`]: close-frame payloads and incremental UTF-8 validation;
//! - [`handshake`]: the HTTP/1.1 upgrade, server side (validate, answer) and client
//!   side ([`connect`]), over [`Transport`] (plain TCP or rustls);
//! - [`stream`]: [`WsStream`], a message-level connection with automatic pong and
//!   close replies, used by the bench client, the control plane's live stream and mocks.

pub mod close;
pub mod connect;
pub mod deflate;
pub mod frame;
pub mod handshake;
pub mod io;
pub mod stream;
pub mod tls;
pub mod transport;
pub mod utf8;

pub use close::{CloseCode, CloseFrame};
pub use connect::{ConnectError, ConnectRequest, Connected, connect};
pub use frame::{Decoder, Frame, OpCode, ProtocolError, Role, encode_frame};
pub use stream::{Message, WsConfig, WsError, WsStream};
pub use transport::Transport;
