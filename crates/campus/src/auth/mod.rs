//! Authentication: SimpleJWT-compatible tokens (HS256), roles, and the
//! extractors that give every handler its organization from the verified token.
//!
//! The token carries user and organization, but a deactivated user or a changed
//! role must take effect at once: each request checks the user's auth record,
//! cached under the `user` generation of its organization, so a request pays a
//! cache look-up (an L1 hit, usually), not a query, and any write to users
//! invalidates it.
//!
//! - [`token`]: signing and verifying tokens, and [`Claimed`], a verified token;
//! - [`role`]: roles and the [`Caller`] a handler acts for;
//! - [`record`]: the cached auth record and what it says of the caller;
//! - [`extract`]: the axum extractors. The read of the record, together with
//!   the response's, is in [`crate::read`].

pub(crate) mod extract;
pub(crate) mod record;
pub(crate) mod role;
pub(crate) mod token;

pub(crate) use role::{Caller, Role};
pub(crate) use token::{Claimed, Jwt, now_secs};
