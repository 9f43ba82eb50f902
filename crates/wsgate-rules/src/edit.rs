//! JSONPath edits on a message a proxy forwards: set every node a path selects to a
//! value (creating it when the path is a plain `$.a.b` chain that selects nothing
//! yet), or delete every node it selects.

use std::cmp::Ordering;

use serde_json::Value;
use serde_json_path::JsonPath;

/// One `set` of a rewrite.
#[derive(Debug)]
pub struct Set {
    pub(crate) path: JsonPath,
    /// The names of a plain `$.a.b` path, so a missing member can be created; `None`
    /// for any other path, which only replaces what it selects.
    pub(crate) create: Option<Vec<String>>,
    pub(crate) value: Value,
}

impl Set {
    /// `path` as written (already parsed as `parsed`), and the value it sets.
    pub fn new(path: &str, parsed: JsonPath, value: Value) -> Set {
        Set { path: parsed, create: plain_names(path), value }
    }

    /// Sets every node the path selects; creates the member of a plain path that
    /// selects nothing (inside objects only). Whether `doc` changed.
    pub fn apply(&self, doc: &mut Value) -> bool {
        let found = locations(&self.path, doc);
        if found.is_empty() {
            return match &self.create {
                Some(names) => create(doc, names, &self.value),
                None => false,
            };
        }
        let mut changed = false;
        for steps in found {
            if let Some(node) = walk(doc, &steps)
                && *node != self.value
            {
                *node = self.value.clone();
                changed = true;
            }
        }
        changed
    }
}

/// Deletes every node `path` selects (the root itself is left alone). Whether `doc`
/// changed.
pub fn delete(path: &JsonPath, doc: &mut Value) -> bool {
    let mut found = locations(path, doc);
    // Deepest and highest index first, so removing one does not move the next.
    found.sort_by(|a, b| compare(b, a));
    found.dedup();
    let mut changed = false;
    for steps in found {
        let Some((last, parent)) = steps.split_last() else { continue };
        let removed = match (walk(doc, parent), last) {
            (Some(Value::Object(map)), Step::Name(name)) => map.remove(name).is_some(),
            (Some(Value::Array(items)), Step::Index(i)) if *i < items.len() => {
                items.remove(*i);
                true
            }
            _ => false,
        };
        changed |= removed;
    }
    changed
}

/// One step of a located node's path, owned so the document can be changed after
/// the query that found it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Name(String),
    Index(usize),
}

fn locations(path: &JsonPath, doc: &Value) -> Vec<Vec<Step>> {
    path.query_located(doc)
        .locations()
        .map(|loc| {
            loc.iter()
                .map(|e| match e.as_index() {
                    Some(i) => Step::Index(i),
                    None => Step::Name(e.as_name().unwrap_or_default().to_owned()),
                })
                .collect()
        })
        .collect()
}

fn compare(a: &[Step], b: &[Step]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = match (x, y) {
            (Step::Index(x), Step::Index(y)) => x.cmp(y),
            (Step::Name(x), Step::Name(y)) => x.cmp(y),
            (Step::Index(_), Step::Name(_)) => Ordering::Less,
            (Step::Name(_), Step::Index(_)) => Ordering::Greater,
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

fn walk<'v>(doc: &'v mut Value, steps: &[Step]) -> Option<&'v mut Value> {
    let mut node = doc;
    for step in steps {
        node = match (node, step) {
            (Value::Object(map), Step::Name(name)) => map.get_mut(name)?,
            (Value::Array(items), Step::Index(i)) => items.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(node)
}

/// Creates `names` as nested members down from `doc`, the last set to `value`; not
/// through anything that is not an object.
fn create(doc: &mut Value, names: &[String], value: &Value) -> bool {
    let Some((last, parents)) = names.split_last() else { return false };
    let mut node = doc;
    for name in parents {
        let Value::Object(map) = node else { return false };
        node = map.entry(name.clone()).or_insert_with(|| Value::Object(Default::default()));
    }
    let Value::Object(map) = node else { return false };
    map.insert(last.clone(), value.clone());
    true
}

/// `$.a.b_c` → `["a", "b_c"]`; `None` for anything else (brackets, wildcards,
/// filters, `..`).
fn plain_names(path: &str) -> Option<Vec<String>> {
    let rest = path.strip_prefix('$')?;
    let mut names = Vec::new();
    for part in rest.split('.').skip(1) {
        let mut chars = part.chars();
        let first = chars.next()?;
        if !(first.is_alphabetic() || first == '_') || !chars.all(|c| c.is_alphanumeric() || c == '_' || c == '-') {
            return None;
        }
        names.push(part.to_owned());
    }
    // `rest` must be exactly the dotted names: `$` alone, or `$x`, is not a chain.
    (!names.is_empty() && rest.starts_with('.')).then_some(names)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn set(path: &str, value: Value, mut doc: Value) -> (bool, Value) {
        let s = Set::new(path, crate::matcher::parse_path(path).unwrap(), value);
        (s.apply(&mut doc), doc)
    }

    fn del(path: &str, mut doc: Value) -> (bool, Value) {
        (delete(&crate::matcher::parse_path(path).unwrap(), &mut doc), doc)
    }

    #[test]
    fn set_replaces_what_is_selected_and_creates_plain_members() {
        assert_eq!(set("$.x", json!(1), json!({"x": 0, "y": 2})), (true, json!({"x": 1, "y": 2})));
        assert_eq!(set("$.x", json!(1), json!({"x": 1})), (false, json!({"x": 1})), "unchanged");
        assert_eq!(set("$.a.b", json!("v"), json!({})), (true, json!({"a": {"b": "v"}})), "created");
        assert_eq!(set("$.a.b", json!("v"), json!({"a": 3})), (false, json!({"a": 3})), "not through a number");
        assert_eq!(
            set("$.items[*].ok", json!(true), json!({"items": [{"ok": false}, {"ok": 0}]})).1,
            json!({"items": [{"ok": true}, {"ok": true}]})
        );
        assert_eq!(
            set("$.items[5]", json!(1), json!({"items": []})),
            (false, json!({"items": []})),
            "no index created"
        );
        assert_eq!(set("$.x", json!(1), json!([1])), (false, json!([1])), "not into an array");
    }

    #[test]
    fn delete_removes_every_selected_node() {
        assert_eq!(del("$.secret", json!({"secret": 1, "a": 2})), (true, json!({"a": 2})));
        assert_eq!(del("$.secret", json!({"a": 2})), (false, json!({"a": 2})));
        assert_eq!(
            del("$.items[*]", json!({"items": [1, 2, 3]})),
            (true, json!({"items": []})),
            "indices do not shift under it"
        );
        assert_eq!(
            del("$..token", json!({"token": 1, "a": {"token": 2, "b": [{"token": 3}]}})).1,
            json!({"a": {"b": [{}]}})
        );
        assert_eq!(del("$", json!({"a": 1})), (false, json!({"a": 1})), "the root stays");
        assert_eq!(
            del("$.items[0,0]", json!({"items": [1, 2]})).1,
            json!({"items": [2]}),
            "a node listed twice is deleted once"
        );
    }

    #[test]
    fn plain_paths() {
        assert_eq!(plain_names("$.a.b_c.d-e"), Some(vec!["a".into(), "b_c".into(), "d-e".into()]));
        for other in ["$", "$a", "$.a[0]", "$..a", "$.*", "$.a.", "$['a']", "$.1a"] {
            assert_eq!(plain_names(other), None, "{other}");
        }
    }
}
