//! The dashboard: plain ES modules and CSS from `web/`, embedded in the binary at
//! build time (no build step, no Node.js on the machine that runs wsgate), served to
//! browsers at `/` ([`crate::index`]) and `/ui/{file}`. The page is a client of the
//! public API and live stream like any other: it holds no data of its own, so like
//! the index it is served without the admin token, and asks for the token when the
//! API answers 401.
//!
//! Every answer carries a Content-Security-Policy allowing only this origin's own
//! scripts, styles and connections: what the page shows comes from the network
//! (payloads, headers, paths), and should a bug ever put one into markup, it still
//! could not run script or send data elsewhere.

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use crate::error::ApiError;

/// One embedded file: its name under `/ui/`, content type and bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

macro_rules! assets {
    ($($name:literal => $type:expr),* $(,)?) => {
        &[$(Asset { name: $name, content_type: $type, body: include_str!(concat!("../../../web/", $name)) }),*]
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Everything in `web/`: a file added there is listed here, or it is not served.
const ASSETS: &[Asset] = assets![
    "index.html" => "text/html; charset=utf-8",
    "style.css" => "text/css; charset=utf-8",
    "app.js" => JS,
    "api.js" => JS,
    "dom.js" => JS,
    "sessions.js" => JS,
    "session.js" => JS,
    "log.js" => JS,
    "payload.js" => JS,
    "history.js" => JS,
    "connect.js" => JS,
    "overview.js" => JS,
    "intercept.js" => JS,
];

const CSP: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; object-src 'none'; \
                   base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn serve(asset: &Asset) -> Response {
    let mut res = (StatusCode::OK, asset.body).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // The files change with the binary: the browser asks again (a 304 is not worth
    // the bookkeeping for a few dozen KiB on a local control plane).
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

/// The dashboard's page, for `GET /` from a browser.
pub fn page() -> Response {
    serve(&ASSETS[0])
}

/// `GET /ui/{file}`: one of the dashboard's files.
#[utoipa::path(
    get,
    path = "/ui/{file}",
    tag = "meta",
    summary = "A file of the dashboard (its page is served at / to browsers)",
    description = "The dashboard's scripts and styles, embedded in the binary. Open even with an admin \
                   token: they hold no data; the dashboard asks for the token when the API wants it.",
    security(()),
    params(("file" = String, Path, description = "A file name, such as app.js")),
    responses(
        (status = 200, description = "The file", content(
            (String = "text/javascript"),
            (String = "text/css"),
            (String = "text/html"),
        )),
        (status = 404, description = "No such file", body = crate::error::ErrorBody),
    ),
)]
pub async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == file) {
        Some(a) => serve(a),
        None => ApiError::NoAsset(file).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file in `web/` is served, and every served file exists: a module the
    /// page imports but the table forgot would fail only in a browser.
    #[test]
    fn every_web_file_is_listed() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = ASSETS.iter().map(|a| a.name.to_owned()).collect();
        listed.sort();
        assert_eq!(on_disk, listed);
        // Each module's imports name listed files.
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            for line in a.body.lines().filter(|l| l.starts_with("import ")) {
                let from = line.rsplit("from './").next().and_then(|r| r.split('\'').next()).unwrap_or_default();
                assert!(ASSETS.iter().any(|x| x.name == from), "{} imports {from:?}, not served", a.name);
            }
        }
    }
}
