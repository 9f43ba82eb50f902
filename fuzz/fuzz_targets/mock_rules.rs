//! Rules files (`wsgate_rules::Rules::parse`, what `wsgate mock --rules` and a proxy
//! route's `rules:` read) on any bytes, for either role, then the loaded rules run on
//! any messages, in both directions.
//!
//! Properties:
//! - loading and evaluating never panic and always end (deep nesting, huge regexes
//!   and JSONPaths are refused, not followed);
//! - a refusal names the file and a line that exists, at a column of at least 1;
//! - a loaded file evaluates: the mock's answers and the proxy's answers are in
//!   order (delays never decrease), text answers are UTF-8; when no rule applies the
//!   proxy forwards unchanged with nothing else to do; a rewritten text message is
//!   still UTF-8.
//!
//! Input: `[flags]`, the rules file up to the first NUL byte, then messages separated
//! by NUL bytes. Flags: bit 0 loads for a proxy (a mock otherwise); for each message,
//! its first byte picks binary (bit 0) and, on a proxy, the upstream's direction
//! (bit 1).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use wsgate_rules::{Answer, Conversation, Flow, Forward, Role, Rules};

fn in_order(answers: &[Answer]) {
    for pair in answers.windows(2) {
        assert!(pair[0].delay <= pair[1].delay, "answers out of order");
    }
    for a in answers {
        assert!(a.binary || std::str::from_utf8(&a.payload).is_ok(), "a text answer that is not UTF-8");
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = wsgate_fuzz::Input::new(data);
    let flags = input.byte();
    let rest = input.rest();
    let (file, messages) = match rest.iter().position(|&b| b == 0) {
        Some(nul) => (&rest[..nul], &rest[nul + 1..]),
        None => (rest, &[][..]),
    };
    let role = if flags & 1 != 0 { Role::Proxy } else { Role::Mock };
    let env = |name: &str| (name == "SET").then(|| "value".to_owned());
    let rules = match Rules::parse("fuzz.yaml", file, role, &env) {
        Ok(r) => std::sync::Arc::new(r),
        Err(e) => {
            let lines = file.split(|&b| b == b'\n').count();
            assert!(e.line >= 1 && e.line <= lines, "line {} of {lines}: {e}", e.line);
            assert!(e.column >= 1, "{e}");
            assert!(e.to_string().starts_with("fuzz.yaml:"), "{e}");
            return;
        }
    };
    let mut conversation = Conversation::new(rules, Some(7));
    for message in messages.split(|&b| b == 0).take(64) {
        let (&settings, payload) = message.split_first().unwrap_or((&0, &[]));
        let binary = settings & 1 != 0;
        let payload = Bytes::copy_from_slice(payload);
        if binary || std::str::from_utf8(&payload).is_ok() {
            match role {
                Role::Mock => {
                    let r = conversation.on_client(binary, &payload);
                    in_order(&r.respond);
                    if r.rule.is_none() {
                        assert!(r.respond.is_empty() && r.broadcast.is_none() && r.close.is_none());
                    }
                }
                Role::Proxy => {
                    let flow = if settings & 2 != 0 { Flow::ToClient } else { Flow::ToUpstream };
                    let t = conversation.transform(flow, binary, &payload);
                    in_order(&t.answers);
                    if t.rule.is_none() {
                        assert!(t.forward == Forward::Unchanged && t.answers.is_empty() && t.close.is_none());
                        assert!(t.delay.is_none());
                    }
                    if let Forward::Replace(b) = &t.forward {
                        assert!(!binary && std::str::from_utf8(b).is_ok(), "a rewrite broke a text message");
                    }
                }
            }
        }
    }
});
