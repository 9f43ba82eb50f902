//! The control API under junk, against the real binary. The routes come from the
//! gateway's own OpenAPI document, so a route added later is covered here without
//! touching this file. Every route gets bodies far over the limit, unknown methods
//! and HEAD; every route that takes a body gets lying content types, invalid JSON,
//! invalid UTF-8, JSON of the wrong shape, unknown fields and out-of-range values;
//! every route with a session id gets ids that are not ids; the list gets absurd
//! query values. Each answer is its 4xx with a JSON `error`; afterwards the gateway
//! answers and a session opened before the barrage still echoes.

use serde_json::Value;
use wsgate_protocol::{Message, Transport, WsStream};

use crate::support::*;

/// Far over every body limit (1 MiB; 24 MiB where the body is a message to send).
const HUGE: usize = 32 << 20;
/// Well-formed, but no session has it.
const UNKNOWN_ID: &str = "0190c0de-0000-7000-8000-000000000000";
const TOKEN: &str = "hostile-t0ken";

/// A documented operation: method (upper case) and OpenAPI path template.
#[derive(Debug, Clone)]
struct Op {
    method: String,
    path: String,
    takes_body: bool,
    websocket: bool,
}

impl Op {
    /// The path with its parameters filled in: `{id}` with `id`, others with `chat`.
    fn target(&self, id: &str) -> String {
        self.path.replace("{id}", id).replace("{path}", "chat")
    }

    fn name(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// A gateway with a session that must come through everything unharmed.
struct Barrage {
    gw: Gateway,
    bystander: WsStream<Transport>,
    /// The bystander's session id: a real id the junk is aimed at.
    id: String,
    ops: Vec<Op>,
    token: Option<&'static str>,
}

impl Barrage {
    async fn start(token: Option<&'static str>) -> Self {
        let mut args = vec!["--echo"];
        if let Some(t) = token {
            args.extend(["--admin-token", t]);
        }
        let gw = Gateway::spawn("mock", &args, &[]).await;
        let mut bystander = ws_connect(&gw.ws("/bystander")).await;
        bystander.send(Message::text("before")).await.unwrap();
        assert_eq!(text(&recv(&mut bystander).await), "before");
        let mut b = Self { gw, bystander, id: String::new(), ops: Vec::new(), token };
        let list = b.request(RawRequest::new("GET", "/api/sessions?state=CONNECTED")).await;
        assert_eq!(list.status, 200, "{list:?}");
        b.id = list.json()["sessions"][0]["id"].as_str().expect("the bystander's id").to_owned();
        // Stored, so every history route answers the same from now on (the recorder
        // writes every 100 ms; export 404s until then).
        let export = format!("/api/sessions/{}/export", b.id);
        eventually(|| async { (b.request(RawRequest::new("GET", &export)).await.status == 200).then_some(()) }).await;
        let doc = b.request(RawRequest::new("GET", "/api/openapi.json")).await;
        assert_eq!(doc.status, 200, "{doc:?}");
        b.ops = operations(&doc.json());
        assert!(b.ops.len() >= 15, "{:?}", b.ops);
        b
    }

    /// Sends with the admin token when there is one.
    async fn request(&self, req: RawRequest<'_>) -> RawResponse {
        match self.token {
            Some(t) => req.header("authorization", format!("Bearer {t}")).send(self.gw.control).await,
            None => req.send(self.gw.control).await,
        }
    }

    /// The gateway still answers, and the session opened before the barrage still
    /// echoes and is still CONNECTED.
    async fn survived(mut self) {
        let health = RawRequest::new("GET", "/healthz").send(self.gw.control).await;
        assert_eq!((health.status, health.json()), (200, serde_json::json!({"status": "ok"})));
        self.bystander.send(Message::text("after")).await.unwrap();
        assert_eq!(text(&recv(&mut self.bystander).await), "after");
        let me = self.request(RawRequest::new("GET", &format!("/api/sessions/{}", self.id))).await;
        assert_eq!(me.json()["state"], "CONNECTED", "{me:?}");
        assert!(!self.gw.logs().contains("panicked"), "the gateway panicked:\n{}", self.gw.logs());
    }
}

/// Every operation the document lists.
fn operations(doc: &Value) -> Vec<Op> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            if !["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                continue;
            }
            ops.push(Op {
                method: method.to_ascii_uppercase(),
                path: path.clone(),
                takes_body: op.get("requestBody").is_some(),
                // A WebSocket route documents its 101 (`POST /api/live/ticket` shares the
                // `live` tag but is plain HTTP).
                websocket: op["responses"].get("101").is_some(),
            });
        }
    }
    ops
}

#[tokio::test]
async fn api_hostile_huge_bodies_get_413_on_every_route() {
    let b = Barrage::start(None).await;
    let huge = vec![b'{'; HUGE];
    for op in &b.ops {
        let target = op.target(&b.id);
        let what = format!("{} with {HUGE} bytes", op.name());
        // Refused from Content-Length alone; the request is still read to its end (the
        // send would fail otherwise) so the client gets the 413, not a reset.
        let r = b.request(RawRequest::new(&op.method, &target).json(huge.clone())).await;
        r.assert_error(413, &what);
        assert_eq!(r.header("connection"), Some("close"), "{what}");
        // No Content-Length: refused once the limit is passed.
        let over = wsgate_control::body::limit_for(target.split('?').next().unwrap_or_default()) + 1;
        let r = b.request(RawRequest::new(&op.method, &target).json(vec![b' '; over]).chunked()).await;
        r.assert_error(413, &format!("{} with {over} chunked bytes", op.name()));
    }
    // Exactly at the limit is read (and then judged as JSON).
    let inject = format!("/api/sessions/{}/inject", b.id);
    let at_limit = vec![b' '; 1 << 20];
    b.request(RawRequest::new("POST", &inject).json(at_limit)).await.assert_error(400, "1 MiB of spaces");
    b.survived().await;
}

#[tokio::test]
async fn api_hostile_unknown_methods_get_405_and_head_is_get_without_a_body() {
    let b = Barrage::start(None).await;
    let mut paths: Vec<&str> = b.ops.iter().map(|o| o.path.as_str()).collect();
    paths.dedup();
    for path in paths {
        let served: Vec<&str> = b.ops.iter().filter(|o| o.path == path).map(|o| o.method.as_str()).collect();
        let target = b.ops.iter().find(|o| o.path == path).expect("op").target(&b.id);
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PURGE"] {
            if served.contains(&method) {
                continue;
            }
            let what = format!("{method} {path}");
            let r = b.request(RawRequest::new(method, &target)).await;
            r.assert_error(405, &what);
            let allow = r.header("allow").unwrap_or_else(|| panic!("{what}: no Allow header"));
            for m in &served {
                assert!(allow.contains(m), "{what}: Allow {allow:?} lacks {m}");
            }
        }
        if served.contains(&"GET") {
            let get = b.request(RawRequest::new("GET", &target)).await;
            let head = b.request(RawRequest::new("HEAD", &target)).await;
            assert_eq!(head.status, get.status, "HEAD {path}");
            assert!(head.body.is_empty(), "HEAD {path}");
            assert!(get.status < 500, "GET {path}: {get:?}");
        }
    }
    // A WebSocket route asked without an upgrade says which protocol it speaks.
    let r = b.request(RawRequest::new("GET", "/api/live")).await;
    r.assert_error(426, "plain GET /api/live");
    assert_eq!(r.header("upgrade"), Some("websocket"));
    // Paths that are no route.
    for target in ["/nope", "/api", "/api/sessions/x/y/z", "/api/sessions/%FF/inject/more", "/%00", "/api/openapi.yaml"]
    {
        b.request(RawRequest::new("GET", target)).await.assert_error(404, target);
    }
    b.survived().await;
}

#[tokio::test]
async fn api_hostile_junk_bodies_get_400_or_415() {
    let b = Barrage::start(None).await;
    let body_ops: Vec<&Op> = b.ops.iter().filter(|o| o.takes_body).collect();
    assert!(body_ops.len() >= 2, "{body_ops:?}");
    for op in &body_ops {
        let target = op.target(&b.id);
        // Declared non-JSON content types.
        for ct in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/xml",
            "json",
            "",
        ] {
            let r = b
                .request(
                    RawRequest::new(&op.method, &target)
                        .header("content-type", ct)
                        .body(r#"{"to":"client","text":"x"}"#),
                )
                .await;
            r.assert_error(415, &format!("{} as {ct:?}", op.name()));
        }
        // Bodies that are not JSON, or not a JSON object, or not valid UTF-8.
        let junk: [&[u8]; 14] = [
            b"not json",
            b"{",
            br#"{"to":"client","text":"x""#,
            b"{'to':'client'}",
            br#"{"to":"client","text":"x"} trailing"#,
            b"[]",
            br#"["client","x"]"#,
            b"42",
            br#""a string""#,
            b"true",
            b"\xff\xfe\xfd",
            b"{\"to\":\"client\",\"text\":\"\xff\"}",
            b"{\"to\":\"client\",\"text\":\"\\ud800\"}",
            b"\x00\x00\x00\x00",
        ];
        for body in junk {
            let what = format!("{} with {:?}", op.name(), String::from_utf8_lossy(body));
            b.request(RawRequest::new(&op.method, &target).json(body)).await.assert_error(400, &what);
            // Without any Content-Type a body is read as JSON, and judged the same.
            b.request(RawRequest::new(&op.method, &target).body(body)).await.assert_error(400, &what);
        }
    }

    let inject = format!("/api/sessions/{}/inject", b.id);
    for body in [
        "",
        "   ",
        "{}",
        r#"{"to":"client"}"#,
        r#"{"text":"x"}"#,
        r#"{"to":"client","text":"x","base64":"eA=="}"#,
        r#"{"to":"sideways","text":"x"}"#,
        r#"{"to":"Client","text":"x"}"#,
        r#"{"to":5,"text":"x"}"#,
        r#"{"to":"client","text":5}"#,
        r#"{"to":"client","text":null}"#,
        r#"{"to":"client","text":["x"]}"#,
        r#"{"to":"client","base64":"***"}"#,
        r#"{"to":"client","base64":" eA== "}"#,
        r#"{"to":"client","base64":"eA"}"#,
        r#"{"to":"client","text":"x","extra":1}"#,
        r#"{"to":"client","to":"upstream","text":"x"}"#,
    ] {
        b.request(RawRequest::new("POST", &inject).json(body)).await.assert_error(400, &format!("inject {body:?}"));
    }

    let close = format!("/api/sessions/{}/close", b.id);
    let long_reason = format!(r#"{{"reason":"{}"}}"#, "é".repeat(62));
    for body in [
        r#"{"code":1005}"#,
        r#"{"code":999}"#,
        r#"{"code":5000}"#,
        r#"{"code":70000}"#,
        r#"{"code":-1}"#,
        r#"{"code":1000.5}"#,
        r#"{"code":"1000"}"#,
        r#"{"code":1e400}"#,
        r#"{"reason":5}"#,
        long_reason.as_str(),
        r#"{"code":1000,"bogus":true}"#,
        "[null,null]",
    ] {
        b.request(RawRequest::new("POST", &close).json(body)).await.assert_error(400, &format!("close {body:?}"));
    }
    // The optional close body, empty or null, is accepted: seen as a 404 on an id no
    // session has (the bystander must stay open).
    for body in ["", "null", "{}", r#"{"code":4000.0,"reason":"bye"}"#] {
        let r = b.request(RawRequest::new("POST", &format!("/api/sessions/{UNKNOWN_ID}/close")).json(body)).await;
        r.assert_error(404, &format!("close {body:?} on an unknown id"));
    }
    b.survived().await;
}

#[tokio::test]
async fn api_hostile_bad_ids_and_query_values_get_400() {
    let b = Barrage::start(None).await;
    let bare = b.id.replace('-', "");
    let braced = format!("%7B{}%7D", b.id);
    let long = "a".repeat(10_000);
    let bad_ids =
        ["not-an-id", "%FF", "%00", "..", "%2e%2e", "0", &bare, &braced, &long, "0190c0de-0000-7000-8000-00000000000g"];
    // Breakpoints and held frames are numbered; everything else is a session's UUID.
    let numbered_bad =
        ["not-an-id", "%FF", "%00", "..", "0", "-1", "1.5", "+1", "99999999999999999999999", &long, UNKNOWN_ID];
    for op in b.ops.iter().filter(|o| o.path.contains("{id}")) {
        let body = match op.path.rsplit('/').next() {
            Some("inject") => r#"{"to":"client","text":"x"}"#,
            Some("send") => r#"{"text":"x"}"#,
            _ if op.takes_body => "{}",
            _ => "",
        };
        let numbered = op.path.starts_with("/api/intercepts/");
        let (bad, unknown) = if numbered { (&numbered_bad[..], "987654") } else { (&bad_ids[..], UNKNOWN_ID) };
        for id in bad {
            let what = format!("{} with id {:?}", op.name(), &id[..id.len().min(40)]);
            b.request(RawRequest::new(&op.method, &op.target(id)).json(body)).await.assert_error(400, &what);
        }
        let what = format!("{} with an unknown id", op.name());
        b.request(RawRequest::new(&op.method, &op.target(unknown)).json(body)).await.assert_error(404, &what);
    }

    for query in [
        "limit=-1",
        "limit=0",
        "limit=1001",
        "limit=99999999999",
        "limit=999999999999999999999999999999",
        "limit=1e3",
        "limit=ten",
        "limit=",
        "limit=1&limit=2",
        "before=garbage",
        "before=%FF",
        "state=bogus",
        "state=%00",
        "kind=bogus",
        &format!("before={bare}"),
    ] {
        b.request(RawRequest::new("GET", &format!("/api/sessions?{query}"))).await.assert_error(400, query);
    }
    // Odd but valid: empty filters are no filter, unknown parameters are ignored,
    // undecodable text is just text that matches nothing.
    for query in
        ["state=&kind=&route=&before=", "limit=1000&foo=bar", "state=connected&kind=MOCK", "route=%FF%FE", "limit=5.0"]
    {
        let r = b.request(RawRequest::new("GET", &format!("/api/sessions?{query}"))).await;
        assert_eq!(r.status, 200, "{query}: {r:?}");
        assert!(r.json()["sessions"].is_array(), "{query}");
    }
    // A message page's numbers are checked before the store is asked; an empty
    // value is a bad number, not a missing one (Schemathesis sends `after_seq=`).
    for query in [
        "after_seq=",
        "after_seq=-1",
        "after_seq=x",
        "after_seq=9223372036854775808",
        "after_seq=1.5",
        "after_seq=.",
        "limit=",
        "limit=0",
        "limit=1001",
    ] {
        let target = format!("/api/sessions/{}/messages?{query}", b.id);
        b.request(RawRequest::new("GET", &target)).await.assert_error(400, query);
    }
    for query in ["session=garbage", "session=%FF", &format!("session={bare}")] {
        b.request(RawRequest::new("GET", &format!("/api/live?{query}"))).await.assert_error(400, query);
    }
    b.survived().await;
}

#[tokio::test]
async fn api_hostile_guarded_routes_answer_401_before_looking_at_junk() {
    let b = Barrage::start(Some(TOKEN)).await;
    for op in &b.ops {
        // The dashboard's files are open too; `{file}` sent literally names none (404).
        let asset = op.path == "/ui/{file}";
        let open = asset || ["/", "/healthz", "/readyz"].contains(&op.path.as_str());
        let target = op.target(&b.id);
        for token in [None, Some("wrong"), Some("")] {
            let mut req = RawRequest::new(&op.method, &target).header("content-type", "text/plain").body("junk");
            if let Some(t) = token {
                req = req.header("authorization", format!("Bearer {t}"));
            }
            let r = req.send(b.gw.control).await;
            let what = format!("{} with token {token:?}", op.name());
            if asset {
                r.assert_error(404, &what);
            } else if open {
                assert!(r.status < 400 || r.status == 503, "{what}: {r:?}");
            } else {
                r.assert_error(401, &what);
                assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{what}");
            }
        }
        // With the token, the junk is judged as without a token configured.
        let r = b.request(RawRequest::new(&op.method, &target).header("content-type", "text/plain").body("junk")).await;
        let what = format!("{} with the token", op.name());
        if op.takes_body {
            r.assert_error(415, &what);
        } else if op.websocket && op.path != "/" {
            // `/` is the index page as well as websocket-multiplex's master upgrade.
            r.assert_error(426, &what);
        } else {
            assert!(r.status < 500, "{what}: {r:?}");
        }
    }
    b.survived().await;
}

#[tokio::test]
async fn openapi_document_describes_the_running_gateway() {
    let b = Barrage::start(Some(TOKEN)).await;
    let r = b.request(RawRequest::new("GET", "/api/openapi.json")).await;
    assert_eq!((r.status, r.header("content-type")), (200, Some("application/json")));
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "wsgate control API");
    let names: Vec<String> = b.ops.iter().map(Op::name).collect();
    for want in [
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
        "GET /api/openapi.json",
        "GET /api/sessions",
        "GET /api/sessions/{id}",
        "POST /api/sessions/{id}/inject",
        "POST /api/sessions/{id}/close",
        "GET /api/live",
        "GET /client/{path}",
        "GET /upstream/{path}",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
    }
    // This instance has a token: the document says how to send it, and what happens
    // without it.
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object(), "{}", doc["components"]);
    let get_session = &doc["paths"]["/api/sessions/{id}"]["get"];
    assert!(get_session["security"].is_array());
    assert!(get_session["responses"]["401"].is_object());
    assert!(doc["paths"]["/healthz"]["get"]["responses"]["401"].is_null());
    // The session this barrage opened, as the API shows it, has every field the
    // document requires of a session.
    let session = b.request(RawRequest::new("GET", &format!("/api/sessions/{}", b.id))).await.json();
    let schemas = &doc["components"]["schemas"];
    let required = schemas["SessionView"]["required"].as_array().expect("SessionView lists required fields");
    assert!(!required.is_empty());
    for field in required {
        let field = field.as_str().expect("name");
        assert!(!session[field].is_null() || field == "client_addr", "{field} missing from {session}");
    }
    // Without the token, the document is as guarded as the rest of /api.
    RawRequest::new("GET", "/api/openapi.json").send(b.gw.control).await.assert_error(401, "document without token");
    b.survived().await;
}
