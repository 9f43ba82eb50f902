//! The OpenAPI 3.1 description of the control plane, served at
//! `GET /api/openapi.json`.
//!
//! Nothing here is written by hand: operations come from the handlers'
//! `#[utoipa::path]` attributes, schemas from `ToSchema` derives on the types the
//! handlers take and return (session types included, through wsgate-core's `openapi`
//! feature), and the route table in [`crate::routes`] registers each handler with its
//! operation in one line. This module adds what depends on the running instance —
//! with an admin token, the security requirement and the 401 answer of every guarded
//! operation — and turns axum path syntax into OpenAPI's.

use axum::Extension;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, header};
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, InfoBuilder, LicenseBuilder, ObjectBuilder, OpenApi, Paths, Ref, RefOr, Type,
};

/// Where the document is served.
pub const SPEC_PATH: &str = "/api/openapi.json";

/// Name of the bearer-token security scheme (`Authorization: Bearer <token>`).
pub const BEARER_SCHEME: &str = "bearer";
/// Name of the query-token security scheme (`?token=<token>`).
pub const QUERY_TOKEN_SCHEME: &str = "token";
/// Name of the error schema (`ErrorBody`), which every guarded route's 400 already
/// brings into the components.
const ERROR_SCHEMA: &str = "ErrorBody";
/// Name of the shared 401 response component.
pub const UNAUTHORIZED_RESPONSE: &str = "Unauthorized";

const DESCRIPTION: &str = "\
wsgate's control plane: health, metrics, the sessions API, the live event stream and the \
websocket-multiplex taps. See docs/control-api.md.

Every error is `{\"error\": \"<message>\"}` with its HTTP status. Any route answers 405 \
(with `Allow`) to a method it does not serve and 404 to a path that is not a route. \
Request bodies are limited to 1 MiB (413, answered before the body is read when \
`Content-Length` says so) and must arrive within 10 s (408). JSON bodies must be \
`application/json` (or `+json`; a body without `Content-Type` is read as JSON), and \
unknown fields in them are rejected with 400. Unknown query parameters are ignored.

With an admin token configured, every operation but the health probes needs \
`Authorization: Bearer <token>` or `?token=<token>`, and this document says so; a WebSocket \
upgrade may carry `?ticket=<ticket>` from `POST /api/live/ticket` instead, which keeps the \
token out of URLs.
Browsers are kept out unless invited: a request whose `Host` is not an IP address, \
`localhost` or a name listed with `--control-host` is answered 421, and one whose `Origin` \
is neither the control plane's own nor listed with `--control-origin` is answered 403 \
(see docs/security.md).";

/// The serialized document, handed to [`spec`] as a request extension.
#[derive(Clone, Debug)]
pub struct SpecJson(pub(crate) Bytes);

/// `GET /api/openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "meta",
    summary = "This OpenAPI document",
    description = "Generated from the code of the running version; same token rule as the other /api routes.",
    responses((status = 200, description = "The OpenAPI 3.1 description of this API", body = Object,
               content_type = "application/json")),
)]
pub async fn spec(Extension(SpecJson(json)): Extension<SpecJson>) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], json).into_response()
}

/// The master connection on `/` needs the token though the page there is open: its
/// GET documents the 401 an upgrade without the token gets.
pub(crate) fn root_upgrade_needs_token(doc: &mut OpenApi) {
    if let Some(op) = doc.paths.paths.get_mut("/").and_then(|item| item.get.as_mut()) {
        op.responses.responses.insert("401".to_owned(), RefOr::Ref(Ref::from_response_name(UNAUTHORIZED_RESPONSE)));
    }
}

/// Marks every operation of `doc` as needing the admin token, with its 401 answer.
pub(crate) fn require_token(doc: &mut OpenApi) {
    for item in doc.paths.paths.values_mut() {
        for op in operations_mut(item) {
            op.security = Some(vec![
                SecurityRequirement::new(BEARER_SCHEME, Vec::<String>::new()),
                SecurityRequirement::new(QUERY_TOKEN_SCHEME, Vec::<String>::new()),
            ]);
            op.responses.responses.insert("401".to_owned(), RefOr::Ref(Ref::from_response_name(UNAUTHORIZED_RESPONSE)));
        }
    }
    let components = doc.components.get_or_insert_with(Default::default);
    components.security_schemes.insert(
        BEARER_SCHEME.to_owned(),
        RefOr::T(SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("The admin token (`--admin-token`)"))
                .build(),
        )),
    );
    components.security_schemes.insert(
        QUERY_TOKEN_SCHEME.to_owned(),
        RefOr::T(SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
            "token",
            "The admin token, for clients that cannot set headers; browsers should prefer a ticket (`POST /api/live/ticket`, passed as `?ticket=`) so the token stays out of URLs",
        )))),
    );
    components.responses.insert(
        UNAUTHORIZED_RESPONSE.to_owned(),
        RefOr::T(
            ResponseBuilder::new()
                .description("Missing or wrong admin token")
                .header(
                    "WWW-Authenticate",
                    HeaderBuilder::new()
                        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                        .description(Some("`Bearer`"))
                        .build(),
                )
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(Ref::from_schema_name(ERROR_SCHEMA))).build(),
                )
                .build(),
        ),
    );
}

/// The finished document: `routes` (the merged route docs) with its info, and axum's
/// `{*wildcard}` path segments written the OpenAPI way (`{wildcard}`).
pub(crate) fn finish(mut doc: OpenApi) -> OpenApi {
    doc.info = InfoBuilder::new()
        .title("wsgate control API")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(DESCRIPTION))
        .license(Some(LicenseBuilder::new().name("Apache-2.0").identifier(Some("Apache-2.0")).build()))
        .build();
    let mut paths = Paths::new();
    for (path, item) in std::mem::take(&mut doc.paths.paths) {
        paths.paths.insert(openapi_path(&path), item);
    }
    doc.paths = paths;
    doc
}

/// An axum route path as an OpenAPI path template: `/client/{*path}` → `/client/{path}`.
pub fn openapi_path(axum_path: &str) -> String {
    axum_path.replace("{*", "{")
}

fn operations_mut(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}
