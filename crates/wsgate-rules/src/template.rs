//! Templates in the text a mock sends: `{{uuid}}`, `{{now+1h}}`, `{{randInt 1 6}}`,
//! `{{seq}}`, `{{$.user.id}}`, `{{env NAME}}`, and in rules also `{{state.NAME}}` (a
//! session's state) and `{{$1}}` (a group of the rule's regex).
//!
//! A text is parsed once, when the script or rules file loads, so every mistake is a load error
//! with its position rather than a surprise mid-session; rendering a parsed
//! [`Template`] cannot fail. Everything random or time-dependent comes from the
//! [`RenderContext`], so a test with a seeded RNG and a fixed clock gets the same
//! text every run.
//!
//! Syntax: `{{ name args }}`, spaces inside optional. `\{{` is a literal `{{` (the
//! backslash is dropped); a backslash anywhere else, and a `}}` outside a template,
//! are literal text. A template ends at the first `}}`, so a JSONPath cannot contain
//! `}}`.

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde_json::Value;
use serde_json_path::JsonPath;

/// What `{{ }}` may hold, for error messages.
const ACCEPTED: &str = "expected uuid, now, now+N[smhd], now-N[smhd], randInt A B, seq, $.path or env NAME";

/// Answers `{{state.NAME}}` at parse time: NAME's slot, `None` if nothing sets it.
pub type StateSlots<'a> = &'a dyn Fn(&str) -> Option<usize>;

/// What a text may refer to besides the built-in templates, decided where it is
/// parsed: a replay script knows no state; a rule knows the state names the file sets
/// and how many groups its regex has.
pub struct Scope<'a> {
    /// `{{env NAME}}`, answered at parse time.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// `{{state.NAME}}`: NAME's slot in [`RenderContext::state`], `None` if nothing
    /// ever sets it. `None` here: no state at all (a replay script).
    pub state: Option<StateSlots<'a>>,
    /// `{{$N}}` may name groups 0 to this (0: the whole match); `None`: no regex.
    pub groups: Option<usize>,
}

/// `now±N` goes at most this far (100 years), as durations in the config do: a
/// larger offset is a typo, and keeping it small keeps `now + offset` in chrono's range.
const MAX_OFFSET_SECS: i64 = 36_500 * 86_400;

/// How much of a template an error message quotes.
const QUOTE_CHARS: usize = 60;

/// What rendering needs from the session: randomness, the clock, the message count and
/// the last client message that matched.
pub struct RenderContext<'a> {
    /// Source of `{{uuid}}` and `{{randInt}}`: seed it for reproducible output.
    pub rng: &'a mut fastrand::Rng,
    /// `{{now}}` (offsets are added to it).
    pub now: DateTime<Utc>,
    /// `{{seq}}`: the caller's per-session counter.
    pub seq: u64,
    /// What `{{$.path}}` reads: the last client message that matched, if it was JSON.
    pub last_match: Option<&'a Value>,
    /// What `{{state.NAME}}` reads, by slot; a slot beyond it or null renders as nothing.
    pub state: &'a [Value],
    /// What `{{$N}}` reads: the rule's regex match; a group that did not take part
    /// renders as nothing.
    pub groups: Option<&'a regex::Captures<'a>>,
}

/// A parsed text: literal runs and the dynamic parts between them.
#[derive(Debug, Clone)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    /// Text as written, with `\{{` unescaped and `{{env}}` values filled in.
    Literal(String),
    Uuid,
    Now(TimeDelta),
    RandInt(i64, i64),
    Seq,
    Path(JsonPath),
    State(usize),
    Group(usize),
}

/// A template that does not parse: where it starts, what it says, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe(.kind, .template, *.line, *.column))]
pub struct TemplateError {
    /// 1-based line of the `{{` in the text.
    pub line: usize,
    /// 1-based column, in characters, of the `{{` in its line.
    pub column: usize,
    /// The template as written, `{{` to `}}` (shortened if long).
    pub template: String,
    pub kind: TemplateErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateErrorKind {
    /// `{{` with no `}}` after it.
    Unclosed,
    /// Not one of the template names, or a name with arguments it does not take.
    Unknown,
    /// `now+…`/`now-…` that is not a whole number and a unit, or beyond 100 years.
    BadOffset,
    /// `randInt` without two whole numbers A <= B.
    BadRandInt,
    /// A JSONPath that does not parse (RFC 9535). `position` is the parser's,
    /// 1-based within the path.
    BadJsonPath { position: usize, message: String },
    /// `env` without exactly one variable name.
    BadEnv,
    /// `env NAME` with NAME not set when the script loaded.
    EnvUnset { name: String },
    /// `state.NAME` with a NAME no rule sets (`capture`, `set`, `count`, or the file's
    /// `state:`), or in a replay script, which has no state.
    UnknownState { name: String },
    /// `$N` beyond the groups of the rule's regex, or in a rule without one.
    BadGroup { group: usize, groups: Option<usize> },
}

fn describe(kind: &TemplateErrorKind, template: &str, line: usize, column: usize) -> String {
    let at = if line == 1 { format!("column {column}") } else { format!("line {line}, column {column}") };
    match kind {
        TemplateErrorKind::Unclosed => {
            format!("unclosed {template} at {at}: a template ends with }}}}; write \\{{{{ for a literal {{{{")
        }
        TemplateErrorKind::Unknown => format!("unknown template {template} at {at}: {ACCEPTED}"),
        TemplateErrorKind::BadOffset => format!(
            "bad time offset {template} at {at}: expected now+N or now-N, N a whole number followed by s, m, h or d, \
             at most 100 years"
        ),
        TemplateErrorKind::BadRandInt => {
            format!("bad randInt {template} at {at}: expected randInt A B, A and B whole 64-bit numbers with A <= B")
        }
        TemplateErrorKind::BadJsonPath { position, message } => {
            format!("bad JSONPath {template} at {at}: {message} at position {position} of the path (RFC 9535)")
        }
        TemplateErrorKind::BadEnv => format!("bad env template {template} at {at}: expected env NAME"),
        TemplateErrorKind::EnvUnset { name } => {
            format!("environment variable {name} of {template} at {at} is not set: set it, or remove the template")
        }
        TemplateErrorKind::UnknownState { name } => format!(
            "unknown state {template} at {at}: no rule sets {name:?} (set it with `capture`, `set` or `count`, or \
             give it a start value under `state:`)"
        ),
        TemplateErrorKind::BadGroup { group, groups: Some(n) } => {
            format!("{template} at {at}: the rule's regex has no group {group} (it has {n}; $0 is the whole match)")
        }
        TemplateErrorKind::BadGroup { group, groups: None } => {
            format!("{template} at {at}: no regex group {group}, the rule's match has no `regex`")
        }
    }
}

impl Template {
    /// Parses `text`. `env` answers `{{env NAME}}`, now rather than per message, so an
    /// unset variable fails the load instead of sending an empty value.
    pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Template, TemplateError> {
        Self::parse_in(text, &Scope { env, state: None, groups: None })
    }

    /// Parses `text` where `scope` says what else it may refer to (a rule's state and
    /// regex groups).
    pub fn parse_in(text: &str, scope: &Scope<'_>) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut pos = Position { line: 1, column: 1 };
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            let (before, from_open) = rest.split_at(open);
            if let Some(kept) = before.strip_suffix('\\') {
                // `\{{`: a literal `{{`, so text can contain one without starting a template.
                literal.push_str(kept);
                literal.push_str("{{");
                pos.advance(before);
                pos.advance("{{");
                rest = &from_open[2..];
                continue;
            }
            literal.push_str(before);
            pos.advance(before);
            let Some(close) = from_open[2..].find("}}") else {
                return Err(pos.error(from_open, TemplateErrorKind::Unclosed));
            };
            let whole = &from_open[..close + 4];
            let inner = whole[2..close + 2].trim();
            match parse_inner(inner, scope).map_err(|kind| pos.error(whole, kind))? {
                Part::Literal(value) => literal.push_str(&value),
                part => {
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(part);
                }
            }
            pos.advance(whole);
            rest = &from_open[whole.len()..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template { parts })
    }

    /// True when every render gives the same text (no uuid, now, randInt, seq or
    /// path): the caller can render once, or take [`Template::as_static`]. That text
    /// is not always the source text: escapes and `{{env}}` values are resolved.
    pub fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    /// Whether rendering reads the message as JSON (`{{$.path}}`), so a caller parses
    /// it only for the templates that need it.
    pub fn needs_json(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Path(_)))
    }

    /// Whether rendering reads the regex's groups (`{{$1}}`).
    pub fn needs_groups(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Group(_)))
    }

    /// The text every render gives, when the template [is static](Template::is_static).
    pub fn as_static(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Literal(s)] => Some(s),
            _ => None,
        }
    }

    /// The text for one message. A `{{$.path}}` with no last message, or whose path
    /// selects nothing in it, renders as nothing (empty); a string node renders as the
    /// string itself, any other node as compact JSON.
    pub fn render(&self, cx: &mut RenderContext<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Uuid => {
                    let mut bytes = [0u8; 16];
                    cx.rng.fill(&mut bytes);
                    let uuid = uuid::Builder::from_random_bytes(bytes).into_uuid();
                    let _ = write!(out, "{}", uuid.hyphenated());
                }
                Part::Now(offset) => {
                    // Saturates rather than panics: only a `now` near chrono's limits
                    // (year ±262 143) can overflow, offsets being at most 100 years.
                    let at = cx.now.checked_add_signed(*offset).unwrap_or(if *offset < TimeDelta::zero() {
                        DateTime::<Utc>::MIN_UTC
                    } else {
                        DateTime::<Utc>::MAX_UTC
                    });
                    out.push_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true));
                }
                Part::RandInt(lo, hi) => {
                    let _ = write!(out, "{}", cx.rng.i64(*lo..=*hi));
                }
                Part::Seq => {
                    let _ = write!(out, "{}", cx.seq);
                }
                Part::Path(path) => {
                    if let Some(node) = cx.last_match.and_then(|v| path.query(v).first()) {
                        push_value(&mut out, node);
                    }
                }
                Part::State(slot) => {
                    // Unset is null: nothing, rather than a `null` the rule never set.
                    if let Some(value) = cx.state.get(*slot).filter(|v| !v.is_null()) {
                        push_value(&mut out, value);
                    }
                }
                Part::Group(i) => {
                    if let Some(group) = cx.groups.and_then(|c| c.get(*i)) {
                        out.push_str(group.as_str());
                    }
                }
            }
        }
        out
    }
}

/// A JSON value in text: a string as itself, anything else as compact JSON.
fn push_value(out: &mut String, value: &Value) {
    match value {
        Value::String(s) => out.push_str(s),
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

/// Where the parser is in the text, for error messages.
#[derive(Debug, Clone, Copy)]
struct Position {
    line: usize,
    column: usize,
}

impl Position {
    fn advance(&mut self, consumed: &str) {
        for c in consumed.chars() {
            if c == '\n' {
                self.line += 1;
                self.column = 1;
            } else {
                self.column += 1;
            }
        }
    }

    fn error(self, template: &str, kind: TemplateErrorKind) -> TemplateError {
        let mut quoted: String = template.chars().take(QUOTE_CHARS).collect();
        if quoted.len() < template.len() {
            quoted.push('…');
        }
        TemplateError { line: self.line, column: self.column, template: quoted, kind }
    }
}

/// One template's content, trimmed. `{{env}}` comes back as its value, a literal.
fn parse_inner(inner: &str, scope: &Scope<'_>) -> Result<Part, TemplateErrorKind> {
    if let Some(digits) = inner.strip_prefix('$')
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
    {
        let group = digits.parse::<usize>().unwrap_or(usize::MAX);
        return match scope.groups {
            Some(n) if group <= n => Ok(Part::Group(group)),
            groups => Err(TemplateErrorKind::BadGroup { group, groups }),
        };
    }
    if let Some(name) = inner.strip_prefix("state.") {
        let slot = scope.state.ok_or(TemplateErrorKind::Unknown)?;
        return slot(name).map(Part::State).ok_or_else(|| TemplateErrorKind::UnknownState { name: name.to_owned() });
    }
    if inner.starts_with('$') {
        return crate::matcher::parse_path(inner)
            .map(Part::Path)
            .map_err(|(position, message)| TemplateErrorKind::BadJsonPath { position, message });
    }
    if let Some(offset) = inner.strip_prefix("now") {
        let offset = offset.trim_start();
        if offset.is_empty() {
            return Ok(Part::Now(TimeDelta::zero()));
        }
        if offset.starts_with(['+', '-']) {
            return parse_offset(offset).map(Part::Now).ok_or(TemplateErrorKind::BadOffset);
        }
    }
    let mut words = inner.split_whitespace();
    let name = words.next().unwrap_or("");
    let args: Vec<&str> = words.collect();
    match (name, args.as_slice()) {
        ("uuid", []) => Ok(Part::Uuid),
        ("seq", []) => Ok(Part::Seq),
        ("randInt", [a, b]) => match (a.parse::<i64>(), b.parse::<i64>()) {
            (Ok(lo), Ok(hi)) if lo <= hi => Ok(Part::RandInt(lo, hi)),
            _ => Err(TemplateErrorKind::BadRandInt),
        },
        ("randInt", _) => Err(TemplateErrorKind::BadRandInt),
        ("env", [name]) => {
            (scope.env)(name).map(Part::Literal).ok_or_else(|| TemplateErrorKind::EnvUnset { name: (*name).to_owned() })
        }
        ("env", _) => Err(TemplateErrorKind::BadEnv),
        _ => Err(TemplateErrorKind::Unknown),
    }
}

/// `+N<unit>` or `-N<unit>` (spaces allowed after the sign) within 100 years.
fn parse_offset(s: &str) -> Option<TimeDelta> {
    let (negative, rest) = match s.split_at(1) {
        ("+", rest) => (false, rest),
        ("-", rest) => (true, rest),
        _ => return None,
    };
    let rest = rest.trim_start();
    let unit = rest.chars().last()?;
    let digits = &rest[..rest.len() - unit.len_utf8()];
    // Only ASCII digits: `i64::from_str` would also take a second sign.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => return None,
    };
    let secs = digits.parse::<i64>().ok()?.checked_mul(scale).filter(|&s| s <= MAX_OFFSET_SECS)?;
    TimeDelta::try_seconds(if negative { -secs } else { secs })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(text: &str) -> Result<Template, TemplateError> {
        Template::parse(text, &no_env)
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 14, 15, 9, 26).unwrap() + TimeDelta::milliseconds(535)
    }

    fn render_with(t: &Template, seed: u64, seq: u64, last: Option<&Value>) -> String {
        let mut rng = fastrand::Rng::with_seed(seed);
        t.render(&mut RenderContext { rng: &mut rng, now: now(), seq, last_match: last, state: &[], groups: None })
    }

    fn render(text: &str) -> String {
        render_with(&parse(text).unwrap(), 7, 0, None)
    }

    fn err(text: &str) -> TemplateError {
        parse(text).unwrap_err()
    }

    #[test]
    fn plain_text_is_static_and_unchanged() {
        for text in ["", "hello", "{\"a\":{\"b\":1}}", "}} { } \\ \\n ünïcode"] {
            let t = parse(text).unwrap();
            assert!(t.is_static(), "{text}");
            assert_eq!(t.as_static(), Some(text));
            assert_eq!(render_with(&t, 1, 1, None), text);
        }
    }

    #[test]
    fn uuid_is_a_v4_uuid_from_the_rng() {
        let out = render("id={{uuid}}");
        let id = uuid::Uuid::parse_str(out.strip_prefix("id=").unwrap()).unwrap();
        assert_eq!(id.get_version_num(), 4);
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        let t = parse("{{uuid}} {{ uuid }}").unwrap();
        assert!(!t.is_static());
        let two = render_with(&t, 7, 0, None);
        let (a, b) = two.split_once(' ').unwrap();
        assert_ne!(a, b, "each {{uuid}} draws new bytes");
    }

    #[test]
    fn now_is_rfc3339_millis_utc() {
        assert_eq!(render("{{now}}"), "2025-03-14T15:09:26.535Z");
        assert_eq!(render("{{ now }}"), "2025-03-14T15:09:26.535Z");
        assert_eq!(render("{{now+1h}}"), "2025-03-14T16:09:26.535Z");
        assert_eq!(render("{{now-30m}}"), "2025-03-14T14:39:26.535Z");
        assert_eq!(render("{{now+45s}}"), "2025-03-14T15:10:11.535Z");
        assert_eq!(render("{{now + 2d}}"), "2025-03-16T15:09:26.535Z");
        assert_eq!(render("{{now+0s}}"), "2025-03-14T15:09:26.535Z");
        assert_eq!(render("{{now+36500d}}"), "2125-02-18T15:09:26.535Z");
    }

    #[test]
    fn now_saturates_at_the_ends_of_time() {
        let t = parse("{{now+1d}}|{{now-1d}}").unwrap();
        for at in [DateTime::<Utc>::MAX_UTC, DateTime::<Utc>::MIN_UTC] {
            let mut rng = fastrand::Rng::with_seed(0);
            let out = t.render(&mut RenderContext {
                rng: &mut rng,
                now: at,
                seq: 0,
                last_match: None,
                state: &[],
                groups: None,
            });
            assert!(out.contains('|'), "{out}");
        }
    }

    #[test]
    fn rand_int_is_within_its_inclusive_bounds() {
        let t = parse("{{randInt 1 3}}").unwrap();
        let mut rng = fastrand::Rng::with_seed(3);
        let mut seen = [false; 3];
        for _ in 0..200 {
            let out = t.render(&mut RenderContext {
                rng: &mut rng,
                now: now(),
                seq: 0,
                last_match: None,
                state: &[],
                groups: None,
            });
            let n: usize = out.parse().unwrap();
            seen[n - 1] = true;
        }
        assert_eq!(seen, [true; 3], "both ends are reachable");
        assert_eq!(render("{{randInt -5 -5}}"), "-5");
        // The whole i64 range is allowed.
        render(&format!("{{{{randInt {} {}}}}}", i64::MIN, i64::MAX)).parse::<i64>().unwrap();
    }

    #[test]
    fn seq_is_the_callers_counter() {
        let t = parse("msg {{seq}}").unwrap();
        assert_eq!(render_with(&t, 0, 0, None), "msg 0");
        assert_eq!(render_with(&t, 0, 41, None), "msg 41");
        assert_eq!(render_with(&t, 0, u64::MAX, None), format!("msg {}", u64::MAX));
    }

    #[test]
    fn path_inserts_the_first_node_of_the_last_match() {
        let last = json!({"user": {"id": 42, "name": "ada"}, "items": [{"status": "ok"}, {"status": "no"}], "n": null});
        let t = |text| render_with(&parse(text).unwrap(), 0, 0, Some(&last));
        assert_eq!(t("id={{$.user.id}}"), "id=42");
        assert_eq!(t("{{ $.user.name }}"), "ada", "a string as itself, unquoted");
        assert_eq!(t("{{$.user}}"), r#"{"id":42,"name":"ada"}"#, "compact JSON");
        assert_eq!(t("{{$.items[*].status}}"), "ok", "the first node");
        assert_eq!(t("{{$.n}}"), "null");
        assert_eq!(t("[{{$.missing}}]"), "[]", "no node: nothing");
        assert_eq!(t("{{$[?@.status == 'no']}}"), "", "a filter on the root object selects nothing");
        assert_eq!(t("{{$.items[?@.status == 'no'].status}}"), "no");
        let none = render_with(&parse("[{{$.user.id}}]").unwrap(), 0, 0, None);
        assert_eq!(none, "[]", "no last message: nothing");
    }

    #[test]
    fn env_is_resolved_at_parse_time() {
        let env = |name: &str| (name == "TOKEN").then(|| "s3cret{{uuid}}".to_owned());
        let t = Template::parse("Bearer {{env TOKEN}}", &env).unwrap();
        assert!(t.is_static(), "an env value is literal");
        assert_eq!(t.as_static(), Some("Bearer s3cret{{uuid}}"), "and not parsed again");
        let e = Template::parse("x {{ env MISSING }}", &env).unwrap_err();
        assert_eq!(e.kind, TemplateErrorKind::EnvUnset { name: "MISSING".into() });
        assert_eq!(e.column, 3);
        assert_eq!(
            e.to_string(),
            "environment variable MISSING of {{ env MISSING }} at column 3 is not set: set it, or remove the template"
        );
        assert_eq!(err("{{env}}").kind, TemplateErrorKind::BadEnv);
        assert_eq!(err("{{env A B}}").kind, TemplateErrorKind::BadEnv);
    }

    #[test]
    fn escapes() {
        let t = parse(r"\{{uuid}} and \{{ and \x \\{{seq}}").unwrap();
        assert!(t.is_static());
        assert_eq!(t.as_static(), Some(r"{{uuid}} and {{ and \x \{{seq}}"));
        assert_eq!(render(r"a\{{{{seq}}"), "a{{0", "an escaped {{ then a template");
        assert_eq!(render("{{seq}}}"), "0}", "a }} ends the first template");
    }

    #[test]
    fn mixed_literals_and_templates() {
        let t = parse(r#"{"type":"tick","seq":{{seq}},"at":"{{now}}","n":{{randInt 7 7}}}"#).unwrap();
        assert_eq!(render_with(&t, 0, 3, None), r#"{"type":"tick","seq":3,"at":"2025-03-14T15:09:26.535Z","n":7}"#);
    }

    #[test]
    fn same_seed_same_text() {
        let t = parse("{{uuid}} {{randInt 0 1000000}} {{uuid}} {{now}} {{seq}}").unwrap();
        assert_eq!(render_with(&t, 99, 5, None), render_with(&t, 99, 5, None));
        assert_ne!(render_with(&t, 99, 5, None), render_with(&t, 100, 5, None));
    }

    #[test]
    fn unknown_names_and_arguments() {
        let e = err("hello {{foo}}");
        assert_eq!((e.line, e.column, e.kind.clone()), (1, 7, TemplateErrorKind::Unknown));
        assert_eq!(
            e.to_string(),
            "unknown template {{foo}} at column 7: expected uuid, now, now+N[smhd], now-N[smhd], randInt A B, seq, \
             $.path or env NAME"
        );
        for text in ["{{}}", "{{  }}", "{{uuid 4}}", "{{seq 1}}", "{{UUID}}", "{{nowadays}}", "{{now 1h}}", "{{.a}}"] {
            assert_eq!(err(text).kind, TemplateErrorKind::Unknown, "{text}");
        }
    }

    #[test]
    fn columns_count_characters_and_lines() {
        let e = err("ünï {{x}}");
        assert_eq!((e.line, e.column), (1, 5), "characters, not bytes");
        let e = err("{\n  \"a\": {{seq}},\n  \"b\": {{bad}}\n}");
        assert_eq!((e.line, e.column), (3, 8));
        assert!(e.to_string().contains("at line 3, column 8:"), "{e}");
        let e = err(r"\{{seq}} {{bad}}");
        assert_eq!(e.column, 10, "the escape's backslash is counted");
    }

    #[test]
    fn unclosed() {
        let e = err("ok {{seq}} then {{uuid");
        assert_eq!((e.column, e.kind.clone()), (17, TemplateErrorKind::Unclosed));
        assert_eq!(e.template, "{{uuid");
        assert!(e.to_string().starts_with("unclosed {{uuid at column 17: a template ends with }}"), "{e}");
        assert_eq!(err("{{").kind, TemplateErrorKind::Unclosed);
        assert_eq!(err("{{}").kind, TemplateErrorKind::Unclosed);
        let long = format!("{{{{{}", "a".repeat(500));
        assert_eq!(err(&long).template.chars().count(), QUOTE_CHARS + 1, "long templates are shortened");
    }

    #[test]
    fn bad_offsets() {
        for text in [
            "{{now+}}",
            "{{now+1}}",
            "{{now+h}}",
            "{{now+1y}}",
            "{{now+1.5h}}",
            "{{now++1h}}",
            "{{now+-1h}}",
            "{{now+1 h}}",
            "{{now+36501d}}",
            "{{now-99999999999999999999s}}",
            "{{now+1hh}}",
            "{{now-1é}}",
        ] {
            let e = err(text);
            assert_eq!(e.kind, TemplateErrorKind::BadOffset, "{text}");
        }
        assert!(err("{{now+5y}}").to_string().starts_with("bad time offset {{now+5y}} at column 1: expected now+N"));
    }

    #[test]
    fn bad_rand_int() {
        for text in ["{{randInt}}", "{{randInt 1}}", "{{randInt 1 2 3}}", "{{randInt a 2}}", "{{randInt 1.0 2}}"] {
            assert_eq!(err(text).kind, TemplateErrorKind::BadRandInt, "{text}");
        }
        let e = err("  {{randInt 5 1}}");
        assert_eq!((e.column, e.kind.clone()), (3, TemplateErrorKind::BadRandInt));
        assert!(e.to_string().contains("A <= B"), "{e}");
        assert_eq!(err("{{randInt 0 99999999999999999999}}").kind, TemplateErrorKind::BadRandInt);
    }

    #[test]
    fn bad_json_path() {
        let e = err("x{{$.a[}}");
        assert_eq!(e.column, 2);
        let TemplateErrorKind::BadJsonPath { position, message } = &e.kind else { panic!("{e:?}") };
        assert!(*position >= 1 && !message.is_empty(), "{e:?}");
        assert!(e.to_string().starts_with("bad JSONPath {{$.a[}} at column 2: "), "{e}");
        assert!(matches!(err("{{$$}}").kind, TemplateErrorKind::BadJsonPath { .. }));
        let e = err(r"{{$['}a\u}}");
        assert!(matches!(e.kind, TemplateErrorKind::BadJsonPath { position: 6, .. }), "fuzzing found it: {e:?}");
        let deep = format!("{{{{${}}}}}", "[0".repeat(crate::matcher::MAX_PATH_BRACKETS + 1));
        assert!(matches!(err(&deep).kind, TemplateErrorKind::BadJsonPath { position: 14, .. }), "{:?}", err(&deep));
    }
}
