//! `wsgate mock --ai-*` (generated event streams) through the real binary, against a
//! small chat-completions server of the test's own that streams its answer the way
//! OpenAI's does (SSE `data:` chunks, `[DONE]`), cut at awkward places — mid-line,
//! mid-JSON, mid-character. No model runs here: the server's answer is the test's.
//! Events arrive in order at the rate and stop at the count; a recording replays as
//! the same events; every failure (401, unreachable, silence, prose) is an `error`
//! event in the session's history and a close with its documented code.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as TMessage;

use crate::support::*;

type Client = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const NARRATIVE: &str = "five minutes of live stock trading on a made-up exchange";
const KEY: &str = "test-key-3f9c2e";

/// How the test server answers.
#[derive(Clone)]
enum Answer {
    /// 200, `text/event-stream`: this text as the model's, in small deltas, the bytes
    /// cut into HTTP chunks at awkward places.
    Stream(String),
    /// This status, with this JSON body.
    Status(u16, &'static str),
    /// Takes the request and never answers.
    Silent,
    /// Streams this text, then goes silent without ending the answer.
    Stall(String),
}

/// A request the server saw.
#[derive(Debug)]
struct Seen {
    path: String,
    authorization: Option<String>,
    body: serde_json::Value,
}

struct ChatServer {
    addr: SocketAddr,
    requests: mpsc::UnboundedReceiver<Seen>,
    /// One per streamed answer whose body was dropped: the mock stopped reading it.
    dropped: mpsc::UnboundedReceiver<()>,
}

/// Says when it is dropped (with the answer's body that owns it).
struct DropSignal(mpsc::UnboundedSender<()>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

impl ChatServer {
    async fn start(answer: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, requests) = mpsc::unbounded_channel();
        let (dropped_tx, dropped) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let (answer, tx, dropped) = (answer.clone(), tx.clone(), dropped_tx.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        serve(req, answer.clone(), tx.clone(), DropSignal(dropped.clone()))
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), svc).await;
                });
            }
        });
        Self { addr, requests, dropped }
    }

    /// The API's base URL (the mock appends `/chat/completions`).
    fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    async fn next_request(&mut self) -> Seen {
        within(self.requests.recv()).await.expect("the server is running")
    }
}

async fn serve(
    req: hyper::Request<hyper::body::Incoming>,
    answer: Answer,
    tx: mpsc::UnboundedSender<Seen>,
    dropped: DropSignal,
) -> Result<hyper::Response<BoxBody<Bytes, Infallible>>, Infallible> {
    let path = req.uri().path().to_owned();
    let authorization = req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let _ = tx.send(Seen { path, authorization, body });
    let (status, content_type, body) = match answer {
        Answer::Silent => std::future::pending().await,
        Answer::Status(status, json) => {
            (status, "application/json", Full::new(Bytes::from_static(json.as_bytes())).boxed())
        }
        Answer::Stream(text) => {
            let chunks = awkward_chunks(&sse(&text)).into_iter().map(|c| Ok(Frame::data(c)));
            (200, "text/event-stream", BodyExt::boxed(StreamBody::new(futures_util::stream::iter(chunks))))
        }
        Answer::Stall(text) => {
            // The deltas, but neither the finish chunk nor `[DONE]`, nor an end.
            let bytes = sse_deltas(&text);
            let chunks = futures_util::stream::iter(awkward_chunks(&bytes).into_iter().map(|c| Ok(Frame::data(c))));
            let chunks = chunks.chain(futures_util::stream::pending()).map(move |c| {
                let _owned = &dropped;
                c
            });
            (200, "text/event-stream", BodyExt::boxed(StreamBody::new(chunks)))
        }
    };
    let mut r = hyper::Response::new(body);
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
    r.headers_mut().insert("content-type", http::HeaderValue::from_static(content_type));
    Ok(r)
}

/// `text` as an OpenAI chat-completions stream: a role chunk, the text in deltas of
/// 1 to 11 characters, a `finish_reason` chunk, `[DONE]`.
fn sse(text: &str) -> Vec<u8> {
    let mut out = sse_deltas(text);
    out.extend_from_slice(sse_chunk(serde_json::json!({}), Some("stop")).as_bytes());
    out.extend_from_slice(b"data: [DONE]\n\n");
    out
}

/// One chunk of a chat-completions stream.
fn sse_chunk(delta: serde_json::Value, finish: Option<&str>) -> String {
    let v = serde_json::json!({
        "id": "chatcmpl-test", "object": "chat.completion.chunk", "model": "test-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    });
    format!("data: {v}\n\n")
}

/// The start of [`sse`]: everything up to the finish chunk.
fn sse_deltas(text: &str) -> Vec<u8> {
    let chunk = sse_chunk;
    let mut out = String::from(": keep-alive\n\n");
    out.push_str(&chunk(serde_json::json!({"role": "assistant", "content": ""}), None));
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    for size in [1, 5, 2, 11, 3, 7].into_iter().cycle() {
        if i >= chars.len() {
            break;
        }
        let delta: String = chars[i..(i + size).min(chars.len())].iter().collect();
        out.push_str(&chunk(serde_json::json!({"content": delta}), None));
        i += size;
    }
    out.into_bytes()
}

/// Bytes cut at sizes that fall anywhere: inside `data:`, inside the JSON, inside a
/// two-byte character.
fn awkward_chunks(bytes: &[u8]) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut rest = bytes;
    for size in [7, 1, 30, 13, 64, 2, 19].into_iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (a, b) = rest.split_at(size.min(rest.len()));
        out.push(Bytes::copy_from_slice(a));
        rest = b;
    }
    out
}

/// `n` trade events, one JSON object a line (with a non-ASCII character, so some
/// chunk cuts one in half).
fn trades(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!(r#"{{"type":"trade","seq":{i},"symbol":"ACMÉ","price":{}.25}}"#, 100 + i)).collect()
}

async fn ai_mock(url: &str, extra: &[&str], env: &[(&str, &str)]) -> Gateway {
    let mut args = vec!["--ai-narrative", NARRATIVE, "--ai-url", url, "--ai-model", "test-model"];
    args.extend_from_slice(extra);
    Gateway::spawn("mock", &args, env).await
}

async fn client(gw: &Gateway) -> Client {
    within(tokio_tungstenite::connect_async(gw.ws("/ticker"))).await.expect("connect").0
}

/// Everything a client gets: the texts with when each came, then the close.
struct Received {
    texts: Vec<String>,
    at: Vec<Instant>,
    close: (u16, String),
    closed_at: Instant,
}

async fn read_all(ws: &mut Client) -> Received {
    let (mut texts, mut at) = (Vec::new(), Vec::new());
    loop {
        match within(ws.next()).await {
            Some(Ok(TMessage::Text(t))) => {
                at.push(Instant::now());
                texts.push(t.to_string());
            }
            Some(Ok(TMessage::Close(c))) => {
                let close = c.map(|c| (u16::from(c.code), c.reason.to_string())).unwrap_or((1005, String::new()));
                return Received { texts, at, close, closed_at: Instant::now() };
            }
            Some(Ok(_)) => continue,
            other => panic!("expected a message or a close, got {other:?}"),
        }
    }
}

/// What wsgate's own client gets. The failure tests read with it rather than
/// tokio-tungstenite: tungstenite 0.30 does not know 1014 (IANA's "Bad Gateway",
/// which the proxy sends too) and reports it as a 1002 protocol error
/// (snapview/tungstenite-rs#502), where browsers, ws, OkHttp and Beast take it.
async fn read_all_own(gw: &Gateway) -> Received {
    let mut ws = ws_connect(&gw.ws("/ticker")).await;
    let (mut texts, mut at) = (Vec::new(), Vec::new());
    loop {
        match recv(&mut ws).await {
            wsgate_protocol::Message::Text(t) => {
                at.push(Instant::now());
                texts.push(String::from_utf8(t.to_vec()).unwrap());
            }
            wsgate_protocol::Message::Close(c) => {
                let close = c.map(|c| (c.code, c.reason)).unwrap_or((1005, String::new()));
                return Received { texts, at, close, closed_at: Instant::now() };
            }
            _ => continue,
        }
    }
}

/// When the session's `n` events were sent (`t` of its export, seconds since open).
async fn sent_times(gw: &Gateway, n: usize) -> Vec<f64> {
    let list = gw.wait_sessions(|s| !s.is_empty()).await;
    let id = list[0]["id"].as_str().unwrap().to_owned();
    eventually(|| async {
        let body = reqwest::get(gw.api(&format!("/api/sessions/{id}/export"))).await.ok()?.text().await.ok()?;
        let sent: Vec<f64> = body
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|f| f["dir"] == "gateway_to_client" && f["type"] == "text")
            .filter_map(|f| f["t"].as_f64())
            .collect();
        (sent.len() == n).then_some(sent)
    })
    .await
}

/// The session's `generation` error event, from its history.
async fn generation_error(gw: &Gateway) -> serde_json::Value {
    let list = gw.wait_sessions(|s| !s.is_empty()).await;
    let id = list[0]["id"].as_str().unwrap().to_owned();
    eventually(|| async {
        let ev = http_json(&gw.api(&format!("/api/sessions/{id}/events"))).await;
        ev["events"].as_array()?.iter().find(|e| e["error_kind"] == "generation").cloned()
    })
    .await
}

#[tokio::test]
async fn ai_stream_sends_the_generated_events_in_order_at_the_rate_up_to_the_count() {
    let events = trades(8);
    // Fenced, with a blank line: what models do whatever they are told.
    let text = format!("```json\n{}\n\n{}\n```\n", events[..3].join("\n"), events[3..].join("\n"));
    let mut server = ChatServer::start(Answer::Stream(text)).await;
    let gw = ai_mock(
        &server.url(),
        &["--ai-count", "5", "--ai-rate", "10", "--ai-key-env", "TEST_AI_KEY"],
        &[("TEST_AI_KEY", KEY)],
    )
    .await;
    let mut ws = client(&gw).await;
    let got = read_all(&mut ws).await;

    // The request: the model, a stream, the key as a bearer token, the narrative.
    let req = server.next_request().await;
    assert_eq!(req.path, "/v1/chat/completions");
    assert_eq!(req.authorization.as_deref(), Some(format!("Bearer {KEY}").as_str()));
    assert_eq!(req.body["model"], "test-model", "{}", req.body);
    assert_eq!(req.body["stream"], true, "{}", req.body);
    let messages = req.body["messages"].as_array().unwrap();
    assert!(messages.iter().any(|m| m["role"] == "user" && m["content"] == NARRATIVE), "{}", req.body);
    assert!(messages.iter().any(|m| m["role"] == "system" && m["content"].as_str().unwrap().contains("5 events")));

    // The first five, as the model wrote them, in order; then a normal close.
    assert_eq!(got.texts, events[..5]);
    assert_eq!(got.close, (1000, "generated 5 events".to_owned()));
    // At the rate: the model answered all at once, and the events went 100 ms apart,
    // never sooner — measured where they were sent (the session's history: a loaded
    // client reads late, then two at once); late by at most a busy machine's turn.
    let sent = sent_times(&gw, 5).await;
    for (i, t) in sent.iter().enumerate() {
        let due = sent[0] + 0.1 * i as f64;
        assert!(*t >= due - 0.001 && *t < due + 0.15, "event {i} sent at {t}, due at {due}: {sent:?}");
    }
    // And the client saw them over that span, the close right after the last.
    let span = got.at[4] - got.at[0];
    assert!(span >= Duration::from_millis(250) && span < Duration::from_millis(1000), "span {span:?}");
    assert!(got.closed_at - got.at[4] < Duration::from_millis(200), "{:?}", got.closed_at - got.at[4]);
    // The key is never logged.
    assert!(!gw.logs().contains(KEY));
}

#[tokio::test]
async fn ai_stream_recorded_then_replayed_gives_the_same_events() {
    let dir = TempDir::new();
    let record = dir.0.join("stream.jsonl");
    let events = trades(3);
    let mut text = events.join("\n");
    // A `{{` that a template would eat: the recording must replay it as generated.
    text.push_str("\n{\"type\":\"note\",\"text\":\"{{uuid}} stays as is\"}\n");
    let server = ChatServer::start(Answer::Stream(text)).await;
    // As a config file: `mock: {ai: {...}}`.
    let yaml = format!(
        "mock:\n  ai:\n    url: {:?}\n    model: test-model\n    narrative: {NARRATIVE:?}\n    count: 4\n    rate: 20\n    record: {:?}\n",
        server.url(),
        record.display().to_string()
    );
    let (_cfg_dir, cfg) = config_file(&yaml);
    let gw = Gateway::spawn("mock", &["--config", &cfg], &[]).await;
    let live = read_all(&mut client(&gw).await).await;
    assert_eq!(live.texts.len(), 4);
    assert_eq!(live.texts[3], r#"{"type":"note","text":"{{uuid}} stays as is"}"#);
    assert_eq!(live.close, (1000, "generated 4 events".to_owned()));
    // The recording is whole before the close is sent.
    let recorded = std::fs::read_to_string(&record).unwrap();
    assert!(recorded.starts_with(r#"{"type":"session""#), "{recorded}");
    assert_eq!(recorded.lines().count(), 6, "session, 4 events, close:\n{recorded}");
    // A second session records beside the first.
    let second = read_all(&mut client(&gw).await).await;
    assert_eq!(second.texts, live.texts);
    assert!(dir.0.join("stream-2.jsonl").exists());

    let replay = Gateway::mock(&["--replay", record.to_str().unwrap(), "--no-store"]).await;
    let t0 = Instant::now();
    let again = read_all(&mut client(&replay).await).await;
    assert_eq!(again.texts, live.texts);
    assert_eq!(again.close, live.close);
    // At the rate it was generated at (20/s): the last of the four 150 ms into the
    // session, never sooner.
    let last = again.at[3] - t0;
    assert!(last >= Duration::from_millis(145) && last < Duration::from_millis(600), "last at {last:?}");
}

#[tokio::test]
async fn ai_stream_refused_with_401_is_an_error_event_and_a_1014_close() {
    let server = ChatServer::start(Answer::Status(
        401,
        r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}"#,
    ))
    .await;
    let gw = ai_mock(&server.url(), &[], &[]).await;
    let got = read_all_own(&gw).await;
    assert!(got.texts.is_empty());
    assert_eq!(got.close, (1014, "ai: endpoint answered HTTP 401".to_owned()));
    let error = generation_error(&gw).await;
    let message = error["detail"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("HTTP 401") && message.contains("Incorrect API key provided"), "{error}");
}

#[tokio::test]
async fn ai_stream_to_an_unreachable_endpoint_is_an_error_event_and_a_1014_close() {
    // A port nothing listens on any more.
    let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let gw = ai_mock(&format!("http://127.0.0.1:{port}/v1"), &[], &[]).await;
    let got = read_all_own(&gw).await;
    assert!(got.texts.is_empty());
    assert_eq!(got.close, (1014, "ai: endpoint unreachable".to_owned()));
    let error = generation_error(&gw).await;
    assert!(error["detail"]["message"].as_str().unwrap_or_default().contains("unreachable"), "{error}");
}

#[tokio::test]
async fn ai_stream_from_a_silent_endpoint_closes_within_the_timeout() {
    let mut server = ChatServer::start(Answer::Silent).await;
    let gw = ai_mock(&server.url(), &["--ai-timeout", "500ms"], &[]).await;
    let t0 = Instant::now();
    let (got, _) = tokio::join!(read_all_own(&gw), server.next_request());
    let took = got.closed_at - t0;
    assert_eq!(got.close, (1014, "ai: endpoint timed out".to_owned()));
    assert!(took >= Duration::from_millis(450) && took < Duration::from_secs(3), "closed after {took:?}");
    let error = generation_error(&gw).await;
    assert!(error["detail"]["message"].as_str().unwrap_or_default().contains("0.5s"), "{error}");
}

#[tokio::test]
async fn ai_stream_that_stalls_mid_answer_sends_what_came_then_closes_within_the_timeout() {
    let events = trades(2);
    let server = ChatServer::start(Answer::Stall(format!("{}\n", events.join("\n")))).await;
    let gw = ai_mock(&server.url(), &["--ai-timeout", "500ms", "--ai-rate", "50"], &[]).await;
    let got = read_all_own(&gw).await;
    assert_eq!(got.texts, events);
    assert_eq!(got.close, (1014, "ai: endpoint timed out".to_owned()));
    let silent = got.closed_at - got.at[1];
    assert!(
        silent >= Duration::from_millis(400) && silent < Duration::from_secs(3),
        "closed {silent:?} after the last"
    );
    let error = generation_error(&gw).await;
    assert!(error["detail"]["message"].as_str().unwrap_or_default().contains("the next chunk"), "{error}");
}

#[tokio::test]
async fn ai_stream_a_client_leaves_stops_reading_the_answer_at_once() {
    let events = trades(2);
    let mut server = ChatServer::start(Answer::Stall(format!("{}\n", events.join("\n")))).await;
    // The default timeout (30 s): only the client leaving can end the wait.
    let gw = ai_mock(&server.url(), &[], &[]).await;
    let mut ws = client(&gw).await;
    let first = match within(ws.next()).await {
        Some(Ok(TMessage::Text(t))) => t.to_string(),
        other => panic!("expected the first event, got {other:?}"),
    };
    assert_eq!(first, events[0]);
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = within(ws.next()).await {}
    // The generator let go of the answer: its body was dropped (`within`: 10 s).
    within(server.dropped.recv()).await.unwrap();
}

#[tokio::test]
async fn ai_stream_with_prose_in_the_answer_sends_the_events_before_it_then_closes() {
    let events = trades(2);
    let text = format!("{}\nSure! Here are more events for you:\n{}\n", events[0], events[1]);
    let server = ChatServer::start(Answer::Stream(text)).await;
    let gw = ai_mock(&server.url(), &["--ai-rate", "50"], &[]).await;
    let got = read_all_own(&gw).await;
    assert_eq!(got.texts, events[..1]);
    assert_eq!(got.close, (1014, "ai: answer line 2 is not a JSON event".to_owned()));
    let error = generation_error(&gw).await;
    assert!(error["detail"]["message"].as_str().unwrap_or_default().contains("Sure! Here are"), "{error}");
}

#[test]
fn ai_settings_that_cannot_work_stop_the_start_with_64() {
    for (args, says) in [
        (&["--ai-rate", "0"][..], "mock.ai.rate"),
        (&["--ai-count", "0"][..], "mock.ai.count"),
        (&["--ai-url", "ws://127.0.0.1:1/v1"][..], "mock.ai.url"),
        (&["--ai-key-env", "WSGATE_TEST_NO_SUCH_KEY"][..], "the API key variable WSGATE_TEST_NO_SUCH_KEY is not set"),
        (&["--ai-timeout", "0s"][..], "mock.ai.timeout"),
        (&["--echo"][..], "two modes"),
    ] {
        let out = std::process::Command::new(bin())
            .args(["mock", "--ai-narrative", NARRATIVE, "--ai-model", "m", "--no-store"])
            .args(if args.contains(&"--ai-url") { &[][..] } else { &["--ai-url", "http://127.0.0.1:1/v1"][..] })
            .args(args)
            .args(["--listen", "127.0.0.1:0", "--control", "127.0.0.1:0"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
