//! The web client at `/`: what the original's Next.js front end did (log in,
//! lists, detail and edit forms, the dashboard), for the people who run a
//! campus in a browser.
//!
//! **A static client of the public JSON API.** One HTML page, a few vanilla
//! ES modules and a style sheet, embedded in the binary with `include_str!`.
//! Why static and not server-rendered: the client can only do what any API
//! client can (no private endpoint, no second permission model to keep in
//! step with `auth::Caller`), and it exercises the API's cache the way a
//! browser does (ETag revalidation). Why no JavaScript toolchain: nothing to
//! build or download (no npm supply chain), `campus serve` is the whole
//! deployment, and a strict CSP is trivial because there is no inline script
//! or style to allow.
//!
//! # What the client holds to
//! * **Nothing from the API is rendered as HTML**: the DOM is built with
//!   `createElement`/`textContent` only (`dom.js`); a name like
//!   `<img src=x onerror=…>` shows as text. The CSP below would refuse an
//!   injected script anyway.
//! * **Tokens**: the access token lives in a module variable only; the refresh
//!   token in `sessionStorage`, which only this origin's scripts can read (no
//!   other origin's script, no cookie sent with cross-site requests), so a
//!   reload in the tab stays logged in and closing the tab forgets it; a tab
//!   opened from this one (which gets a copy of its sessionStorage) drops the
//!   copy and asks for a login, told apart by a mark in `window.name`. Refresh
//!   tokens rotate (`/api/auth/token/refresh/` blacklists the one exchanged),
//!   so the client single-flights its refreshes and stores each new one. The
//!   access token is refreshed 30 s before its `exp`; a 401 costs one refresh
//!   and one retry, then the login page; a refresh the server cannot answer
//!   (network, 5xx) keeps the session and is tried again, and one that answers
//!   after a logout is dropped. Logout forgets both.
//! * **Cache visibility**: every view shows its response's `X-Cache` (or "304
//!   revalidated") and the time it took. The client keeps a bounded map of
//!   URL → (ETag, body), sends `If-None-Match`, and reuses the body on a 304;
//!   it fetches with `cache: 'no-store'` so the browser's HTTP cache cannot
//!   hide the 304 from it.
//! * **Roles** (SPEC §4) come from `GET /api/auth/me/`: admin writes all,
//!   staff all but users, faculty and students read only and see no write
//!   controls (the server refuses their writes anyway; a 403 is shown).
//!
//! # Layout
//! `web/index.html` the page; `web/app.css`; `web/dom.js` element builders;
//! `web/api.js` tokens, requests, the ETag map; `web/view.js` what views
//! share (the session, the cache line, the error box); `web/app.js` the hash router
//! (`#/students?search=ann&page=2`), the shell and the login; `web/resources.js`
//! each resource's columns, filters and form fields; `web/list.js` the lists;
//! `web/form.js` detail, edit, create and delete; `web/chart.js` the
//! dashboard. The server serves `/` and `/app/<file>` only, each with
//! `Cache-Control: no-cache` and a strong ETag (a hash of the embedded bytes)
//! so browsers revalidate and pick up a new binary's client at once.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tierstamp::Etag;

use crate::error::ApiError;
use crate::state::AppState;

/// Only this origin's files run or style the page, it talks only to this
/// origin, nothing can frame it, and no form posts anywhere (the client
/// submits with `fetch`).
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// An asset of the client: its name under `/app/` is its file's name in
/// `src/web/`, written once.
macro_rules! asset {
    ($name:literal, $content_type:expr) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_str!(concat!("web/", $name)),
        }
    };
}

const INDEX: Asset = asset!("index.html", HTML);

/// The files under `/app/`; `index.html` imports `app.js`, which imports the
/// rest by relative paths.
const ASSETS: [Asset; 9] = [
    asset!("app.css", CSS),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("view.js", JS),
    asset!("resources.js", JS),
    asset!("list.js", JS),
    asset!("form.js", JS),
    asset!("chart.js", JS),
];

/// Each asset with its strong ETag (the API's own, [`Etag`]), hashed once:
/// the bytes are fixed at build time.
static SERVED: LazyLock<Vec<(&'static Asset, Etag)>> = LazyLock::new(|| {
    std::iter::once(&INDEX)
        .chain(ASSETS.iter())
        .map(|a| (a, Etag::of(a.body.as_bytes())))
        .collect()
});

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/app/{file}", get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    serve(&SERVED[0], &headers)
}

/// A name that is no asset, percent-encoded bytes that are no UTF-8
/// (`/app/%ff`) included, is the API's JSON 404.
async fn asset(file: Result<Path<String>, PathRejection>, headers: HeaderMap) -> Response {
    let Ok(Path(file)) = file else {
        return ApiError::NotFound.into_response();
    };
    match SERVED[1..].iter().find(|(a, _)| a.name == file) {
        Some(served) => serve(served, &headers),
        None => ApiError::NotFound.into_response(),
    }
}

/// The headers of every page this server renders in a browser (this client,
/// the operators' cache page): its CSP, and no framing, referrer or content
/// sniffing.
pub(crate) fn page_headers(csp: HeaderValue) -> [(HeaderName, HeaderValue); 4] {
    [
        (header::CONTENT_SECURITY_POLICY, csp),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ]
}

/// The asset, or a 304 when the browser already holds these bytes.
fn serve((asset, etag): &(&Asset, Etag), request: &HeaderMap) -> Response {
    let fresh = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| etag.matches(v));
    let etag = HeaderValue::from_bytes(&etag.header_bytes()).expect("hex digits are ASCII");
    let headers = [
        // Revalidate every time: a new binary's client is picked up at once,
        // and an unchanged one costs a 304.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::ETAG, etag),
    ];
    let headers = (headers, page_headers(HeaderValue::from_static(CSP)));
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (
        headers,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        )],
        asset.body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_client_imports_is_served() {
        let served: Vec<&str> = ASSETS.iter().map(|a| a.name).collect();
        let import = regex_lite::Regex::new(r#"from '\./([a-z]+\.js)'"#).unwrap();
        for a in ASSETS.iter().chain([&INDEX]) {
            for c in import.captures_iter(a.body) {
                assert!(served.contains(&&c[1]), "{} imports {}", a.name, &c[1]);
            }
        }
        for a in &ASSETS {
            if a.name.ends_with(".js") {
                assert!(!a.body.contains("innerHTML"), "{} uses innerHTML", a.name);
                assert!(!a.body.contains("insertAdjacentHTML"), "{}", a.name);
            }
        }
    }

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let page = INDEX.body;
        assert!(page.contains(r#"<script type="module" src="/app/app.js"></script>"#));
        assert!(!page.contains("<style"), "inline style");
        assert!(!page.contains(" style="), "inline style attribute");
        let handler = regex_lite::Regex::new(r"\son[a-z]+\s*=").unwrap();
        assert!(!handler.is_match(page), "inline handler");
    }
}
