//! The PostgreSQL backend, for several gateway instances sharing one history.
//!
//! One connection writes (owned by a task that takes batches from a small queue:
//! sessions and events as prepared statements, one transaction per batch); another
//! serves reads, which tokio-postgres pipelines.
//!
//! Messages are stored as SQLite stores them: each session's frames of a batch are one
//! row of `message_segments` (`segment.rs`: a compact per-frame index and the payloads
//! back to back), written by binary `COPY`, so a frame costs a few bytes of index and a
//! copy rather than a row and an index entry. Histories written before schema 4 keep
//! a row per frame in `messages`; reads merge both by seq, the restart rule counts
//! both, and retention by count takes those rows first (they are the oldest), then
//! cuts the oldest segment rather than dropping it whole.
//!
//! Migrations run under an advisory lock, so instances starting together do not race;
//! so does every change to instance leases (claim, renew, close expired), which
//! keeps a claim atomic and the restart rule from closing a session twice, and every
//! retention step, which keeps two gateways from deleting the same excess twice.

use futures_util::pin_mut;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls, Row, Transaction};
use wsgate_core::{Direction, Initiator, SessionId, SessionKind, State};

use crate::lease::{Claimed, Lease, LeaseHolder};
use crate::memory::orphan_detail;
use crate::model::{
    Batch, EventKind, EventRow, LogEntryRow, MessageRow, Prune, Pruned, RunRow, SessionQuery, SessionRow, from_micros,
    to_micros,
};
use crate::{ORPHAN_REASON, Store, StoreError, segment, shared};

const MIGRATIONS: &[&str] = &[
    include_str!("postgres/0001_init.sql"),
    include_str!("postgres/0002_instance_leases.sql"),
    include_str!("postgres/0003_shared_logs.sql"),
    include_str!("postgres/0004_message_segments.sql"),
];

/// Any constant works; it only has to be the same in every wsgate.
const MIGRATION_LOCK: i64 = 0x7773_6761_7465;
/// Held (per transaction) by every change to `instance_leases`.
const LEASE_LOCK: i64 = MIGRATION_LOCK + 1;
/// Held (per transaction) by every retention step: two gateways pruning at once would
/// each count what is over from the same totals, and delete it twice.
const PRUNE_LOCK: i64 = MIGRATION_LOCK + 2;

enum Job {
    Write(Batch, oneshot::Sender<Result<(), StoreError>>),
    Claim(Lease, oneshot::Sender<Result<Claimed, StoreError>>),
    Renew(Lease, oneshot::Sender<Result<(), StoreError>>),
    Release(Lease, oneshot::Sender<Result<(), StoreError>>),
    CloseExpired(Lease, oneshot::Sender<Result<u64, StoreError>>),
    Prune(Prune, oneshot::Sender<Result<Pruned, StoreError>>),
}

pub struct PostgresStore {
    jobs: mpsc::Sender<Job>,
    reader: Client,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish()
    }
}

async fn connect_one(url: &str) -> Result<Client, StoreError> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.map_err(|source| StoreError::ConnectPostgres {
        url: crate::StoreUrl::Postgres(url.into()).to_string(),
        source,
    })?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(error = %e, "PostgreSQL store connection ended");
        }
    });
    Ok(client)
}

async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS wsgate_schema (version integer NOT NULL)").await?;
    let version: i64 = tx.query_one("SELECT coalesce(max(version), 0)::bigint FROM wsgate_schema", &[]).await?.get(0);
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::SchemaTooNew { found: version, known });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.batch_execute(sql).await?;
        tx.execute("INSERT INTO wsgate_schema (version) VALUES ($1)", &[&((i + 1) as i32)]).await?;
    }
    tx.commit().await?;
    Ok(())
}

impl PostgresStore {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let mut writer = connect_one(url).await?;
        migrate(&mut writer).await?;
        let reader = connect_one(url).await?;
        let (jobs, mut rx) = mpsc::channel::<Job>(2);
        tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                match job {
                    Job::Write(b, reply) => {
                        let _ = reply.send(write_batch(&mut writer, &b).await);
                    }
                    Job::Claim(lease, reply) => {
                        let _ = reply.send(claim(&mut writer, &lease).await);
                    }
                    Job::Renew(lease, reply) => {
                        let _ = reply.send(renew(&mut writer, &lease).await);
                    }
                    Job::Release(lease, reply) => {
                        let _ = reply.send(release(&writer, &lease).await);
                    }
                    Job::CloseExpired(lease, reply) => {
                        let _ = reply.send(close_expired(&mut writer, &lease).await);
                    }
                    Job::Prune(p, reply) => {
                        let _ = reply.send(prune(&mut writer, p).await);
                    }
                }
            }
        });
        Ok(Self { jobs, reader })
    }

    async fn job<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Job) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.jobs.send(make(tx)).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

async fn write_batch(client: &mut Client, b: &Batch) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    if !b.sessions.is_empty() {
        let st = tx
            .prepare(
                "INSERT INTO sessions (id, instance, kind, route, path, client_addr, headers, subprotocol, upstream, state,
                    opened_at, closed_at, close_code, close_reason, initiator, failure, failure_kind, http_status,
                    messages_in, messages_out, bytes_in, bytes_out, messages_dropped)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)
                 ON CONFLICT (id) DO UPDATE SET subprotocol = excluded.subprotocol, upstream = excluded.upstream,
                    state = excluded.state, closed_at = excluded.closed_at, close_code = excluded.close_code,
                    close_reason = excluded.close_reason, initiator = excluded.initiator, failure = excluded.failure,
                    failure_kind = excluded.failure_kind, http_status = excluded.http_status,
                    messages_in = excluded.messages_in, messages_out = excluded.messages_out,
                    bytes_in = excluded.bytes_in, bytes_out = excluded.bytes_out,
                    messages_dropped = excluded.messages_dropped",
            )
            .await?;
        for s in &b.sessions {
            let headers = serde_json::to_value(&s.headers).unwrap_or_default();
            tx.execute(
                &st,
                &[
                    &s.id.as_uuid(),
                    &s.instance,
                    &s.kind.as_str(),
                    &s.route,
                    &s.path,
                    &s.client_addr,
                    &headers,
                    &s.subprotocol,
                    &s.upstream,
                    &s.state.as_str(),
                    &to_micros(s.opened_at),
                    &s.closed_at.map(to_micros),
                    &s.close_code.map(i32::from),
                    &s.close_reason,
                    &s.initiator.map(Initiator::as_str),
                    &s.failure,
                    &s.failure_kind,
                    &s.http_status.map(i32::from),
                    &(s.messages_in as i64),
                    &(s.messages_out as i64),
                    &(s.bytes_in as i64),
                    &(s.bytes_out as i64),
                    &(s.messages_dropped as i64),
                ],
            )
            .await?;
        }
    }
    if !b.events.is_empty() {
        let st = tx
            .prepare(
                "INSERT INTO events (session_id, seq, at, kind, state, error_kind, detail)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (session_id, seq) DO NOTHING",
            )
            .await?;
        for e in &b.events {
            tx.execute(
                &st,
                &[
                    &e.session_id.as_uuid(),
                    &(e.seq as i32),
                    &to_micros(e.at),
                    &e.kind.as_str(),
                    &e.state.map(State::as_str),
                    &e.error_kind,
                    &e.detail,
                ],
            )
            .await?;
        }
    }
    insert_segments(&tx, &b.messages).await?;
    if !b.log_entries.is_empty() {
        // DO NOTHING: an entry is the same whoever recorded it first.
        let st = tx
            .prepare(
                "INSERT INTO log_entries (log, \"offset\", opcode, size, at, truncated, payload)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (log, \"offset\") DO NOTHING",
            )
            .await?;
        for e in &b.log_entries {
            let row: [&(dyn ToSql + Sync); 7] = [
                &e.log,
                &(e.offset as i64),
                &i16::from(e.opcode),
                &(e.size as i64),
                &to_micros(e.at),
                &e.truncated,
                &&e.payload[..],
            ];
            tx.execute(&st, &row).await?;
        }
    }
    if !b.runs.is_empty() {
        let st = tx
            .prepare(
                "INSERT INTO delivery_runs (session_id, first_seq, count, log, first_offset) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (session_id, first_seq) DO UPDATE SET count = excluded.count",
            )
            .await?;
        for r in &b.runs {
            let row: [&(dyn ToSql + Sync); 5] =
                [&r.session_id.as_uuid(), &(r.first_seq as i64), &(r.count as i64), &r.log, &(r.first_offset as i64)];
            tx.execute(&st, &row).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Inserts a batch's messages as one segment per session (`segment.rs`), by binary
/// `COPY`: a hundred rows of a few KiB each, where a multi-row `INSERT` would cost a
/// parse of the statement per batch and a text round trip of every byte.
async fn insert_segments(tx: &Transaction<'_>, messages: &[MessageRow]) -> Result<(), StoreError> {
    if messages.is_empty() {
        return Ok(());
    }
    let sink = tx
        .copy_in(
            "COPY message_segments (session_id, first_seq, last_seq, frames, msgs_in, msgs_out, bytes_in, bytes_out,
                last_at, idx, payloads) FROM STDIN (FORMAT binary)",
        )
        .await?;
    let types = [
        Type::UUID,
        Type::INT8,
        Type::INT8,
        Type::INT8,
        Type::INT8,
        Type::INT8,
        Type::INT8,
        Type::INT8,
        Type::INT8,
        Type::BYTEA,
        Type::BYTEA,
    ];
    let writer = BinaryCopyInWriter::new(sink, &types);
    pin_mut!(writer);
    for run in segment::by_session(messages) {
        let s = SegmentColumns::from(segment::encode(run.iter().copied()));
        writer.as_mut().write(&s.row(&run[0].session_id.as_uuid())).await?;
    }
    writer.finish().await?;
    Ok(())
}

/// A segment as `message_segments` holds it: PostgreSQL has no unsigned integers.
struct SegmentColumns {
    first_seq: i64,
    last_seq: i64,
    frames: i64,
    msgs_in: i64,
    msgs_out: i64,
    bytes_in: i64,
    bytes_out: i64,
    last_at: i64,
    index: Vec<u8>,
    payloads: Vec<u8>,
}

impl From<segment::Segment> for SegmentColumns {
    fn from(s: segment::Segment) -> Self {
        Self {
            first_seq: s.first_seq as i64,
            last_seq: s.last_seq as i64,
            frames: s.frames as i64,
            msgs_in: s.msgs_in as i64,
            msgs_out: s.msgs_out as i64,
            bytes_in: s.bytes_in as i64,
            bytes_out: s.bytes_out as i64,
            last_at: s.last_at,
            index: s.index,
            payloads: s.payloads,
        }
    }
}

impl SegmentColumns {
    /// The columns after `id`, in the table's order, as `COPY` and [`prune_segments`] write them.
    fn row<'a>(&'a self, session: &'a uuid::Uuid) -> [&'a (dyn ToSql + Sync); 11] {
        [
            session,
            &self.first_seq,
            &self.last_seq,
            &self.frames,
            &self.msgs_in,
            &self.msgs_out,
            &self.bytes_in,
            &self.bytes_out,
            &self.last_at,
            &self.index,
            &self.payloads,
        ]
    }
}

/// `id`'s messages stored a row each (before schema 4): those above `after_seq`, at
/// most `limit`.
async fn legacy_messages(
    client: &Client,
    id: SessionId,
    after_seq: i64,
    limit: usize,
) -> Result<Vec<MessageRow>, StoreError> {
    let rows = client
        .query(
            "SELECT seq, direction, opcode, fin, size, at, injected, truncated, payload FROM messages
             WHERE session_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            &[&id.as_uuid(), &after_seq, &(limit as i64)],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let direction: &str = r.try_get(1)?;
            let payload: Vec<u8> = r.try_get(8)?;
            Ok(MessageRow {
                session_id: id,
                seq: r.try_get::<_, i64>(0)? as u64,
                direction: Direction::from_name(direction).ok_or_else(|| corrupt("direction", direction))?,
                opcode: r.try_get::<_, i16>(2)? as u8,
                fin: r.try_get(3)?,
                size: r.try_get::<_, i64>(4)? as u64,
                at: from_micros(r.try_get(5)?),
                injected: r.try_get(6)?,
                marks: wsgate_core::Marks::NONE,
                truncated: r.try_get(7)?,
                payload: payload.into(),
            })
        })
        .collect()
}

/// `id`'s messages stored as segments: those above `after_seq`, at most `limit`.
async fn segment_messages(
    client: &Client,
    id: SessionId,
    after_seq: i64,
    limit: usize,
) -> Result<Vec<MessageRow>, StoreError> {
    // Every segment ending above the cursor has a frame for the page, so `limit` of
    // them always suffice; but a page of 5 000 (an export's) from segments of a
    // hundred frames needs fifty. Only those are fetched whole: the ones with fewer
    // than `limit` frames in the segments between the first (which may start below
    // the cursor) and themselves.
    let rows = client
        .query(
            "SELECT g.first_seq, g.idx, g.payloads
             FROM (SELECT id, first_seq, (sum(frames) OVER w)::bigint - frames - first_value(frames) OVER w AS ahead
                   FROM (SELECT id, first_seq, frames FROM message_segments
                         WHERE session_id = $1 AND last_seq > $2 ORDER BY first_seq LIMIT $3) s
                   WINDOW w AS (ORDER BY first_seq ROWS UNBOUNDED PRECEDING)) c
             JOIN message_segments g ON g.id = c.id
             WHERE c.ahead < $3
             ORDER BY c.first_seq",
            &[&id.as_uuid(), &after_seq, &(limit as i64)],
        )
        .await?;
    let mut out = Vec::new();
    for r in &rows {
        if out.len() >= limit {
            break;
        }
        let first: i64 = r.try_get(0)?;
        let idx: &[u8] = r.try_get(1)?;
        let payloads: Vec<u8> = r.try_get(2)?;
        let frames = segment::decode(id, first as u64, idx, payloads.into(), after_seq as u64, limit - out.len())?;
        out.extend(frames);
    }
    Ok(out)
}

/// `id`'s runs of deliveries that a page after `after_seq` of `limit` messages
/// needs, filled from their logs.
async fn delivered(
    client: &Client,
    id: SessionId,
    after_seq: i64,
    limit: usize,
) -> Result<Vec<MessageRow>, StoreError> {
    let runs = client
        .query(
            "SELECT first_seq, count, log, first_offset FROM delivery_runs
             WHERE session_id = $1 AND first_seq + count - 1 > $2 ORDER BY first_seq LIMIT $3",
            &[&id.as_uuid(), &after_seq, &(limit as i64)],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(RunRow {
                session_id: id,
                first_seq: r.try_get::<_, i64>(0)? as u64,
                count: r.try_get::<_, i64>(1)? as u64,
                log: r.try_get(2)?,
                first_offset: r.try_get::<_, i64>(3)? as u64,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let mut out = Vec::new();
    for run in shared::clip(runs, after_seq as u64, limit) {
        let (first, last) = shared::offsets(&run);
        let entries = client
            .query(
                "SELECT \"offset\", opcode, size, at, truncated, payload FROM log_entries
                 WHERE log = $1 AND \"offset\" BETWEEN $2 AND $3",
                &[&run.log, &(first as i64), &(last as i64)],
            )
            .await?
            .iter()
            .map(|r| {
                let payload: Vec<u8> = r.try_get(5)?;
                Ok(LogEntryRow {
                    log: run.log,
                    offset: r.try_get::<_, i64>(0)? as u64,
                    opcode: r.try_get::<_, i16>(1)? as u8,
                    size: r.try_get::<_, i64>(2)? as u64,
                    at: from_micros(r.try_get(3)?),
                    truncated: r.try_get(4)?,
                    payload: payload.into(),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.extend(shared::expand(&run, entries));
    }
    Ok(out)
}

/// Closes the sessions `ids` as the restart rule does (see [`Store::close_expired`]).
async fn close_sessions(tx: &Transaction<'_>, ids: &[uuid::Uuid]) -> Result<u64, StoreError> {
    let detail = orphan_detail();
    for id in ids {
        let inbound = "direction IN ('client_to_upstream', 'client_to_gateway')";
        let r = tx
            .query_one(
                &format!(
                    "SELECT max(at), count(*) FILTER (WHERE {inbound}), count(*) FILTER (WHERE NOT {inbound}),
                        coalesce(sum(size) FILTER (WHERE {inbound}), 0)::bigint,
                        coalesce(sum(size) FILTER (WHERE NOT {inbound}), 0)::bigint
                     FROM messages WHERE session_id = $1"
                ),
                &[id],
            )
            .await?;
        let (last_msg, mi, mo, bi, bo): (Option<i64>, i64, i64, i64, i64) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        // Frames written as segments count from their totals.
        let g = tx
            .query_one(
                "SELECT max(last_at), coalesce(sum(msgs_in), 0)::bigint, coalesce(sum(msgs_out), 0)::bigint,
                    coalesce(sum(bytes_in), 0)::bigint, coalesce(sum(bytes_out), 0)::bigint
                 FROM message_segments WHERE session_id = $1",
                &[id],
            )
            .await?;
        let (seg_last, smi, smo, sbi, sbo): (Option<i64>, i64, i64, i64, i64) =
            (g.try_get(0)?, g.try_get(1)?, g.try_get(2)?, g.try_get(3)?, g.try_get(4)?);
        // Saturating: a damaged row's totals may be anything.
        let (last_msg, mi, mo, bi, bo) = (
            last_msg.max(seg_last),
            mi.saturating_add(smi),
            mo.saturating_add(smo),
            bi.saturating_add(sbi),
            bo.saturating_add(sbo),
        );
        let e = tx.query_one("SELECT max(seq), max(at) FROM events WHERE session_id = $1", &[id]).await?;
        let (last_seq, last_event): (Option<i32>, Option<i64>) = (e.get(0), e.get(1));
        let at = last_msg.into_iter().chain(last_event).max().unwrap_or_else(|| to_micros(crate::now()));
        tx.execute(
            "UPDATE sessions SET state = 'DISCONNECTED', closed_at = $2, close_code = $3, close_reason = $4,
                initiator = 'gateway', messages_in = $5, messages_out = $6, bytes_in = $7, bytes_out = $8
             WHERE id = $1",
            &[id, &at, &i32::from(wsgate_protocol::CloseCode::ABNORMAL), &ORPHAN_REASON, &mi, &mo, &bi, &bo],
        )
        .await?;
        tx.execute(
            "INSERT INTO events (session_id, seq, at, kind, state, error_kind, detail)
             VALUES ($1, $2, $3, 'lifecycle', 'DISCONNECTED', NULL, $4)",
            &[id, &(last_seq.unwrap_or(0) + 1), &at, &detail],
        )
        .await?;
    }
    Ok(ids.len() as u64)
}

const LEASE_COLUMNS: &str = "run_id, instance, host, pid, started_at, expires_at";

fn lease_row(r: &Row) -> Result<LeaseHolder, StoreError> {
    Ok(LeaseHolder {
        run: r.try_get(0)?,
        instance: r.try_get(1)?,
        host: r.try_get(2)?,
        pid: u32::try_from(r.try_get::<_, i64>(3)?).unwrap_or(u32::MAX),
        started_at: from_micros(r.try_get(4)?),
        expires_at: from_micros(r.try_get(5)?),
    })
}

/// Takes the lease lock for the transaction and reads the server's clock: leases
/// expire by one clock for every gateway, whatever their own clocks say.
async fn lease_tx(client: &mut Client) -> Result<(Transaction<'_>, chrono::DateTime<chrono::Utc>), StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LEASE_LOCK]).await?;
    let now: i64 = tx.query_one("SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint", &[]).await?.get(0);
    Ok((tx, from_micros(now)))
}

async fn claim(client: &mut Client, lease: &Lease) -> Result<Claimed, StoreError> {
    let (tx, now) = lease_tx(client).await?;
    let replaced = tx
        .query_opt(&format!("SELECT {LEASE_COLUMNS} FROM instance_leases WHERE instance = $1"), &[&lease.instance])
        .await?
        .as_ref()
        .map(lease_row)
        .transpose()?;
    if let Some(holder) = replaced.as_ref().filter(|h| h.run != lease.run && !h.is_gone(now, lease)) {
        return Err(StoreError::InstanceBusy { holder: Box::new(holder.clone()) });
    }
    // The name is this run's: whatever it has open was left by an earlier run.
    let own: Vec<uuid::Uuid> = tx
        .query("SELECT id FROM sessions WHERE instance = $1 AND closed_at IS NULL FOR UPDATE", &[&lease.instance])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut closed = close_sessions(&tx, &own).await?;
    let held = lease.held_until(now);
    tx.execute(
        "INSERT INTO instance_leases (run_id, instance, host, pid, started_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (instance) DO UPDATE SET run_id = excluded.run_id, host = excluded.host, pid = excluded.pid,
            started_at = excluded.started_at, expires_at = excluded.expires_at",
        &[
            &held.run,
            &held.instance,
            &held.host,
            &i64::from(held.pid),
            &to_micros(held.started_at),
            &to_micros(held.expires_at),
        ],
    )
    .await?;
    closed += close_expired_in(&tx, now, lease).await?;
    tx.commit().await?;
    Ok(Claimed { closed, replaced: replaced.filter(|h| h.run != lease.run) })
}

async fn renew(client: &mut Client, lease: &Lease) -> Result<(), StoreError> {
    // Under the lock: a concurrent close_expired that saw the lease expired must not
    // delete it after this renewal.
    let (tx, now) = lease_tx(client).await?;
    let expires = to_micros(now).saturating_add(lease.ttl_micros());
    let n = tx
        .execute(
            "UPDATE instance_leases SET expires_at = $3 WHERE instance = $1 AND run_id = $2",
            &[&lease.instance, &lease.run, &expires],
        )
        .await?;
    tx.commit().await?;
    if n == 0 {
        return Err(StoreError::LeaseLost { instance: lease.instance.clone() });
    }
    Ok(())
}

async fn release(client: &Client, lease: &Lease) -> Result<(), StoreError> {
    client
        .execute("DELETE FROM instance_leases WHERE instance = $1 AND run_id = $2", &[&lease.instance, &lease.run])
        .await?;
    Ok(())
}

async fn close_expired(client: &mut Client, asker: &Lease) -> Result<u64, StoreError> {
    let (tx, now) = lease_tx(client).await?;
    let closed = close_expired_in(&tx, now, asker).await?;
    tx.commit().await?;
    Ok(closed)
}

/// [`Store::close_expired`] inside a transaction holding the lease lock; `now` is the
/// server's clock.
async fn close_expired_in(
    tx: &Transaction<'_>,
    now: chrono::DateTime<chrono::Utc>,
    asker: &Lease,
) -> Result<u64, StoreError> {
    let leases: Vec<LeaseHolder> = tx
        .query(&format!("SELECT {LEASE_COLUMNS} FROM instance_leases"), &[])
        .await?
        .iter()
        .map(lease_row)
        .collect::<Result<_, _>>()?;
    if !leases.iter().any(|l| l.instance == asker.instance && l.run == asker.run) {
        return Err(StoreError::LeaseLost { instance: asker.instance.clone() });
    }
    for gone in leases.iter().filter(|l| l.is_gone(now, asker)) {
        tx.execute("DELETE FROM instance_leases WHERE instance = $1 AND run_id = $2", &[&gone.instance, &gone.run])
            .await?;
    }
    let ids: Vec<uuid::Uuid> = tx
        .query(
            "SELECT id FROM sessions s WHERE closed_at IS NULL
                AND NOT EXISTS (SELECT 1 FROM instance_leases l WHERE l.instance = s.instance)
             FOR UPDATE",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    close_sessions(tx, &ids).await
}

async fn prune(client: &mut Client, p: Prune) -> Result<Pruned, StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PRUNE_LOCK]).await?;
    let mut out = Pruned::default();
    let chunk = p.chunk as i64;
    if let Some(cutoff) = p.ended_before {
        let cutoff = to_micros(cutoff);
        // Messages first, rows then whole segments, until a chunk's worth; a session
        // goes once they have.
        out.messages += tx
            .execute(
                "DELETE FROM messages WHERE id IN (
                    SELECT m.id FROM sessions s JOIN messages m ON m.session_id = s.id
                    WHERE s.closed_at < $1 LIMIT $2)",
                &[&cutoff, &chunk],
            )
            .await?;
        let budget = chunk - out.messages as i64;
        if budget > 0 {
            // Segments, oldest first, up to the one that makes the chunk (a segment
            // has at least one frame, so `budget` of them are enough to look at).
            let gone: i64 = tx
                .query_one(
                    "WITH doomed AS (
                        SELECT id FROM (
                            SELECT id, (sum(frames) OVER (ORDER BY id ROWS UNBOUNDED PRECEDING))::bigint - frames AS before
                            FROM (SELECT g.id, g.frames FROM sessions s JOIN message_segments g ON g.session_id = s.id
                                  WHERE s.closed_at < $1 LIMIT $2) w) c
                        WHERE before < $2),
                     gone AS (DELETE FROM message_segments g USING doomed d WHERE g.id = d.id RETURNING g.frames)
                     SELECT coalesce(sum(frames), 0)::bigint FROM gone",
                    &[&cutoff, &budget],
                )
                .await?
                .try_get(0)?;
            out.messages += gone as u64;
        }
        if out.messages < p.chunk as u64 {
            let ids: Vec<uuid::Uuid> = tx
                .query(
                    "SELECT id FROM sessions s WHERE closed_at < $1
                        AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.session_id = s.id)
                        AND NOT EXISTS (SELECT 1 FROM message_segments g WHERE g.session_id = s.id)
                     LIMIT $2",
                    &[&cutoff, &chunk],
                )
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?;
            tx.execute("DELETE FROM events WHERE session_id = ANY($1)", &[&ids]).await?;
            tx.execute("DELETE FROM delivery_runs WHERE session_id = ANY($1)", &[&ids]).await?;
            out.sessions = tx.execute("DELETE FROM sessions WHERE id = ANY($1)", &[&ids]).await?;
        }
        // A shared log's entries go once they are old and no kept session's run
        // refers to them.
        out.messages += tx
            .execute(
                "DELETE FROM log_entries WHERE (log, \"offset\") IN (
                    SELECT e.log, e.\"offset\" FROM log_entries e WHERE e.at < $1 AND NOT EXISTS (
                        SELECT 1 FROM delivery_runs d WHERE d.log = e.log
                            AND d.first_offset <= e.\"offset\" AND e.\"offset\" < d.first_offset + d.count)
                    LIMIT $2)",
                &[&cutoff, &chunk],
            )
            .await?;
    }
    if let Some(keep) = p.keep_messages {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let seg_frames: i64 =
            tx.query_one("SELECT coalesce(sum(frames), 0)::bigint FROM message_segments", &[]).await?.try_get(0)?;
        // Frames stored as rows (before schema 4) are older than any segment: they go
        // first, all but the newest `keep - seg_frames`. Found from the newest end of
        // the id index, which a count of the old table would scan whole.
        let legacy = tx
            .execute(
                "DELETE FROM messages WHERE id IN (
                    SELECT id FROM messages
                    WHERE id <= (SELECT id FROM messages ORDER BY id DESC OFFSET greatest(0, $1::bigint - $3::bigint) LIMIT 1)
                    ORDER BY id LIMIT $2)",
                &[&keep, &chunk, &seg_frames],
            )
            .await?;
        out.messages += legacy;
        // What is left of the chunk goes to segments. Any rows still left are kept
        // (or the chunk is spent), so segments are over by what they hold beyond `keep`.
        let budget = (p.chunk as u64).saturating_sub(legacy);
        let excess = (seg_frames.max(0) as u64).saturating_sub(keep as u64).min(budget);
        out.messages += prune_segments(&tx, excess).await?;
        // Shared logs are held to the same count, oldest first.
        out.messages += tx
            .execute(
                "DELETE FROM log_entries WHERE (log, \"offset\") IN (
                    SELECT log, \"offset\" FROM log_entries ORDER BY at
                    LIMIT least($2, greatest(0, (SELECT count(*) FROM log_entries) - $1)))",
                &[&keep, &chunk],
            )
            .await?;
    }
    tx.commit().await?;
    Ok(out)
}

/// Retention by count over segments: drops the oldest `excess` frames, whole
/// segments while they fit, then cuts the next rather than dropping it whole. How
/// many went.
async fn prune_segments(tx: &Transaction<'_>, excess: u64) -> Result<u64, StoreError> {
    if excess == 0 {
        return Ok(0);
    }
    let excess = i64::try_from(excess).unwrap_or(i64::MAX);
    // A segment holds at least one frame: the oldest `excess` are all that can go.
    let gone: i64 = tx
        .query_one(
            "WITH doomed AS (
                SELECT id FROM (
                    SELECT id, (sum(frames) OVER (ORDER BY id ROWS UNBOUNDED PRECEDING))::bigint AS upto
                    FROM (SELECT id, frames FROM message_segments ORDER BY id LIMIT $1) w) c
                WHERE upto <= $1),
             gone AS (DELETE FROM message_segments g USING doomed d WHERE g.id = d.id RETURNING g.frames)
             SELECT coalesce(sum(frames), 0)::bigint FROM gone",
            &[&excess],
        )
        .await?
        .try_get::<_, i64>(0)?
        // A damaged row's count may be anything.
        .max(0);
    let cut = excess - gone;
    if cut <= 0 {
        return Ok(gone as u64);
    }
    let Some(r) = tx
        .query_opt(
            "SELECT id, session_id, first_seq, frames, idx, payloads FROM message_segments ORDER BY id LIMIT 1",
            &[],
        )
        .await?
    else {
        return Ok(gone as u64);
    };
    let (id, session, first_seq, frames): (i64, uuid::Uuid, i64, i64) =
        (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
    let idx: &[u8] = r.try_get(4)?;
    let payloads: Vec<u8> = r.try_get(5)?;
    // The delete above stopped at this segment, so it holds more than `cut` frames,
    // unless its count and its index disagree (a damaged row).
    let rest = segment::cut(id, first_seq as u64, idx, payloads.into(), frames.max(0) as u64, cut as u64)?;
    // Written again under its own id: it stays the oldest.
    let s = SegmentColumns::from(rest);
    let row = s.row(&session);
    let params: Vec<&(dyn ToSql + Sync)> =
        std::iter::once(&id as &(dyn ToSql + Sync)).chain(row[1..].iter().copied()).collect();
    tx.execute(
        "UPDATE message_segments SET first_seq = $2, last_seq = $3, frames = $4, msgs_in = $5, msgs_out = $6,
            bytes_in = $7, bytes_out = $8, last_at = $9, idx = $10, payloads = $11
         WHERE id = $1",
        &params,
    )
    .await?;
    Ok(gone as u64 + cut as u64)
}

const SESSION_COLUMNS: &str = "id, instance, kind, route, path, client_addr, headers, subprotocol, upstream, state,
    opened_at, closed_at, close_code, close_reason, initiator, failure, failure_kind, http_status,
    messages_in, messages_out, bytes_in, bytes_out, messages_dropped";

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("bad {what} {value:?}"))
}

fn session_row(r: &Row) -> Result<SessionRow, StoreError> {
    let kind: &str = r.try_get(2)?;
    let state: &str = r.try_get(9)?;
    let headers: serde_json::Value = r.try_get(6)?;
    let initiator: Option<&str> = r.try_get(14)?;
    let u16_of = |v: Option<i32>| v.and_then(|v| u16::try_from(v).ok());
    Ok(SessionRow {
        id: SessionId::from_uuid(r.try_get(0)?),
        instance: r.try_get(1)?,
        kind: SessionKind::from_name(kind).ok_or_else(|| corrupt("kind", kind))?,
        route: r.try_get(3)?,
        path: r.try_get(4)?,
        client_addr: r.try_get(5)?,
        headers: serde_json::from_value(headers).map_err(|e| StoreError::Corrupt(format!("bad headers: {e}")))?,
        subprotocol: r.try_get(7)?,
        upstream: r.try_get(8)?,
        state: State::from_name(state).ok_or_else(|| corrupt("state", state))?,
        opened_at: from_micros(r.try_get(10)?),
        closed_at: r.try_get::<_, Option<i64>>(11)?.map(from_micros),
        close_code: u16_of(r.try_get(12)?),
        close_reason: r.try_get(13)?,
        initiator: initiator.and_then(Initiator::from_name),
        failure: r.try_get(15)?,
        failure_kind: r.try_get(16)?,
        http_status: u16_of(r.try_get(17)?),
        messages_in: r.try_get::<_, i64>(18)? as u64,
        messages_out: r.try_get::<_, i64>(19)? as u64,
        bytes_in: r.try_get::<_, i64>(20)? as u64,
        bytes_out: r.try_get::<_, i64>(21)? as u64,
        messages_dropped: r.try_get::<_, i64>(22)? as u64,
    })
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn write(&self, batch: Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.job(|tx| Job::Write(batch, tx)).await
    }

    async fn sessions(&self, q: &SessionQuery) -> Result<Vec<SessionRow>, StoreError> {
        let mut sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE true");
        let states: Vec<&str> = q.states.iter().map(|s| s.as_str()).collect();
        let kind = q.kind.map(|k| k.as_str());
        let (since, until) = (q.since.map(to_micros), q.until.map(to_micros));
        let before = q.before.map(|b| b.as_uuid());
        let limit = q.limit as i64;
        let mut args: Vec<&(dyn ToSql + Sync)> = Vec::new();
        let mut arg = |sql: &mut String, clause: &str, v: &'static str, value| {
            args.push(value);
            sql.push_str(&clause.replace(v, &format!("${}", args.len())));
        };
        if !states.is_empty() {
            arg(&mut sql, " AND state = ANY(?)", "?", &states);
        }
        if let Some(k) = &kind {
            arg(&mut sql, " AND kind = ?", "?", k);
        }
        if let Some(r) = &q.route {
            arg(&mut sql, " AND route = ?", "?", r);
        }
        if let Some(p) = &q.path_prefix {
            arg(&mut sql, " AND starts_with(path, ?)", "?", p);
        }
        if let Some(t) = &since {
            arg(&mut sql, " AND opened_at >= ?", "?", t);
        }
        if let Some(t) = &until {
            arg(&mut sql, " AND opened_at < ?", "?", t);
        }
        if let Some(b) = &before {
            arg(&mut sql, " AND id < ?", "?", b);
        }
        arg(&mut sql, " ORDER BY id DESC LIMIT ?", "?", &limit);
        let rows = self.reader.query(&sql, &args).await?;
        rows.iter().map(session_row).collect()
    }

    async fn session(&self, id: SessionId) -> Result<Option<SessionRow>, StoreError> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1");
        self.reader.query_opt(&sql, &[&id.as_uuid()]).await?.as_ref().map(session_row).transpose()
    }

    async fn events(&self, id: SessionId) -> Result<Vec<EventRow>, StoreError> {
        let rows = self
            .reader
            .query(
                "SELECT seq, at, kind, state, error_kind, detail FROM events WHERE session_id = $1 ORDER BY seq",
                &[&id.as_uuid()],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let kind: &str = r.try_get(2)?;
                let state: Option<&str> = r.try_get(3)?;
                Ok(EventRow {
                    session_id: id,
                    seq: r.try_get::<_, i32>(0)? as u32,
                    at: from_micros(r.try_get(1)?),
                    kind: EventKind::parse(kind).ok_or_else(|| corrupt("event kind", kind))?,
                    state: state.and_then(State::from_name),
                    error_kind: r.try_get(4)?,
                    detail: r.try_get(5)?,
                })
            })
            .collect()
    }

    async fn messages(&self, id: SessionId, after_seq: u64, limit: usize) -> Result<Vec<MessageRow>, StoreError> {
        let after = i64::try_from(after_seq).unwrap_or(i64::MAX);
        // Three queries at once, pipelined on the one reader connection.
        let (rows, segments, delivered) = tokio::try_join!(
            legacy_messages(&self.reader, id, after, limit),
            segment_messages(&self.reader, id, after, limit),
            delivered(&self.reader, id, after, limit),
        )?;
        // Frames written before schema 4 (rows), then segments, then deliveries from
        // shared logs: each in seq order, merged by seq.
        Ok(shared::merge(shared::merge(rows, segments, limit), delivered, limit))
    }

    async fn claim(&self, lease: &Lease) -> Result<Claimed, StoreError> {
        let lease = lease.clone();
        self.job(|tx| Job::Claim(lease, tx)).await
    }

    async fn renew(&self, lease: &Lease) -> Result<(), StoreError> {
        let lease = lease.clone();
        self.job(|tx| Job::Renew(lease, tx)).await
    }

    async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        let lease = lease.clone();
        self.job(|tx| Job::Release(lease, tx)).await
    }

    async fn close_expired(&self, asker: &Lease) -> Result<u64, StoreError> {
        let lease = asker.clone();
        self.job(|tx| Job::CloseExpired(lease, tx)).await
    }

    async fn prune(&self, p: Prune) -> Result<Pruned, StoreError> {
        self.job(|tx| Job::Prune(p, tx)).await
    }
}
