//! The one rule every session path filter follows — `GET /api/sessions?path=`,
//! `WS /api/live?path=` and `wsgate history list --path`: a session matches when its
//! request path, query included, **starts with** the filter, literally (`/chat`
//! matches `/chat`, `/chat?room=1`, `/chat/7` and `/chatroom`; `/chat?room=1` only
//! that room). The SQL stores apply the same rule with `starts_with(path, …)`, so a
//! filtered page holds exactly what this function would keep.

/// Whether a session at `path` (its path and query) passes the filter `filter`.
pub fn path_matches(filter: &str, path: &str) -> bool {
    path.starts_with(filter)
}

#[cfg(test)]
mod tests {
    use super::path_matches;

    #[test]
    fn a_filter_is_a_literal_prefix_of_path_and_query() {
        for path in ["/chat", "/chat?room=1", "/chat/7", "/chatroom"] {
            assert!(path_matches("/chat", path), "{path}");
        }
        assert!(path_matches("/chat?room=1", "/chat?room=1&x=2"));
        assert!(!path_matches("/chat?room=1", "/chat?room=2"));
        assert!(!path_matches("/chat", "/feed/chat"));
        assert!(path_matches("", "/anything"));
    }
}
