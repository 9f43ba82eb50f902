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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::Role;

    fn rules(text: &str, role: Role) -> Arc<Rules> {
        Arc::new(Rules::parse("r.yaml", text.as_bytes(), role, &|_| None).unwrap_or_else(|e| panic!("{e}")))
    }

    fn texts(answers: &[Answer]) -> Vec<String> {
        answers.iter().map(|a| String::from_utf8(a.payload.to_vec()).unwrap()).collect()
    }

    fn say(c: &mut Conversation, text: &str) -> Reaction {
        c.on_client(false, text.as_bytes())
    }

    fn up(c: &mut Conversation, text: &str) -> Transform {
        c.transform(Flow::ToUpstream, false, &Bytes::copy_from_slice(text.as_bytes()))
    }

    fn down(c: &mut Conversation, text: &str) -> Transform {
        c.transform(Flow::ToClient, false, &Bytes::copy_from_slice(text.as_bytes()))
    }

    const CHAT: &str = r#"
rules:
  - name: login
    match: { regex: "^LOGIN (\\w+)$" }
    capture: { user: "$1" }
    set: { logged_in: true }
    count: logins
    respond:
      - text: 'welcome {{state.user}} #{{state.logins}}'
      - text: 'seq {{seq}}'
        delay: 100ms
      - base64: AQID
        delay: 50ms
    broadcast: 'joined {{$1}}'
  - name: whoami
    match: { regex: "^WHO$", state: { name: logged_in, equals: true } }
    respond: '{{state.user}}'
  - name: order
    match: { json: "$.type", equals: order }
    capture: { item: "$.item" }
    respond: '{"ok":true,"item":{{state.item}},"n":{{$.n}}}'
  - name: quit
    match: { regex: "^QUIT" }
    close: { code: 4000, reason: bye }
fallback:
  respond: [ { text: 'unknown command' } ]
"#;

    #[test]
    fn first_match_wins_and_state_carries_across_messages() {
        let mut c = Conversation::new(rules(CHAT, Role::Mock), Some(1));
        let r = say(&mut c, "WHO");
        assert_eq!(r.rule.as_deref(), Some("fallback"), "not logged in yet: the state condition fails");
        assert_eq!(texts(&r.respond), ["unknown command"]);

        let r = say(&mut c, "LOGIN ada");
        assert_eq!(r.rule.as_deref(), Some("login"));
        assert_eq!(texts(&r.respond)[..2], ["welcome ada #1", "seq 3"]);
        assert_eq!(r.respond[2].payload, Bytes::from_static(&[1, 2, 3]));
        assert!(r.respond[2].binary && !r.respond[0].binary);
        let delays: Vec<u64> = r.respond.iter().map(|a| a.delay.as_millis() as u64).collect();
        assert_eq!(delays, [0, 100, 150], "each delay after the answer before it");
        assert_eq!(texts(&[r.broadcast.unwrap()]), ["joined ada"]);
        assert_eq!(c.state("logged_in"), Some(&json!(true)));

        assert_eq!(texts(&say(&mut c, "WHO").respond), ["ada"]);
        let r = say(&mut c, "LOGIN bob");
        assert_eq!(texts(&r.respond)[0], "welcome bob #2", "the counter counts");

        let r = say(&mut c, r#"{"type":"order","item":{"id":7},"n":2.5}"#);
        assert_eq!(texts(&r.respond), [r#"{"ok":true,"item":{"id":7},"n":2.5}"#]);
        assert_eq!(say(&mut c, r#"{"type":"Order"}"#).rule.as_deref(), Some("fallback"));

        let r = say(&mut c, "QUIT now");
        assert_eq!(r.close, Some((4000, "bye".to_owned())));
        assert!(r.respond.is_empty());
    }

    #[test]
    fn no_fallback_no_answer() {
        let mut c = Conversation::new(rules("rules:\n  - match: { regex: a }\n    respond: x\n", Role::Mock), None);
        let r = say(&mut c, "b");
        assert!(r.rule.is_none() && r.respond.is_empty() && r.close.is_none());
    }

    #[test]
    fn binary_prefix_matches_binary_messages_only() {
        let text = "rules:\n  - match: { binary_prefix: 'hex:0102' }\n    respond: bin\n";
        let mut c = Conversation::new(rules(text, Role::Mock), None);
        assert_eq!(c.on_client(true, &[1, 2, 3]).rule.as_deref(), Some("rule 1"));
        assert!(c.on_client(true, &[1, 3]).rule.is_none());
        assert!(c.on_client(false, &[1, 2, 3]).rule.is_none(), "a text message");
    }

    #[test]
    fn same_seed_same_answers() {
        let text = "rules:\n  - respond: '{{uuid}} {{randInt 1 1000000}}'\n";
        let r = rules(text, Role::Mock);
        let a = texts(&say(&mut Conversation::new(r.clone(), Some(9)), "x").respond);
        let b = texts(&say(&mut Conversation::new(r.clone(), Some(9)), "x").respond);
        let c = texts(&say(&mut Conversation::new(r, Some(10)), "x").respond);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    const PROXY: &str = r#"
rules:
  - name: hide
    match: { json: "$.type", equals: login }
    rewrite: { delete: ["$.password"], set: { "$.via": wsgate } }
  - name: rename
    direction: upstream
    match: { regex: "colour" }
    rewrite: { replace: { regex: "colou?r", with: "color" } }
  - name: ping
    direction: both
    match: { regex: "^ping$" }
    drop: true
    respond: pong
  - name: slow
    match: { regex: "^slow" }
    delay: 200ms
  - name: count
    match: { regex: "^tick" }
    count: ticks
  - name: enough
    match: { regex: "^tock", state: { name: ticks, equals: 2 } }
    close: { code: 1008, reason: "too many" }
"#;

    #[test]
    fn proxy_transforms() {
        let mut c = Conversation::new(rules(PROXY, Role::Proxy), None);
        let t = up(&mut c, r#"{"type":"login","user":"ada","password":"s3cret"}"#);
        assert_eq!(t.rule.as_deref(), Some("hide"));
        let Forward::Replace(b) = &t.forward else { panic!("{t:?}") };
        let v: Value = serde_json::from_slice(b).unwrap();
        assert_eq!(v, json!({"type": "login", "user": "ada", "via": "wsgate"}));

        let t = down(&mut c, "the colour is red");
        assert_eq!(t.rule.as_deref(), Some("rename"));
        assert_eq!(t.forward, Forward::Replace(Bytes::from_static(b"the color is red")));
        assert!(!up(&mut c, "the colour").applied(), "the rule sees the upstream's messages only");

        for t in [up(&mut c, "ping"), down(&mut c, "ping")] {
            assert_eq!((t.rule.as_deref(), &t.forward), (Some("ping"), &Forward::Drop));
            assert_eq!(texts(&t.answers), ["pong"], "answered in place");
        }

        let t = up(&mut c, "slow down");
        assert_eq!((t.forward.clone(), t.delay), (Forward::Unchanged, Some(Duration::from_millis(200))));

        assert!(up(&mut c, "tock").rule.is_none(), "no ticks yet");
        up(&mut c, "tick");
        up(&mut c, "tick");
        let t = up(&mut c, "tock");
        assert_eq!(t.close, Some((1008, "too many".to_owned())));
    }

    #[test]
    fn proxy_leaves_what_it_cannot_rewrite() {
        let mut c = Conversation::new(rules(PROXY, Role::Proxy), None);
        let t = c.transform(Flow::ToUpstream, true, &Bytes::from_static(br#"{"type":"login","password":1}"#));
        assert_eq!(
            (t.rule.as_deref(), t.forward),
            (Some("hide"), Forward::Unchanged),
            "binary: matched, not rewritten"
        );
        let t = down(&mut c, "no change here");
        assert_eq!(t.forward, Forward::Unchanged);
        assert!(t.rule.is_none());
        let text = "rules:\n  - rewrite: { set: { '$.x': 1 } }\n";
        let mut c = Conversation::new(rules(text, Role::Proxy), None);
        assert_eq!(up(&mut c, "not json").forward, Forward::Unchanged);
        assert_eq!(up(&mut c, r#"{"x":1}"#).forward, Forward::Unchanged, "set to what it was");
    }

    #[test]
    fn no_match_allocates_nothing_and_parses_no_json() {
        // A no-op rule that never matches: the proxy's fast path.
        let text = "rules:\n  - match: { regex: '^never$' }\n    drop: true\n";
        let mut c = Conversation::new(rules(text, Role::Proxy), None);
        let payload = Bytes::from_static(br#"{"type":"x"}"#);
        let t = c.transform(Flow::ToUpstream, false, &payload);
        assert!(t.rule.is_none() && t.answers.capacity() == 0 && t.forward == Forward::Unchanged);
        let seen = Seen::new(false, &payload);
        assert!(find(&c.rules, &c.state, Flow::ToUpstream, &seen).is_none());
        assert!(seen.json.get().is_none(), "no rule asked for JSON");
        assert!(!c.rules.sees(Flow::ToClient), "nothing to look at upstream → client");
    }
}
