//! A loaded rules file: the ordered rules, the fallback, and the state they share.
//! Built only by [`crate::load`], which checks everything; evaluation
//! ([`crate::conversation`]) cannot fail.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use regex::Regex;
use serde_json::Value;
use serde_json_path::JsonPath;

use crate::load::RulesError;
use crate::template::Template;

/// Who runs the rules, which decides what they may do: a mock answers (`respond`,
/// `broadcast`); a proxy transforms what it forwards (`rewrite`, `drop`, `delay`) and
/// may answer in place (`respond`). Both may `close`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Mock,
    Proxy,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Mock => "mock",
            Role::Proxy => "proxy",
        }
    }
}

/// A checked rules file.
#[derive(Debug)]
pub struct Rules {
    /// Where it came from (the file), for logs and the route table.
    pub source: String,
    pub role: Role,
    pub(crate) rules: Vec<Rule>,
    pub(crate) fallback: Option<Rule>,
    /// Each state name's slot; the index is the slot.
    pub(crate) state_names: Vec<String>,
    /// Each slot's value when a session starts (null: unset; a counter: 0).
    pub(crate) initial: Vec<Value>,
}

impl Rules {
    /// Reads and checks the rules file at `path` for `role`; `env` answers
    /// `{{env NAME}}`.
    pub fn load(path: &Path, role: Role, env: &dyn Fn(&str) -> Option<String>) -> Result<Rules, RulesError> {
        crate::load::load(path, role, env)
    }

    /// Checks a rules file's bytes; `file` names it in errors.
    pub fn parse(
        file: &str,
        text: &[u8],
        role: Role,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Rules, RulesError> {
        crate::load::parse(file, text, role, env)
    }

    /// The rules' names, in order (the fallback last, as `fallback`).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().chain(&self.fallback).map(|r| &*r.name)
    }

    /// Whether any rule, or the fallback, applies to messages going this way: a proxy
    /// whose rules only see the client's messages need not look at the upstream's.
    pub fn sees(&self, flow: crate::Flow) -> bool {
        self.rules.iter().chain(&self.fallback).any(|r| r.flows.sees(flow))
    }

    /// The state names the rules use, in slot order.
    pub fn state_names(&self) -> &[String] {
        &self.state_names
    }
}

/// Which messages a rule sees on a proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flows {
    /// The client's (client → upstream); all a mock sees.
    Client,
    /// The upstream's (upstream → client).
    Upstream,
    Both,
}

impl Flows {
    #[inline]
    pub(crate) fn sees(self, flow: crate::Flow) -> bool {
        matches!(
            (self, flow),
            (Flows::Both, _) | (Flows::Client, crate::Flow::ToUpstream) | (Flows::Upstream, crate::Flow::ToClient)
        )
    }
}

#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) name: Arc<str>,
    pub(crate) flows: Flows,
    /// All must hold; cheapest first (state, binary prefix, regex, JSONPath).
    pub(crate) when: Vec<Condition>,
    /// Some capture or template reads the regex's groups.
    pub(crate) needs_groups: bool,
    pub(crate) captures: Vec<(usize, Capture)>,
    pub(crate) sets: Vec<(usize, Value)>,
    pub(crate) counts: Vec<usize>,
    pub(crate) respond: Vec<Reply>,
    pub(crate) broadcast: Option<Body>,
    pub(crate) close: Option<(u16, String)>,
    pub(crate) rewrite: Option<Rewrite>,
    pub(crate) drop: bool,
    pub(crate) delay: Option<Duration>,
}

#[derive(Debug)]
pub(crate) enum Condition {
    /// A state slot is set (not null), or equals a value (numbers by value).
    State { slot: usize, equals: Option<Value> },
    /// A binary message starting with these bytes.
    BinaryPrefix(Bytes),
    /// A match anywhere in the text (a text message, or a binary one that is UTF-8).
    Regex(Regex),
    /// The text is JSON and the path selects a node (equal to `equals`, if set).
    Json { path: JsonPath, equals: Option<Value> },
}

impl Condition {
    /// Evaluation order: what costs least first.
    pub(crate) fn cost(&self) -> u8 {
        match self {
            Condition::State { .. } => 0,
            Condition::BinaryPrefix(_) => 1,
            Condition::Regex(_) => 2,
            Condition::Json { .. } => 3,
        }
    }
}

#[derive(Debug)]
pub(crate) enum Capture {
    /// The first node the path selects (a string as itself, anything else as JSON).
    Path(JsonPath),
    /// A group of the rule's regex, as text.
    Group(usize),
}

/// One message of a `respond`.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) body: Body,
    /// After the message before it (or the one that matched, for the first).
    pub(crate) delay: Duration,
}

#[derive(Debug)]
pub(crate) enum Body {
    Text(Template),
    Binary(Bytes),
}

impl Body {
    pub(crate) fn needs_groups(&self) -> bool {
        matches!(self, Body::Text(t) if t.needs_groups())
    }
}

/// A proxy's change to a text message, in this order: regex replacements on the
/// text, then JSONPath sets and deletes on it as JSON.
#[derive(Debug, Default)]
pub(crate) struct Rewrite {
    /// `regex` → `with` (the regex crate's replacement syntax: `$1`, `${name}`).
    pub(crate) replace: Vec<(Regex, String)>,
    pub(crate) set: Vec<crate::edit::Set>,
    pub(crate) delete: Vec<JsonPath>,
}
