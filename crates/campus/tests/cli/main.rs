//! The `campus` binary as an operator runs it: real processes, real signals.
#![allow(unreachable_pub, dead_code)]

mod helpers;

mod shutdown;
