//! Where a field is in a YAML file: `routes.1.proxy.upstream` → line 9, column 17,
//! so an error about it can say `wsgate.yaml:9:17`. Best effort: a file this parser
//! reads differently from the config loader simply gets no position.

use std::path::Path;

use marked_yaml::Node;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// The position of the dotted `path` (numbers index lists) in `text`: the key for a
/// mapping entry, the item for a list element. Where the full path is missing, the
/// deepest part that exists.
pub fn in_text(text: &str, path: &str) -> Option<Position> {
    let root = marked_yaml::parse_yaml(0, text).ok()?;
    let mut node = &root;
    let mut found = node.span().start().copied();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let next = match node {
            Node::Mapping(m) => m.iter().find(|(k, _)| k.as_str() == part).map(|(k, v)| (k.span().start().copied(), v)),
            Node::Sequence(s) => part.parse::<usize>().ok().and_then(|i| s.get(i)).map(|v| (start(v), v)),
            Node::Scalar(_) => None,
        };
        let Some((at, child)) = next else { break };
        found = at.or(found);
        node = child;
    }
    found.map(|m| Position { line: m.line(), column: m.column() })
}

/// Where a node starts as a reader sees it: a block mapping at its first key (the
/// parser marks it further right).
fn start(node: &Node) -> Option<marked_yaml::Marker> {
    match node {
        Node::Mapping(m) => m.iter().next().and_then(|(k, _)| k.span().start().copied()).or(m.span().start().copied()),
        other => other.span().start().copied(),
    }
}

/// [`in_text`] on a file (read again: errors are rare, and the loader does not keep it).
pub fn in_file(file: &Path, path: &str) -> Option<Position> {
    in_text(&std::fs::read_to_string(file).ok()?, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_and_list_items() {
        let text = "listen: \"127.0.0.1:8080\"\nroutes:\n  - name: api\n    path: /api/*\n    proxy:\n      upstream: \"ws://x\"\n  - name: echo\n";
        assert_eq!(in_text(text, "listen"), Some(Position { line: 1, column: 1 }));
        assert_eq!(in_text(text, "routes.0.proxy.upstream"), Some(Position { line: 6, column: 7 }));
        assert_eq!(in_text(text, "routes.1"), Some(Position { line: 7, column: 5 }));
        // Missing below an existing part: the deepest part found.
        assert_eq!(in_text(text, "routes.1.mock"), Some(Position { line: 7, column: 5 }));
        assert_eq!(in_text("not: [valid", "not"), None);
    }
}
