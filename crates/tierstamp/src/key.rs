//! Cache keys: `{prefix}:{version}:{kind}:{model}:{scope}:{normalized params}`.
//!
//! Three properties matter, and the property tests in this module hold them:
//!
//! * **Equal queries share one key.** Parameters are sorted by name, empty values and
//!   values equal to a declared default are dropped.
//! * **Different queries never share one.** A parameter is written `name=value` only
//!   when both are short and made of `[A-Za-z0-9_.-]`; otherwise it is written
//!   `name~{hash}` (or `~{hash}` when the name itself is odd), a 128-bit BLAKE3 digest.
//!   `=`, `~` and `:` never occur in a raw name or value, so the encoding is injective:
//!   a client cannot make two queries collide, nor forge a key of another model.
//! * **No key escapes its scope.** The scope (the tenant) is the only `{...}` in a key:
//!   it is a Redis Cluster hash tag, so an entry, its lease and the generation counters
//!   it depends on live in one slot and one Lua script can read them together. The
//!   scope comes from the application (the verified token), never from parameters,
//!   and parameters cannot contain braces.
//!
//! The scope is written as a hash tag (`{org_1}`), so one scope's keys and
//! counters share a Redis Cluster slot; parameters are `name=value`, never
//! `name_value`, which `page_size_50` would make ambiguous.

use std::fmt;
use std::sync::Arc;

use crate::error::Error;

mod entry;

pub(crate) use entry::EntryKeyBuilder;

/// Longest raw parameter name or value kept readable in a key; longer ones are hashed.
pub(crate) const MAX_RAW_LEN: usize = 64;

/// What an entry holds; selects the TTL tier and the key's `kind` segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A page of a collection.
    List,
    /// One row.
    Detail,
    /// The size of a collection.
    Count,
    /// Aggregates (dashboards).
    Stats,
}

impl Kind {
    /// The key segment of this kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::List => "list",
            Kind::Detail => "detail",
            Kind::Count => "count",
            Kind::Stats => "stats",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_ident(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_RAW_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn check(segment: &'static str, value: &str) -> Result<(), Error> {
    if is_ident(value) {
        Ok(())
    } else {
        Err(Error::InvalidKey {
            segment,
            value: value.to_owned(),
        })
    }
}

/// The isolation unit of the cache: a tenant (`org_7`), or [`Scope::global`].
///
/// Every entry and every generation counter belongs to exactly one scope; an
/// invalidation never crosses scopes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
// Shared, not owned: every cached read clones its scope into its key and caller.
pub struct Scope(Arc<str>);

impl Scope {
    /// A scope named `name` (`[A-Za-z0-9_.-]`, 1 to 64 characters).
    pub fn new(name: impl Into<String>) -> Result<Self, Error> {
        let name = name.into();
        check("scope", &name)?;
        Ok(Scope(name.into()))
    }
    /// The scope of a numeric tenant id: `org_{id}`.
    pub fn org(id: i64) -> Self {
        Scope(format!("org_{id}").into())
    }
    /// The scope of data shared by every tenant.
    pub fn global() -> Self {
        Scope("global".into())
    }
    /// The scope's name, without braces.
    pub fn name(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{}}}", self.0)
    }
}

/// Builds keys under one `{prefix}:{version}` namespace.
///
/// Bumping the version moves every instance that uses it to an empty keyspace; the
/// old keys age out by their TTL.
///
/// Entries are versioned; the generation counters, the epoch and the invalidation
/// channel are not (`{prefix}:gen:…`, `{prefix}:epoch`, `{prefix}:invalidations`).
/// During a rolling deploy instances of the old and the new version serve side by
/// side over the same database: a write served by either must invalidate the
/// entries of both, so both read the same counters and hear the same channel.
#[derive(Debug, Clone)]
pub struct KeyBuilder {
    prefix: String,
    namespace: String,
}

impl KeyBuilder {
    /// A builder for `{prefix}:{version}:…` keys.
    pub fn new(prefix: &str, version: &str) -> Result<Self, Error> {
        check("prefix", prefix)?;
        check("version", version)?;
        Ok(KeyBuilder {
            prefix: prefix.to_owned(),
            namespace: format!("{prefix}:{version}"),
        })
    }

    /// `{prefix}`, shared by every version: the start of every key of the
    /// application, counters included.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{prefix}:{version}`, the start of every entry key this builder makes.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Starts an entry key.
    pub(crate) fn entry<'a>(
        &'a self,
        kind: Kind,
        model: &'a str,
        scope: &'a Scope,
    ) -> EntryKeyBuilder<'a> {
        EntryKeyBuilder::new(self, kind, model, scope)
    }

    /// The generation counter of `model` in `scope`.
    pub(crate) fn generation(&self, model: &str, scope: &Scope) -> Result<String, Error> {
        check("model", model)?;
        // Built by hand at its exact size: several of these are made per cached
        // read, and `format!`'s growth showed in profiles.
        Ok(concat(&[
            &self.prefix,
            ":gen:",
            model,
            ":{",
            scope.name(),
            "}",
        ]))
    }

    /// The generation counter of one row of `model` in `scope`:
    /// `{prefix}:gen:{model}:{scope}:{row}`. A row's entries depend on it, on
    /// [`rows_generation`](Self::rows_generation) and on the model's
    /// dependencies, not on the model's own counter: a write to another row
    /// leaves them valid. The only counters whose key ends in neither `}` nor
    /// `*`, which is how the scripts know to give them a TTL.
    pub(crate) fn row_generation(
        &self,
        model: &str,
        scope: &Scope,
        row: &str,
    ) -> Result<String, Error> {
        check("row", row)?;
        let mut key = self.generation(model, scope)?;
        key.push(':');
        key.push_str(row);
        Ok(key)
    }

    /// The counter of every row of `model` in `scope` at once,
    /// `{prefix}:gen:{model}:{scope}:*`: bumped by a write that does not say
    /// which rows it changed.
    pub(crate) fn rows_generation(&self, model: &str, scope: &Scope) -> Result<String, Error> {
        let mut key = self.generation(model, scope)?;
        key.push_str(":*");
        Ok(key)
    }

    /// The shape counter of `model` in `scope`, `{prefix}:gen:{model}:{scope}:~`:
    /// bumped by every write that may add or remove rows or does not say which
    /// fields it changed. Entries keyed with
    /// [`KeyRequest::fields`](crate::KeyRequest::fields) depend on it.
    pub(crate) fn shape_generation(&self, model: &str, scope: &Scope) -> Result<String, Error> {
        let mut key = self.generation(model, scope)?;
        key.push_str(":~");
        Ok(key)
    }

    /// The counter of one field of `model` in `scope`,
    /// `{prefix}:gen:{model}:{scope}:~{field}`: bumped by a write that says it
    /// changed that field. A row id never contains `~`, so it is never a row's.
    pub(crate) fn field_generation(
        &self,
        model: &str,
        scope: &Scope,
        field: &str,
    ) -> Result<String, Error> {
        check("field", field)?;
        let mut key = self.shape_generation(model, scope)?;
        key.push_str(field);
        Ok(key)
    }

    /// The key of the global epoch, bumped after an outage (see the crate docs).
    #[cfg(feature = "redis")]
    pub(crate) fn epoch(&self) -> String {
        format!("{}:epoch", self.prefix)
    }

    /// The identity marker: the `run_id` of the Redis process on which the
    /// epoch was last validated (see the crate docs, "A Redis that comes back
    /// with older data"). `{{prefix}:epoch}:identity`: its hash tag is the
    /// whole epoch key, so in a Cluster it lives in the epoch's slot and one
    /// script reads both. It is outside `{prefix}:` on purpose: clearing the
    /// application's keys ([`RedisStore::unlink_prefix`](crate::RedisStore::unlink_prefix))
    /// removes data, not the record of which server validated it.
    #[cfg(feature = "redis")]
    pub(crate) fn identity(&self) -> String {
        format!("{{{}:epoch}}:identity", self.prefix)
    }

    /// The pub/sub channel that carries invalidations between instances.
    #[cfg(feature = "redis")]
    pub(crate) fn channel(&self) -> String {
        format!("{}:invalidations", self.prefix)
    }
}

/// The parts joined, in a string of exactly their length.
fn concat(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        out.push_str(p);
    }
    out
}

#[cfg(test)]
mod tests;
