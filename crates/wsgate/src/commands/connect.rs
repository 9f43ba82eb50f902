//! `wsgate connect URL` — an interactive client, like wscat: stdin lines become text
//! messages (`--binary`: each read becomes a binary message), received messages go
//! to stdout, lifecycle steps and close codes to stderr. `--json` prints every event
//! as one JSON line on stdout instead. Works in pipes: after stdin ends it waits
//! `--wait` seconds for replies, then closes with `--close-code` (1000) and
//! `--close-reason`. The close reported is the server's answer to ours (RFC 6455
//! §7.1.5: the connection's close code is the one received).
//!
//! Ctrl-C closes the same way at once (a second Ctrl-C, while waiting for the
//! server's answer, gives up on it).
//!
//! Exit codes: 0 after a close we started (stdin ended) or a normal close by the
//! server (1000/1001), 1 when the connection fails or ends otherwise, 64 for bad
//! arguments.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};
use tokio::sync::{mpsc, watch};
use url::Url;
use wsgate_protocol::{CloseCode, CloseFrame, ConnectRequest, Message, Role, WsConfig, WsError, WsStream};

use crate::cli::ConnectArgs;

/// How long our close waits for the server's.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

enum Input {
    Text(String),
    Binary(Bytes),
}

/// Where events go: human text on stderr/stdout, or JSON lines on stdout.
struct Printer {
    json: bool,
    started: Instant,
}

impl Printer {
    fn event(&self, v: serde_json::Value, human: impl FnOnce() -> String) {
        if self.json {
            let mut v = v;
            v["t"] = json!(self.started.elapsed().as_secs_f64());
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{v}");
            let _ = out.flush();
        } else {
            eprintln!("{}", human());
        }
    }

    fn message(&self, m: &Message) {
        let (kind, text, b64) = match m {
            Message::Text(b) => ("text", std::str::from_utf8(b).ok(), None),
            Message::Binary(b) => ("binary", None, Some(b)),
            _ => return,
        };
        if self.json {
            let mut v = json!({ "type": "message", "opcode": kind, "t": self.started.elapsed().as_secs_f64() });
            match (text, b64) {
                (Some(t), _) => v["text"] = json!(t),
                (_, Some(b)) => v["base64"] = json!(base64::engine::general_purpose::STANDARD.encode(b)),
                _ => {}
            }
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{v}");
            let _ = out.flush();
            return;
        }
        let mut out = std::io::stdout().lock();
        let _ = match m {
            Message::Text(b) => out.write_all(b).and_then(|_| out.write_all(b"\n")),
            Message::Binary(b) => out.write_all(b),
            _ => Ok(()),
        };
        let _ = out.flush();
    }
}

pub fn exec(args: ConnectArgs) -> ExitCode {
    let req = match plan(&args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("wsgate connect: {e}");
            return ExitCode::from(crate::EXIT_USAGE);
        }
    };
    let rt = match super::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wsgate connect: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(run(args, req));
    // stdin's reader may still be blocked in a read: don't wait for it.
    rt.shutdown_background();
    code
}

fn plan(args: &ConnectArgs) -> anyhow::Result<ConnectRequest> {
    let url: Url = args.url.parse().map_err(|e| anyhow::anyhow!("invalid URL {:?}: {e}", args.url))?;
    if !matches!(url.scheme(), "ws" | "wss") {
        anyhow::bail!("{url} is not a ws:// or wss:// URL");
    }
    let mut req = ConnectRequest::new(url.clone());
    for h in &args.headers {
        let (name, value) = h.split_once(':').ok_or_else(|| anyhow::anyhow!("-H {h:?}: expected 'Name: value'"))?;
        let name =
            HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| anyhow::anyhow!("-H {h:?}: bad header name"))?;
        let value = HeaderValue::from_str(value.trim()).map_err(|_| anyhow::anyhow!("-H {h:?}: bad header value"))?;
        req.headers.append(name, value);
    }
    req.subprotocols = args.subprotocol.clone();
    if !CloseCode::is_sendable(args.close_code) {
        anyhow::bail!(
            "--close-code {}: not a code a close frame may carry (1000-1003, 1007-1014, 3000-4999)",
            args.close_code
        );
    }
    if args.close_reason.len() > 123 {
        anyhow::bail!("--close-reason: {} bytes; a close reason holds at most 123", args.close_reason.len());
    }
    if !(args.timeout > 0.0 && args.timeout.is_finite() && args.wait >= 0.0 && args.wait.is_finite()) {
        anyhow::bail!("--timeout must be > 0 and --wait >= 0 (seconds)");
    }
    req.timeout = Duration::from_secs_f64(args.timeout);
    if url.scheme() == "wss" {
        req.tls = Some(wsgate_protocol::tls::client_config(args.ca.as_deref()).map_err(|e| anyhow::anyhow!("{e}"))?);
    }
    if args.deflate {
        req.deflate = Some(wsgate_protocol::deflate::DeflatePolicy::default());
    }
    Ok(req)
}

/// Reads stdin into messages until EOF (then the channel closes).
fn read_stdin(binary: bool) -> mpsc::Receiver<Input> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        if binary {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = stdin.read(&mut buf).await {
                if n == 0 || tx.send(Input::Binary(Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                    break;
                }
            }
        } else {
            let mut lines = tokio::io::BufReader::new(stdin).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(Input::Text(line)).await.is_err() {
                    break;
                }
            }
        }
    });
    rx
}

/// How one connection ended.
enum End {
    /// A close handshake (ours or theirs) with this code.
    Closed { code: u16, reason: String, by_us: bool },
    /// The connection broke without one.
    Dropped(String),
}

async fn run(args: ConnectArgs, req: ConnectRequest) -> ExitCode {
    let p = Printer { json: args.json, started: Instant::now() };
    let mut stdin = Some(read_stdin(args.binary));
    let wait = Duration::from_secs_f64(args.wait);
    let close = CloseFrame::new(args.close_code, args.close_reason.clone());
    let mut interrupts = watch_interrupts();
    let mut attempt: u32 = 0;
    // The outbound sessions' backoff: jittered exponential, 200 ms up to 10 s.
    let policy = wsgate_client::backoff::BackoffPolicy {
        max_attempts: if args.max_attempts == 0 { u32::MAX } else { args.max_attempts },
        ..Default::default()
    };
    let mut backoff = wsgate_client::backoff::Backoff::new(policy);
    let url = req.url.to_string();
    loop {
        attempt += 1;
        p.event(json!({"type": "lifecycle", "state": "CONNECTING", "url": url, "attempt": attempt}), || {
            format!("* CONNECTING {url} (attempt {attempt})")
        });
        let dial = tokio::select! {
            d = wsgate_protocol::connect(req.clone()) => d,
            _ = interrupts.changed() => return interrupted(&p),
        };
        let connected = match dial {
            Ok(c) => c,
            Err(e) => {
                let mut v =
                    json!({"type": "lifecycle", "state": "FAILED", "reason": e.to_string(), "reason_kind": e.kind()});
                if let Some(s) = e.status() {
                    v["http_status"] = json!(s.as_u16());
                }
                p.event(v, || format!("* FAILED ({}): {e}", e.kind()));
                match backoff.on_failure() {
                    Some(wait) if args.reconnect => {
                        if pause(wait, &mut interrupts).await.is_err() {
                            return interrupted(&p);
                        }
                    }
                    _ => return ExitCode::FAILURE,
                }
                continue;
            }
        };
        let sub = connected.subprotocol.clone();
        p.event(
            json!({"type": "lifecycle", "state": "CONNECTED", "subprotocol": sub, "peer": connected.peer.to_string()}),
            || {
                format!(
                    "* CONNECTED to {}{}",
                    connected.peer,
                    sub.as_ref().map(|s| format!(" (subprotocol {s})")).unwrap_or_default()
                )
            },
        );
        attempt = 0;
        backoff.on_connected();
        let ws = WsStream::new(connected.transport, Role::Client, WsConfig::default(), connected.leftover)
            .with_deflate(connected.deflate, 6);
        let end = session(ws, &mut stdin, wait, &close, &mut interrupts, &p).await;
        match end {
            End::Closed { code, reason, by_us } => {
                let by = if by_us { "client" } else { "server" };
                p.event(json!({"type": "lifecycle", "state": "DISCONNECTED", "close_code": code, "close_reason": reason, "initiator": by}), || {
                    format!("* DISCONNECTED: close {code} {reason:?} (by {by})")
                });
                // We closed (stdin ended), or the server closed normally: done.
                if by_us {
                    return ExitCode::SUCCESS;
                }
                if !args.reconnect {
                    return if matches!(code, 1000 | 1001) { ExitCode::SUCCESS } else { ExitCode::FAILURE };
                }
            }
            End::Dropped(why) => {
                p.event(
                    json!({"type": "lifecycle", "state": "DISCONNECTED", "close_code": 1006, "reason": why}),
                    || format!("* DISCONNECTED: connection dropped without a close ({why})"),
                );
                if !args.reconnect {
                    return ExitCode::FAILURE;
                }
            }
        }
        if stdin.is_none() {
            return ExitCode::SUCCESS;
        }
        if pause(backoff.on_lost(), &mut interrupts).await.is_err() {
            return interrupted(&p);
        }
    }
}

/// Counts Ctrl-Cs. Once a handler is installed SIGINT no longer ends the process, so
/// one task listens for the whole run and every phase (dialing, backoff, a session)
/// reacts to it.
fn watch_interrupts() -> watch::Receiver<u32> {
    let (tx, rx) = watch::channel(0);
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            tx.send_modify(|n| *n += 1);
        }
    });
    rx
}

/// Sleeps `d`, or returns `Err` at a Ctrl-C.
async fn pause(d: Duration, interrupts: &mut watch::Receiver<u32>) -> Result<(), ()> {
    tokio::select! {
        _ = tokio::time::sleep(d) => Ok(()),
        _ = interrupts.changed() => Err(()),
    }
}

/// Ctrl-C while not connected: nothing to close; exit like a shell's interrupted
/// command (128 + SIGINT).
fn interrupted(p: &Printer) -> ExitCode {
    p.event(json!({"type": "lifecycle", "state": "DISCONNECTED", "reason": "interrupted"}), || {
        "* interrupted".to_owned()
    });
    ExitCode::from(130)
}

async fn session(
    mut ws: WsStream<wsgate_protocol::Transport>,
    stdin: &mut Option<mpsc::Receiver<Input>>,
    wait: Duration,
    close: &CloseFrame,
    interrupts: &mut watch::Receiver<u32>,
    p: &Printer,
) -> End {
    // Armed when stdin ends: then close after `wait`; then give up after CLOSE_TIMEOUT.
    let mut close_at: Option<tokio::time::Instant> = stdin.is_none().then(|| tokio::time::Instant::now() + wait);
    let mut give_up: Option<tokio::time::Instant> = None;
    let mut ours: Option<u16> = None;
    let mut theirs: Option<(u16, String)> = None;
    let far = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
    loop {
        tokio::select! {
            msg = ws.recv() => match msg {
                Ok(Message::Close(c)) => {
                    let (code, reason) = c.map(|c| (c.code, c.reason)).unwrap_or((1005, String::new()));
                    theirs = Some((code, reason));
                }
                Ok(m) => p.message(&m),
                Err(WsError::Closed) => {
                    return match (ours, theirs) {
                        // The server's answer to our close is the connection's close code.
                        (Some(_), Some((code, reason))) => End::Closed { code, reason, by_us: true },
                        (Some(code), None) => End::Closed { code, reason: String::new(), by_us: true },
                        (None, Some((code, reason))) => End::Closed { code, reason, by_us: false },
                        (None, None) => End::Dropped("closed".into()),
                    };
                }
                Err(e) => return End::Dropped(e.to_string()),
            },
            input = async { stdin.as_mut().expect("guarded").recv().await }, if stdin.is_some() && ours.is_none() => match input {
                Some(Input::Text(t)) => {
                    if let Err(e) = ws.send(Message::text(t)).await {
                        return End::Dropped(e.to_string());
                    }
                }
                Some(Input::Binary(b)) => {
                    if let Err(e) = ws.send(Message::Binary(b)).await {
                        return End::Dropped(e.to_string());
                    }
                }
                None => {
                    *stdin = None;
                    close_at = Some(tokio::time::Instant::now() + wait);
                }
            },
            // Ctrl-C: a reader leaving closes with a close frame, not a reset; a
            // second one stops waiting for the server's answer.
            Ok(()) = interrupts.changed() => {
                if ours.is_some() {
                    return End::Closed { code: close.code, reason: close.reason.clone(), by_us: true };
                }
                *stdin = None;
                close_at = Some(tokio::time::Instant::now());
            }
            _ = tokio::time::sleep_until(close_at.unwrap_or(far)), if close_at.is_some() && ours.is_none() => {
                ours = Some(close.code);
                give_up = Some(tokio::time::Instant::now() + CLOSE_TIMEOUT);
                if ws.feed(&Message::Close(Some(close.clone()))).is_err() || ws.flush().await.is_err() {
                    return End::Closed { code: close.code, reason: close.reason.clone(), by_us: true };
                }
            }
            _ = tokio::time::sleep_until(give_up.unwrap_or(far)), if give_up.is_some() => {
                return End::Closed { code: close.code, reason: close.reason.clone(), by_us: true };
            }
        }
    }
}
