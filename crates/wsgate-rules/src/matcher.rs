//! What a replay script waits for in a client message (MockForge's `waitFor`): a
//! regex over the text, or an RFC 9535 JSONPath that must select something in it,
//! optionally equal to an expected value.
//!
//! Matchers see text: the caller hands them text messages, and binary messages only
//! when they are valid UTF-8. A match returns the message parsed as JSON when it is
//! JSON, so the answer's templates can read it (`{{$.user.id}}`).

use regex::Regex;
use serde_json::Value;
use serde_json_path::JsonPath;

/// A parsed `waitFor`.
#[derive(Debug, Clone)]
pub struct Matcher {
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Regex(Regex),
    Path { path: JsonPath, expected: Option<Value> },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    /// `message` is the regex crate's own, which points at the mistake.
    #[error("bad regex {spec:?} (a waitFor not starting with $ is a regex): {message}")]
    Regex { spec: String, message: String },
    /// `position` is 1-based, in characters, within the path.
    #[error("bad JSONPath {spec:?} at position {position}: {message} (RFC 9535, e.g. $.type or $.items[0].status)")]
    JsonPath { spec: String, position: usize, message: String },
    #[error("waitFor {spec:?} is a regex and cannot have an expected value: only a JSONPath (starting with $) can")]
    ExpectedWithRegex { spec: String },
}

impl Matcher {
    /// A spec starting with `$` is a JSONPath; anything else is a regex, unanchored
    /// unless it says `^…$` (so `""` matches every message). `expected` needs a JSONPath.
    pub fn parse(spec: &str, expected: Option<Value>) -> Result<Matcher, MatcherError> {
        let kind = if spec.starts_with('$') {
            let path = parse_path(spec).map_err(|(position, message)| MatcherError::JsonPath {
                spec: spec.to_owned(),
                position,
                message,
            })?;
            Kind::Path { path, expected }
        } else {
            if expected.is_some() {
                return Err(MatcherError::ExpectedWithRegex { spec: spec.to_owned() });
            }
            let re =
                Regex::new(spec).map_err(|e| MatcherError::Regex { spec: spec.to_owned(), message: e.to_string() })?;
            Kind::Regex(re)
        };
        Ok(Matcher { kind })
    }

    /// Whether a client's text message matches: `None` if not; if it does, the text
    /// parsed as JSON when it is JSON (always, for a JSONPath), for the templates of
    /// what the script sends next.
    ///
    /// A regex matches where it finds a match anywhere in the text. A JSONPath needs
    /// the text to be JSON and the path to select at least one node; with an expected
    /// value, one of the nodes must equal it (numbers by value: `1` equals `1.0`).
    pub fn matches(&self, text: &str) -> Option<Option<Value>> {
        match &self.kind {
            Kind::Regex(re) => {
                // Parsed only once it matched: most messages a script waits through don't.
                re.is_match(text).then(|| serde_json::from_str(text).ok())
            }
            Kind::Path { path, expected } => {
                let json: Value = serde_json::from_str(text).ok()?;
                let nodes = path.query(&json);
                let hit = match expected {
                    None => !nodes.is_empty(),
                    Some(want) => nodes.iter().any(|node| same_value(node, want)),
                };
                hit.then_some(Some(json))
            }
        }
    }
}

/// How deep `[…]` may nest in a JSONPath. serde_json_path's parser backtracks: each
/// filter nested in a filter (`$[?@.a[?@.b[?…]]]`) doubles its time, valid or not,
/// so 25 levels take minutes (found by fuzzing). Real paths nest two or three levels.
pub const MAX_PATH_BRACKETS: usize = 6;

/// How deep `[…]` and `(…)` together may nest in a JSONPath. The parser recurses
/// for each level: 500 parentheses overflow a 2 MiB stack (a tokio worker's) in a
/// debug build (found by fuzzing).
pub const MAX_PATH_NESTING: usize = 16;

/// How many amplifiers a JSONPath may have: `..`, an absolute query (`$`) inside a
/// filter, which runs again for every node the filter tests, and a selector list
/// (`[a,b]`), whose nodes may repeat. Each can multiply what one client message costs
/// by the message's size: `$..[?@..[?@..[?@..a]]]` takes a second on 240 bytes of
/// nested arrays, and a list per segment (`$[0,0][0,0]…`) doubles the nodes per
/// segment. Two keep any path polynomial and fast on real messages.
pub const MAX_PATH_AMPLIFIERS: usize = 2;

/// Parses an RFC 9535 JSONPath, for matchers and templates alike; an error is the
/// 1-based character position in the path and what is wrong there.
pub fn parse_path(path: &str) -> Result<JsonPath, (usize, String)> {
    check_shape(path)?;
    // serde_json_path 0.7.2 panics ("we do not use streaming parsers") on a path that
    // ends one or two characters after a `\u`: it reads the escape's digits with nom's
    // streaming `one_of`, which asks for more input (found by fuzzing). No valid path
    // ends there, a string literal being still open, so refuse it first.
    let mut but_last = path.chars();
    but_last.next_back();
    let chars = path.chars().count();
    if path.ends_with("\\u") {
        return Err((chars - 1, "the path ends inside a \\u escape".to_owned()));
    }
    if but_last.as_str().ends_with("\\u") {
        return Err((chars - 2, "the path ends inside a \\u escape".to_owned()));
    }
    JsonPath::parse(path).map_err(|e| {
        // serde_json_path's position is a 0-based byte offset (its docs say 1-based).
        let before = path.get(..e.position()).map_or(0, |p| p.chars().count());
        (before + 1, e.message().to_owned())
    })
}

/// The limits above, checked on the text before serde_json_path parses it. What is
/// inside string literals ('…' or "…", backslash escapes) does not count.
fn check_shape(path: &str) -> Result<(), (usize, String)> {
    // The open brackets and parentheses; for a bracket, whether it has a comma yet.
    let mut open: Vec<(char, bool)> = Vec::new();
    let (mut brackets, mut amplifiers) = (0usize, 0usize);
    let (mut quote, mut escaped, mut after_dot) = (None, false, false);
    for (i, c) in path.chars().enumerate() {
        if let Some(q) = quote {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                _ if c == q => quote = None,
                _ => {}
            }
            continue;
        }
        let mut amplifier = false;
        match c {
            '\'' | '"' => quote = Some(c),
            '[' | '(' => {
                open.push((c, false));
                brackets += usize::from(c == '[');
            }
            ']' | ')' => {
                if let Some(('[', _)) = open.pop() {
                    brackets -= 1;
                }
            }
            ',' => {
                if let Some(('[', listed)) = open.last_mut() {
                    amplifier = !*listed;
                    *listed = true;
                }
            }
            '$' => amplifier = i > 0,
            '.' => amplifier = after_dot,
            _ => {}
        }
        after_dot = c == '.' && !amplifier;
        amplifiers += usize::from(amplifier);
        if brackets > MAX_PATH_BRACKETS {
            return Err((i + 1, format!("brackets nest deeper than {MAX_PATH_BRACKETS} levels")));
        }
        if open.len() > MAX_PATH_NESTING {
            return Err((i + 1, format!("brackets and parentheses nest deeper than {MAX_PATH_NESTING} levels")));
        }
        if amplifiers > MAX_PATH_AMPLIFIERS {
            return Err((
                i + 1,
                format!(
                    "more than {MAX_PATH_AMPLIFIERS} of `..`, `$` inside a filter and selector lists `[a,b]`, each of \
                     which can multiply the work per message by its size"
                ),
            ));
        }
    }
    Ok(())
}

/// JSON equality with numbers compared by value: a client may well send `1.0` or
/// `1e0` where the script says `1`, and serde_json's `==` tells those apart.
pub fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
            (Some(x), Some(y), _, _) => x == y,
            (_, _, Some(x), Some(y)) => x == y,
            // Integers of different signs or beyond i64 end up here; their f64s are
            // exact enough to tell them apart except beyond 2^53, where a float
            // cannot say which integer it meant anyway.
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_value(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_value(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn m(spec: &str) -> Matcher {
        Matcher::parse(spec, None).unwrap()
    }

    fn eq(spec: &str, expected: Value) -> Matcher {
        Matcher::parse(spec, Some(expected)).unwrap()
    }

    fn hit(matcher: &Matcher, text: &str) -> bool {
        matcher.matches(text).is_some()
    }

    #[test]
    fn regex_is_unanchored_unless_anchored() {
        let any = m("READY");
        assert!(hit(&any, "READY"));
        assert!(hit(&any, "CLIENT_READY now"));
        assert!(!hit(&any, "ready"));
        let anchored = m("^CLIENT_READY$");
        assert!(hit(&anchored, "CLIENT_READY"));
        assert!(!hit(&anchored, "CLIENT_READY "));
        assert!(!hit(&anchored, "xCLIENT_READY"));
        assert!(hit(&m("(?i)^ready$"), "Ready"));
        assert!(hit(&m(""), "anything"), "an empty regex matches everything");
    }

    #[test]
    fn regex_parses_json_for_templates() {
        let re = m(r#""type":"hello""#);
        assert_eq!(re.matches(r#"{"type":"hello","n":1}"#).unwrap(), Some(json!({"type": "hello", "n": 1})));
        assert_eq!(re.matches(r#"not json "type":"hello""#).unwrap(), None);
        assert_eq!(re.matches("{}"), None);
    }

    #[test]
    fn path_exists() {
        let p = m("$.type");
        let matched = p.matches(r#"{"type":"subscribe","channel":"x"}"#).unwrap();
        assert_eq!(matched, Some(json!({"type": "subscribe", "channel": "x"})));
        assert!(hit(&p, r#"{"type":null}"#), "a null node is a node");
        assert!(!hit(&p, r#"{"kind":"subscribe"}"#));
        assert!(!hit(&p, r#"["type"]"#));
        assert!(!hit(&m("$.a[5]"), r#"{"a":[1]}"#));
        assert!(hit(&m("$"), "3"), "the root of any JSON");
    }

    #[test]
    fn path_needs_json() {
        let p = m("$.type");
        for text in ["", "type", "{type: 1}", r#"{"type":1"#, r#"{"type":1} trailing"#] {
            assert!(!hit(&p, text), "{text:?}");
        }
        assert!(!hit(&m("$"), "not json"));
    }

    #[test]
    fn path_equals() {
        let s = eq("$.type", json!("subscribe"));
        assert!(hit(&s, r#"{"type":"subscribe"}"#));
        assert!(!hit(&s, r#"{"type":"Subscribe"}"#));
        assert!(!hit(&s, r#"{"type":["subscribe"]}"#));

        let n = eq("$.n", json!(1));
        assert!(hit(&n, r#"{"n":1}"#));
        assert!(hit(&n, r#"{"n":1.0}"#), "numbers by value");
        assert!(hit(&n, r#"{"n":1e0}"#));
        assert!(!hit(&n, r#"{"n":"1"}"#));
        assert!(!hit(&n, r#"{"n":2}"#));
        assert!(hit(&eq("$.n", json!(u64::MAX)), &format!(r#"{{"n":{}}}"#, u64::MAX)));
        assert!(!hit(&eq("$.n", json!(-1)), &format!(r#"{{"n":{}}}"#, u64::MAX)));

        let o = eq("$.user", json!({"id": 7, "tags": ["a", 2]}));
        assert!(hit(&o, r#"{"user":{"tags":["a",2.0],"id":7}}"#), "key order does not matter");
        assert!(!hit(&o, r#"{"user":{"id":7,"tags":["a",2],"x":0}}"#), "no extra keys");
        assert!(!hit(&o, r#"{"user":{"id":7,"tags":[2,"a"]}}"#), "array order matters");

        let null = eq("$.x", Value::Null);
        assert!(hit(&null, r#"{"x":null}"#));
        assert!(!hit(&null, "{}"), "a missing key is not null");
    }

    #[test]
    fn path_equals_any_selected_node() {
        let any = eq("$.items[*].status", json!("done"));
        assert!(hit(&any, r#"{"items":[{"status":"open"},{"status":"done"}]}"#));
        assert!(!hit(&any, r#"{"items":[{"status":"open"}]}"#));
        assert!(hit(&m("$.items[?@.status == 'done']"), r#"{"items":[{"status":"open"},{"status":"done"}]}"#));
    }

    #[test]
    fn path_amplifiers_are_bounded() {
        for ok in ["$..a..b", "$..a[?@.b == $.c]", "$[0,1,2]..x", "$[?@.a == $.b && @.c == $.d]", "$['..,$', \"..$\"]"]
        {
            Matcher::parse(ok, None).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, position) in
            [("$..a..b..c", 9), ("$..[?@..[?@..a]]", 13), ("$[0,0][0,0][0,0]", 14), ("$[?$[?$[?$.a]]]", 10)]
        {
            let e = Matcher::parse(bad, None).unwrap_err();
            let MatcherError::JsonPath { position: at, message, .. } = &e else { panic!("{e:?}") };
            assert_eq!(*at, position, "{bad}: {e}");
            assert!(message.starts_with("more than 2 of `..`"), "{e}");
        }
    }

    #[test]
    fn path_nesting_is_bounded_outside_strings_only() {
        let ok = format!("${}{}", "[?@.a".repeat(MAX_PATH_BRACKETS), "]".repeat(MAX_PATH_BRACKETS));
        Matcher::parse(&ok, None).unwrap();
        let parens = MAX_PATH_NESTING - 1;
        let ok = format!("$[?{}@.a{}]", "(".repeat(parens), ")".repeat(parens));
        assert!(hit(&Matcher::parse(&ok, None).unwrap(), r#"[{"a":1}]"#));
        let p = m(r#"$[?@.a == '[[[[[[[[\'[' || @.b == "[[[[[[[[\"["]"#);
        assert!(hit(&p, r#"[{"a":"[[[[[[[['["}]"#));
        assert!(hit(&p, r#"[{"b":"[[[[[[[[\"["}]"#));
    }

    /// The examples in MockForge's documentation of `waitFor`.
    #[test]
    fn mockforge_examples() {
        let wait_for = |step: &str| {
            let step: Value = serde_json::from_str(step).unwrap();
            m(step["waitFor"].as_str().unwrap())
        };
        let ready = wait_for(r#"{"waitFor":"^CLIENT_READY$"}"#);
        assert!(hit(&ready, "CLIENT_READY"));
        assert!(!hit(&ready, "CLIENT_READY!"));
        assert_eq!(ready.matches("CLIENT_READY").unwrap(), None);

        let ty = wait_for(r#"{"waitFor":"$.type"}"#);
        assert!(hit(&ty, r#"{"type":"login"}"#));
        assert!(!hit(&ty, "CLIENT_READY"));

        let user = wait_for(r#"{"waitFor":"$.user.id"}"#);
        assert!(hit(&user, r#"{"user":{"id":"u-1"}}"#));
        assert!(!hit(&user, r#"{"user":{"name":"ada"}}"#));
        assert!(!hit(&user, r#"{"user":"u-1"}"#));

        let status = wait_for(r#"{"waitFor":"$.items[0].status"}"#);
        assert!(hit(&status, r#"{"items":[{"status":"ok"},{}]}"#));
        assert!(!hit(&status, r#"{"items":[{},{"status":"ok"}]}"#));
        assert!(!hit(&status, r#"{"items":[]}"#));
    }

    #[test]
    fn errors() {
        let e = Matcher::parse("(unclosed", None).unwrap_err();
        let MatcherError::Regex { spec, message } = &e else { panic!("{e:?}") };
        assert_eq!(spec, "(unclosed");
        assert!(message.contains("unclosed group"), "the regex crate's message: {message}");
        assert!(e.to_string().starts_with(r#"bad regex "(unclosed" (a waitFor not starting with $ is a regex): "#));

        let e = Matcher::parse("$.items[0", None).unwrap_err();
        let MatcherError::JsonPath { position, message, .. } = &e else { panic!("{e:?}") };
        assert!(*position >= 1 && !message.is_empty(), "{e:?}");
        assert!(e.to_string().starts_with(r#"bad JSONPath "$.items[0" at position "#), "{e}");
        let e = Matcher::parse("$type", None).unwrap_err();
        assert!(matches!(e, MatcherError::JsonPath { position: 2, .. }), "the `t`: {e:?}");
        let e = Matcher::parse("$['é'] x", None).unwrap_err();
        assert!(matches!(e, MatcherError::JsonPath { position: 7, .. }), "characters, not bytes: {e:?}");

        let deep = format!("${}{}", "[?@.a".repeat(MAX_PATH_BRACKETS + 1), "]".repeat(MAX_PATH_BRACKETS + 1));
        let e = Matcher::parse(&deep, None).unwrap_err();
        let MatcherError::JsonPath { position, message, .. } = &e else { panic!("{e:?}") };
        assert_eq!(
            (*position, message.as_str()),
            (1 + 5 * MAX_PATH_BRACKETS + 1, "brackets nest deeper than 6 levels")
        );
        let deep = format!("$[?{}@.a{}]", "(".repeat(MAX_PATH_NESTING), ")".repeat(MAX_PATH_NESTING));
        let e = Matcher::parse(&deep, None).unwrap_err();
        let MatcherError::JsonPath { position, message, .. } = &e else { panic!("{e:?}") };
        assert_eq!(
            (*position, message.as_str()),
            (3 + MAX_PATH_NESTING, "brackets and parentheses nest deeper than 16 levels")
        );

        // serde_json_path would panic on these (fuzzing found the first).
        for (spec, position) in [(r"$['\u", 4), (r"$['\uD", 4), (r#"$[?@ == "\uD800\u"#, 16), (r"$['\\u", 5)] {
            let e = Matcher::parse(spec, None).unwrap_err();
            let MatcherError::JsonPath { position: at, message, .. } = &e else { panic!("{e:?}") };
            assert_eq!((*at, message.as_str()), (position, r"the path ends inside a \u escape"), "{spec}");
        }
        assert!(hit(&m(r"$['\u0041']"), r#"{"A":1}"#), "a whole escape is fine");

        let e = Matcher::parse("^READY$", Some(json!(1))).unwrap_err();
        assert_eq!(e, MatcherError::ExpectedWithRegex { spec: "^READY$".into() });
    }
}
