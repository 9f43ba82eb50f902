//! Echo mode: every text and binary message goes back unchanged. Replies are queued
//! and flushed once per burst of input (`WsStream` writes before it waits), so a
//! pipelining client costs one write per burst, not per message.

use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wsgate_core::{Command, Direction, Initiator, SessionHandle, State, Target, TransitionDetail};
use wsgate_protocol::{CloseCode, CloseFrame, Frame, Message, OpCode, Transport, WsError, WsStream};

/// Messages handled per wake-up before shutdown and commands get a look in.
const BURST: usize = 64;

/// How the session ended.
struct Ending {
    code: u16,
    reason: Option<String>,
    initiator: Initiator,
}

fn as_frame(m: &Message) -> Option<Frame> {
    Some(match m {
        Message::Text(b) => Frame::text(b.clone()),
        Message::Binary(b) => Frame::binary(b.clone()),
        Message::Ping(b) => Frame::ping(b.clone()),
        Message::Pong(b) => Frame::pong(b.clone()),
        Message::Close(c) => Frame::new(OpCode::Close, c.as_ref().map(CloseFrame::encode).unwrap_or_default()),
    })
}

/// Queues our close frame and notes who ended the session (first one wins).
fn start_close(ws: &mut WsStream<Transport>, code: u16, reason: &str, by: Initiator, ending: &mut Option<Ending>) {
    if ending.is_none() {
        *ending = Some(Ending { code, reason: Some(reason.to_owned()), initiator: by });
    }
    let _ = ws.feed(&Message::Close(Some(CloseFrame::new(code, reason))));
}

pub(crate) async fn run(
    mut ws: WsStream<Transport>,
    session: &mut SessionHandle,
    mut commands: mpsc::Receiver<Command>,
    shutdown: CancellationToken,
    close_timeout: Duration,
) {
    let mut ending: Option<Ending> = None;
    // Only polled once `closing` is set, and re-armed then; the initial value is moot.
    let close_deadline = tokio::time::sleep(close_timeout);
    tokio::pin!(close_deadline);
    let mut closing = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled(), if !closing => {
                closing = true;
                start_close(&mut ws, CloseCode::GOING_AWAY, "gateway shutting down", Initiator::Gateway, &mut ending);
                close_deadline.as_mut().reset(tokio::time::Instant::now() + close_timeout);
            }
            _ = &mut close_deadline, if closing => break,
            cmd = commands.recv(), if !closing => match cmd {
                Some(Command::Inject { to: Target::Client, payload, binary }) => {
                    let m = if binary { Message::Binary(payload) } else { Message::Text(payload) };
                    if ws.feed(&m).is_ok() && let Some(f) = as_frame(&m) {
                        session.frame(Direction::GatewayToClient, &f, true);
                    }
                }
                // A mock has no upstream: injecting "to the upstream" means to the mock itself, which ignores it.
                Some(Command::Inject { to: Target::Upstream, .. }) => {}
                Some(Command::Close { code, reason }) => {
                    closing = true;
                    start_close(&mut ws, code, &reason, Initiator::Admin, &mut ending);
                    close_deadline.as_mut().reset(tokio::time::Instant::now() + close_timeout);
                }
                None => {}
            },
            // Under `--record strict`, events the store could not take yet hold the
            // reads back until it can.
            _ = session.settle(), if session.has_pending() => {}
            msg = ws.recv(), if !session.has_pending() => {
                // Then everything already buffered, without another trip through
                // select!: a pipelining client's burst is echoed in one wake-up.
                let mut next = Some(msg);
                let mut stop = false;
                // Bounded, so shutdown and commands are still seen under a flood.
                let mut budget = BURST;
                while let Some(msg) = next.take() {
                    if on_message(msg, &mut ws, session, closing, &mut ending).await {
                        stop = true;
                        break;
                    }
                    budget -= 1;
                    if session.has_pending() || budget == 0 {
                        break;
                    }
                    next = ws.recv().now_or_never();
                }
                if stop {
                    break;
                }
            }
        }
    }
    let e = ending.unwrap_or(Ending { code: CloseCode::ABNORMAL, reason: None, initiator: Initiator::Gateway });
    session.transition(
        State::Disconnected,
        TransitionDetail {
            close_code: Some(e.code),
            close_reason: e.reason,
            initiator: Some(e.initiator),
            ..Default::default()
        },
    );
    session.settle().await;
}

/// Handles one received message (or error); `true` ends the session loop.
async fn on_message(
    msg: Result<Message, WsError>,
    ws: &mut WsStream<Transport>,
    session: &mut SessionHandle,
    closing: bool,
    ending: &mut Option<Ending>,
) -> bool {
    match msg {
        Ok(m) => {
            let at = session.frame_time();
            if let Some(f) = as_frame(&m) {
                session.frame_at(Direction::ClientToGateway, &f, false, at);
            }
            match &m {
                Message::Text(_) | Message::Binary(_) if !closing => {
                    if ws.feed(&m).is_ok()
                        && let Some(f) = as_frame(&m)
                    {
                        session.frame_at(Direction::GatewayToClient, &f, false, at);
                    }
                }
                Message::Close(c) if ending.is_none() => {
                    // The stream answers with the same code (RFC 6455 §5.5.1); record
                    // that reply, so the history holds both close frames.
                    let code = c.as_ref().map(|c| c.code).unwrap_or(CloseCode::NORMAL);
                    let reply = Frame::new(OpCode::Close, CloseFrame::new(code, "").encode());
                    session.frame_at(Direction::GatewayToClient, &reply, false, at);
                    *ending = Some(Ending {
                        code: c.as_ref().map(|c| c.code).unwrap_or(CloseCode::NO_STATUS),
                        reason: c.as_ref().map(|c| c.reason.clone()),
                        initiator: Initiator::Client,
                    });
                }
                _ => {}
            }
            false
        }
        Err(WsError::Closed) => true,
        Err(WsError::Protocol(e)) => {
            session.error("protocol", format!("client side: {e}"));
            if ending.is_none() {
                *ending =
                    Some(Ending { code: e.close_code(), reason: Some(e.to_string()), initiator: Initiator::Gateway });
            }
            ws.flush_best_effort().await;
            true
        }
        Err(_) => {
            if ending.is_none() {
                *ending = Some(Ending {
                    code: CloseCode::ABNORMAL,
                    reason: Some("connection dropped without a close frame".into()),
                    initiator: Initiator::Client,
                });
            }
            true
        }
    }
}
