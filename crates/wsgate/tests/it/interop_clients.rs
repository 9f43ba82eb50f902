//! wsgate as a SERVER, driven by WebSocket clients no one here wrote.
//!
//! Every 101 the listener gave once said `Connection: Upgrade, close`: tungstenite and
//! OkHttp refuse that, and no test noticed, because every client the suite used was
//! lenient. Hence this matrix: each client library runs the same scenario
//! (tests/interop/clients/README.md) against each serving role — `wsgate proxy` in
//! front of an echo upstream, `wsgate mock --echo`, `wsgate serve` with a proxy route
//! and a mock route on one listener, and the control plane's `/api/live` — and each
//! client × role is its own test, so a failure names its cell.
//!
//! A client reports what it observed as one JSON line; the test asserts on that and
//! on wsgate's own record of the session (`/api/sessions`). Where a client cannot
//! observe something (websocat the negotiated subprotocol, aiohttp the close reason)
//! its report says `null` and only the clients listed in [`Client::blind_to`] may say
//! so. docs/interop.md holds the matrix and those notes.
//!
//! No silent skip: a missing program fails its cells, naming scripts/interop-setup.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
// `::` throughout: the cells' module `tokio_tungstenite` shadows the crate's name here.
use ::tokio_tungstenite::tungstenite::client::IntoClientRequest;
use ::tokio_tungstenite::tungstenite::protocol::CloseFrame;
use ::tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::*;

/// The subprotocol every client offers in its first handshake (the second offers none).
const PROTOCOL: &str = "wsgate.interop.v1";
const TEXT: &str = "héllo ✓";
const BIG: usize = 1 << 20;
/// One step of a scenario run from Rust (the programs bound their own steps at 15 s).
const STEP: Duration = Duration::from_secs(15);
/// A whole client program, browser start included. The programs give up after 45 s
/// themselves and say why; this only catches one that hangs regardless.
const CLIENT_RUN: Duration = Duration::from_secs(60);
/// `go build` of the gorilla client: fast from go's build cache, slower when cold.
const GO_BUILD: Duration = Duration::from_secs(180);

/// The 1 MiB message (README.md): not periodic in 256, so a swapped or repeated block
/// would not echo back equal.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((7 * i + 13 * (i >> 8) + 17 * (i >> 16)) & 0xff) as u8).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn clients_dir() -> PathBuf {
    repo_root().join("tests/interop/clients")
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// Against an echo: text, binary, 1 MiB, close 4001.
    Echo,
    /// Against `/api/live`: the first message (a status snapshot), close 4001.
    Live,
    /// Against the control root (websocket-multiplex's master connection): the status,
    /// then the first `message` event, close 4001.
    Master,
}

impl Mode {
    fn arg(self) -> &'static str {
        match self {
            Self::Echo => "echo",
            Self::Live => "live",
            Self::Master => "master",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Client {
    TokioTungstenite,
    PyWebsockets,
    PyAiohttp,
    NodeWs,
    NodeUndici,
    Gorilla,
    Chromium,
    Websocat,
}

impl Client {
    /// The name in reports and in the close reason (`bye <name>`).
    fn name(self) -> &'static str {
        match self {
            Self::TokioTungstenite => "tokio-tungstenite",
            Self::PyWebsockets => "py-websockets",
            Self::PyAiohttp => "py-aiohttp",
            Self::NodeWs => "node-ws",
            Self::NodeUndici => "node-undici",
            Self::Gorilla => "gorilla",
            Self::Chromium => "chromium",
            Self::Websocat => "websocat",
        }
    }

    /// Report fields this client has no way to observe (docs/interop.md says why).
    fn blind_to(self, field: &str) -> bool {
        matches!((self, field), (Self::Websocat, "subprotocol") | (Self::PyAiohttp, "close.reason"))
    }

    /// Runs the scenario once and returns the client's report.
    async fn run(self, mode: Mode, url: &str, protocol: Option<&str>) -> Value {
        let name = self.name();
        match self {
            Self::TokioTungstenite => tungstenite_scenario(mode, url, protocol).await,
            Self::Websocat => websocat_scenario(mode, url, protocol).await,
            Self::PyWebsockets | Self::PyAiohttp => {
                let python = std::env::var("WSGATE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
                let script = if self == Self::PyWebsockets { "py_websockets.py" } else { "py_aiohttp.py" };
                let mut cmd = Command::new(python);
                cmd.arg(clients_dir().join(script));
                report_of(cmd, mode, url, name, protocol).await
            }
            Self::NodeWs | Self::NodeUndici | Self::Chromium => {
                let script = match self {
                    Self::NodeWs => "node_ws.mjs",
                    Self::NodeUndici => "node_undici.mjs",
                    _ => "chromium.mjs",
                };
                let mut cmd = Command::new("node");
                cmd.arg(clients_dir().join(script));
                report_of(cmd, mode, url, name, protocol).await
            }
            Self::Gorilla => {
                let bin = TempDir::new();
                let exe = build_gorilla(&bin.0).await;
                report_of(Command::new(exe), mode, url, name, protocol).await
            }
        }
    }
}

/// Runs a client program (`<program> <mode> <url> <name> [<protocol>]`) and parses the
/// one JSON line it prints.
async fn report_of(mut cmd: Command, mode: Mode, url: &str, name: &str, protocol: Option<&str>) -> Value {
    cmd.args([mode.arg(), url, name]).args(protocol);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let what = format!("{name} ({} {url}, offering {protocol:?})", mode.arg());
    let out = tokio::time::timeout(CLIENT_RUN, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{what}: no report within {CLIENT_RUN:?}"))
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e} (scripts/interop-setup installs the clients)"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} failed ({}):\nstdout: {stdout}\nstderr: {stderr}", out.status);
    let line = stdout.lines().rfind(|l| !l.trim().is_empty()).unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{what}: not a JSON report ({e}): {stdout}\nstderr: {stderr}"))
}

/// Builds tests/interop/clients/gorilla with Debian's GOPATH package into `dir`.
async fn build_gorilla(dir: &Path) -> PathBuf {
    let exe = dir.join("gorilla-client");
    let mut cmd = Command::new("go");
    cmd.args(["build", "-o"])
        .arg(&exe)
        .arg(".")
        .current_dir(clients_dir().join("gorilla"))
        .env("GOPATH", "/usr/share/gocode")
        .env("GO111MODULE", "off")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(GO_BUILD, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("go build of the gorilla client took over {GO_BUILD:?}"))
        .unwrap_or_else(|e| panic!("cannot run go: {e} (scripts/interop-setup installs golang)"));
    assert!(
        out.status.success(),
        "go build of the gorilla client failed (scripts/interop-setup installs golang-github-gorilla-websocket-dev):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

async fn step<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(STEP, f).await.unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// The scenario with tokio-tungstenite, in process. tungstenite checks the 101 as
/// RFC 6455 §4.1 says (`Connection` must be `Upgrade`, the offered subprotocol must
/// come back), which is what makes these cells strict.
async fn tungstenite_scenario(mode: Mode, url: &str, protocol: Option<&str>) -> Value {
    use ::tokio_tungstenite::tungstenite::Message as Tm;

    let name = Client::TokioTungstenite.name();
    let mut req = url.into_client_request().unwrap();
    if let Some(p) = protocol {
        req.headers_mut().insert("sec-websocket-protocol", p.parse().unwrap());
    }
    let (mut ws, resp) = step("the handshake", ::tokio_tungstenite::connect_async(req))
        .await
        .unwrap_or_else(|e| panic!("tokio-tungstenite refused wsgate's handshake at {url}: {e}"));
    let subprotocol = resp.headers().get("sec-websocket-protocol").map(|v| v.to_str().unwrap().to_owned());
    let mut report = json!({
        "client": name,
        "offered": protocol.unwrap_or(""),
        "subprotocol": subprotocol.unwrap_or_default(),
    });

    // The next data message, described as the programs describe theirs (pings and
    // pongs are tungstenite's business).
    async fn next(
        ws: &mut (impl StreamExt<Item = ::tokio_tungstenite::tungstenite::Result<Tm>> + Unpin),
        what: &str,
    ) -> Tm {
        loop {
            match step(what, ws.next()).await {
                Some(Ok(Tm::Ping(_) | Tm::Pong(_) | Tm::Frame(_))) => continue,
                Some(Ok(m)) => return m,
                other => panic!("{what}: {other:?}"),
            }
        }
    }
    fn describe(m: &Tm) -> Value {
        match m {
            Tm::Text(t) => json!({"kind": "text", "value": t.as_str()}),
            Tm::Binary(b) => json!({"kind": "binary", "hex": hex(b)}),
            other => json!({"kind": format!("{other:?}")}),
        }
    }

    if mode == Mode::Live || mode == Mode::Master {
        report["first"] = describe(&next(&mut ws, "the first message").await);
        while mode == Mode::Master && report.get("event").is_none() {
            if let Tm::Text(t) = next(&mut ws, "a message event").await
                && serde_json::from_str::<Value>(t.as_str()).is_ok_and(|v| v["type"] == "message")
            {
                report["event"] = json!({"kind": "text", "value": t.as_str()});
            }
        }
    } else {
        step("sending text", ws.send(Tm::text(TEXT))).await.unwrap();
        report["text"] = describe(&next(&mut ws, "the text echo").await);
        step("sending binary", ws.send(Tm::binary((0..=255u8).collect::<Vec<_>>()))).await.unwrap();
        report["binary"] = describe(&next(&mut ws, "the binary echo").await);
        let big = pattern(BIG);
        step("sending 1 MiB", ws.send(Tm::binary(big.clone()))).await.unwrap();
        report["big"] = match next(&mut ws, "the 1 MiB echo").await {
            Tm::Binary(b) => json!({"kind": "binary", "len": b.len(), "intact": b[..] == big[..]}),
            other => describe(&other),
        };
    }
    let bye = CloseFrame { code: CloseCode::from(4001), reason: format!("bye {name}").into() };
    step("sending close", ws.close(Some(bye))).await.unwrap();
    // After our close, tungstenite hands over the server's close frame, then ends. A
    // server that was already sending (the master connection's live events) may send
    // more data before it reads our close (RFC 6455 §5.5.1): skipped here.
    report["close"] = loop {
        match step("the close answer", ws.next()).await {
            Some(Ok(Tm::Close(Some(c)))) => break json!({"code": u16::from(c.code), "reason": c.reason.as_str()}),
            Some(Ok(Tm::Close(None))) => break json!({"code": null, "reason": null}),
            Some(Ok(Tm::Text(_) | Tm::Binary(_) | Tm::Ping(_) | Tm::Pong(_))) if mode == Mode::Master => continue,
            other => panic!("expected the server's close frame, got {other:?}"),
        }
    };
    report
}

/// The scenario with the websocat CLI over its stdin/stdout: text mode with
/// `--text-prefix`/`--binary-prefix` and `--base64`, so one session carries both text
/// lines (`T:…`) and binary messages (`B:<base64>`), in and out. Closing stdin makes
/// websocat send `--close-status-code 4001 --close-reason …`; the close the server
/// answered is only in its debug log (`-v -v`). It never says which subprotocol was
/// negotiated: that is checked on wsgate's side only.
async fn websocat_scenario(mode: Mode, url: &str, protocol: Option<&str>) -> Value {
    let name = Client::Websocat.name();
    let bye = format!("bye {name}");
    let mut cmd = Command::new("websocat");
    cmd.args(["--linemode-strip-newlines", "--text-prefix", "T:", "--binary-prefix", "B:", "--base64"])
        // A line (and so a message) may be this long; the 1 MiB message is 1.4 MB in base64.
        .args(["-B", "4194304"])
        .args(["--close-status-code", "4001", "--close-reason", &bye, "-v", "-v"]);
    if let Some(p) = protocol {
        cmd.args(["--protocol", p]);
    }
    cmd.arg(url).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let mut child =
        cmd.spawn().unwrap_or_else(|e| panic!("cannot run websocat: {e} (scripts/interop-setup installs it)"));
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = child.stderr.take().unwrap();
    let log = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s).await;
        s
    });

    let mut report = json!({"client": name, "offered": protocol.unwrap_or(""), "subprotocol": null});
    fn describe(line: &str) -> Value {
        if let Some(t) = line.strip_prefix("T:") {
            json!({"kind": "text", "value": t})
        } else if let Some(b) = line.strip_prefix("B:") {
            json!({"kind": "binary", "hex": hex(&BASE64.decode(b).expect("websocat's base64"))})
        } else {
            json!({"kind": "unprefixed", "value": line})
        }
    }
    let mut next = async |what: &str| -> String {
        step(what, lines.next_line()).await.unwrap().unwrap_or_else(|| panic!("websocat ended before {what}"))
    };
    let mut send = async |line: String| {
        step("writing to websocat", async {
            stdin.write_all(line.as_bytes()).await?;
            stdin.write_all(b"\n").await?;
            stdin.flush().await
        })
        .await
        .unwrap()
    };
    if mode == Mode::Live {
        report["first"] = describe(&next("the first message").await);
    } else {
        send(format!("T:{TEXT}")).await;
        report["text"] = describe(&next("the text echo").await);
        send(format!("B:{}", BASE64.encode((0..=255u8).collect::<Vec<_>>()))).await;
        report["binary"] = describe(&next("the binary echo").await);
        let big = pattern(BIG);
        send(format!("B:{}", BASE64.encode(&big))).await;
        let line = next("the 1 MiB echo").await;
        report["big"] = match line.strip_prefix("B:") {
            Some(b) => {
                let got = BASE64.decode(b).expect("websocat's base64");
                json!({"kind": "binary", "len": got.len(), "intact": got == big})
            }
            None => describe(&line),
        };
    }
    // EOF on stdin: websocat sends its close and exits once the server answered it.
    drop(stdin);
    let status = step("websocat to exit after the close", child.wait()).await.unwrap();
    let log = step("websocat's log", log).await.unwrap();
    assert!(status.success(), "websocat failed ({status}):\n{log}");
    report["close"] = websocat_close(&log).unwrap_or_else(|| panic!("websocat logged no close frame received:\n{log}"));
    report
}

/// The close frame websocat received, from its debug line
/// `The close message is Some(CloseData { status_code: 4001, reason: "" })`.
fn websocat_close(log: &str) -> Option<Value> {
    let line = log.lines().find(|l| l.contains("The close message is"))?;
    let code: u16 = line.split("status_code: ").nth(1)?.split(',').next()?.trim().parse().ok()?;
    let reason = line.split("reason: \"").nth(1)?.rsplit_once("\" })")?.0;
    Some(json!({"code": code, "reason": reason}))
}

/// A report field, or `None` when the client said it cannot observe it (only those
/// in [`Client::blind_to`] may).
fn observed<'a>(client: Client, report: &'a Value, field: &str) -> Option<&'a Value> {
    let v = field.split('.').fold(report, |v, k| &v[k]);
    if v.is_null() {
        assert!(client.blind_to(field), "{}: no `{field}` in its report: {report}", client.name());
        return None;
    }
    Some(v)
}

/// What every close answer must be: wsgate (or, through the proxy, the echo upstream,
/// relayed unchanged) answers a close with its code and no reason.
fn assert_close_answered(client: Client, report: &Value) {
    let name = client.name();
    assert_eq!(report["close"]["code"], 4001, "{name}: the close code the server answered: {report}");
    if let Some(reason) = observed(client, report, "close.reason") {
        assert_eq!(reason, "", "{name}: the close reason the server answered: {report}");
    }
}

enum Target {
    Proxy,
    Mock,
    /// `wsgate serve` with a proxy route and a mock route on one listener.
    Serve,
    /// `wsgate relay` (raw): alone in its room, a client gets its own messages back.
    Relay,
}

/// One echo cell: the scenario offering [`PROTOCOL`], then offering none, each checked
/// in the client's report and in wsgate's session record.
async fn echo_cell(client: Client, target: Target) {
    // The upstream accepts PROTOCOL and echoes data and close codes (support.rs).
    let up = Upstream::start(UpstreamOpts { accept_protocols: vec![PROTOCOL.into()], ..Default::default() }).await;
    let config = TempDir::new();
    // (gateway, (path prefix, route) of each route the scenario runs through)
    let (gw, routes) = match target {
        Target::Proxy => (Gateway::proxy(&["--upstream", &up.url()]).await, vec![("", "default")]),
        Target::Mock => (Gateway::mock(&["--echo", "--subprotocol", PROTOCOL]).await, vec![("", "mock")]),
        Target::Relay => (Gateway::spawn("relay", &["--relay-subprotocol", PROTOCOL], &[]).await, vec![("", "relay")]),
        Target::Serve => {
            let file = config.0.join("wsgate.yaml");
            let yaml = format!(
                "routes:\n  - name: proxied\n    path: /proxied/*\n    proxy: {{ upstream: \"{}\", strip_prefix: /proxied }}\n  - name: mocked\n    path: /mocked/*\n    mock: {{ echo: true, subprotocols: [\"{PROTOCOL}\"] }}\n",
                up.url()
            );
            std::fs::write(&file, yaml).unwrap();
            let gw = Gateway::spawn("serve", &["--config", file.to_str().unwrap()], &[]).await;
            (gw, vec![("/proxied", "proxied"), ("/mocked", "mocked")])
        }
    };
    let name = client.name();
    let runs = routes.iter().flat_map(|r| [(*r, Some(PROTOCOL)), (*r, None)]);
    for ((prefix, route), offered) in runs {
        let path = format!("{prefix}/interop/{name}/{}", if offered.is_some() { "offering" } else { "plain" });
        let report = client.run(Mode::Echo, &gw.ws(&path), offered).await;
        let what = format!("{name} offering {offered:?}");

        if let Some(sub) = observed(client, &report, "subprotocol") {
            assert_eq!(sub, offered.unwrap_or(""), "{what}: negotiated subprotocol: {report}");
        }
        assert_eq!(report["text"], json!({"kind": "text", "value": TEXT}), "{what}: text echo");
        let seq: Vec<u8> = (0..=255).collect();
        assert_eq!(report["binary"], json!({"kind": "binary", "hex": hex(&seq)}), "{what}: binary echo");
        assert_eq!(report["big"], json!({"kind": "binary", "len": BIG, "intact": true}), "{what}: 1 MiB echo");
        assert_close_answered(client, &report);

        // wsgate's side: the session ended as the client ended it.
        let sessions = gw
            .wait_sessions(|s| {
                s.iter().any(|x| {
                    x["path"] == path.as_str() && matches!(x["state"].as_str(), Some("DISCONNECTED" | "FAILED"))
                })
            })
            .await;
        let s = sessions.iter().find(|x| x["path"] == path.as_str()).unwrap();
        assert_eq!(s["state"], "DISCONNECTED", "{what}: session {s}");
        assert_eq!(s["close"]["code"], 4001, "{what}: session {s}");
        assert_eq!(s["close"]["reason"], format!("bye {name}"), "{what}: session {s}");
        assert_eq!(s["close"]["initiator"], "client", "{what}: session {s}");
        assert_eq!(s["subprotocol"].as_str().unwrap_or(""), offered.unwrap_or(""), "{what}: session {s}");
        assert_eq!(s["route"], route, "{what}: session {s}");
    }
}

/// The `/api/live` cell: the first message is the status snapshot; the close is
/// answered. (A control socket is not a session: nothing to find in /api/sessions.)
async fn live_cell(client: Client) {
    let gw = Gateway::mock(&["--echo"]).await;
    let url = format!("ws://{}/api/live", gw.control);
    let report = client.run(Mode::Live, &url, None).await;
    let name = client.name();
    if let Some(sub) = observed(client, &report, "subprotocol") {
        assert_eq!(sub, "", "{name}: no subprotocol on /api/live: {report}");
    }
    assert_eq!(report["first"]["kind"], "text", "{name}: the first message: {report}");
    let first: Value = serde_json::from_str(report["first"]["value"].as_str().unwrap())
        .unwrap_or_else(|e| panic!("{name}: the first message is not JSON ({e}): {report}"));
    assert_eq!(first["type"], "status", "{name}: the first message: {first}");
    assert!(first["sessions"].is_array(), "{name}: the status snapshot lists sessions: {first}");
    assert_close_answered(client, &report);
}

/// The master-connection cell: a client connects to `ws://CONTROL/` (websocket-multiplex's
/// master connection), reads the status and then a `message` event of a real proxied
/// session, and closes.
async fn master_cell(client: Client) {
    let up = Upstream::echo().await;
    let gw = Gateway::proxy(&["--upstream", &up.url()]).await;
    let name = client.name();
    let path = format!("/interop/{name}/station");
    let mut station = ws_connect(&gw.ws(&path)).await;
    gw.wait_sessions(|s| s.iter().any(|x| x["path"] == path.as_str() && x["state"] == "CONNECTED")).await;
    let url = format!("ws://{}/", gw.control);
    let mut run = tokio::spawn(async move { client.run(Mode::Master, &url, None).await });
    // The station talks until the client has seen a message event: the client program
    // gives no other sign of having read its status.
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let report = within(async {
        loop {
            tokio::select! {
                r = &mut run => return r.unwrap(),
                _ = tick.tick() => {
                    station.send(wsgate_protocol::Message::text("tick")).await.unwrap();
                    let _echo = recv(&mut station).await;
                }
            }
        }
    })
    .await;
    assert_eq!(report["first"]["kind"], "text", "{name}: the first message: {report}");
    let first: Value = serde_json::from_str(report["first"]["value"].as_str().unwrap()).unwrap();
    assert_eq!(first, json!({"type":"status","clients":[path],"upstreams":[path]}), "{name}: {report}");
    let event: Value = serde_json::from_str(report["event"]["value"].as_str().unwrap()).unwrap();
    assert_eq!(event["type"], "message", "{name}: {report}");
    assert_eq!(event["connectionId"], path.as_str(), "{name}: {report}");
    assert_eq!(event["message"], "tick", "{name}: {report}");
    assert!(
        matches!(event["direction"].as_str(), Some("client-to-upstream" | "upstream-to-client")),
        "{name}: {report}"
    );
    assert_close_answered(client, &report);
}

/// The master connection (`ws://CONTROL/`) with the clients websocket-multiplex's users
/// script it with: `master_root::<client>`.
mod master_root {
    use super::*;

    #[tokio::test]
    async fn node_ws() {
        master_cell(Client::NodeWs).await;
    }

    #[tokio::test]
    async fn py_websockets() {
        master_cell(Client::PyWebsockets).await;
    }

    #[tokio::test]
    async fn tokio_tungstenite() {
        master_cell(Client::TokioTungstenite).await;
    }
}

/// One module per client, one test per target: `interop_clients::<client>::<target>`.
macro_rules! cells {
    ($($module:ident => $client:expr;)*) => {$(
        mod $module {
            use super::*;

            #[tokio::test]
            async fn proxy() {
                echo_cell($client, Target::Proxy).await;
            }

            #[tokio::test]
            async fn mock() {
                echo_cell($client, Target::Mock).await;
            }

            #[tokio::test]
            async fn serve() {
                echo_cell($client, Target::Serve).await;
            }

            #[tokio::test]
            async fn relay() {
                echo_cell($client, Target::Relay).await;
            }

            #[tokio::test]
            async fn live() {
                live_cell($client).await;
            }
        }
    )*};
}

cells! {
    tokio_tungstenite => Client::TokioTungstenite;
    py_websockets => Client::PyWebsockets;
    py_aiohttp => Client::PyAiohttp;
    node_ws => Client::NodeWs;
    node_undici => Client::NodeUndici;
    gorilla => Client::Gorilla;
    chromium => Client::Chromium;
    websocat => Client::Websocat;
}
