//! Store failures, by what went wrong: the URL, opening, the schema, or a query.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid store URL {url:?}: {why} (use sqlite://PATH, postgres://USER@HOST/DB or memory://)")]
    BadUrl { url: String, why: &'static str },
    #[error("cannot open the SQLite store {path}: {source}")]
    OpenSqlite { path: String, source: rusqlite::Error },
    #[error("cannot connect to the PostgreSQL store {url}: {source}")]
    ConnectPostgres { url: String, source: tokio_postgres::Error },
    #[error("the store's schema is version {found}, newer than this wsgate knows ({known}); upgrade wsgate")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("stored row is corrupt: {0}")]
    Corrupt(String),
    #[error("the store is closed")]
    Closed,
}
