//! Which rooms a connection may join and publish to: patterns from its token's
//! `rooms` claim. A pattern is a room name, or a prefix ending in `*`
//! (`/chat/*` allows `/chat/lobby` and `/chat/a/b`); `*` alone allows every room.

/// A connection's allowed rooms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomPatterns(Vec<String>);

impl RoomPatterns {
    pub fn new(patterns: Vec<String>) -> Self {
        Self(patterns)
    }

    pub fn allows(&self, room: &str) -> bool {
        self.0.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => room.starts_with(prefix),
            None => p == room,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_prefix_and_everything() {
        let p = RoomPatterns::new(vec!["/news".into(), "/chat/*".into()]);
        assert!(p.allows("/news") && p.allows("/chat/lobby") && p.allows("/chat/"));
        assert!(!p.allows("/news/x") && !p.allows("/chat") && !p.allows("/other"));
        assert!(RoomPatterns::new(vec!["*".into()]).allows("/anything"));
        assert!(!RoomPatterns::new(Vec::new()).allows("/anything"));
    }
}
