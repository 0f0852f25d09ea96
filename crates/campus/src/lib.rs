//! Campus: the multi-tenant academic REST API (organizations, departments,
//! programs, faculty, students, users), wire-compatible with the Django REST
//! Framework original, cached end to end with `tierstamp`.
//!
//! # Layout
//! * `config`: environment/CLI configuration; `cli`: one subcommand per file.
//! * `server`: the axum app and `run(listener, state, shutdown)`; `state`: the
//!   shared state and the cache built from the configuration.
//! * `api`: one module per resource; `resource`: the generic cached CRUD layer
//!   (list/detail caching, invalidation after commit); `listing`: DRF list
//!   semantics; `query`: search/order/page on sea-orm; `fields`: each resource's
//!   declared fields, what `input` (DRF validation) and `openapi` both read.
//! * `auth`: tokens, roles, the `Caller` extractor; `password`: argon2;
//!   `secret`: secrets from the OS generator; `login`: the bounded password
//!   hashing and the failed-login throttles.
//! * `outbox`: a committed write's invalidation, durable past its request and
//!   its process (the `cache_outbox` table, swept by every instance).
//! * `web`: the browser client at `/`, a static client of the JSON API.
//! * `db`, `entity`, `migration`, `seed`: the data layer.
#![allow(missing_docs)]

pub(crate) mod api;
pub mod app;
pub(crate) mod auth;
pub mod changes;
pub mod cli;
pub mod config;
pub mod db;
pub mod entity;
pub(crate) mod error;
pub(crate) mod fields;
pub(crate) mod input;
pub(crate) mod listing;
pub(crate) mod login;
pub(crate) mod migration;
pub(crate) mod model;
pub(crate) mod openapi;
pub(crate) mod ops;
pub(crate) mod outbox;
pub(crate) mod password;
pub mod query;
pub(crate) mod read;
pub(crate) mod resource;
pub(crate) mod secret;
pub mod seed;
pub mod server;
pub mod state;
pub(crate) mod web;
