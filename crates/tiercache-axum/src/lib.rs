//! axum/tower integration for [`tiercache`]: cached resources and response caching
//! (`X-Cache`, strong `ETag`, `If-None-Match` → 304).
//!
//! This crate is a placeholder for the next milestone; its dependency on
//! `tiercache` fixes the layering: `tiercache` knows nothing of HTTP.
#![warn(missing_docs)]

pub use tiercache;
