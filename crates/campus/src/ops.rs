//! The operators' side of the cache (SPEC §3): `campus warm-cache`,
//! `campus cache-stats`, the counters every instance publishes so the report
//! sums them, and, without Redis, the loopback admin endpoint through which
//! those commands reach the in-process cache of the running server.

pub(crate) mod activity;
pub(crate) mod admin;
pub(crate) mod dashboard;
pub(crate) mod instances;
pub(crate) mod report;
pub(crate) mod warm;
