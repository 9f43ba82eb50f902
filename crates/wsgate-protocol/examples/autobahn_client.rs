//! Drives wsgate's client role against the Autobahn|Testsuite `fuzzingserver`:
//! `autobahn_client ws://127.0.0.1:PORT [AGENT]`. Asks for the case count, runs every
//! case as an echo client, then asks the server to write its reports.

use wsgate_protocol::{ConnectRequest, Message, Role, WsConfig, WsError, WsStream};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let base = args.next().ok_or("usage: autobahn_client ws://HOST:PORT [AGENT]")?;
    let agent = args.next().unwrap_or_else(|| "wsgate".into());
    let limits = WsConfig { max_frame_size: 64 << 20, max_message_size: 64 << 20 };

    let open = |path: String| {
        let base = base.clone();
        async move {
            let mut req = ConnectRequest::new(format!("{base}{path}").parse()?);
            req.deflate = Some(Default::default());
            let c = wsgate_protocol::connect(req).await?;
            let ws = WsStream::new(c.transport, Role::Client, limits, c.leftover).with_deflate(c.deflate, 6);
            Ok::<_, Box<dyn std::error::Error>>(ws)
        }
    };

    // wstest's server, busy on a loaded machine, now and then resets a connection
    // before its handshake is answered: that is no verdict on a case, so a few more
    // attempts are made (and said on stderr) before giving up.
    let open_retrying = |path: String| {
        let open = &open;
        async move {
            let mut attempt = 1;
            loop {
                match open(path.clone()).await {
                    Ok(ws) => return Ok(ws),
                    Err(e) if attempt < 4 => {
                        eprintln!("autobahn_client: {path}: {e}; attempt {attempt} of 4 failed, retrying");
                        tokio::time::sleep(std::time::Duration::from_millis(250 * attempt)).await;
                        attempt += 1;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    };

    let mut ws = open_retrying("/getCaseCount".into()).await?;
    let count: u32 = match ws.recv().await? {
        Message::Text(t) => std::str::from_utf8(&t)?.trim().parse()?,
        other => return Err(format!("unexpected case count message {other:?}").into()),
    };
    let _ = ws.close(1000, "").await;

    for case in 1..=count {
        let mut ws = open_retrying(format!("/runCase?case={case}&agent={agent}")).await?;
        loop {
            match ws.recv().await {
                Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                    if ws.feed(&m).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(WsError::Protocol(_)) => {
                    ws.flush_best_effort().await;
                    break;
                }
                Err(_) => break,
            }
        }
        let _ = ws.flush().await;
    }

    let mut ws = open_retrying(format!("/updateReports?agent={agent}")).await?;
    let _ = ws.close(1000, "").await;
    println!("ran {count} cases");
    Ok(())
}
