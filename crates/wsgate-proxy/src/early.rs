//! Accept-early mode (websocket-multiplex's behaviour): the client is accepted at
//! once and its messages wait in a bounded queue until the upstream is connected,
//! then go out in order. Messages that wait longer than the queue timeout, or do not
//! fit (count or bytes), are dropped — each with an event, so nothing disappears
//! silently. The queue holds whole messages: a fragmented message is assembled first,
//! so a drop never leaves half a message for the upstream.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wsgate_core::{Direction, ErrorKind, QueueOutcome, SessionHandle};
use wsgate_protocol::{CloseCode, CloseFrame, ConnectError, Connected, Frame, OpCode, ProtocolError};

use crate::config::QueueConfig;
use crate::pump::Side;

/// Client messages waiting for the upstream.
#[derive(Debug)]
pub struct EarlyQueue {
    /// Each message with when it was queued: the monotonic instant its timeout runs
    /// from, and the wall-clock time observers are told (`queuedAt`).
    frames: VecDeque<(Instant, DateTime<Utc>, Frame)>,
    bytes: usize,
    pub(crate) cfg: QueueConfig,
}

impl EarlyQueue {
    pub fn new(cfg: QueueConfig) -> Self {
        Self { frames: VecDeque::new(), bytes: 0, cfg }
    }

    /// Queues the frame, or hands it back when it is over the count or byte bound.
    fn push(&mut self, frame: Frame) -> Result<(), Frame> {
        if self.frames.len() >= self.cfg.max_messages || self.bytes + frame.payload.len() > self.cfg.max_bytes {
            return Err(frame);
        }
        self.bytes += frame.payload.len();
        self.frames.push_back((Instant::now(), Utc::now(), frame));
        Ok(())
    }

    /// Drops what has waited longer than the timeout, handing each to `dropped`
    /// with when it was queued; returns how many.
    fn expire(&mut self, now: Instant, mut dropped: impl FnMut(DateTime<Utc>, Frame)) -> usize {
        let mut n = 0;
        while let Some((t, _, _)) = self.frames.front() {
            if now.duration_since(*t) < self.cfg.timeout {
                break;
            }
            if let Some((_, at, f)) = self.frames.pop_front() {
                self.bytes -= f.payload.len();
                dropped(at, f);
            }
            n += 1;
        }
        n
    }

    fn next_expiry(&self) -> Option<Instant> {
        self.frames.front().map(|(t, _, _)| *t + self.cfg.timeout)
    }

    /// Queued frames in arrival order, each with when it was queued.
    pub fn drain(&mut self) -> impl Iterator<Item = (DateTime<Utc>, Frame)> + '_ {
        self.bytes = 0;
        self.frames.drain(..).map(|(_, at, f)| (at, f))
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

/// How the wait for the upstream ended.
#[derive(Debug)]
pub enum EarlyOutcome {
    Ready(Box<Connected>),
    DialFailed(ConnectError),
    /// The client closed (or vanished, `None`) before the upstream was ready.
    ClientGone(Option<CloseFrame>),
    ClientBroke(ProtocolError),
    Shutdown,
}

/// Reads the client while `dial` runs, queueing its data messages.
pub async fn wait_for_upstream<F>(
    client: &mut Side,
    dial: F,
    queue: &mut EarlyQueue,
    session: &mut SessionHandle,
    shutdown: &CancellationToken,
) -> EarlyOutcome
where
    F: Future<Output = Result<Connected, ConnectError>>,
{
    tokio::pin!(dial);
    // A fragmented message being assembled: (opcode, payload so far).
    let mut partial: Option<(OpCode, bytes::BytesMut)> = None;
    loop {
        let expiry = queue.next_expiry();
        tokio::select! {
            res = &mut dial => return match res {
                Ok(c) => EarlyOutcome::Ready(Box::new(c)),
                Err(e) => EarlyOutcome::DialFailed(e),
            },
            _ = shutdown.cancelled() => return EarlyOutcome::Shutdown,
            _ = sleep_until_opt(expiry) => {
                queue.expire(Instant::now(), |queued_at, frame| {
                    session.error(ErrorKind::QueueTimeout, "queued message dropped: upstream not ready within the queue timeout".into());
                    session.queued(QueueOutcome::Dropped(ErrorKind::QueueTimeout), &frame, queued_at);
                });
            }
            frame = poll_fn(|cx| client.poll_next_frame(cx)) => match frame {
                Err(e) => return EarlyOutcome::ClientBroke(e),
                Ok(None) => return EarlyOutcome::ClientGone(None),
                Ok(Some(frame)) => match frame.opcode {
                    OpCode::Close => {
                        session.frame(Direction::ClientToUpstream, &frame, false);
                        return match CloseFrame::parse(&frame.payload) {
                            Ok(c) => EarlyOutcome::ClientGone(Some(c.unwrap_or(CloseFrame::new(CloseCode::NO_STATUS, "")))),
                            Err(e) => EarlyOutcome::ClientBroke(e),
                        };
                    }
                    // Nobody upstream to answer yet: keep the client's keepalive happy here.
                    OpCode::Ping => {
                        session.frame(Direction::ClientToUpstream, &frame, false);
                        if client.write_now(&Frame::pong(frame.payload.clone())).await.is_err() {
                            return EarlyOutcome::ClientGone(None);
                        }
                    }
                    OpCode::Pong => session.frame(Direction::ClientToUpstream, &frame, false),
                    _ => {
                        session.frame(Direction::ClientToUpstream, &frame, false);
                        let whole = match assemble(&mut partial, frame, queue.cfg.max_bytes) {
                            Ok(Some(m)) => m,
                            Ok(None) => continue,
                            Err(e) => return EarlyOutcome::ClientBroke(e),
                        };
                        if let Err(frame) = queue.push(whole) {
                            session.error(ErrorKind::QueueOverflow, "queued message dropped: the accept-early queue is full".into());
                            session.queued(QueueOutcome::Dropped(ErrorKind::QueueOverflow), &frame, Utc::now());
                        }
                    }
                },
            },
        }
    }
}

/// Joins fragments into one message frame; `Ok(None)` while more are expected.
fn assemble(
    partial: &mut Option<(OpCode, bytes::BytesMut)>,
    frame: Frame,
    limit: usize,
) -> Result<Option<Frame>, ProtocolError> {
    match (frame.opcode, partial.as_mut()) {
        (OpCode::Continuation, None) => Err(ProtocolError::UnexpectedContinuation),
        (OpCode::Continuation, Some((opcode, buf))) => {
            if buf.len() + frame.payload.len() > limit {
                return Err(ProtocolError::MessageTooLarge { size: buf.len() + frame.payload.len(), limit });
            }
            buf.extend_from_slice(&frame.payload);
            if !frame.fin {
                return Ok(None);
            }
            let opcode = *opcode;
            let payload = partial.take().map(|(_, b)| b.freeze()).unwrap_or_default();
            Ok(Some(Frame::new(opcode, payload)))
        }
        (_, Some(_)) => Err(ProtocolError::ExpectedContinuation),
        (opcode, None) if !frame.fin => {
            *partial = Some((opcode, bytes::BytesMut::from(&frame.payload[..])));
            Ok(None)
        }
        _ => Ok(Some(frame)),
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn queue_bounds_and_expiry() {
        let mut q = EarlyQueue::new(QueueConfig { max_messages: 2, max_bytes: 10, timeout: Duration::from_secs(1) });
        assert!(q.push(Frame::text("12345")).is_ok());
        assert!(q.push(Frame::text("123456")).is_err());
        assert!(q.push(Frame::text("1")).is_ok());
        assert!(q.push(Frame::text("")).is_err());
        tokio::time::advance(Duration::from_millis(1500)).await;
        let mut dropped = Vec::new();
        assert_eq!(q.expire(Instant::now(), |_, f| dropped.push(f.payload)), 2);
        assert_eq!(dropped, ["12345", "1"]);
        assert!(q.is_empty());
    }

    #[test]
    fn fragments_are_queued_as_one_message() {
        let mut p = None;
        assert_eq!(assemble(&mut p, Frame::text("ab").with_fin(false), 100).unwrap(), None);
        assert_eq!(assemble(&mut p, Frame::new(OpCode::Continuation, "cd").with_fin(false), 100).unwrap(), None);
        let whole = assemble(&mut p, Frame::new(OpCode::Continuation, "e"), 100).unwrap().unwrap();
        assert_eq!((whole.opcode, &whole.payload[..], whole.fin), (OpCode::Text, &b"abcde"[..], true));
        assert!(assemble(&mut p, Frame::new(OpCode::Continuation, "x"), 100).is_err());
        assert!(assemble(&mut None, Frame::text("1234").with_fin(false), 3).is_ok());
    }
}
