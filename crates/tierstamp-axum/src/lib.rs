//! axum integration for [`tierstamp`]: turns a cache [`Lookup`] into an HTTP
//! response with `X-Cache`, a strong `ETag` and `If-None-Match` → `304`.
//!
//! The cached bytes are sent as they are: a hit costs no serialisation. A handler
//! looks the body up with [`tierstamp::Cache::get_with`] (or `try_get_with`) and
//! returns a [`CachedResponse`]; a write handler invalidates after its commit:
//!
//! ```no_run
//! use axum::extract::State;
//! use axum::http::{HeaderMap, StatusCode};
//! use bytes::Bytes;
//! use tierstamp::{Cache, Kind, Scope};
//! use tierstamp_axum::CachedResponse;
//!
//! async fn list(State(cache): State<Cache>, headers: HeaderMap) -> Result<CachedResponse, StatusCode> {
//!     let key = cache.key(Kind::List, "todo", &Scope::global()).build().map_err(|_| StatusCode::BAD_REQUEST)?;
//!     let body = cache.get_with(&key, async { Bytes::from_static(b"[]") /* the query */ }).await;
//!     Ok(CachedResponse::new(body, &headers))
//! }
//!
//! async fn add(State(cache): State<Cache>) -> StatusCode {
//!     let mut effects = cache.transaction();
//!     // INSERT … inside the database transaction, then COMMIT
//!     effects.invalidate("todo", &Scope::global());
//!     effects.commit().await; // before the response: the client reads its write
//!     StatusCode::CREATED
//! }
//! ```
//!
//! The whole service, runnable and self-checking: `examples/axum_service.rs`
//! (`cargo run -p tierstamp-axum --example axum_service`).
//!
//! Headers of a [`CachedResponse`]:
//!
//! ```
//! use axum::http::{HeaderMap, StatusCode, header};
//! use axum::response::IntoResponse;
//! use bytes::Bytes;
//! use tierstamp::{Etag, Lookup, Status};
//! use tierstamp_axum::CachedResponse;
//!
//! let body = Bytes::from_static(b"{\"count\":0}");
//! let lookup = Lookup { etag: Etag::of(&body), body, status: Status::Hit, tier: None };
//! let mut headers = HeaderMap::new();
//! headers.insert(header::IF_NONE_MATCH, lookup.etag.header_value().parse().unwrap());
//! let response = CachedResponse::new(lookup, &headers).into_response();
//! assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
//! assert_eq!(response.headers()["x-cache"], "HIT");
//! ```
//!
//! This crate enables no feature of `tierstamp`: the application chooses (`redis`
//! for Redis, `metrics` for the `metrics` facade).
//!
//! # Layout
//! Everything lives in this file: [`CachedResponse`] and the header names.
#![deny(missing_docs)]

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tierstamp::Lookup;

/// The `tierstamp` this crate was built against, so applications can name its
/// types without a version mismatch.
pub use tierstamp;

/// The `X-Cache` header: `HIT`, `MISS`, `STALE` or `BYPASS`.
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// A cached JSON body as a response.
#[derive(Debug, Clone)]
pub struct CachedResponse {
    lookup: Lookup,
    not_modified: bool,
}

impl CachedResponse {
    /// Wraps a look-up; `request_headers` decide whether the client already has it.
    pub fn new(lookup: Lookup, request_headers: &HeaderMap) -> Self {
        let not_modified = request_headers
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| lookup.etag.matches(v));
        CachedResponse {
            lookup,
            not_modified,
        }
    }

    /// The look-up this response carries.
    pub fn lookup(&self) -> &Lookup {
        &self.lookup
    }
}

impl IntoResponse for CachedResponse {
    fn into_response(self) -> Response {
        // Sized for these headers and the two the stack adds (`content-length`,
        // the request id): a map grown one insert at a time is reallocated and
        // rehashed at the seventh.
        let mut headers = HeaderMap::with_capacity(8);
        headers.insert(
            header::ETAG,
            HeaderValue::from_bytes(&self.lookup.etag.header_bytes())
                .expect("hex etag is a valid header"),
        );
        headers.insert(
            X_CACHE,
            HeaderValue::from_static(self.lookup.status.as_str()),
        );
        // Responses depend on the caller's token (tenant, role): never share them.
        headers.insert(header::VARY, HeaderValue::from_static("Authorization"));
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-cache"),
        );
        let mut response = if self.not_modified {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            r
        } else {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Response::new(Body::from(self.lookup.body))
        };
        *response.headers_mut() = headers;
        response
    }
}

/// The README's quick start, compiled as a doctest so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tierstamp::{Etag, Status};

    fn lookup(status: Status) -> Lookup {
        let body = Bytes::from_static(b"[1,2]");
        Lookup {
            etag: Etag::of(&body),
            body,
            status,
            tier: None,
        }
    }

    #[test]
    fn a_fresh_request_gets_the_body_and_headers() {
        let r = CachedResponse::new(lookup(Status::Miss), &HeaderMap::new()).into_response();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["x-cache"], "MISS");
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(
            r.headers()["etag"],
            Etag::of(b"[1,2]").header_value().as_str()
        );
    }

    #[test]
    fn a_stale_etag_gets_the_body() {
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"0000\""));
        let r = CachedResponse::new(lookup(Status::Hit), &h).into_response();
        assert_eq!(r.status(), StatusCode::OK);
    }
}
