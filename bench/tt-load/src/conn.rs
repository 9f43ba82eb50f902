//! One connection's run: a writer and a reader over the two halves of a
//! tokio-tungstenite stream, joined in one task.
//!
//! The writer holds up to K messages in flight (a semaphore of K credits), sends a
//! burst for every credit available and flushes once per burst. The reader checks
//! each echo against the message it must be — echoes come back in order, so the
//! n-th echo is message n — and returns the credit. Separate halves mean a writer
//! stuck on a full socket never stops the reader from draining echoes, which is what
//! would deadlock a single loop with large pipelines.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, oneshot};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::payload::Pattern;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// After the run's end, how long outstanding echoes are waited for before they count
/// as lost; also bounds a writer stuck on a socket the server stopped reading.
pub const DRAIN: Duration = Duration::from_secs(5);
/// How long the close handshake may take.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Error descriptions kept per connection.
pub const MAX_SAMPLES: usize = 5;

/// What every connection does, decided before the first send.
#[derive(Debug)]
pub struct Plan {
    pub pattern: Pattern,
    pub in_flight: usize,
    /// Timestamps are nanoseconds since this instant.
    pub epoch: Instant,
    /// Messages sent before this (the warm-up) are checked but not measured.
    pub measure_from: Instant,
    /// When sending stops.
    pub stop_at: Instant,
}

impl Plan {
    fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_nanos() as u64
    }
}

/// What one connection measured.
#[derive(Debug)]
pub struct Outcome {
    /// Messages sent, warm-up included.
    pub sent: u64,
    /// Echoes received, warm-up included.
    pub echoed: u64,
    /// Echoes of messages sent after the warm-up.
    pub measured: u64,
    pub bytes: u64,
    /// Echoes that were not byte for byte what was sent (or came back as the other
    /// kind, text for binary).
    pub mismatches: u64,
    /// The connection failed (error, reset, a close from the server) before the end.
    pub disconnected: bool,
    /// Our close was not answered by the server's close (within `CLOSE_WAIT`).
    pub close_failed: bool,
    pub latency: Histogram<u64>,
    pub last_echo: Option<Instant>,
    pub samples: Vec<String>,
}

impl Outcome {
    fn sample(&mut self, what: impl FnOnce() -> String) {
        if self.samples.len() < MAX_SAMPLES {
            self.samples.push(what());
        }
    }
}

/// A latency histogram in microseconds, three significant digits, growing to fit.
pub fn histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant figures is valid")
}

pub async fn run(conn: u64, ws: Ws, plan: &Plan) -> Outcome {
    let (mut sink, mut stream) = ws.split();
    let credits = Semaphore::new(plan.in_flight);
    // When message `seq` was sent, at `seq % K`: at most K are in flight, so a slot is
    // reused only after its echo was checked.
    let sent_at: Box<[AtomicU64]> = (0..plan.in_flight).map(|_| AtomicU64::new(0)).collect();
    let (done_tx, done_rx) = oneshot::channel();
    let mut out = Outcome {
        sent: 0,
        echoed: 0,
        measured: 0,
        bytes: 0,
        mismatches: 0,
        disconnected: false,
        close_failed: false,
        latency: histogram(),
        last_echo: None,
        samples: Vec::new(),
    };
    let ((sent, write_error), ()) = tokio::join!(
        write(&mut sink, conn, plan, &credits, &sent_at, done_tx),
        read(&mut stream, conn, plan, &credits, &sent_at, done_rx, &mut out),
    );
    if let Some(e) = write_error {
        out.disconnected = true;
        out.sample(|| format!("connection {conn}: send failed: {e}"));
    }
    out.sent = sent;
    if out.disconnected {
        return out;
    }
    let Ok(mut ws) = sink.reunite(stream) else {
        return out; // cannot happen: these are the halves of one stream
    };
    let close = async {
        let bye = CloseFrame { code: CloseCode::Normal, reason: Utf8Bytes::from_static("") };
        ws.close(Some(bye)).await?;
        // The server's close ends the stream (tungstenite yields it, then None).
        while let Some(m) = ws.next().await {
            m?;
        }
        Ok::<(), tokio_tungstenite::tungstenite::Error>(())
    };
    match timeout(CLOSE_WAIT, close).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            out.close_failed = true;
            out.sample(|| format!("connection {conn}: close handshake: {e}"));
        }
        Err(_) => {
            out.close_failed = true;
            out.sample(|| format!("connection {conn}: no close answer within {CLOSE_WAIT:?}"));
        }
    }
    out
}

type Sink = SplitSink<Ws, Message>;
type Stream = SplitStream<Ws>;

/// Sends until `plan.stop_at`, then tells the reader how many messages it sent.
/// Returns that count and the error that stopped it early, if any.
async fn write(
    sink: &mut Sink,
    conn: u64,
    plan: &Plan,
    credits: &Semaphore,
    sent_at: &[AtomicU64],
    done: oneshot::Sender<u64>,
) -> (u64, Option<String>) {
    let k = plan.in_flight as u64;
    let mut scratch = BytesMut::with_capacity(plan.pattern.size());
    let mut seq = 0u64;
    let stop = sleep_until(plan.stop_at);
    let hard = sleep_until(plan.stop_at + DRAIN);
    tokio::pin!(stop, hard);
    let mut error = None;
    'run: loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            permit = credits.acquire() => match permit {
                Ok(p) => p.forget(),
                // The reader closed the semaphore: the connection is gone.
                Err(_) => break,
            },
        }
        // One clock reading per burst: the burst leaves in one write at the flush.
        let ts = plan.ns(Instant::now());
        loop {
            sent_at[(seq % k) as usize].store(ts, Ordering::Release);
            plan.pattern.write(&mut scratch, conn, seq, ts);
            let payload = scratch.split().freeze();
            let msg = if plan.pattern.is_text() {
                // ASCII by construction; the check is tokio-tungstenite's price for
                // a text message built from bytes.
                Message::Text(Utf8Bytes::try_from(payload).expect("text payloads are ASCII"))
            } else {
                Message::Binary(payload)
            };
            let fed = tokio::select! {
                r = sink.feed(msg) => r,
                _ = &mut hard => { error = Some("stuck sending past the drain deadline".to_owned()); break 'run; }
            };
            if let Err(e) = fed {
                error = Some(e.to_string());
                break 'run;
            }
            seq += 1;
            match credits.try_acquire() {
                Ok(p) => p.forget(),
                Err(_) => break,
            }
        }
        let flushed = tokio::select! {
            r = sink.flush() => r,
            _ = &mut hard => { error = Some("stuck flushing past the drain deadline".to_owned()); break 'run; }
        };
        if let Err(e) = flushed {
            error = Some(e.to_string());
            break;
        }
    }
    let _ = done.send(seq);
    (seq, error)
}

/// Checks echoes until every sent message came back, the connection fails, or the
/// drain deadline passes.
async fn read(
    stream: &mut Stream,
    conn: u64,
    plan: &Plan,
    credits: &Semaphore,
    sent_at: &[AtomicU64],
    mut done: oneshot::Receiver<u64>,
    out: &mut Outcome,
) {
    let k = plan.in_flight as u64;
    let measure_from = plan.ns(plan.measure_from);
    let text = plan.pattern.is_text();
    let hard = sleep_until(plan.stop_at + DRAIN);
    tokio::pin!(hard);
    let mut total: Option<u64> = None;
    loop {
        if total == Some(out.echoed) {
            break;
        }
        tokio::select! {
            biased;
            _ = &mut hard => {
                out.sample(|| format!("connection {conn}: echoes missing {DRAIN:?} after the end"));
                break;
            }
            sent = &mut done, if total.is_none() => {
                // A writer that ended without a count is gone: stop at what came back.
                total = Some(sent.unwrap_or(out.echoed));
            }
            m = stream.next() => {
                let (payload, got_text) = match &m {
                    Some(Ok(Message::Binary(b))) => (&b[..], false),
                    Some(Ok(Message::Text(t))) => (t.as_bytes(), true),
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                    Some(Ok(Message::Close(f))) => {
                        out.disconnected = true;
                        out.sample(|| format!("connection {conn}: the server closed it ({f:?}) during the run"));
                        break;
                    }
                    Some(Err(e)) => {
                        out.disconnected = true;
                        out.sample(|| format!("connection {conn}: {e}"));
                        break;
                    }
                    None => {
                        out.disconnected = true;
                        out.sample(|| format!("connection {conn}: the stream ended during the run"));
                        break;
                    }
                };
                let now = Instant::now();
                let seq = out.echoed;
                let ts = sent_at[(seq % k) as usize].load(Ordering::Acquire);
                // The slot is read: the writer may reuse it.
                credits.add_permits(1);
                out.echoed += 1;
                if got_text != text {
                    out.mismatches += 1;
                    out.sample(|| format!("connection {conn}, message {seq}: echoed as {}", if got_text { "text" } else { "binary" }));
                } else if let Err(e) = plan.pattern.verify(payload, conn, seq, ts) {
                    out.mismatches += 1;
                    out.sample(|| format!("connection {conn}, message {seq}: {e}"));
                }
                if ts >= measure_from {
                    out.measured += 1;
                    out.bytes += payload.len() as u64;
                    let rtt_us = plan.ns(now).saturating_sub(ts) / 1_000;
                    if out.latency.record(rtt_us).is_err() {
                        out.latency.saturating_record(rtt_us);
                    }
                    out.last_echo = Some(now);
                }
            }
        }
    }
    // Wakes a writer waiting for credits that will not come.
    credits.close();
}
