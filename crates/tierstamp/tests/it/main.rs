//! Integration tests of tierstamp against real Redis servers.
//!
//! `REDIS_URL` (set by `scripts/test.sh` to a private server) serves the tests that
//! only read and write; tests that kill, pause or slow a server start their own
//! `redis-server` on a free port and stop it by PID.

#![allow(unreachable_pub, dead_code)]

mod background;
mod coherence;
mod correctness;
mod derived;
mod faults;
mod fields;
mod helpers;
mod partition;
mod refresh;
mod restore;
mod rows;
mod scaleout;
mod stampede;
