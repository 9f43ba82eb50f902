//! wss:// on both sides: the listener with --tls-cert/--tls-key, the upstream verified
//! against --upstream-ca.

use std::sync::Arc;

use wsgate_protocol::{ConnectRequest, Message};

use crate::support::*;

struct Pki {
    dir: TempDir,
}

impl Pki {
    fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let dir = TempDir::new();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &ca, &ca_key)
            .unwrap();
        std::fs::write(dir.0.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.0.join("cert.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.0.join("key.pem"), leaf_key.serialize_pem()).unwrap();
        Self { dir }
    }
    fn path(&self, f: &str) -> String {
        self.dir.0.join(f).display().to_string()
    }
}

#[tokio::test]
async fn wss_on_both_sides() {
    let pki = Pki::new();
    let server_tls =
        wsgate_protocol::tls::server_config(pki.path("cert.pem").as_ref(), pki.path("key.pem").as_ref()).unwrap();
    let mut up = Upstream::start(UpstreamOpts { tls: Some(server_tls), ..Default::default() }).await;
    let gw = Gateway::proxy(&[
        "--upstream",
        &format!("wss://127.0.0.1:{}", up.addr.port()),
        "--upstream-ca",
        &pki.path("ca.pem"),
        "--tls-cert",
        &pki.path("cert.pem"),
        "--tls-key",
        &pki.path("key.pem"),
    ])
    .await;
    let mut req = ConnectRequest::new(format!("wss://127.0.0.1:{}/secure", gw.listen.port()).parse().unwrap());
    req.tls = Some(wsgate_protocol::tls::client_config(Some(pki.path("ca.pem").as_ref())).unwrap());
    let mut ws = ws_connect_with(req).await;
    assert_eq!(up.next_connection().await.0, "/secure");
    ws.send(Message::text("over tls")).await.unwrap();
    assert_eq!(text(&recv(&mut ws).await), "over tls");

    // Without the CA the upstream's certificate is refused: 502 and a tls failure.
    let gw2 = Gateway::proxy(&["--upstream", &format!("wss://127.0.0.1:{}", up.addr.port())]).await;
    let err = within(wsgate_protocol::connect(ConnectRequest::new(gw2.ws("/").parse().unwrap()))).await.unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(502));
    let s = gw2.wait_sessions(|s| s.iter().any(|x| x["state"] == "FAILED")).await;
    assert_eq!(s[0]["failure_kind"], "tls", "{}", s[0]);
    let _ = Arc::new(());
}

/// `--outbound-ca`: outbound connections trust a private CA besides the system roots;
/// without it the same server fails as `tls`. A CA file that cannot be read is a
/// config error naming the setting (exit 64).
#[tokio::test]
async fn outbound_trusts_the_outbound_ca() {
    let pki = Pki::new();
    let server_tls =
        wsgate_protocol::tls::server_config(pki.path("cert.pem").as_ref(), pki.path("key.pem").as_ref()).unwrap();
    let _up = Upstream::start(UpstreamOpts { tls: Some(server_tls), ..Default::default() }).await;
    let url = format!("wss://127.0.0.1:{}/private", _up.addr.port());
    for (flags, state) in
        [(vec!["--echo", "--outbound-ca", &pki.path("ca.pem")], "CONNECTED"), (vec!["--echo"], "FAILED")]
    {
        let gw = Gateway::mock(&flags).await;
        let res =
            client().post(gw.api("/api/connections")).json(&serde_json::json!({"url": url})).send().await.unwrap();
        assert_eq!(res.status(), 201);
        let id = res.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
        let s = eventually(|| async {
            let s = http_json(&gw.api(&format!("/api/sessions/{id}"))).await;
            (s["state"] == state).then_some(s)
        })
        .await;
        if state == "FAILED" {
            assert_eq!(s["failure_kind"], "tls", "{s}");
        }
    }
    let out = std::process::Command::new(bin())
        .args(["mock", "--echo", "--no-store", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0"])
        .args(["--outbound-ca", "/nonexistent/ca.pem"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("outbound.ca") && err.contains("/nonexistent/ca.pem"), "{err}");
}

/// websocket-relay's config file with `tls.enabled`: `wsgate relay --config-file`
/// serves wss:// with its cert and key, on its port.
#[tokio::test]
async fn relay_serves_wss_from_websocket_relays_config_file() {
    let pki = Pki::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let file = pki.dir.0.join("config.yaml");
    std::fs::write(
        &file,
        format!(
            "server:\n  port: {port}\ntls:\n  enabled: true\n  cert_file: {}\n  key_file: {}\nmetrics:\n  enabled: false\n",
            pki.path("cert.pem"),
            pki.path("key.pem")
        ),
    )
    .unwrap();
    let gw = Gateway::spawn("relay", &["--config-file", file.to_str().unwrap(), "--no-store"], &[]).await;
    assert_eq!(gw.listen.to_string(), format!("0.0.0.0:{port}"));
    let connect = || {
        let mut req = ConnectRequest::new(format!("wss://127.0.0.1:{port}/").parse().unwrap());
        req.tls = Some(wsgate_protocol::tls::client_config(Some(pki.path("ca.pem").as_ref())).unwrap());
        ws_connect_with(req)
    };
    let mut a = connect().await;
    let mut b = connect().await;
    // Both are members once the API lists them connected.
    gw.wait_sessions(|s| s.iter().filter(|s| s["state"] == "CONNECTED").count() == 2).await;
    a.send(Message::text("over wss")).await.unwrap();
    assert_eq!(text(&recv(&mut b).await), "over wss");
    assert_eq!(text(&recv(&mut a).await), "over wss");
}
