//! `mock: {replay_session: ID}` (`wsgate mock --replay-session ID`): a session taken
//! straight from the configured store, exported as a transcript — the same bytes
//! `wsgate history export ID` writes — and read as a replay script, when the mock's
//! routes are planned (at start, and again on reload, as a script file is).
//!
//! Planning is synchronous and runs both before the runtime exists (at start) and on
//! it (a reload), while the store is read asynchronously; so the read runs on a
//! thread of its own with a small runtime of its own, whichever the caller is. It
//! reads one session once, when routes are planned: never on the data path.

use wsgate_core::SessionId;
use wsgate_mock::script::Script;
use wsgate_store::{StoreUrl, transcript};

use crate::config::Config;

/// Frames read from the store per page.
const PAGE: usize = 5000;

/// The stored session `id` as a replay script; the message says what is wrong (an
/// id that is not one, a store that cannot be read, a session it does not hold).
pub fn load(cfg: &Config, id: &str) -> Result<Script, String> {
    let url: StoreUrl = cfg.store.url.parse().map_err(|e: wsgate_store::StoreError| e.to_string())?;
    let sid: SessionId = id.trim().parse().map_err(|_| format!("{id:?} is not a session id"))?;
    if let StoreUrl::Sqlite(path) = &url
        && !path.exists()
    {
        return Err(format!("no session {sid} in {url}: the store file does not exist"));
    }
    let read = || -> Result<Vec<u8>, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot read the store: {e}"))?;
        rt.block_on(export(&url, sid))
    };
    let bytes = std::thread::scope(|s| s.spawn(read).join())
        .map_err(|_| format!("reading session {sid} from {url} failed unexpectedly"))??;
    let env = |name: &str| std::env::var(name).ok();
    Script::parse(&format!("session {sid} in {url}"), &bytes, &env).map_err(|e| e.to_string())
}

/// The session's transcript, as `wsgate history export` writes it.
async fn export(url: &StoreUrl, id: SessionId) -> Result<Vec<u8>, String> {
    let store = wsgate_store::open(url).await.map_err(|e| format!("cannot open the store {url}: {e}"))?;
    let failed = |e: wsgate_store::StoreError| format!("cannot read session {id} from {url}: {e}");
    let Some(row) = store.session(id).await.map_err(failed)? else {
        return Err(format!("no session {id} in {url}"));
    };
    let mut out = Vec::new();
    transcript::push_line(&mut out, &transcript::header(&row));
    let mut after = 0;
    loop {
        let page = store.messages(id, after, PAGE).await.map_err(failed)?;
        for msg in &page {
            transcript::push_line(&mut out, &transcript::frame(&row, msg));
        }
        match page.last() {
            Some(last) if page.len() == PAGE => after = last.seq,
            _ => return Ok(out),
        }
    }
}
