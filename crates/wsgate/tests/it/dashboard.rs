//! The dashboard in a real browser (tests/dashboard/dashboard.mjs: Debian's
//! Chromium driven by playwright-core) against a real gateway proxying to a real
//! echo upstream, with a real client (Node's `ws`): the page loads without console
//! errors, a session appears live, its message shows in the log, an inject reaches
//! the client, a close from the page closes it with the chosen code, an outbound
//! connection opened from the page to a real echo server sends and receives, after a
//! gateway restart the session is in History with its log, the admin-token prompt
//! refuses a wrong token and takes the right one, a breakpoint added in the
//! Intercept view holds a real client's message until it is edited in the page and
//! forwarded (the echo upstream answers the edit), and axe-core finds no serious or
//! critical violation on each view. Screenshots of each view are written
//! to `target/tmp/dashboard/` for a person to look at.

use serde_json::Value;

use crate::support::*;

async fn run_dashboard(mode: &str, gw: &Gateway, echo: &str, shots: &str, token: Option<&str>) -> Value {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard").join(shots);
    let (control, ws, dir) = (format!("http://{}", gw.control), gw.ws(""), dir.display().to_string());
    let args = [mode, &control, &ws, echo, &dir].into_iter().chain(token);
    node_report("tests/dashboard/dashboard.mjs", args, 90, &format!("gateway: {}", gw.logs())).await
}

fn assert_scenario(report: &Value) {
    assert_eq!(report["consoleErrors"], serde_json::json!([]), "console errors: {report}");
    assert_eq!(report["rowAppeared"], true, "{report}");
    assert_eq!(report["echo"], "hello from a real client", "{report}");
    assert_eq!(report["messageInLog"], true, "{report}");
    assert_eq!(report["liveMessageInLog"], true, "{report}");
    assert_eq!(report["injectReceived"], r#"{"from":"the dashboard"}"#, "{report}");
    assert_eq!(report["clientClose"]["code"], 4321, "{report}");
    assert_eq!(report["clientClose"]["reason"], "closed from the dashboard", "{report}");
    assert_eq!(report["timelineShowsEnd"], true, "{report}");
    assert_eq!(report["outboundSides"], serde_json::json!(["upstream"]), "{report}");
    assert_eq!(report["outboundEcho"], true, "{report}");
    assert_eq!(report["outboundClosed"], true, "{report}");
    let route: Vec<&str> = report["overviewRoute"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(route[..3], ["default", "/*", "proxy"], "{report}");
    assert_eq!(route[5], "none", "no faults on the route: {report}");
    for view in ["sessions", "session", "connect", "overview", "sessionNarrowDark"] {
        assert_eq!(report["axe"][view], serde_json::json!([]), "axe-core, {view} view: {report}");
    }
}

#[tokio::test]
async fn dashboard_watches_injects_and_closes_a_real_session() {
    let up = Upstream::echo().await;
    let dir = TempDir::new();
    let store = format!("sqlite://{}", dir.0.join("h.db").display());
    let args = ["--upstream", &up.url(), "--store", &store];
    let mut gw = Gateway::proxy(&args).await;
    let report = run_dashboard("live", &gw, &up.url(), "open", None).await;
    assert_eq!(report["failedResponses"], serde_json::json!([]), "{report}");
    assert_scenario(&report);

    // After a restart on the same store, History finds the session with its log.
    assert_eq!(gw.terminate().await, 0, "{}", gw.logs());
    let gw = Gateway::proxy(&args).await;
    let report = run_dashboard("history", &gw, &up.url(), "open", None).await;
    assert_eq!(report["consoleErrors"], serde_json::json!([]), "{report}");
    assert_eq!(report["historyRows"], 1, "{report}");
    // Two messages each way, the inject and both close frames.
    assert_eq!(report["historyLog"], 7, "{report}");
    let end = report["historyEnd"].as_str().unwrap();
    assert!(end.contains("DISCONNECTED") && end.contains("4321"), "{report}");
    assert_eq!(report["axe"]["history"], serde_json::json!([]), "{report}");
}

#[tokio::test]
async fn dashboard_asks_for_the_admin_token_once_and_refuses_a_wrong_one() {
    let up = Upstream::echo().await;
    let dir = TempDir::new();
    let store = format!("sqlite://{}", dir.0.join("h.db").display());
    let gw = Gateway::proxy(&["--upstream", &up.url(), "--store", &store, "--admin-token", "s3cret-token"]).await;
    let report = run_dashboard("live", &gw, &up.url(), "token", Some("s3cret-token")).await;
    assert!(report["wrongToken"].as_str().is_some_and(|t| t.contains("refused")), "{report}");
    assert_eq!(report["tokenInUrl"], false, "{report}");
    // The only failed responses are the 401s that asked for the token: none once it
    // was given.
    let failed = report["failedResponses"].as_array().unwrap();
    assert!(!failed.is_empty() && failed.iter().all(|f| f.as_str().unwrap().contains("401")), "{report}");
    assert_scenario(&report);
    // The gateway's log never shows the token (the page opens the live stream with a
    // ticket, and sends the token only in headers).
    assert!(!gw.logs().contains("s3cret-token"), "{}", gw.logs());
}

#[tokio::test]
async fn dashboard_intercept_holds_a_frame_until_it_is_edited_and_forwarded() {
    let up = Upstream::echo().await;
    let dir = TempDir::new();
    let store = format!("sqlite://{}", dir.0.join("h.db").display());
    let gw = Gateway::proxy(&["--upstream", &up.url(), "--store", &store]).await;
    let report = run_dashboard("intercept", &gw, &up.url(), "intercept", None).await;
    assert_eq!(report["consoleErrors"], serde_json::json!([]), "console errors: {report}");
    assert_eq!(report["failedResponses"], serde_json::json!([]), "{report}");
    assert_eq!(report["interceptRoutes"], serde_json::json!(["default (/*)"]), "{report}");
    assert!(report["equalsWithoutPath"].as_str().is_some_and(|t| t.starts_with("Not added")), "{report}");
    let row: Vec<&str> = report["breakpointRow"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(row[..5], ["default", "client → upstream", "hold-me", "60 s", "0"], "{report}");
    assert_eq!(report["heldPayload"], "hold-me please", "{report}");
    let heading = report["heldHeading"].as_str().unwrap();
    assert!(heading.starts_with("Frame #") && heading.ends_with("→ client → upstream"), "{report}");
    let left: u64 = report["heldCountdown"]
        .as_str()
        .and_then(|t| t.strip_prefix("forwarded unchanged in "))
        .and_then(|t| t.strip_suffix(" s"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a countdown: {report}"));
    assert!((30..=60).contains(&left), "{report}");
    // Another session flows while A's frame is held.
    assert_eq!(report["echoB"], "B is not held", "{report}");
    assert_eq!(report["editKept"], "edited in the browser", "the edit survived the view's reads: {report}");
    assert_eq!(report["breakpointHits"], "1", "{report}");
    assert!(report["forwardStatus"].as_str().is_some_and(|t| t.ends_with("forwarded as edited.")), "{report}");
    // The upstream (an echo server) got the edited frame, then the one queued behind it.
    assert_eq!(report["echoesA"], serde_json::json!(["edited in the browser", "after the held one"]), "{report}");
    assert_eq!(report["heldGone"], true, "{report}");
    assert_eq!(report["breakpointRemoved"], true, "{report}");
    assert_eq!(report["echoAfterRemove"], "hold-me again, not held now", "{report}");
    let marks = report["heldMarks"].as_array().unwrap();
    assert!(marks.contains(&"held".into()) && marks.contains(&"rewritten".into()), "{report}");
    for view in ["intercept", "interceptNarrowDark"] {
        assert_eq!(report["axe"][view], serde_json::json!([]), "axe-core, {view} view: {report}");
    }

    // History has the frame as the upstream got it, marked held and rewritten.
    let a = report["sessionA"].as_str().unwrap();
    let url = gw.api(&format!("/api/sessions/{a}/messages"));
    let row = eventually(|| async {
        let page = http_json(&url).await;
        page["messages"].as_array()?.iter().find(|m| m["text"] == "edited in the browser").cloned()
    })
    .await;
    let marks = row["marks"].as_array().unwrap_or_else(|| panic!("marks: {row}"));
    assert!(marks.contains(&"held".into()) && marks.contains(&"rewritten".into()), "{row}");
}
