//! API tests: the real server on a random port, a fresh database per test (SQLite
//! file or a throwaway PostgreSQL database), a unique Redis namespace.
#![allow(unreachable_pub, dead_code)]

mod helpers;

mod auth;
mod cache;
mod fuzz;
mod hostile;
mod input;
mod openapi;
mod resources;
mod schema_agreement;
