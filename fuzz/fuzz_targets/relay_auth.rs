//! The relay's access checks: a client's token (`wsgate_relay::auth::Verifier::verify`,
//! from `Authorization: Bearer` or `?token=`), the token's room patterns
//! (`RoomPatterns::allows`) and taking the token out of a query (`without_token`).
//!
//! Properties:
//! - nothing panics, whatever the token, patterns, room or query;
//! - a token no one signed with the key is never accepted;
//! - `*` allows every room, a pattern without `*` allows exactly itself, and a
//!   prefix pattern allows exactly the rooms that start with its prefix;
//! - the query left after taking the token out has no `token` parameter, and keeps
//!   every other one in order.
//!
//! Input: `[which]` then: 0 — the token's bytes; 1 — patterns and a room, lines
//! separated by `\n` (the last line is the room); 2 — a query string.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsgate_relay::auth::{Verifier, without_token};
use wsgate_relay::rooms::RoomPatterns;

fuzz_target!(|data: &[u8]| {
    let mut input = wsgate_fuzz::Input::new(data);
    let which = input.byte() % 3;
    let text = String::from_utf8_lossy(input.rest()).into_owned();
    match which {
        0 => {
            let Ok(v) = Verifier::hs256(b"fuzz-secret") else { return };
            assert!(v.verify(Some(&text)).is_err(), "an unsigned token was accepted: {text:?}");
        }
        1 => {
            let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
            let room = lines.pop().unwrap_or_default();
            let patterns = RoomPatterns::new(lines.clone());
            let expected = lines.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => room.starts_with(prefix),
                None => *p == room,
            });
            assert_eq!(patterns.allows(&room), expected);
            assert!(RoomPatterns::new(vec!["*".into()]).allows(&room));
            assert!(RoomPatterns::new(vec![room.clone()]).allows(&room) || room.ends_with('*'));
        }
        _ => {
            let kept: Vec<&str> = text.split('&').filter(|p| !(p.starts_with("token=") || *p == "token")).collect();
            match without_token(&text) {
                Some(q) => {
                    assert_eq!(q, kept.join("&"));
                    assert!(q.split('&').all(|p| !p.starts_with("token=") && p != "token"));
                }
                None => assert!(kept.is_empty()),
            }
        }
    }
});
