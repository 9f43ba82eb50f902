//! Session history: every session's facts, lifecycle, errors and messages, kept
//! after the session ends.
//!
//! [`Store`] is the narrow trait the rest of wsgate sees. Three backends implement
//! it: SQLite (the embedded default, one file, WAL), PostgreSQL (several gateway
//! instances sharing one history) and memory (unit tests). The [`recorder`] is the
//! event-bus observer that turns session events into rows and writes them in
//! batches; handlers never touch the store. A running gateway holds a [`lease`] on
//! its instance name, so two gateways sharing a store never close each other's
//! sessions.

pub mod error;
pub mod lease;
pub mod memory;
pub mod model;
pub mod postgres;
pub mod priority;
pub mod recorder;
pub mod retention;
pub mod segment;
mod shared;
pub mod sqlite;
pub mod transcript;
mod url;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use wsgate_core::SessionId;

pub use error::StoreError;
pub use lease::{Claimed, Lease, LeaseHolder};
pub use model::{Batch, EventKind, EventRow, LogEntryRow, MessageRow, Prune, Pruned, RunRow, SessionQuery, SessionRow};
pub use priority::WriterPriority;
pub use url::StoreUrl;

/// Where history is kept. Writes come from one recorder at a time and arrive as
/// batches, one transaction each; reads come from the API and the CLI.
#[async_trait::async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Writes a batch in one transaction: session upserts, then events, then messages.
    async fn write(&self, batch: Batch) -> Result<(), StoreError>;

    /// Sessions matching `query`, newest first, at most `query.limit`.
    async fn sessions(&self, query: &SessionQuery) -> Result<Vec<SessionRow>, StoreError>;

    async fn session(&self, id: SessionId) -> Result<Option<SessionRow>, StoreError>;

    /// The session's lifecycle steps and errors, in order.
    async fn events(&self, id: SessionId) -> Result<Vec<EventRow>, StoreError>;

    /// The session's messages with `seq > after_seq`, in order, at most `limit`.
    async fn messages(&self, id: SessionId, after_seq: u64, limit: usize) -> Result<Vec<MessageRow>, StoreError>;

    /// Claims `lease.instance` for this run, atomically (two gateways starting
    /// together cannot both win). Refused with [`StoreError::InstanceBusy`] while
    /// another run holds a lease on the name that is not gone ([`LeaseHolder::is_gone`]).
    /// Then the restart rule: the instance's sessions left open by its last run, and
    /// those of every instance without a live lease, are closed as by
    /// [`Store::close_expired`].
    async fn claim(&self, lease: &Lease) -> Result<Claimed, StoreError>;

    /// Extends this run's lease by its TTL from now. [`StoreError::LeaseLost`] if it
    /// is no longer in the store.
    async fn renew(&self, lease: &Lease) -> Result<(), StoreError>;

    /// Gives the name up (a clean shutdown, after the last session is recorded).
    async fn release(&self, lease: &Lease) -> Result<(), StoreError>;

    /// The restart rule, for a running gateway holding `asker`: drops the leases that
    /// are gone, and closes every open session whose instance has no live lease (its
    /// gateway crashed, or it was recorded before leases) as DISCONNECTED by the
    /// gateway, reason "gateway stopped", at the time of the last thing recorded for
    /// it. Does nothing but fail with [`StoreError::LeaseLost`] if `asker`'s own lease
    /// is gone, since its sessions would then look abandoned too. Returns how many it
    /// closed.
    async fn close_expired(&self, asker: &Lease) -> Result<u64, StoreError>;

    /// One retention step (see [`Prune`]).
    async fn prune(&self, prune: Prune) -> Result<Pruned, StoreError>;
}

/// The reason the restart rule records.
pub const ORPHAN_REASON: &str = "gateway stopped";

/// Opens the store at `url` (creating and migrating it as needed).
pub async fn open(url: &StoreUrl) -> Result<Arc<dyn Store>, StoreError> {
    open_with(url, WriterPriority::Traffic).await
}

/// Opens the store at `url`, its writer at `priority` (see [`priority`]).
pub async fn open_with(url: &StoreUrl, priority: WriterPriority) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match url {
        StoreUrl::Sqlite(path) => Arc::new(sqlite::SqliteStore::open_with(path, priority).await?),
        StoreUrl::Postgres(url) => Arc::new(postgres::PostgresStore::connect(url).await?),
        StoreUrl::Memory => Arc::new(memory::MemoryStore::default()),
    })
}

/// Now, at the store's precision (microseconds), so a value read back equals the one
/// written.
pub fn now() -> DateTime<Utc> {
    model::from_micros(model::to_micros(Utc::now()))
}
