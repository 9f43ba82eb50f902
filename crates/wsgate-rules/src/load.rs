//! Reading a rules file: YAML into checked [`Rules`], once, at start.
//!
//! Every refusal is a [`RulesError`] at the line and column of what is wrong — a
//! YAML syntax error, an unknown key (a typo must not silently do nothing), a value
//! of the wrong shape, a regex, JSONPath or template that does not parse, a state
//! name no rule sets, or something the role cannot do (a mock has nothing to
//! rewrite; a proxy has no other sessions to broadcast to).
//!
//! The file is read in two passes over its tree: the first collects the state names
//! (whatever `capture`, `set`, `count` or the top-level `state:` names), so a rule
//! may read a value a later rule sets; the second builds every rule.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use marked_yaml::{LoadError, LoaderOptions, Node};
use regex::Regex;
use serde_json::Value;

use crate::edit::Set;
use crate::rule::{Body, Capture, Condition, Flows, Reply, Rewrite, Role, Rule, Rules};
use crate::template::{Scope, Template};

/// A larger file is refused: rules are written by hand.
pub const MAX_FILE: usize = 4 << 20;

/// How deep mappings and lists may nest. The YAML loader recurses once per level, so
/// without a bound `[[[[…` would overflow the stack; real files nest five or six.
pub const MAX_DEPTH: usize = 32;

/// Longest delay a rule may ask for: a longer one is a typo.
const MAX_DELAY: Duration = Duration::from_secs(3600);

/// A regex compiles to at most this much (the regex crate's default is 10 MiB per
/// regex, and a file may hold many).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

const RULE_KEYS: &[&str] = &[
    "name",
    "match",
    "direction",
    "capture",
    "set",
    "count",
    "respond",
    "broadcast",
    "close",
    "rewrite",
    "drop",
    "delay",
];
const MATCH_KEYS: &[&str] = &["regex", "json", "equals", "binary_prefix", "state"];

/// What kind of mistake a refusal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RulesErrorKind {
    /// The file cannot be read, or is too large.
    Read,
    /// Not YAML (or YAML this loader refuses: anchors, tags, duplicate keys, deep
    /// nesting, bytes that are not UTF-8).
    Syntax,
    /// A key that means nothing where it is.
    UnknownKey,
    /// A value of the wrong shape (a list where a mapping belongs, text for a number).
    Shape,
    /// A value of the right shape that cannot be used: a regex, JSONPath or template
    /// that does not parse, a close code, an unknown state name.
    Value,
    /// Something this role cannot do (`rewrite` on a mock, `broadcast` on a proxy).
    Role,
}

/// A rules file refused: where, and what is wrong (with how to fix it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct RulesError {
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub kind: RulesErrorKind,
    pub message: String,
}

type Result<T> = std::result::Result<T, RulesError>;

pub(crate) fn load(path: &Path, role: Role, env: &dyn Fn(&str) -> Option<String>) -> Result<Rules> {
    let file = path.display().to_string();
    let read_error =
        |message: String| RulesError { file: file.clone(), line: 1, column: 1, kind: RulesErrorKind::Read, message };
    let meta = std::fs::metadata(path).map_err(|e| read_error(format!("cannot read the rules file: {e}")))?;
    if meta.len() > MAX_FILE as u64 {
        return Err(read_error(format!("the rules file is larger than {MAX_FILE} bytes")));
    }
    let text = std::fs::read(path).map_err(|e| read_error(format!("cannot read the rules file: {e}")))?;
    parse(&file, &text, role, env)
}

pub(crate) fn parse(file: &str, bytes: &[u8], role: Role, env: &dyn Fn(&str) -> Option<String>) -> Result<Rules> {
    let at = |line, column, kind, message: String| RulesError { file: file.to_owned(), line, column, kind, message };
    if bytes.len() > MAX_FILE {
        return Err(at(1, 1, RulesErrorKind::Read, format!("the rules file is larger than {MAX_FILE} bytes")));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let before = &bytes[..e.valid_up_to()];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
        at(line, column, RulesErrorKind::Syntax, "not UTF-8: a rules file is YAML text".into())
    })?;
    let syntax = |line: usize, column: usize, message: String| {
        let (line, column) = existing(text, line, column);
        at(line, column, RulesErrorKind::Syntax, message)
    };
    check_depth(text).map_err(|(line, column, message)| syntax(line, column, message))?;
    let options = LoaderOptions::default().error_on_duplicate_keys(true);
    let root = marked_yaml::parse_yaml_with_options(0, text, options).map_err(|e| {
        let (line, column, message) = describe_load_error(&e);
        syntax(line, column, message)
    })?;
    let mut loader =
        Loader { file, text, lines: text.lines().collect(), role, env, names: Vec::new(), initial: Vec::new() };
    loader.file_rules(&root)
}

/// A position that exists in `text`. YAML also breaks lines at `\r` and a few other
/// characters, so its scanner may count more lines than a reader (and an editor)
/// splitting at `\n`: a position past the last line is said as the end of the last.
fn existing(text: &str, line: usize, column: usize) -> (usize, usize) {
    let last = text.split('\n').count();
    if line > last {
        (last, text.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1)
    } else {
        (line.max(1), column.max(1))
    }
}

/// Walks the YAML's events (the parser's own iteration, which does not recurse) to
/// refuse nesting deeper than [`MAX_DEPTH`] before the tree is built. A syntax error
/// is reported here too, at the parser's position.
fn check_depth(text: &str) -> std::result::Result<(), (usize, usize, String)> {
    use yaml_rust2::Event;
    let mut parser = yaml_rust2::parser::Parser::new_from_str(text);
    let mut depth = 0usize;
    loop {
        let (event, mark) = parser.next_token().map_err(|e| {
            let m = e.marker();
            (m.line().max(1), m.col() + 1, format!("not valid YAML: {}", e.info()))
        })?;
        match event {
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    let message = format!("lists and mappings nest deeper than {MAX_DEPTH} levels");
                    return Err((mark.line().max(1), mark.col() + 1, message));
                }
            }
            Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
            Event::StreamEnd => return Ok(()),
            _ => {}
        }
    }
}

fn describe_load_error(e: &LoadError) -> (usize, usize, String) {
    let at = |m: &marked_yaml::Marker| (m.line().max(1), m.column().max(1));
    let (mark, message) = match e {
        LoadError::TopLevelMustBeMapping(m) | LoadError::TopLevelMustBeSequence(m) => {
            (at(m), "the file must be a mapping: `rules:` (a list), and optionally `fallback:` and `state:`".into())
        }
        LoadError::UnexpectedAnchor(m) => {
            (at(m), "anchors and aliases (&a, *a) are not supported: write it out".into())
        }
        LoadError::MappingKeyMustBeScalar(m) => (at(m), "a key must be plain text".into()),
        LoadError::UnexpectedTag(m) => (at(m), "tags (!name) are not supported: drop it".into()),
        LoadError::ScanError(m, s) => (at(m), format!("not valid YAML: {}", s.info())),
        LoadError::DuplicateKey(d) => {
            let first = d.prev_key.span().start().map(|m| format!("{}:{}", m.line(), m.column())).unwrap_or_default();
            let second = d.key.span().start().map(at).unwrap_or((1, 1));
            (second, format!("`{}` is given twice in this mapping (first at {first}): keep one", d.key.as_str()))
        }
    };
    (mark.0, mark.1, message)
}

/// Where a node starts as a reader sees it (a block mapping at its first key).
fn start(node: &Node) -> (usize, usize) {
    let marker = match node {
        Node::Mapping(m) => m.iter().next().and_then(|(k, _)| k.span().start()).or(m.span().start()),
        other => other.span().start(),
    };
    marker.map_or((1, 1), |m| (m.line().max(1), m.column().max(1)))
}

fn key_start(key: &MarkedScalarNode) -> (usize, usize) {
    key.span().start().map_or((1, 1), |m| (m.line().max(1), m.column().max(1)))
}

struct Loader<'a> {
    file: &'a str,
    text: &'a str,
    lines: Vec<&'a str>,
    role: Role,
    env: &'a dyn Fn(&str) -> Option<String>,
    /// State slots, by name.
    names: Vec<String>,
    initial: Vec<Value>,
}

/// What a rule's templates and captures may refer to.
struct RuleScope {
    /// Groups of the rule's regex (0: the whole match); `None`: no regex.
    groups: Option<usize>,
}

impl Loader<'_> {
    fn err(&self, (line, column): (usize, usize), kind: RulesErrorKind, message: impl Into<String>) -> RulesError {
        let (line, column) = existing(self.text, line, column);
        RulesError { file: self.file.to_owned(), line, column, kind, message: message.into() }
    }

    /// A position inside a scalar's text (1-based line and column of the text) as a
    /// position in the file: exact for plain and quoted text without escapes, and for
    /// block scalars (`|`, `>`, whose node starts at their first line of text);
    /// best effort otherwise (folded lines, escapes).
    fn in_scalar(&self, node: &Node, line: usize, column: usize) -> (usize, usize) {
        let (l, c) = start(node);
        let quoted = matches!(self.lines.get(l - 1).and_then(|s| s.chars().nth(c - 1)), Some('"' | '\''));
        if line == 1 {
            return (l, c + column - usize::from(!quoted));
        }
        let at = l + line - 1;
        let indent = self.lines.get(at - 1).map_or(0, |s| s.chars().take_while(|&ch| ch == ' ').count());
        (at, indent + column)
    }

    fn mapping<'n>(&self, node: &'n Node, what: &str) -> Result<&'n MarkedMappingNode> {
        node.as_mapping().ok_or_else(|| {
            self.err(start(node), RulesErrorKind::Shape, format!("{what} must be a mapping (key: value lines)"))
        })
    }

    fn check_keys(&self, m: &MarkedMappingNode, allowed: &[&str], what: &str) -> Result<()> {
        for (key, _) in m.iter() {
            if !allowed.contains(&key.as_str()) {
                return Err(self.err(
                    key_start(key),
                    RulesErrorKind::UnknownKey,
                    format!("unknown key `{}` in {what} (expected {})", key.as_str(), allowed.join(", ")),
                ));
            }
        }
        Ok(())
    }

    fn text<'n>(&self, node: &'n Node, what: &str) -> Result<&'n str> {
        match node {
            Node::Scalar(s) => Ok(s.as_str()),
            other => Err(self.err(start(other), RulesErrorKind::Shape, format!("{what} must be text"))),
        }
    }

    fn boolean(&self, node: &Node, what: &str) -> Result<bool> {
        node.as_scalar()
            .and_then(|s| s.as_bool())
            .ok_or_else(|| self.err(start(node), RulesErrorKind::Shape, format!("{what} must be true or false")))
    }

    fn duration(&self, node: &Node, what: &str) -> Result<Duration> {
        let text = self.text(node, what)?.trim();
        let bad = || {
            self.err(
                start(node),
                RulesErrorKind::Value,
                format!("{what}: {text:?} is not a delay (a number and a unit: 250ms, 1.5s, 2m; at most 1h)"),
            )
        };
        let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let (number, unit) = text.split_at(split);
        let number: f64 = number.parse().map_err(|_| bad())?;
        let scale = match unit.trim() {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        let secs = number * scale;
        if !secs.is_finite() || secs > MAX_DELAY.as_secs_f64() {
            return Err(bad());
        }
        Ok(Duration::from_secs_f64(secs))
    }

    /// A YAML value as JSON: plain scalars may be null, booleans or numbers; quoted
    /// ones are always strings.
    fn json(&self, node: &Node) -> Value {
        match node {
            Node::Scalar(s) => {
                if !s.may_coerce() {
                    return Value::String(s.as_str().to_owned());
                }
                match s.as_str() {
                    "" | "~" | "null" | "Null" | "NULL" => Value::Null,
                    text => {
                        if let Some(b) = s.as_bool() {
                            Value::Bool(b)
                        } else if let Ok(i) = text.parse::<i64>() {
                            Value::from(i)
                        } else if let Ok(u) = text.parse::<u64>() {
                            Value::from(u)
                        } else if let Some(n) = text.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
                            Value::Number(n)
                        } else {
                            Value::String(text.to_owned())
                        }
                    }
                }
            }
            Node::Sequence(items) => Value::Array(items.iter().map(|n| self.json(n)).collect()),
            Node::Mapping(m) => Value::Object(m.iter().map(|(k, v)| (k.as_str().to_owned(), self.json(v))).collect()),
        }
    }

    /// One name, or a list of them.
    fn names<'n>(&self, node: &'n Node, what: &str) -> Result<Vec<(&'n str, &'n Node)>> {
        match node {
            Node::Sequence(items) => items.iter().map(|n| Ok((self.text(n, what)?, n))).collect(),
            other => Ok(vec![(self.text(other, what)?, other)]),
        }
    }

    fn slot(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    fn declare(&mut self, name: &str, initial: Value) {
        match self.slot(name) {
            Some(slot) => {
                // A counter's start is 0 unless `state:` gives one; other values
                // start unset.
                if self.initial[slot].is_null() {
                    self.initial[slot] = initial;
                }
            }
            None => {
                self.names.push(name.to_owned());
                self.initial.push(initial);
            }
        }
    }

    fn file_rules(&mut self, root: &Node) -> Result<Rules> {
        let top = self.mapping(root, "the file")?;
        self.check_keys(top, &["rules", "fallback", "state"], "the file")?;
        let rules_node = top.get_node("rules");
        let fallback_node = top.get_node("fallback");
        if rules_node.is_none() && fallback_node.is_none() {
            return Err(self.err(
                start(root),
                RulesErrorKind::Shape,
                "no rules: the file needs `rules:` (a list of rules) or a `fallback:`",
            ));
        }
        let items: Vec<&Node> = match rules_node {
            None => Vec::new(),
            Some(Node::Sequence(items)) => items.iter().collect(),
            Some(other) => {
                return Err(self.err(
                    start(other),
                    RulesErrorKind::Shape,
                    "`rules` must be a list (lines starting with -)",
                ));
            }
        };

        // Pass 1: every state name, so any rule may read what any rule sets.
        if let Some(state) = top.get_node("state") {
            let state = self.mapping(state, "`state`")?;
            for (key, value) in state.iter() {
                self.check_name(key)?;
                let v = self.json(value);
                self.declare(key.as_str(), v);
            }
        }
        for node in items.iter().copied().chain(fallback_node) {
            let Some(rule) = node.as_mapping() else { continue };
            for key in ["capture", "set"] {
                if let Some(m) = rule.get_mapping(key) {
                    for (name, _) in m.iter() {
                        self.check_name(name)?;
                        self.declare(name.as_str(), Value::Null);
                    }
                }
            }
            if let Some(count) = rule.get_node("count") {
                for (name, at) in self.names(count, "`count`")? {
                    if !is_name(name) {
                        return Err(self.err(start(at), RulesErrorKind::Value, bad_name(name)));
                    }
                    self.declare(name, Value::from(0u64));
                }
            }
        }

        // Pass 2: the rules themselves.
        let mut rules = Vec::with_capacity(items.len());
        for (i, node) in items.iter().enumerate() {
            let rule = self.rule(node, Some(i + 1))?;
            if let Some(earlier) = rules.iter().find(|r: &&Rule| r.name == rule.name) {
                let message = format!(
                    "two rules are named {:?}: names mark the frames they change, give each its own",
                    earlier.name
                );
                return Err(self.err(start(node), RulesErrorKind::Value, message));
            }
            rules.push(rule);
        }
        let fallback = fallback_node.map(|n| self.rule(n, None)).transpose()?;
        Ok(Rules {
            source: self.file.to_owned(),
            role: self.role,
            rules,
            fallback,
            state_names: std::mem::take(&mut self.names),
            initial: std::mem::take(&mut self.initial),
        })
    }

    fn check_name(&self, key: &MarkedScalarNode) -> Result<()> {
        if is_name(key.as_str()) {
            Ok(())
        } else {
            Err(self.err(key_start(key), RulesErrorKind::Value, bad_name(key.as_str())))
        }
    }

    /// Rule `number` (1-based), or the fallback (`None`).
    fn rule(&self, node: &Node, number: Option<usize>) -> Result<Rule> {
        let what = match number {
            Some(n) => format!("rule {n}"),
            None => "the fallback".to_owned(),
        };
        let m = self.mapping(node, &what)?;
        let keys: &[&str] = if number.is_some() { RULE_KEYS } else { &RULE_KEYS[2..] };
        self.check_keys(m, keys, &what)?;
        self.check_role(m)?;

        let name: Arc<str> = match (m.get_node("name"), number) {
            (Some(n), _) => self.text(n, "`name`")?.into(),
            (None, Some(n)) => format!("rule {n}").into(),
            (None, None) => "fallback".into(),
        };
        let flows = match m.get_node("direction") {
            None => Flows::Client,
            Some(n) => match self.text(n, "`direction`")? {
                "client" => Flows::Client,
                "upstream" => Flows::Upstream,
                "both" => Flows::Both,
                other => {
                    let message =
                        format!("`direction: {other}`: expected client (client → upstream), upstream or both");
                    return Err(self.err(start(n), RulesErrorKind::Value, message));
                }
            },
        };

        let (mut when, regex) = match m.get_node("match") {
            Some(n) => self.conditions(n)?,
            None => (Vec::new(), None),
        };
        when.sort_by_key(Condition::cost);
        let scope = RuleScope { groups: regex.as_ref().map(|re| re.captures_len() - 1) };
        if let Some(re) = regex {
            when.push(Condition::Regex(re));
            when.sort_by_key(Condition::cost);
        }

        let mut captures = Vec::new();
        if let Some(n) = m.get_node("capture") {
            for (key, spec) in self.mapping(n, "`capture`")?.iter() {
                let slot = self.slot(key.as_str()).unwrap_or_default();
                captures.push((slot, self.capture(spec, &scope)?));
            }
        }
        let mut sets = Vec::new();
        if let Some(n) = m.get_node("set") {
            for (key, value) in self.mapping(n, "`set`")?.iter() {
                sets.push((self.slot(key.as_str()).unwrap_or_default(), self.json(value)));
            }
        }
        let mut counts = Vec::new();
        if let Some(n) = m.get_node("count") {
            for (name, _) in self.names(n, "`count`")? {
                counts.push(self.slot(name).unwrap_or_default());
            }
        }

        let respond = match m.get_node("respond") {
            None => Vec::new(),
            Some(Node::Sequence(items)) => items.iter().map(|n| self.reply(n, &scope)).collect::<Result<_>>()?,
            Some(one) => vec![self.reply(one, &scope)?],
        };
        let broadcast = m.get_node("broadcast").map(|n| self.body(n, "`broadcast`", &scope)).transpose()?;
        let close = m.get_node("close").map(|n| self.close(n)).transpose()?;
        let rewrite = m.get_node("rewrite").map(|n| self.rewrite(n)).transpose()?;
        let drop = m.get_node("drop").map(|n| self.boolean(n, "`drop`")).transpose()?.unwrap_or(false);
        let delay = m.get_node("delay").map(|n| self.duration(n, "`delay`")).transpose()?;

        let needs_groups = captures.iter().any(|(_, c)| matches!(c, Capture::Group(_)))
            || respond.iter().any(|r: &Reply| r.body.needs_groups())
            || broadcast.as_ref().is_some_and(Body::needs_groups);
        Ok(Rule {
            name,
            flows,
            when,
            needs_groups,
            captures,
            sets,
            counts,
            respond,
            broadcast,
            close,
            rewrite,
            drop,
            delay,
        })
    }

    /// What the role cannot do, refused at the key.
    fn check_role(&self, m: &MarkedMappingNode) -> Result<()> {
        for (key, value) in m.iter() {
            let refusal = match (self.role, key.as_str()) {
                (Role::Mock, k @ ("rewrite" | "drop" | "delay")) => Some(format!(
                    "`{k}` is for proxy routes: a mock forwards nothing (answer with `respond`; each answer may have a `delay`)"
                )),
                (Role::Mock, "direction") if value.as_scalar().is_none_or(|s| s.as_str() != "client") => Some(
                    "a mock sees only the client's messages: drop `direction` (it is for proxy routes)".to_owned(),
                ),
                (Role::Proxy, "broadcast") => Some(
                    "`broadcast` is for mock routes: a proxy session has no other sessions to answer (answer the sender with `respond`)"
                        .to_owned(),
                ),
                _ => None,
            };
            if let Some(message) = refusal {
                return Err(self.err(key_start(key), RulesErrorKind::Role, message));
            }
        }
        Ok(())
    }

    /// A rule's `match`: its conditions, and its regex apart (templates and
    /// captures need to know its groups).
    fn conditions(&self, node: &Node) -> Result<(Vec<Condition>, Option<Regex>)> {
        let m = self.mapping(node, "`match`")?;
        self.check_keys(m, MATCH_KEYS, "`match`")?;
        let mut when = Vec::new();
        let mut regex = None;
        if let Some(n) = m.get_node("regex") {
            let spec = self.text(n, "`regex`")?;
            let re = regex::RegexBuilder::new(spec)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| self.err(start(n), RulesErrorKind::Value, format!("bad regex {spec:?}: {e}")))?;
            regex = Some(re);
        }
        match (m.get_node("json"), m.get_node("equals")) {
            (Some(n), equals) => {
                let path = self.path(n, "`json`")?;
                when.push(Condition::Json { path, equals: equals.map(|e| self.json(e)) });
            }
            (None, Some(_)) => {
                let key = m.iter().find(|(k, _)| k.as_str() == "equals").map_or((1, 1), |(k, _)| key_start(k));
                return Err(self.err(
                    key,
                    RulesErrorKind::Shape,
                    "`equals` compares what `json` selects: add `json: $.path`",
                ));
            }
            (None, None) => {}
        }
        if let Some(n) = m.get_node("binary_prefix") {
            when.push(Condition::BinaryPrefix(self.bytes(n, "`binary_prefix`")?));
        }
        if let Some(n) = m.get_node("state") {
            let s = self.mapping(n, "`state` in `match`")?;
            self.check_keys(s, &["name", "equals"], "`state` in `match`")?;
            let name_node = s.get_node("name").ok_or_else(|| {
                self.err(start(n), RulesErrorKind::Shape, "`state` in `match` needs `name` (and optionally `equals`)")
            })?;
            let name = self.text(name_node, "`name`")?;
            let slot = self.slot(name).ok_or_else(|| {
                let message = format!("no rule sets state {name:?}: set it with `capture`, `set` or `count`, or give it a start value under `state:`");
                self.err(start(name_node), RulesErrorKind::Value, message)
            })?;
            when.push(Condition::State { slot, equals: s.get_node("equals").map(|e| self.json(e)) });
        }
        Ok((when, regex))
    }

    fn path(&self, node: &Node, what: &str) -> Result<serde_json_path::JsonPath> {
        let spec = self.text(node, what)?;
        if !spec.starts_with('$') {
            let message =
                format!("{what}: {spec:?} is not a JSONPath: it starts with $ (e.g. $.type or $.items[0].id)");
            return Err(self.err(start(node), RulesErrorKind::Value, message));
        }
        crate::matcher::parse_path(spec).map_err(|(position, message)| {
            let at = self.in_scalar(node, 1, position);
            self.err(at, RulesErrorKind::Value, format!("{what}: bad JSONPath {spec:?}: {message} (RFC 9535)"))
        })
    }

    /// `hex:0102ff` or `base64:AQL/`.
    fn bytes(&self, node: &Node, what: &str) -> Result<Bytes> {
        let spec = self.text(node, what)?;
        let decoded = if let Some(hex) = spec.strip_prefix("hex:") {
            decode_hex(hex)
        } else if let Some(b64) = spec.strip_prefix("base64:") {
            base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()
        } else {
            None
        };
        decoded.map(Bytes::from).ok_or_else(|| {
            let message = format!("{what}: {spec:?} is not bytes: write hex:0102ff or base64:AQL/");
            self.err(start(node), RulesErrorKind::Value, message)
        })
    }

    fn capture(&self, node: &Node, scope: &RuleScope) -> Result<Capture> {
        let spec = self.text(node, "a `capture`")?;
        if let Some(digits) = spec.strip_prefix('$')
            && !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
        {
            let group = digits.parse::<usize>().unwrap_or(usize::MAX);
            return match scope.groups {
                Some(n) if group <= n => Ok(Capture::Group(group)),
                Some(n) => Err(self.err(
                    start(node),
                    RulesErrorKind::Value,
                    format!("`capture`: the rule's regex has no group {group} (it has {n}; $0 is the whole match)"),
                )),
                None => Err(self.err(
                    start(node),
                    RulesErrorKind::Value,
                    format!("`capture`: ${group} is a regex group, and the rule's `match` has no `regex`"),
                )),
            };
        }
        Ok(Capture::Path(self.path(node, "a `capture`")?))
    }

    /// A `respond` item: `text` (templated) or `base64`, with an optional `delay`;
    /// or just the text.
    fn reply(&self, node: &Node, scope: &RuleScope) -> Result<Reply> {
        let delay = match node.as_mapping().and_then(|m| m.get_node("delay")) {
            Some(n) => self.duration(n, "`delay`")?,
            None => Duration::ZERO,
        };
        Ok(Reply { body: self.body_with(node, "a `respond` item", scope, &["text", "base64", "delay"])?, delay })
    }

    fn body(&self, node: &Node, what: &str, scope: &RuleScope) -> Result<Body> {
        self.body_with(node, what, scope, &["text", "base64"])
    }

    fn body_with(&self, node: &Node, what: &str, scope: &RuleScope, keys: &[&str]) -> Result<Body> {
        let m = match node {
            Node::Scalar(_) => return self.template(node, scope).map(Body::Text),
            other => self.mapping(other, what)?,
        };
        self.check_keys(m, keys, what)?;
        match (m.get_node("text"), m.get_node("base64")) {
            (Some(t), None) => self.template(t, scope).map(Body::Text),
            (None, Some(b)) => {
                let spec = self.text(b, "`base64`")?;
                base64::engine::general_purpose::STANDARD.decode(spec.trim()).map(|v| Body::Binary(v.into())).map_err(
                    |e| {
                        self.err(
                            start(b),
                            RulesErrorKind::Value,
                            format!("`base64`: {e} (standard alphabet, with padding)"),
                        )
                    },
                )
            }
            _ => Err(self.err(start(node), RulesErrorKind::Shape, format!("{what} needs one of `text` or `base64`"))),
        }
    }

    fn template(&self, node: &Node, scope: &RuleScope) -> Result<Template> {
        let text = self.text(node, "a message's text")?;
        let state = |name: &str| self.slot(name);
        let parse_scope = Scope { env: self.env, state: Some(&state), groups: scope.groups };
        Template::parse_in(text, &parse_scope).map_err(|e| {
            let at = self.in_scalar(node, e.line, e.column);
            let hint = if e.kind == crate::template::TemplateErrorKind::Unknown {
                " (in rules also $N, a group of the rule's regex, and state.NAME)"
            } else {
                ""
            };
            self.err(at, RulesErrorKind::Value, format!("{e}{hint}"))
        })
    }

    /// `close: 1000`, or `close: {code: 4000, reason: bye}`.
    fn close(&self, node: &Node) -> Result<(u16, String)> {
        let (code_node, reason) = match node {
            Node::Mapping(m) => {
                self.check_keys(m, &["code", "reason"], "`close`")?;
                let code = m.get_node("code").ok_or_else(|| {
                    self.err(start(node), RulesErrorKind::Shape, "`close` needs a `code` (1000 for a normal close)")
                })?;
                let reason = m.get_node("reason").map(|r| self.text(r, "`reason`")).transpose()?.unwrap_or("");
                (code, reason)
            }
            other => (other, ""),
        };
        let code = code_node.as_scalar().and_then(|s| s.as_str().parse::<u16>().ok()).filter(|&c| sendable(c));
        let code = code.ok_or_else(|| {
            let message = "a close code is 1000-1003, 1007-1014 or 3000-4999 (1005, 1006 and 1015 are never sent)";
            self.err(start(code_node), RulesErrorKind::Value, message)
        })?;
        if reason.len() > 123 {
            let message = "a close reason is at most 123 bytes (it must fit a control frame)";
            return Err(self.err(start(node), RulesErrorKind::Value, message));
        }
        Ok((code, reason.to_owned()))
    }

    fn rewrite(&self, node: &Node) -> Result<Rewrite> {
        let m = self.mapping(node, "`rewrite`")?;
        self.check_keys(m, &["replace", "set", "delete"], "`rewrite`")?;
        let mut rw = Rewrite::default();
        if let Some(n) = m.get_node("replace") {
            let items: Vec<&Node> = match n {
                Node::Sequence(items) => items.iter().collect(),
                one => vec![one],
            };
            for item in items {
                let r = self.mapping(item, "a `replace`")?;
                self.check_keys(r, &["regex", "with"], "a `replace`")?;
                let (Some(re), Some(with)) = (r.get_node("regex"), r.get_node("with")) else {
                    return Err(self.err(start(item), RulesErrorKind::Shape, "a `replace` needs `regex` and `with`"));
                };
                let spec = self.text(re, "`regex`")?;
                let regex = regex::RegexBuilder::new(spec)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| self.err(start(re), RulesErrorKind::Value, format!("bad regex {spec:?}: {e}")))?;
                rw.replace.push((regex, self.text(with, "`with`")?.to_owned()));
            }
        }
        if let Some(n) = m.get_node("set") {
            for (key, value) in self.mapping(n, "`set` in `rewrite`")?.iter() {
                let key_node = Node::Scalar(key.clone());
                let parsed = self.path(&key_node, "a `set` path")?;
                rw.set.push(Set::new(key.as_str(), parsed, self.json(value)));
            }
        }
        if let Some(n) = m.get_node("delete") {
            for (_, path) in self.names(n, "`delete`")? {
                rw.delete.push(self.path(path, "a `delete` path")?);
            }
        }
        Ok(rw)
    }
}

/// A state name: a letter or `_`, then letters, digits and `_`.
fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn bad_name(name: &str) -> String {
    format!(
        "{name:?} is not a state name: a letter or _, then letters, digits and _ (it is written {{{{state.NAME}}}})"
    )
}

/// Close codes an endpoint may send (RFC 6455 7.4).
fn sendable(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(s, 16).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn load(text: &str, role: Role) -> Result<Rules> {
        parse("r.yaml", text.as_bytes(), role, &no_env)
    }

    fn refused(text: &str, role: Role) -> RulesError {
        match load(text, role) {
            Ok(r) => panic!("loaded: {:?}", r.names().collect::<Vec<_>>()),
            Err(e) => e,
        }
    }

    fn at(e: &RulesError) -> (usize, usize, RulesErrorKind) {
        (e.line, e.column, e.kind)
    }

    #[test]
    fn a_full_mock_file_loads() {
        let text = r#"
state:
  greeting: hello
rules:
  - name: login
    match: { regex: "^LOGIN (\\w+)" }
    capture: { user: "$1" }
    set: { logged_in: true }
    count: logins
    respond:
      - text: '{"type":"welcome","user":"{{state.user}}","n":{{state.logins}}}'
        delay: 100ms
      - base64: AQID
    broadcast: 'joined {{$1}}'
  - match: { json: "$.type", equals: bye, state: { name: logged_in, equals: true } }
    close: { code: 4000, reason: bye }
  - match: { binary_prefix: "hex:0102" }
    respond: "{{state.greeting}} binary"
fallback:
  respond: [ { text: unknown command } ]
"#;
        let rules = load(text, Role::Mock).unwrap();
        assert_eq!(rules.names().collect::<Vec<_>>(), ["login", "rule 2", "rule 3", "fallback"]);
        assert_eq!(rules.state_names(), ["greeting", "user", "logged_in", "logins"]);
    }

    #[test]
    fn yaml_syntax_errors_have_their_line_and_column() {
        let e = refused("rules:\n  - match: { regex: \"a\"\n    respond: x\n", Role::Mock);
        assert_eq!(e.kind, RulesErrorKind::Syntax, "{e}");
        assert!(e.to_string().starts_with("r.yaml:"), "{e}");
        assert!(e.line >= 2, "{e}");
        let e = refused("rules:\n  - respond: x\n   bad: [\n", Role::Mock);
        assert_eq!(e.kind, RulesErrorKind::Syntax, "{e}");
        let e = refused("rules: []\nrules: []\n", Role::Mock);
        assert_eq!(at(&e), (2, 1, RulesErrorKind::Syntax), "{e}");
        assert!(e.message.contains("given twice"), "{e}");
        let e = refused("a: &x 1\n", Role::Mock);
        assert_eq!(e.kind, RulesErrorKind::Syntax, "{e}");
        let deep = format!("rules: {}{}", "[".repeat(100), "]".repeat(100));
        let e = refused(&deep, Role::Mock);
        assert!(e.message.contains("nest deeper"), "{e}");
        let e = refused("rules:\n  - name: a\n    \x0b", Role::Mock);
        assert_eq!((e.line, e.kind), (3, RulesErrorKind::Syntax), "found by fuzzing: a line that exists: {e}");
        let e = refused("rules:\r  - name: a\r    x: 1\r", Role::Mock);
        assert_eq!((e.line, e.kind), (1, RulesErrorKind::UnknownKey), "\\r breaks YAML lines, not ours: {e}");
        let e = parse("r.yaml", b"rules:\n  - respond: \xff\n", Role::Mock, &no_env).unwrap_err();
        assert_eq!(at(&e), (2, 14, RulesErrorKind::Syntax), "{e}");
    }

    #[test]
    fn unknown_keys_are_refused_where_they_are() {
        let e = refused("rules:\n  - name: a\n    respnd: x\n", Role::Mock);
        assert_eq!(at(&e), (3, 5, RulesErrorKind::UnknownKey), "{e}");
        assert!(e.to_string().starts_with("r.yaml:3:5: unknown key `respnd` in rule 1 (expected name, match"), "{e}");
        let e = refused("rules:\n  - match: { regx: a }\n", Role::Mock);
        assert_eq!(at(&e), (2, 14, RulesErrorKind::UnknownKey), "{e}");
        let e = refused("rule:\n  - respond: x\n", Role::Mock);
        assert_eq!(at(&e), (1, 1, RulesErrorKind::UnknownKey), "{e}");
        let e = refused("fallback:\n  name: x\n", Role::Mock);
        assert_eq!(at(&e), (2, 3, RulesErrorKind::UnknownKey), "{e}");
    }

    #[test]
    fn bad_values_are_refused_at_the_value() {
        let e = refused("rules:\n  - match: { regex: \"(a\" }\n", Role::Mock);
        assert_eq!(at(&e), (2, 21, RulesErrorKind::Value), "{e}");
        assert!(e.message.starts_with("bad regex \"(a\""), "{e}");
        let e = refused("rules:\n  - respond: 'hi {{nope}}'\n", Role::Mock);
        assert_eq!(at(&e), (2, 18, RulesErrorKind::Value), "the template inside the quoted text: {e}");
        assert!(e.message.contains("unknown template {{nope}}") && e.message.contains("state.NAME"), "{e}");
        let e = refused(
            "rules:\n  - respond:\n      - text: |\n          line one\n          x {{state.who}}\n",
            Role::Mock,
        );
        assert_eq!(at(&e), (5, 13, RulesErrorKind::Value), "in a block scalar: {e}");
        assert!(e.message.contains("no rule sets \"who\""), "{e}");
        let e = refused("rules:\n  - match: { json: \"$.a[\" }\n", Role::Mock);
        assert_eq!((e.line, e.kind), (2, RulesErrorKind::Value), "{e}");
        let e = refused("rules:\n  - match: { state: { name: ghost } }\n", Role::Mock);
        assert_eq!(at(&e), (2, 29, RulesErrorKind::Value), "{e}");
        let e = refused("rules:\n  - close: 1005\n", Role::Mock);
        assert_eq!(at(&e), (2, 12, RulesErrorKind::Value), "{e}");
        let e = refused("rules:\n  - respond: { text: a, delay: soon }\n", Role::Mock);
        assert_eq!(e.kind, RulesErrorKind::Value, "{e}");
        let e = refused("rules:\n  - respond: '{{$1}}'\n", Role::Mock);
        assert!(e.message.contains("no `regex`"), "{e}");
        let e = refused("rules:\n  - match: { regex: '(a)' }\n    respond: '{{$2}}'\n", Role::Mock);
        assert!(e.message.contains("no group 2 (it has 1"), "{e}");
        let e = refused("rules:\n  - match: { equals: 1 }\n", Role::Mock);
        assert_eq!(e.kind, RulesErrorKind::Shape, "{e}");
        let e = refused("rules:\n  - name: a\n  - name: a\n", Role::Mock);
        assert_eq!(at(&e), (3, 5, RulesErrorKind::Value), "{e}");
        let e = refused("rules: {}\n", Role::Mock);
        assert_eq!(e.kind, RulesErrorKind::Shape, "{e}");
        let e = refused("state: {}\n", Role::Mock);
        assert_eq!(e.kind, RulesErrorKind::Shape, "{e}");
        let e = refused("rules:\n  - count: 'a b'\n", Role::Mock);
        assert_eq!(e.kind, RulesErrorKind::Value, "{e}");
    }

    #[test]
    fn each_role_refuses_what_it_cannot_do() {
        for (text, col) in [
            ("rules:\n  - rewrite: { delete: $.a }\n", 5),
            ("rules:\n  - drop: true\n", 5),
            ("rules:\n  - delay: 1s\n", 5),
            ("rules:\n  - direction: upstream\n", 5),
        ] {
            let e = refused(text, Role::Mock);
            assert_eq!(at(&e), (2, col, RulesErrorKind::Role), "{text}: {e}");
            load(text, Role::Proxy).unwrap_or_else(|e| panic!("{text}: {e}"));
        }
        load("rules:\n  - direction: client\n", Role::Mock).unwrap();
        let e = refused("rules:\n  - broadcast: hi\n", Role::Proxy);
        assert_eq!(at(&e), (2, 5, RulesErrorKind::Role), "{e}");
        assert!(e.message.starts_with("`broadcast` is for mock routes"), "{e}");
    }

    #[test]
    fn env_is_resolved_at_load() {
        let env = |n: &str| (n == "TOKEN").then(|| "t0k".to_owned());
        parse("r.yaml", b"rules:\n  - respond: '{{env TOKEN}}'\n", Role::Mock, &env).unwrap();
        let e = parse("r.yaml", b"rules:\n  - respond: '{{env NOPE}}'\n", Role::Mock, &env).unwrap_err();
        assert!(e.message.contains("NOPE"), "{e}");
    }
}
