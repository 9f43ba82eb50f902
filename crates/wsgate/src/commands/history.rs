//! `wsgate history list|show ID|export ID` — the store, read from the shell. The
//! store is found as everywhere: `--store`, `WSGATE_STORE`, the config file, or the
//! default `sqlite://wsgate.db`.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::ArgMatches;
use wsgate_core::{SessionId, SessionKind, State};
use wsgate_store::{SessionQuery, SessionRow, Store, StoreUrl, transcript};

use crate::cli::{HistoryIdArgs, HistoryListArgs, HistoryStore};

/// Opens the configured store for reading; a missing SQLite file is an error, not a
/// new empty history.
fn open(at: &HistoryStore, m: &ArgMatches) -> Result<impl Future<Output = anyhow::Result<Arc<dyn Store>>>, ExitCode> {
    let sources = crate::sources::collect(m, at.config.clone());
    let (cfg, fig) = crate::config::load(&sources).map_err(|e| super::usage_error(&e))?;
    let url = cfg.store_url(&fig).map_err(|e| super::usage_error(&e))?;
    Ok(async move {
        if let StoreUrl::Sqlite(path) = &url
            && !path.exists()
        {
            bail!("no history at {url}: the file does not exist (pass --store, or run where wsgate.db is)");
        }
        wsgate_store::open(&url).await.with_context(|| format!("cannot open the store {url}"))
    })
}

/// The opened store and the session `id` names in it; an error when it is not there.
async fn stored_session(
    store: impl Future<Output = anyhow::Result<Arc<dyn Store>>>,
    id: &str,
) -> anyhow::Result<(Arc<dyn Store>, SessionRow)> {
    let store = store.await?;
    let id = parse_id(id)?;
    let Some(row) = store.session(id).await? else { bail!("no session {id} in the store") };
    Ok((store, row))
}

fn run(name: &str, fut: impl Future<Output = anyhow::Result<()>>) -> ExitCode {
    super::serve(name, fut)
}

fn parse_state(s: &str) -> anyhow::Result<State> {
    State::from_name(s)
        .with_context(|| format!("--state {s:?}: expected REQUESTED, CONNECTING, CONNECTED, DISCONNECTED or FAILED"))
}

fn parse_kind(s: &str) -> anyhow::Result<SessionKind> {
    SessionKind::from_name(s).with_context(|| format!("--kind {s:?}: expected proxy, relay, mock or outbound"))
}

fn parse_id(s: &str) -> anyhow::Result<SessionId> {
    s.parse().map_err(|_| anyhow::anyhow!("{s:?} is not a session id"))
}

pub fn list(args: HistoryListArgs, m: &ArgMatches) -> ExitCode {
    let store = match open(&args.at, m) {
        Ok(s) => s,
        Err(code) => return code,
    };
    run("history", async move {
        let store = store.await?;
        let q = SessionQuery {
            states: args.state.as_deref().map(parse_state).transpose()?.into_iter().collect(),
            kind: args.kind.as_deref().map(parse_kind).transpose()?,
            route: args.route,
            path_prefix: args.path,
            before: args.before.as_deref().map(parse_id).transpose()?,
            limit: args.limit,
            ..Default::default()
        };
        let rows = store.sessions(&q).await?;
        let mut out = std::io::stdout().lock();
        if args.json {
            for r in &rows {
                writeln!(out, "{}", serde_json::to_string(r)?)?;
            }
            return Ok(());
        }
        writeln!(
            out,
            "{:<36}  {:<8}  {:<12}  {:<20}  {:>6}  {:>6}  {:<10}  PATH",
            "ID", "KIND", "STATE", "OPENED", "IN", "OUT", "CLOSE"
        )?;
        for r in &rows {
            writeln!(
                out,
                "{:<36}  {:<8}  {:<12}  {:<20}  {:>6}  {:>6}  {:<10}  {}",
                r.id,
                r.kind.as_str(),
                r.state.as_str(),
                r.opened_at.format("%Y-%m-%d %H:%M:%S"),
                r.messages_in,
                r.messages_out,
                close_summary(r),
                r.path
            )?;
        }
        Ok(())
    })
}

fn close_summary(r: &SessionRow) -> String {
    match (r.close_code, &r.failure_kind) {
        (_, Some(kind)) => kind.clone(),
        (Some(code), _) => code.to_string(),
        _ => "-".into(),
    }
}

pub fn show(args: HistoryIdArgs, m: &ArgMatches) -> ExitCode {
    let store = match open(&args.at, m) {
        Ok(s) => s,
        Err(code) => return code,
    };
    run("history", async move {
        let (store, row) = stored_session(store, &args.id).await?;
        let id = row.id;
        let events = store.events(id).await?;
        let mut out = std::io::stdout().lock();
        if args.json {
            let v = serde_json::json!({ "session": row, "events": events });
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
            return Ok(());
        }
        writeln!(out, "session   {}", row.id)?;
        writeln!(out, "kind      {} (route {})", row.kind.as_str(), row.route)?;
        writeln!(out, "path      {}", row.path)?;
        if let Some(a) = &row.client_addr {
            writeln!(out, "client    {a}")?;
        }
        if let Some(u) = &row.upstream {
            writeln!(out, "upstream  {u}")?;
        }
        if let Some(p) = &row.subprotocol {
            writeln!(out, "protocol  {p}")?;
        }
        writeln!(out, "state     {}", row.state.as_str())?;
        if let Some(code) = row.close_code {
            let by = row.initiator.map(|i| i.as_str()).unwrap_or("-");
            writeln!(out, "close     {code} {:?} by {by}", row.close_reason.as_deref().unwrap_or(""))?;
        }
        if let Some(f) = &row.failure {
            writeln!(out, "failure   {f} ({})", row.failure_kind.as_deref().unwrap_or("-"))?;
        }
        writeln!(
            out,
            "messages  in {} ({} B), out {} ({} B), dropped {}",
            row.messages_in, row.bytes_in, row.messages_out, row.bytes_out, row.messages_dropped
        )?;
        writeln!(out, "events")?;
        for e in &events {
            let what = e.state.map(|s| s.as_str().to_owned()).or_else(|| e.error_kind.clone()).unwrap_or_default();
            writeln!(out, "  {:>3}  {}  {:<12}  {}", e.seq, e.at.format("%H:%M:%S%.3f"), what, e.detail)?;
        }
        Ok(())
    })
}

pub fn export(args: HistoryIdArgs, m: &ArgMatches) -> ExitCode {
    let store = match open(&args.at, m) {
        Ok(s) => s,
        Err(code) => return code,
    };
    run("history", async move {
        let (store, row) = stored_session(store, &args.id).await?;
        let id = row.id;
        let mut out = std::io::stdout().lock();
        let mut buf = Vec::new();
        transcript::push_line(&mut buf, &transcript::header(&row));
        let mut after = 0;
        loop {
            let page = store.messages(id, after, 5000).await?;
            for msg in &page {
                transcript::push_line(&mut buf, &transcript::frame(&row, msg));
            }
            out.write_all(&buf)?;
            buf.clear();
            match page.last() {
                Some(last) if page.len() == 5000 => after = last.seq,
                _ => break,
            }
        }
        Ok(())
    })
}
