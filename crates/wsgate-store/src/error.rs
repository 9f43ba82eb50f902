//! Store failures, by what went wrong: the URL, opening, the schema, a query, or an
//! instance lease.

use crate::lease::LeaseHolder;

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
    /// A payload file beside a SQLite history (`sqlite/payload_files.rs`) could not
    /// be written or read.
    #[error("payload file {path}: {source}")]
    PayloadFile { path: String, source: std::io::Error },
    #[error("stored row is corrupt: {0}")]
    Corrupt(String),
    #[error("the store is closed")]
    Closed,
    /// Another running gateway holds the instance name (see [`crate::lease`]).
    #[error(
        "instance {:?} is in use by another running gateway (host {}, pid {}, started {}); its lease expires at {} unless renewed",
        .holder.instance, .holder.host, .holder.pid, .holder.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        .holder.expires_at.format("%Y-%m-%d %H:%M:%S%.3f UTC")
    )]
    InstanceBusy { holder: Box<LeaseHolder> },
    /// This run's lease is no longer in the store: it was not renewed in time and
    /// another gateway treated it as gone.
    #[error("the lease on instance {instance:?} was lost: it was not renewed before it expired")]
    LeaseLost { instance: String },
}

impl From<crate::segment::Damaged> for StoreError {
    fn from(e: crate::segment::Damaged) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}
