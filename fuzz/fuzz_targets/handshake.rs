//! The HTTP/1.1 upgrade without a socket: the server's checks of a client's request
//! (`wsgate_protocol::handshake`) and the client's checks of a server's `101`
//! (`wsgate_protocol::connect::check_answer`), on arbitrary header maps.
//!
//! Properties:
//! - nothing panics;
//! - `validate_upgrade` accepts only a GET with `Upgrade: websocket`, `Connection:
//!   upgrade`, version 13, and returns the request's key; its refusals map to 4xx;
//! - `offered_subprotocols` yields trimmed, non-empty names without commas;
//! - server ↔ client agreement: for a request our server accepts, the `101` it builds
//!   (subprotocol picked from the offer, permessage-deflate answer from
//!   `accept_offer`) passes our client's `check_answer` with the same subprotocol and
//!   deflate parameters;
//! - `check_answer` on an arbitrary `101` accepts only the right accept key, never a
//!   subprotocol we did not offer (nor drops one the server named), and
//!   permessage-deflate only if we offered it.
//!
//! Input: `[mode]`, then for an even mode (a request our server reads) `[method][pick]
//! [server window bits]` and header lines (`Name: value`, one per line, values may be
//! any bytes); for an odd mode (a `101` our client reads) `[flags]` (bit 0: put the
//! right accept key in, bit 1: we offered permessage-deflate) and header lines, where
//! `@key <key>` sets the key we sent and `@offer <name>` a subprotocol we offered.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use libfuzzer_sys::fuzz_target;
use wsgate_protocol::connect::{Answer, check_answer};
use wsgate_protocol::deflate::{DeflatePolicy, accept_offer};
use wsgate_protocol::handshake::{
    accept_key, is_upgrade_request, offered_subprotocols, switching_protocols, validate_upgrade,
};

/// Header lines as hyper would hand them over: name up to the first colon, value
/// without surrounding blanks; lines hyper would refuse are skipped.
fn header_map(lines: &[&[u8]]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(line[colon + 1..].trim_ascii()))
        else {
            continue;
        };
        h.append(name, value);
    }
    h
}

fn lines(data: &[u8]) -> Vec<&[u8]> {
    data.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l)).collect()
}

fuzz_target!(|data: &[u8]| {
    let mut input = wsgate_fuzz::Input::new(data);
    if input.byte() & 1 == 0 {
        let (method, pick, bits) = (input.byte(), input.byte(), input.byte());
        request(method, &header_map(&lines(input.rest())), pick, bits);
    } else {
        let flags = input.byte();
        let lines = lines(input.rest());
        let text = |prefix: &[u8]| -> Vec<String> {
            lines
                .iter()
                .filter_map(|l| l.strip_prefix(prefix))
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect()
        };
        let key = text(b"@key ").pop().unwrap_or_default();
        let offered = text(b"@offer ");
        answer(header_map(&lines), &key, flags & 1 == 1, &offered, flags & 2 != 0);
    }
});

fn request(method: u8, h: &HeaderMap, pick: u8, server_bits: u8) {
    let method = match method % 3 {
        0 => Method::GET,
        1 => Method::POST,
        _ => Method::CONNECT,
    };
    let offered = offered_subprotocols(h);
    for p in &offered {
        assert!(!p.is_empty() && p.trim() == p && !p.contains(','), "bad subprotocol name {p:?}");
    }
    let key = match validate_upgrade(&method, h) {
        Ok(key) => key,
        Err(e) => {
            assert!(e.status().is_client_error(), "{e} maps to {}", e.status());
            return;
        }
    };
    assert_eq!(method, Method::GET);
    assert!(is_upgrade_request(h));
    assert_eq!(h.get(header::SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes), Some(&b"13"[..]));
    assert_eq!(h.get(header::SEC_WEBSOCKET_KEY), Some(&key));

    // Our server's answer, as the mock and the proxy build it.
    let chosen = (!offered.is_empty()).then(|| offered[usize::from(pick) % offered.len()].clone());
    let policy = DeflatePolicy { max_window_bits: 9 + server_bits % 7, ..DeflatePolicy::default() };
    let offers: Vec<&str> =
        h.get_all(header::SEC_WEBSOCKET_EXTENSIONS).iter().filter_map(|v| v.to_str().ok()).collect();
    let agreed = accept_offer(offers, &policy);
    let mut res = switching_protocols(&key, chosen.as_deref());
    assert_eq!(res.status(), http::StatusCode::SWITCHING_PROTOCOLS);
    if let Some(p) = &agreed {
        let v = HeaderValue::from_str(&p.to_header()).expect("the deflate answer is a header value");
        res.headers_mut().insert(header::SEC_WEBSOCKET_EXTENSIONS, v);
    }
    assert_eq!(
        res.headers().get(header::SEC_WEBSOCKET_PROTOCOL).map(HeaderValue::as_bytes),
        chosen.as_deref().map(str::as_bytes),
        "the chosen subprotocol is in the answer"
    );

    // Our client reads it back. It can only check a key it could have sent (text), and
    // it declines a client window of 8 it would never have offered.
    let Ok(key) = key.to_str() else { return };
    if agreed.is_some_and(|p| p.client_max_window_bits == Some(8)) {
        return;
    }
    let client_policy = agreed.map(|_| DeflatePolicy::default());
    let got = check_answer(res.headers(), key, &offered, client_policy.as_ref());
    match got {
        Ok(a) => assert_eq!(a, Answer { subprotocol: chosen, deflate: agreed }),
        Err(e) => panic!("our client refuses our server's answer: {e}"),
    }
}

fn answer(mut h: HeaderMap, key: &str, right_accept: bool, offered: &[String], deflate: bool) {
    if right_accept && let Ok(v) = HeaderValue::from_str(&accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    let policy = deflate.then(DeflatePolicy::default);
    let Ok(a) = check_answer(&h, key, offered, policy.as_ref()) else { return };
    assert_eq!(
        h.get(header::SEC_WEBSOCKET_ACCEPT).map(HeaderValue::as_bytes),
        Some(accept_key(key.as_bytes()).as_bytes()),
        "wrong accept key passed"
    );
    let named: Vec<&[u8]> = h.get_all(header::SEC_WEBSOCKET_PROTOCOL).iter().map(HeaderValue::as_bytes).collect();
    match (&a.subprotocol, named.as_slice()) {
        (None, []) => {}
        (Some(p), [one]) => {
            assert_eq!(p.as_bytes(), *one);
            assert!(offered.contains(p), "unoffered subprotocol {p:?} accepted");
        }
        (got, named) => panic!("server named subprotocols {named:?}, client settled on {got:?}"),
    }
    if a.deflate.is_some() {
        assert!(deflate, "permessage-deflate accepted without an offer");
    }
}
