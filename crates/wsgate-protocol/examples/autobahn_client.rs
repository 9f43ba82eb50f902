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

    let mut ws = open("/getCaseCount".into()).await?;
    let count: u32 = match ws.recv().await? {
        Message::Text(t) => std::str::from_utf8(&t)?.trim().parse()?,
        other => return Err(format!("unexpected case count message {other:?}").into()),
    };
    let _ = ws.close(1000, "").await;

    for case in 1..=count {
        let mut ws = open(format!("/runCase?case={case}&agent={agent}")).await?;
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

    let mut ws = open(format!("/updateReports?agent={agent}")).await?;
    let _ = ws.close(1000, "").await;
    println!("ran {count} cases");
    Ok(())
}
