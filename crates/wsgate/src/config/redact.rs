//! The configuration as it may be shown (`wsgate config check`, logs): every secret
//! replaced by a marker, so a pasted output or a CI log never leaks a credential.

use url::Url;

use super::Config;

/// What a secret is replaced with.
pub const REDACTED: &str = "***";

impl Config {
    /// A copy with the admin token and every password in a URL replaced.
    pub fn redacted(&self) -> Config {
        let mut c = self.clone();
        if c.admin_token.as_deref().is_some_and(|t| !t.is_empty()) {
            c.admin_token = Some(REDACTED.into());
        }
        // The store URL's own Display already hides a PostgreSQL password; an
        // unparsable URL is shown as given (it holds no recognisable secret).
        if let Ok(u) = c.store.url.parse::<wsgate_store::StoreUrl>() {
            c.store.url = u.to_string();
        }
        c.proxy.upstream = c.proxy.upstream.map(without_password);
        c.proxy.resolver_url = c.proxy.resolver_url.map(without_password);
        let ais = std::iter::once(&mut c.mock.ai)
            .chain(c.routes.iter_mut().filter_map(|r| r.mock.as_mut().map(|m| &mut m.ai)))
            .flatten();
        for ai in ais {
            ai.url = ai.url.take().map(without_password);
        }
        let hide = |s: &mut Option<String>| {
            if s.as_deref().is_some_and(|t| !t.is_empty()) {
                *s = Some(REDACTED.into());
            }
        };
        hide(&mut c.relay.jwt_secret);
        for r in c.routes.iter_mut().filter_map(|r| r.relay.as_mut()) {
            hide(&mut r.jwt_secret);
        }
        for p in c.routes.iter_mut().filter_map(|r| r.proxy.as_mut()) {
            p.upstream = p.upstream.take().map(without_password);
            p.resolver_url = p.resolver_url.take().map(without_password);
        }
        c
    }
}

fn without_password(mut u: Url) -> Url {
    if u.password().is_some() {
        let _ = u.set_password(Some(REDACTED));
    }
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_replaced_and_the_rest_kept() {
        let mut c = Config { admin_token: Some("s3cret-token".into()), ..Config::default() };
        c.relay.jwt_secret = Some("jwt-shh".into());
        c.store.url = "postgres://app:hunter2@db/wsgate".into();
        c.proxy.upstream = Some(Url::parse("wss://bot:pw@api.example/ws").unwrap_or_else(|e| panic!("{e}")));
        let shown = serde_json::to_string(&c.redacted()).unwrap_or_default();
        for secret in ["s3cret-token", "hunter2", ":pw@", "jwt-shh"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("postgres://app:***@db/wsgate"), "{shown}");
        assert!(shown.contains("wss://bot:***@api.example/ws"), "{shown}");
        assert_eq!(Config::default().redacted().admin_token, None);
    }
}
