//! Third-party clients through the proxy: Python `websockets` (installed by
//! scripts/test). No silent skip: a missing client fails the test.

use crate::support::*;

#[tokio::test]
async fn python_websockets_client_through_the_proxy() {
    let up = Upstream::start(UpstreamOpts { accept_protocols: vec!["v2".into()], ..Default::default() }).await;
    let gw = Gateway::proxy(&["--upstream", &up.url()]).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/py_client.py");
    let python = std::env::var("WSGATE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = within(tokio::process::Command::new(&python).arg(script).arg(gw.ws("/py")).output())
        .await
        .expect("run python (scripts/test installs the `websockets` package)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "python client failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["subprotocol"], "v2");
    assert_eq!(v["text"], "héllo");
    assert_eq!(v["binary_ok"], true);
    assert_eq!(v["pong"], true);
    assert_eq!(v["close_code"], 4001);
}
