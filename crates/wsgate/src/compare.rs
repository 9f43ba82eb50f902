//! How `wsgate replay --against` compares a server's reply with the recorded one:
//! JSON by value, with the fields the user said change from run to run (`--ignore`
//! JSONPaths, RFC 9535) masked on both sides; anything else byte for byte. The
//! first difference is named by its place (`$['price']`, byte 17) so the report
//! says what changed, not only that something did.

use serde_json::Value;
use serde_json_path::JsonPath;
use wsgate_protocol::Message;

/// What stands where an ignored field was, on both sides.
const MASK: &str = "<ignored>";

/// Where a reply differs from the recorded one.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// `$['a'][0]` for JSON, `byte N` for bytes, empty when the kinds differ.
    pub at: String,
    pub expected: String,
    pub got: String,
}

/// Compares `got` with `expected` (both text or binary messages).
pub fn compare(expected: &Message, got: &Message, ignore: &[JsonPath]) -> Option<Difference> {
    match (expected, got) {
        (Message::Text(e), Message::Text(g)) => {
            let parsed = serde_json::from_slice::<Value>(e).ok().zip(serde_json::from_slice::<Value>(g).ok());
            match parsed {
                Some((mut e, mut g)) => {
                    mask(&mut e, ignore);
                    mask(&mut g, ignore);
                    first_json_difference(&e, &g, "$".to_owned())
                }
                None => (e != g).then(|| Difference {
                    at: first_byte_difference(e, g),
                    expected: String::from_utf8_lossy(e).into_owned(),
                    got: String::from_utf8_lossy(g).into_owned(),
                }),
            }
        }
        (Message::Binary(e), Message::Binary(g)) => (e != g).then(|| Difference {
            at: first_byte_difference(e, g),
            expected: format!("{} bytes", e.len()),
            got: format!("{} bytes", g.len()),
        }),
        (e, g) => Some(Difference { at: String::new(), expected: kind(e).into(), got: kind(g).into() }),
    }
}

pub fn kind(m: &Message) -> &'static str {
    match m {
        Message::Text(_) => "a text message",
        Message::Binary(_) => "a binary message",
        Message::Close(_) => "a close",
        Message::Ping(_) => "a ping",
        Message::Pong(_) => "a pong",
    }
}

/// Replaces every node an `ignore` path selects with [`MASK`].
fn mask(v: &mut Value, ignore: &[JsonPath]) {
    for path in ignore {
        let pointers: Vec<String> = path.query_located(v).locations().map(|l| l.to_json_pointer()).collect();
        for p in pointers {
            if let Some(node) = v.pointer_mut(&p) {
                *node = Value::String(MASK.into());
            }
        }
    }
}

fn first_json_difference(e: &Value, g: &Value, at: String) -> Option<Difference> {
    match (e, g) {
        (Value::Object(eo), Value::Object(go)) => {
            for (k, ev) in eo {
                let here = member(&at, k);
                match go.get(k) {
                    Some(gv) => {
                        if let Some(d) = first_json_difference(ev, gv, here) {
                            return Some(d);
                        }
                    }
                    None => return Some(Difference { at: here, expected: ev.to_string(), got: "(absent)".into() }),
                }
            }
            go.iter().find(|(k, _)| !eo.contains_key(*k)).map(|(k, gv)| Difference {
                at: member(&at, k),
                expected: "(absent)".into(),
                got: gv.to_string(),
            })
        }
        (Value::Array(ea), Value::Array(ga)) => {
            for (i, ev) in ea.iter().enumerate() {
                match ga.get(i) {
                    Some(gv) => {
                        if let Some(d) = first_json_difference(ev, gv, format!("{at}[{i}]")) {
                            return Some(d);
                        }
                    }
                    None => {
                        return Some(Difference {
                            at: format!("{at}[{i}]"),
                            expected: ev.to_string(),
                            got: "(absent)".into(),
                        });
                    }
                }
            }
            ga.get(ea.len()).map(|gv| Difference {
                at: format!("{at}[{}]", ea.len()),
                expected: "(absent)".into(),
                got: gv.to_string(),
            })
        }
        (e, g) if e == g => None,
        (e, g) => Some(Difference { at, expected: e.to_string(), got: g.to_string() }),
    }
}

/// `at['name']`, the name escaped as RFC 9535 normalized paths write it.
fn member(at: &str, name: &str) -> String {
    format!("{at}['{}']", name.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn first_byte_difference(e: &[u8], g: &[u8]) -> String {
    let i = e.iter().zip(g).position(|(a, b)| a != b).unwrap_or(e.len().min(g.len()));
    format!("byte {i}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(p: &[&str]) -> Vec<JsonPath> {
        p.iter().map(|s| JsonPath::parse(s).unwrap()).collect()
    }

    #[test]
    fn json_differences_are_named_by_path_and_ignored_fields_masked() {
        let e = Message::text(r#"{"price":10,"ts":1,"items":[{"id":1},{"id":2}]}"#);
        let same_but_ts = Message::text(r#"{"ts":2,"items":[{"id":1},{"id":2}],"price":10}"#);
        assert_eq!(compare(&e, &same_but_ts, &paths(&["$.ts"])), None);
        let d = compare(&e, &same_but_ts, &[]).unwrap();
        assert_eq!((d.at.as_str(), d.expected.as_str(), d.got.as_str()), ("$['ts']", "1", "2"));
        let changed = Message::text(r#"{"price":10,"ts":9,"items":[{"id":1},{"id":3}]}"#);
        let d = compare(&e, &changed, &paths(&["$.ts"])).unwrap();
        assert_eq!((d.at.as_str(), d.expected.as_str(), d.got.as_str()), ("$['items'][1]['id']", "2", "3"));
        let every_id = paths(&["$.ts", "$.items[*].id"]);
        assert_eq!(compare(&e, &changed, &every_id), None);
    }

    #[test]
    fn text_and_bytes_differences_say_where() {
        let d = compare(&Message::text("hello"), &Message::text("help!"), &[]).unwrap();
        assert_eq!(d.at, "byte 3");
        let d = compare(&Message::Binary(vec![1, 2, 3].into()), &Message::Binary(vec![1, 2].into()), &[]).unwrap();
        assert_eq!((d.at.as_str(), d.expected.as_str(), d.got.as_str()), ("byte 2", "3 bytes", "2 bytes"));
        let d = compare(&Message::text("1"), &Message::Binary(vec![b'1'].into()), &[]).unwrap();
        assert_eq!((d.expected.as_str(), d.got.as_str()), ("a text message", "a binary message"));
    }
}
