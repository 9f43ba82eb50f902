//! `wsgate replay FILE --against URL` — the client side of a recorded session, played
//! against a real server, each reply compared with the recorded one: a regression
//! test for a WebSocket API in one command.
//!
//! The transcript's client frames (`client_to_upstream`, `client_to_gateway`) are
//! sent at their recorded times (divided by `--speed`); each frame the client was
//! sent (`upstream_to_client`, `gateway_to_client`) is the reply expected next, within
//! `--timeout`, compared by `crate::compare` (JSON by value with `--ignore` paths
//! masked, anything else byte for byte); a recorded close from the server must come
//! with the same code. The first divergence is printed with its line and place, and
//! the exit code is 1; every reply matching is 0; a script or flag that cannot be
//! used is 64.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;
use serde_json_path::JsonPath;
use tokio::time::Instant;
use url::Url;
use wsgate_protocol::{ConnectRequest, Message, Role, WsConfig, WsStream};
use wsgate_transcript::{Line, Payload};

use crate::cli::ReplayArgs;
use crate::compare::{Difference, compare, kind};

/// One recorded frame this replay acts on.
enum Step {
    Send { line: u64, at: Duration, msg: Message },
    Expect { line: u64, at: Duration, msg: Message },
}

/// Why a replay did not match.
struct Divergence {
    line: u64,
    at: Duration,
    difference: Difference,
}

pub fn exec(args: ReplayArgs) -> ExitCode {
    let usage = |msg: String| {
        eprintln!("wsgate replay: {msg}");
        ExitCode::from(crate::EXIT_USAGE)
    };
    let steps = match read_steps(&args.file) {
        Ok(s) => s,
        Err(msg) => return usage(msg),
    };
    let ignore: Vec<JsonPath> = match args.ignore.iter().map(|p| JsonPath::parse(p).map_err(|e| (p, e))).collect() {
        Ok(p) => p,
        Err((p, e)) => return usage(format!("--ignore {p:?}: not a JSONPath (RFC 9535, e.g. $.ts): {e}")),
    };
    let url: Url = match args.against.parse() {
        Ok(u) if matches!(Url::scheme(&u), "ws" | "wss") => u,
        _ => return usage(format!("--against {:?}: expected a ws:// or wss:// URL", args.against)),
    };
    if !(args.speed.is_finite() && args.speed > 0.0 && args.timeout.is_finite() && args.timeout > 0.0) {
        return usage("--speed and --timeout must be positive numbers".into());
    }
    let rt = match super::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wsgate replay: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let file = args.file.display().to_string();
    let outcome = rt.block_on(play(&args, url, &steps, &ignore));
    let (sent, expected) = steps.iter().fold((0, 0), |(s, e), st| match st {
        Step::Send { .. } => (s + 1, e),
        Step::Expect { .. } => (s, e + 1),
    });
    match outcome {
        Ok(()) => {
            if args.json {
                println!("{}", json!({"ok": true, "sent": sent, "replies": expected}));
            } else {
                println!("wsgate replay: {sent} sent, {expected} replies matched {file}");
            }
            ExitCode::SUCCESS
        }
        Err(d) => {
            if args.json {
                let v = json!({"ok": false, "line": d.line, "t": d.at.as_secs_f64(), "at": d.difference.at,
                    "expected": d.difference.expected, "got": d.difference.got});
                println!("{v}");
            } else {
                let Difference { at, expected, got } = &d.difference;
                eprintln!("wsgate replay: diverged at {file}:{} (t={:.3}s)", d.line, d.at.as_secs_f64());
                if !at.is_empty() {
                    eprintln!("  at {at}");
                }
                eprintln!("  expected: {}", clip(expected));
                eprintln!("  got:      {}", clip(got));
            }
            ExitCode::FAILURE
        }
    }
}

/// A long value's start: the place of the difference says where to look.
fn clip(s: &str) -> String {
    const MAX: usize = 300;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}… ({} bytes)", &s[..i], s.len()),
        None => s.to_owned(),
    }
}

fn read_steps(path: &Path) -> Result<Vec<Step>, String> {
    let file = path.display().to_string();
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read {file}: {e}"))?;
    let mut reader = wsgate_transcript::Reader::new(std::io::BufReader::new(f));
    let mut steps = Vec::new();
    while let Some(line) = reader.next() {
        let line = line.map_err(|e| format!("{file}:{}: {}", e.line, e.kind))?;
        let Line::Frame(f) = line else { continue };
        let n = reader.line();
        let at = Duration::from_micros(f.t.micros().max(0) as u64);
        let msg = match f.payload {
            Payload::Text(b) => Message::Text(b),
            Payload::Binary(b) => Message::Binary(b),
            Payload::Close(c) => Message::Close(c.map(|c| wsgate_protocol::CloseFrame::new(c.code, c.reason))),
            // Fragments, pings and pongs belong to the connection, not the conversation.
            Payload::Continuation(_) | Payload::Ping(_) | Payload::Pong(_) => continue,
        };
        steps.push(if f.dir.is_from_client() {
            Step::Send { line: n, at, msg }
        } else {
            Step::Expect { line: n, at, msg }
        });
    }
    if steps.is_empty() {
        return Err(format!("{file}: no frames to replay (a transcript: `wsgate history export ID`)"));
    }
    Ok(steps)
}

async fn play(args: &ReplayArgs, url: Url, steps: &[Step], ignore: &[JsonPath]) -> Result<(), Divergence> {
    let timeout = Duration::from_secs_f64(args.timeout);
    let fail = |line, at, expected: String, got: String| Divergence {
        line,
        at,
        difference: Difference { at: String::new(), expected, got },
    };
    let first = steps.first().map_or((0, Duration::ZERO), |s| match s {
        Step::Send { line, at, .. } | Step::Expect { line, at, .. } => (*line, *at),
    });
    let mut req = ConnectRequest::new(url.clone());
    req.timeout = timeout;
    if url.scheme() == "wss" {
        req.tls = wsgate_protocol::tls::client_config(None).ok();
    }
    let connected = wsgate_protocol::connect(req)
        .await
        .map_err(|e| fail(first.0, first.1, format!("to connect to {url}"), format!("{e}")))?;
    let mut ws = WsStream::new(connected.transport, Role::Client, WsConfig::default(), connected.leftover);
    let start = Instant::now();
    let mut closed = false;
    for step in steps {
        match step {
            Step::Send { line, at, msg } => {
                tokio::time::sleep_until(start + at.div_f64(args.speed)).await;
                if let Message::Close(c) = msg {
                    closed = true;
                    let (code, reason) = c.as_ref().map_or((1000, ""), |c| (c.code, c.reason.as_str()));
                    ws.close(code, reason)
                        .await
                        .map_err(|e| fail(*line, *at, "to send our close".into(), e.to_string()))?;
                } else {
                    ws.send(msg.clone()).await.map_err(|e| fail(*line, *at, "to send".into(), e.to_string()))?;
                }
            }
            Step::Expect { line, at, msg } => {
                let got = loop {
                    match tokio::time::timeout(timeout, ws.recv()).await {
                        Err(_) => return Err(fail(*line, *at, describe(msg), format!("nothing within {timeout:?}"))),
                        Ok(Err(e)) => {
                            return Err(fail(*line, *at, describe(msg), format!("the connection ended: {e}")));
                        }
                        Ok(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        Ok(Ok(m)) => break m,
                    }
                };
                let difference = match (msg, &got) {
                    (Message::Close(e), Message::Close(g)) => {
                        closed = true;
                        let code = |c: &Option<wsgate_protocol::CloseFrame>| c.as_ref().map(|c| c.code);
                        (code(e) != code(g)).then(|| Difference {
                            at: "close code".into(),
                            expected: format!("{:?}", code(e)),
                            got: format!("{:?}", code(g)),
                        })
                    }
                    _ => compare(msg, &got, ignore),
                };
                if let Some(difference) = difference {
                    return Err(Divergence { line: *line, at: *at, difference });
                }
            }
        }
    }
    if !closed {
        let _ = ws.close(1000, "").await;
        let _ = tokio::time::timeout(timeout, async { while ws.recv().await.is_ok() {} }).await;
    }
    Ok(())
}

fn describe(m: &Message) -> String {
    match m {
        Message::Text(b) => String::from_utf8_lossy(b).into_owned(),
        Message::Close(Some(c)) => format!("a close {}", c.code),
        other => kind(other).into(),
    }
}
