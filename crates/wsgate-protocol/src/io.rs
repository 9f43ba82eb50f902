//! Reading into per-connection buffers that cost nothing while a connection is idle.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use tokio::io::{AsyncRead, ReadBuf};

/// Size of the per-thread scratch buffer an empty connection reads into.
pub const SCRATCH: usize = 16 * 1024;
/// Minimum room made in a connection's own buffer when a frame is partly read.
pub const MIN_READ: usize = 4 * 1024;

thread_local! {
    static SCRATCH_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0u8; SCRATCH]);
}

/// Reads more bytes into `buf`. Returns the number read (0 at end of stream).
///
/// When `buf` is empty — the common state of an idle connection — the read goes into
/// a per-thread scratch buffer and only the bytes that arrived are copied out, so a
/// connection waiting for data holds no read buffer at all. That is what keeps 5 000
/// idle proxied connections within a few KiB each. A partly received frame reads
/// straight into `buf`.
pub fn poll_fill<T: AsyncRead + Unpin>(
    io: &mut T,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    if buf.is_empty() {
        SCRATCH_BUF.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let mut rb = ReadBuf::new(&mut scratch[..]);
            ready!(Pin::new(&mut *io).poll_read(cx, &mut rb))?;
            let n = rb.filled().len();
            if n > 0 {
                // Drop any old allocation we only held for spare capacity.
                if buf.capacity() > SCRATCH {
                    *buf = BytesMut::new();
                }
                buf.extend_from_slice(rb.filled());
            }
            Poll::Ready(Ok(n))
        })
    } else {
        if buf.capacity() - buf.len() < MIN_READ {
            buf.reserve(MIN_READ);
        }
        tokio_util::io::poll_read_buf(Pin::new(io), cx, buf)
    }
}

/// Gives back a drained buffer's memory: an idle connection keeps no allocation.
#[inline]
pub fn release_if_empty(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > 0 {
        *buf = BytesMut::new();
    }
}
