//! One session's run of the rules: its state, its RNG and message count, and the two
//! entry points — [`Conversation::on_client`] for the mock (what to answer) and
//! [`Conversation::transform`] for the proxy (what to do with a message it forwards).
//!
//! The first rule that sees the message's direction and whose conditions all hold
//! applies; the fallback when none does. Applying a rule first updates the state
//! (`capture`, then `set`, then `count`), so its templates read the new values, then
//! renders what it sends. A message is decoded as UTF-8 only when a condition reads
//! text and parsed as JSON only when a rule it reaches needs JSON, once either way;
//! when nothing matches, nothing is allocated.

use std::cell::OnceCell;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use regex::Captures;
use serde_json::Value;

use crate::matcher::same_value;
use crate::rule::{Body, Capture, Condition, Rule, Rules};
use crate::template::RenderContext;

/// Which way a proxied message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// From the client, to the upstream (what a mock receives).
    ToUpstream,
    /// From the upstream, to the client.
    ToClient,
}

/// A message a rule sends (a `respond` item, a `broadcast`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub payload: Bytes,
    /// A binary message; a text one (UTF-8) otherwise.
    pub binary: bool,
    /// How long after the message that matched it is due. The answers of one
    /// reaction are in order, their delays never decreasing.
    pub delay: Duration,
}

/// What the mock does about one client message.
#[derive(Debug, Default)]
pub struct Reaction {
    /// The rule that applied (`fallback` for the fallback); `None`: no rule matched
    /// and there is no fallback — the message goes unanswered.
    pub rule: Option<Arc<str>>,
    /// Sent back to the client, in order, each at its delay.
    pub respond: Vec<Answer>,
    /// Sent to the route's other sessions, at once.
    pub broadcast: Option<Answer>,
    /// Close the session with this code and reason, after the last answer.
    pub close: Option<(u16, String)>,
}

/// What a proxy does with a whole data message it is forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forward {
    /// As received.
    Unchanged,
    /// This payload instead, with the same opcode.
    Replace(Bytes),
    /// Not at all.
    Drop,
}

/// What to do with one message on a proxy.
#[derive(Debug)]
pub struct Transform {
    /// The applied rule's name (for the live stream and history); `None`: nothing
    /// matched, forward it unchanged (and nothing else is set).
    pub rule: Option<Arc<str>>,
    pub forward: Forward,
    /// Hold the (forwarded) message this long first.
    pub delay: Option<Duration>,
    /// Sent back to the message's sender (answer in place), in order, each at its delay.
    pub answers: Vec<Answer>,
    /// Close the session with this code and reason.
    pub close: Option<(u16, String)>,
}

impl Transform {
    /// Nothing matched: forward unchanged. Allocates nothing.
    pub const NONE: Transform =
        Transform { rule: None, forward: Forward::Unchanged, delay: None, answers: Vec::new(), close: None };

    /// Whether a rule applied.
    pub fn applied(&self) -> bool {
        self.rule.is_some()
    }
}

/// One session's rules, state and randomness.
#[derive(Debug)]
pub struct Conversation {
    rules: Arc<Rules>,
    state: Vec<Value>,
    rng: fastrand::Rng,
    /// Messages rendered so far (`{{seq}}` is this, counting the one being rendered).
    sent: u64,
}

/// The message being matched, decoded only as far as some rule asks.
struct Seen<'p> {
    binary: bool,
    payload: &'p [u8],
    text: OnceCell<Option<&'p str>>,
    json: OnceCell<Option<Value>>,
}

impl<'p> Seen<'p> {
    fn new(binary: bool, payload: &'p [u8]) -> Self {
        Seen { binary, payload, text: OnceCell::new(), json: OnceCell::new() }
    }

    /// A text message, or a binary one that is UTF-8 (as the replay's `waitFor`).
    fn text(&self) -> Option<&'p str> {
        *self.text.get_or_init(|| std::str::from_utf8(self.payload).ok())
    }

    fn json(&self) -> Option<&Value> {
        self.json.get_or_init(|| self.text().and_then(|t| serde_json::from_str(t).ok())).as_ref()
    }
}

impl Conversation {
    /// A session's start: the file's start values, and an RNG from `seed` (every
    /// session the same sequence) or from entropy.
    pub fn new(rules: Arc<Rules>, seed: Option<u64>) -> Self {
        let state = rules.initial.clone();
        let rng = seed.map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
        Conversation { rules, state, rng, sent: 0 }
    }

    /// The value of the state `name` (null while unset); `None` if no rule uses it.
    pub fn state(&self, name: &str) -> Option<&Value> {
        let slot = self.rules.state_names.iter().position(|n| n == name)?;
        self.state.get(slot)
    }

    /// The mock's entry point: a client message, and what to answer.
    pub fn on_client(&mut self, binary: bool, payload: &[u8]) -> Reaction {
        let seen = Seen::new(binary, payload);
        let Some((index, groups)) = find(&self.rules, &self.state, crate::Flow::ToUpstream, &seen) else {
            return Reaction::default();
        };
        let rules = self.rules.clone();
        let Some(rule) = rules.rule(index) else { return Reaction::default() };
        self.update(rule, &seen, groups.as_ref());
        let respond = self.respond(rule, &seen, groups.as_ref());
        let broadcast = rule.broadcast.as_ref().map(|body| Answer {
            payload: self.render(body, &seen, groups.as_ref()),
            binary: matches!(body, Body::Binary(_)),
            delay: Duration::ZERO,
        });
        Reaction { rule: Some(rule.name.clone()), respond, broadcast, close: rule.close.clone() }
    }

    /// The proxy's entry point: a whole data message going `flow`, and what to do
    /// with it. When no rule applies this returns [`Transform::NONE`] without
    /// allocating (and without parsing JSON unless a rule it tried needs it).
    pub fn transform(&mut self, flow: Flow, binary: bool, payload: &Bytes) -> Transform {
        let seen = Seen::new(binary, payload);
        let Some((index, groups)) = find(&self.rules, &self.state, flow, &seen) else {
            return Transform::NONE;
        };
        let rules = self.rules.clone();
        let Some(rule) = rules.rule(index) else { return Transform::NONE };
        self.update(rule, &seen, groups.as_ref());
        let answers = self.respond(rule, &seen, groups.as_ref());
        let forward = if rule.drop {
            Forward::Drop
        } else {
            match (&rule.rewrite, seen.text()) {
                (Some(rw), Some(text)) if !binary => rewrite(rw, text, &seen),
                _ => Forward::Unchanged,
            }
        };
        Transform { rule: Some(rule.name.clone()), forward, delay: rule.delay, answers, close: rule.close.clone() }
    }

    fn update(&mut self, rule: &Rule, seen: &Seen<'_>, groups: Option<&Captures<'_>>) {
        for (slot, capture) in &rule.captures {
            let value = match capture {
                Capture::Path(path) => seen.json().and_then(|j| path.query(j).first().cloned()),
                Capture::Group(i) => groups.and_then(|c| c.get(*i)).map(|m| Value::String(m.as_str().to_owned())),
            };
            if let (Some(value), Some(place)) = (value, self.state.get_mut(*slot)) {
                *place = value;
            }
        }
        for (slot, value) in &rule.sets {
            if let Some(place) = self.state.get_mut(*slot) {
                *place = value.clone();
            }
        }
        for slot in &rule.counts {
            if let Some(place) = self.state.get_mut(*slot) {
                let n = place.as_u64().unwrap_or(0).saturating_add(1);
                *place = Value::from(n);
            }
        }
    }

    fn respond(&mut self, rule: &Rule, seen: &Seen<'_>, groups: Option<&Captures<'_>>) -> Vec<Answer> {
        let mut at = Duration::ZERO;
        let mut out = Vec::with_capacity(rule.respond.len());
        for reply in &rule.respond {
            at = at.saturating_add(reply.delay);
            let payload = self.render(&reply.body, seen, groups);
            out.push(Answer { payload, binary: matches!(reply.body, Body::Binary(_)), delay: at });
        }
        out
    }

    fn render(&mut self, body: &Body, seen: &Seen<'_>, groups: Option<&Captures<'_>>) -> Bytes {
        self.sent += 1;
        match body {
            Body::Binary(b) => b.clone(),
            Body::Text(t) => {
                if let Some(fixed) = t.as_static() {
                    return Bytes::copy_from_slice(fixed.as_bytes());
                }
                let last_match = if t.needs_json() { seen.json() } else { None };
                let mut cx = RenderContext {
                    rng: &mut self.rng,
                    now: chrono::Utc::now(),
                    seq: self.sent,
                    last_match,
                    state: &self.state,
                    groups,
                };
                Bytes::from(t.render(&mut cx))
            }
        }
    }
}

impl Rules {
    /// Rule `index` as [`find`] numbers them: past the rules, the fallback.
    fn rule(&self, index: usize) -> Option<&Rule> {
        self.rules.get(index).or(self.fallback.as_ref())
    }
}

/// The first rule that applies to `seen` (its index; `rules.len()` for the
/// fallback) and its regex's groups when it reads them.
fn find<'p>(rules: &Rules, state: &[Value], flow: Flow, seen: &Seen<'p>) -> Option<(usize, Option<Captures<'p>>)> {
    for (i, rule) in rules.rules.iter().enumerate() {
        if !rule.flows.sees(flow) {
            continue;
        }
        if let Some(groups) = holds(rule, state, seen) {
            return Some((i, groups));
        }
    }
    let fallback = rules.fallback.as_ref()?;
    fallback.flows.sees(flow).then_some((rules.rules.len(), None))
}

/// `Some` when every condition holds, with the regex's groups if the rule reads them.
fn holds<'p>(rule: &Rule, state: &[Value], seen: &Seen<'p>) -> Option<Option<Captures<'p>>> {
    let mut groups = None;
    for condition in &rule.when {
        let ok = match condition {
            Condition::State { slot, equals } => match (state.get(*slot), equals) {
                (Some(v), None) => !v.is_null(),
                (Some(v), Some(want)) => same_value(v, want),
                (None, _) => false,
            },
            Condition::BinaryPrefix(prefix) => seen.binary && seen.payload.starts_with(prefix),
            Condition::Regex(re) => match seen.text() {
                Some(text) if rule.needs_groups => {
                    groups = re.captures(text);
                    groups.is_some()
                }
                Some(text) => re.is_match(text),
                None => false,
            },
            Condition::Json { path, equals } => match seen.json() {
                Some(json) => {
                    let nodes = path.query(json);
                    match equals {
                        None => !nodes.is_empty(),
                        Some(want) => nodes.iter().any(|n| same_value(n, want)),
                    }
                }
                None => false,
            },
        };
        if !ok {
            return None;
        }
    }
    Some(groups)
}

/// A text message rewritten: the replacements, then the JSON edits (skipped when the
/// text is not JSON). `Unchanged` when nothing changed.
fn rewrite(rw: &crate::rule::Rewrite, text: &str, seen: &Seen<'_>) -> Forward {
    let mut current = std::borrow::Cow::Borrowed(text);
    for (re, with) in &rw.replace {
        if let std::borrow::Cow::Owned(s) = re.replace_all(&current, with.as_str()) {
            current = std::borrow::Cow::Owned(s);
        }
    }
    let mut replaced = matches!(current, std::borrow::Cow::Owned(_));
    if !rw.set.is_empty() || !rw.delete.is_empty() {
        let parsed = if replaced { serde_json::from_str(&current).ok() } else { seen.json().cloned() };
        if let Some(mut doc) = parsed {
            let mut edited = false;
            for set in &rw.set {
                edited |= set.apply(&mut doc);
            }
            for path in &rw.delete {
                edited |= crate::edit::delete(path, &mut doc);
            }
            if edited {
                current = std::borrow::Cow::Owned(doc.to_string());
                replaced = true;
            }
        }
    }
    if replaced && current != text { Forward::Replace(Bytes::from(current.into_owned())) } else { Forward::Unchanged }
}
