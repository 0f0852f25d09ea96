//! The operators' side of the cache (SPEC §3): `campus warm-cache`,
//! `campus cache-stats`, the counters every instance publishes so the report
//! sums them, and, without Redis, the loopback admin endpoint through which
//! those commands reach the in-process cache of the running server.

pub mod activity;
pub mod admin;
pub mod dashboard;
pub mod instances;
pub mod report;
pub mod warm;
