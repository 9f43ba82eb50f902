//! wsgate-bench against real WebSocket servers on 127.0.0.1:0 (see `support`).

// A failing unwrap is the clearest test failure there is.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use clap::Parser;
use futures_util::future::join_all;
use support::{Behaviour, start, start_with};
use tokio_util::sync::CancellationToken;
use wsgate_bench::{BenchCommand, BenchError, BenchKind, Summary, render_summary, run};

#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: BenchCommand,
}

/// Parses a bench command line the way the binary does; progress is always off.
fn cmd(args: &[&str]) -> BenchCommand {
    let argv = std::iter::once("bench").chain(args.iter().copied()).chain(["--no-progress"]);
    Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{args:?}: {e}")).cmd
}

async fn bench(args: &[&str]) -> Summary {
    run(cmd(args), CancellationToken::new()).await.unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_counts_every_message_in_every_shape() {
    let server = start(Behaviour::Echo).await;
    let url = server.url();
    let mut runs = Vec::new();
    for in_flight in ["1", "16"] {
        for binary in [false, true] {
            for size in ["0", "1", "64", "70000"] {
                let messages = if size == "70000" { "10" } else { "100" };
                let mut args = vec!["echo", &url, "-c", "3", "-n", messages, "-s", size, "-k", in_flight];
                if binary {
                    args.push("--binary");
                }
                runs.push(async move { (args.join(" "), bench(&args).await) });
            }
        }
    }
    for (args, s) in join_all(runs).await {
        let n: u64 = if s.size == 70000 { 10 } else { 100 };
        assert_eq!(s.kind, BenchKind::Echo);
        assert_eq!((s.connected, s.connect_errors), (3, 0), "{args}");
        assert_eq!(s.expected, Some(3 * n), "{args}");
        assert_eq!((s.messages_sent, s.messages_received), (3 * n, 3 * n), "{args}: {:?}", s.error_samples);
        assert_eq!((s.errors, s.lost, s.disconnects), (0, 0, 0), "{args}: {:?}", s.error_samples);
        assert_eq!(s.bytes, 3 * n * s.size as u64, "{args}");
        assert_eq!(s.latency_us.count, 3 * n, "{args}");
        assert!(s.latency_us.p50 <= s.latency_us.p99 && s.latency_us.p99 <= s.latency_us.max, "{args}");
        assert!(s.msgs_per_sec > 0.0 && s.elapsed_s > 0.0, "{args}");
        assert!(!s.interrupted);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_echoes_are_counted_as_errors() {
    let server = start(Behaviour::CorruptEvery(10)).await;
    let url = server.url();
    for extra in [&["-k", "1"][..], &["-k", "8", "--binary"][..]] {
        let mut args = vec!["echo", &url, "-c", "2", "-n", "100", "-s", "64"];
        args.extend_from_slice(extra);
        let s = bench(&args).await;
        // Every 10th echo of each connection: 10 per connection.
        assert_eq!(s.errors, 20, "{args:?}: {:?}", s.error_samples);
        assert_eq!((s.messages_received, s.lost), (200, 0));
        assert!(s.error_samples[0].contains("byte 63"), "{:?}", s.error_samples);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_delivers_every_message_to_every_subscriber() {
    let server = start(Behaviour::Broadcast { copies: 1 }).await;
    let url = server.url();
    for extra in [&[][..], &["--rate", "4000", "--binary"][..]] {
        let mut args = vec!["fanout", &url, "--subscribers", "20", "--messages", "200", "--json"];
        args.extend_from_slice(extra);
        let s = bench(&args).await;
        assert_eq!(s.kind, BenchKind::Fanout);
        assert_eq!(s.connected, 20);
        assert_eq!(s.messages_sent, 200);
        assert_eq!(s.expected, Some(4000));
        assert_eq!(s.messages_received, 4000, "{args:?}: {:?}", s.error_samples);
        assert_eq!((s.lost, s.duplicates, s.errors), (0, 0, 0), "{args:?}: {:?}", s.error_samples);
        assert_eq!(s.latency_us.count, 4000);
        // One slowest delivery per publication, never faster than the typical one.
        let last = s.last_delivery_us.clone().unwrap_or_default();
        assert_eq!(last.count, 200, "{args:?}");
        assert!(last.max == s.latency_us.max && last.p50 >= s.latency_us.p50, "{last:?} vs {:?}", s.latency_us);
        assert!(s.msgs_per_sec > 0.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_counts_duplicates() {
    let server = start(Behaviour::Broadcast { copies: 2 }).await;
    let url = server.url();
    let s = bench(&["fanout", &url, "--subscribers", "5", "--messages", "50", "--settle-timeout", "0.2"]).await;
    // A subscriber is done once it has every seq; copies still on the way after that
    // are not waited for, so only a lower bound is certain.
    assert_eq!((s.lost, s.errors), (0, 0), "{:?}", s.error_samples);
    assert!(s.duplicates >= 5 * 49, "{}", s.duplicates);
    assert_eq!(s.messages_received, 250 + s.duplicates);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_early_counts_its_unanswered_messages_as_lost() {
    let server = start(Behaviour::CloseAfter(50)).await;
    let url = server.url();
    let s = bench(&["echo", &url, "-c", "2", "-n", "100", "-k", "4"]).await;
    // Each connection had 4 in flight when the server closed after its 50th echo.
    assert_eq!((s.messages_sent, s.messages_received), (108, 100));
    assert_eq!((s.lost, s.disconnects, s.errors), (8, 2, 0));
    assert!(s.error_samples.iter().any(|e| e.contains("server closed")), "{:?}", s.error_samples);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_paces_the_sends() {
    let server = start(Behaviour::Echo).await;
    let url = server.url();
    // 200 messages at 2000/s over 4 connections: 50 each, one every 2 ms.
    let s = bench(&["echo", &url, "-c", "4", "-n", "50", "--rate", "2000", "--binary"]).await;
    assert_eq!((s.messages_received, s.errors, s.lost), (200, 0, 0));
    assert!(s.elapsed_s >= 0.095, "200 messages at 2000/s took only {} s", s.elapsed_s);
    assert!(s.msgs_per_sec <= 2100.0, "{}", s.msgs_per_sec);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warmup_is_not_measured() {
    let server = start(Behaviour::Echo).await;
    let url = server.url();
    let s = bench(&["echo", &url, "-c", "2", "--duration", "0.2", "--warmup", "0.2", "--rate", "1000"]).await;
    // 1000/s for 0.2 s measured (the warm-up's 200 are not): about 200, never 400.
    assert!((100..=230).contains(&s.messages_received), "{}", s.messages_received);
    assert_eq!(s.latency_us.count, s.messages_received);
    assert_eq!((s.errors, s.lost), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_against_a_non_broadcast_endpoint_says_so() {
    let server = start(Behaviour::Echo).await;
    let url = server.url();
    let err = run(cmd(&["fanout", &url, "--subscribers", "2", "--connect-timeout", "0.3"]), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(err, BenchError::NoDelivery { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_opens_spreads_reports_and_closes_with_1000() {
    let server = start(Behaviour::Echo).await;
    let url = server.url();
    let ready = std::env::temp_dir().join(format!("wsgate-bench-ready-{}", std::process::id()));
    let _ = std::fs::remove_file(&ready);
    let ready_arg = ready.to_string_lossy().into_owned();
    let s = bench(&[
        "hold",
        &url,
        "--connections",
        "200",
        "--source-ips",
        "127.0.0.1-127.0.0.20",
        "--duration",
        "0.1",
        "--ready-file",
        &ready_arg,
    ])
    .await;
    assert_eq!(s.kind, BenchKind::Hold);
    assert_eq!((s.connected, s.connect_errors, s.peak_connections, s.disconnects), (200, 0, 200, 0));
    assert_eq!(s.connect_latency_us.count, 200);
    let line = std::fs::read_to_string(&ready).expect("ready file written");
    assert!(line.starts_with("ready connected=200 failed=0 open=200"), "{line}");
    let _ = std::fs::remove_file(&ready);
    assert_eq!(server.stats.upgraded.load(std::sync::atomic::Ordering::Relaxed), 200);
    assert_eq!(server.stats.peers.lock().unwrap().len(), 20, "connections spread over 20 source addresses");
    assert_eq!(server.stats.close_1000.load(std::sync::atomic::Ordering::Relaxed), 200);

    let v: serde_json::Value = serde_json::from_str(&render_summary(&s, true)).expect("JSON summary");
    assert_eq!(v["kind"], "hold");
    assert_eq!(v["connected"], 200);
    assert_eq!(v["peak_connections"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_early_and_still_summarises() {
    let server = start(Behaviour::Echo).await;
    let url = server.url();
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(run(cmd(&["echo", &url, "-c", "4", "--duration", "60"]), shutdown.clone()));
    // Stop once the server has seen real traffic.
    let mut echoed = server.stats.echoed.subscribe();
    echoed.wait_for(|n| *n >= 1000).await.expect("server running");
    shutdown.cancel();
    let s = tokio::time::timeout(Duration::from_secs(10), handle).await.expect("stops promptly").unwrap().unwrap();
    assert!(s.interrupted);
    assert!(s.messages_received > 0 && s.messages_received <= s.messages_sent);
    assert_eq!((s.errors, s.lost), (0, 0));

    let v: serde_json::Value = serde_json::from_str(&render_summary(&s, true)).expect("JSON summary");
    assert_eq!(v["kind"], "echo");
    assert_eq!(v["interrupted"], true);
    assert_eq!(v["messages_received"], s.messages_received);
    assert!(v["latency_us"]["p99"].is_u64());
    let human = render_summary(&s, false);
    assert!(human.contains("interrupted") && human.contains("msgs/s"), "{human}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_with_a_private_ca() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let dir = std::env::temp_dir().join(format!("wsgate-bench-pki-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf =
        CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap().signed_by(&leaf_key, &ca, &ca_key).unwrap();
    let (ca_pem, cert_pem, key_pem) = (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&ca_pem, ca.pem()).unwrap();
    std::fs::write(&cert_pem, leaf.pem()).unwrap();
    std::fs::write(&key_pem, leaf_key.serialize_pem()).unwrap();
    let tls = wsgate_protocol::tls::server_config(&cert_pem, &key_pem).unwrap();
    let server = start_with(Behaviour::Echo, Some(tls)).await;
    let url = server.wss_url();
    let ca_arg = ca_pem.to_string_lossy().into_owned();

    let s = bench(&["echo", &url, "-c", "2", "-n", "50", "-k", "4", "--ca-file", &ca_arg]).await;
    assert_eq!((s.messages_received, s.errors, s.lost), (100, 0, 0), "{:?}", s.error_samples);

    // Without the CA every handshake fails, as a TLS error.
    let err = run(cmd(&["echo", &url, "-c", "2", "-n", "1"]), CancellationToken::new()).await.unwrap_err();
    assert!(matches!(err, BenchError::AllConnectsFailed { kind: "tls", .. }), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_target_and_bad_flags_are_errors() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("ws://127.0.0.1:{port}/");
    let err = run(cmd(&["echo", &url, "-c", "3", "-n", "1"]), CancellationToken::new()).await.unwrap_err();
    assert!(matches!(err, BenchError::AllConnectsFailed { attempted: 3, kind: "refused", .. }), "{err}");
    assert!(!err.is_usage());

    let err = run(cmd(&["fanout", &url, "--size", "8"]), CancellationToken::new()).await.unwrap_err();
    assert!(err.is_usage() && err.to_string().contains("--size"), "{err}");
    let err = run(cmd(&["echo", &url, "-k", "0"]), CancellationToken::new()).await.unwrap_err();
    assert!(err.is_usage() && err.to_string().contains("--in-flight"), "{err}");
    let err = run(cmd(&["echo", "ftp://h/", "-c", "1"]), CancellationToken::new()).await.unwrap_err();
    assert!(err.is_usage(), "{err}");
}
