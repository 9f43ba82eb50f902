//! Store URLs: `sqlite://PATH` (relative or absolute), `postgres://…` (or
//! `postgresql://…`, any libpq-style URL), `memory://`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Sqlite(PathBuf),
    Postgres(String),
    Memory,
}

impl FromStr for StoreUrl {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why| StoreError::BadUrl { url: s.to_owned(), why };
        if let Some(path) = s.strip_prefix("sqlite://").or_else(|| s.strip_prefix("sqlite:")) {
            if path.is_empty() {
                return Err(bad("no file path after sqlite://"));
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            s.parse::<tokio_postgres::Config>().map_err(|_| bad("not a valid PostgreSQL connection URL"))?;
            return Ok(Self::Postgres(s.to_owned()));
        }
        if s == "memory://" || s == "memory" {
            return Ok(Self::Memory);
        }
        Err(bad("unknown scheme"))
    }
}

impl fmt::Display for StoreUrl {
    /// Shown in logs and the ready line: a PostgreSQL password is never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
            Self::Memory => f.write_str("memory://"),
            Self::Postgres(u) => match (u.find("://"), u.rfind('@')) {
                (Some(scheme), Some(at)) if u[scheme + 3..at].contains(':') => {
                    let user_end = scheme + 3 + u[scheme + 3..at].find(':').unwrap_or(0);
                    write!(f, "{}:***{}", &u[..user_end], &u[at..])
                }
                _ => f.write_str(u),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_scheme_and_hides_passwords() {
        assert_eq!("sqlite://wsgate.db".parse::<StoreUrl>().unwrap(), StoreUrl::Sqlite("wsgate.db".into()));
        assert_eq!("sqlite:///tmp/x.db".parse::<StoreUrl>().unwrap(), StoreUrl::Sqlite("/tmp/x.db".into()));
        assert_eq!("memory://".parse::<StoreUrl>().unwrap(), StoreUrl::Memory);
        let pg: StoreUrl = "postgres://me:secret@localhost:5433/wsgate".parse().unwrap();
        assert_eq!(pg.to_string(), "postgres://me:***@localhost:5433/wsgate");
        assert!("mysql://x".parse::<StoreUrl>().is_err());
        assert!("sqlite://".parse::<StoreUrl>().is_err());
    }
}
