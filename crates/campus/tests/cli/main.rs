//! The `campus` binary as an operator runs it: real processes, real signals,
//! real exit codes.
#![allow(unreachable_pub, dead_code)]

mod helpers;

mod commands;
mod dashboard;
mod nginx;
mod ops;
mod redis_modes;
mod secrets;
mod shutdown;
mod web;
