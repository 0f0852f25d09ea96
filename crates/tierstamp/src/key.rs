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
        EntryKeyBuilder {
            keys: self,
            kind,
            model,
            scope,
            params: Vec::new(),
            defaults: Vec::new(),
        }
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

/// Collects the parameters of one entry key; see [`KeyBuilder::entry`].
#[derive(Debug, Clone)]
pub(crate) struct EntryKeyBuilder<'a> {
    keys: &'a KeyBuilder,
    kind: Kind,
    model: &'a str,
    scope: &'a Scope,
    params: Vec<(String, String)>,
    defaults: Vec<(String, String)>,
}

impl EntryKeyBuilder<'_> {
    /// Adds a query parameter (client input is fine here: it is normalised and hashed).
    pub(crate) fn param(mut self, name: impl Into<String>, value: impl ToString) -> Self {
        self.params.push((name.into(), value.to_string()));
        self
    }

    /// Adds every parameter of an iterator.
    pub(crate) fn params<I, N, V>(mut self, params: I) -> Self
    where
        I: IntoIterator<Item = (N, V)>,
        N: Into<String>,
        V: ToString,
    {
        self.params
            .extend(params.into_iter().map(|(n, v)| (n.into(), v.to_string())));
        self
    }

    /// Declares the default of a parameter: a parameter equal to it is left out, so
    /// `?page=1` and no `page` at all share one key.
    pub(crate) fn default(mut self, name: impl Into<String>, value: impl ToString) -> Self {
        self.defaults.push((name.into(), value.to_string()));
        self
    }

    /// The finished key.
    pub(crate) fn build(self) -> Result<String, Error> {
        check("model", self.model)?;
        let mut params: Vec<&(String, String)> = self
            .params
            .iter()
            .filter(|(n, v)| {
                !v.is_empty() && !self.defaults.iter().any(|(dn, dv)| dn == n && dv == v)
            })
            .collect();
        // Stable: repeated names keep the order the client gave, which may matter.
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let tail: usize = params.iter().map(|(n, v)| n.len() + v.len() + 2).sum();
        let head = [
            self.keys.namespace.as_str(),
            ":",
            self.kind.as_str(),
            ":",
            self.model,
            ":{",
            self.scope.name(),
            "}",
        ];
        let mut key = String::with_capacity(head.iter().map(|p| p.len()).sum::<usize>() + tail);
        for part in head {
            key.push_str(part);
        }
        for (name, value) in params {
            key.push(':');
            push_param(&mut key, name, value);
        }
        Ok(key)
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

fn push_param(key: &mut String, name: &str, value: &str) {
    if is_ident(name) {
        key.push_str(name);
        if is_ident(value) {
            key.push('=');
            key.push_str(value);
        } else {
            key.push('~');
            push_value_digest(key, value);
        }
    } else {
        key.push('~');
        key.push_str(&digest(&[name.as_bytes(), value.as_bytes()]));
    }
}

/// Values up to this length have their digest remembered.
const MAX_REMEMBERED_LEN: usize = 256;
/// Most digests remembered before the memo is emptied (about 1 MB at most).
const MAX_REMEMBERED: usize = 2048;

/// Appends the digest of a parameter's value. The same few values come back on
/// most requests (a list's `base` URL, built from the `Host` header, is on every
/// one), and hashing one cost more than the rest of the key: short values' digests
/// are remembered, in a memo that is emptied when full since clients choose the
/// values. The digest itself is unchanged (still BLAKE3), so nothing forges a key
/// that could not be forged before.
fn push_value_digest(key: &mut String, value: &str) {
    static MEMO: std::sync::OnceLock<crate::Memo<Box<str>, Box<str>, MAX_REMEMBERED>> =
        std::sync::OnceLock::new();
    if value.len() > MAX_REMEMBERED_LEN {
        key.push_str(&digest(&[value.as_bytes()]));
        return;
    }
    let memo = MEMO.get_or_init(Default::default);
    if memo.read_with(value, |d| key.push_str(d)).is_some() {
        return;
    }
    let d = digest(&[value.as_bytes()]);
    key.push_str(&d);
    memo.insert(value.into(), d.into());
}

/// 128 bits of BLAKE3 over length-prefixed parts, in hex.
fn digest(parts: &[&[u8]]) -> String {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let bytes = h.finalize();
    let mut out = String::with_capacity(32);
    crate::envelope::push_hex(&mut out, &bytes.as_bytes()[..16]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kb() -> KeyBuilder {
        KeyBuilder::new("campus", "v1").unwrap()
    }

    #[test]
    fn layout_matches_the_spec() {
        let s = Scope::org(1);
        let key = kb()
            .entry(Kind::List, "faculty", &s)
            .param("page", 1)
            .param("department", "CS")
            .build()
            .unwrap();
        assert_eq!(key, "campus:v1:list:faculty:{org_1}:department=CS:page=1");
        assert_eq!(
            kb().generation("faculty", &s).unwrap(),
            "campus:gen:faculty:{org_1}"
        );
    }

    #[test]
    fn remembered_digests_are_the_digests() {
        let s = Scope::org(1);
        let key = |v: &str| {
            kb().entry(Kind::List, "faculty", &s)
                .param("base", v)
                .build()
                .unwrap()
        };
        let long = "h".repeat(MAX_REMEMBERED_LEN + 1) + ":";
        for v in ["http://a:1/x/", "http://a:1/y/", long.as_str()] {
            let want = format!(
                "campus:v1:list:faculty:{{org_1}}:base~{}",
                digest(&[v.as_bytes()])
            );
            // Computed, then remembered (or not, when long).
            assert_eq!(key(v), want);
            assert_eq!(key(v), want);
        }
        // More values than the memo holds: it is emptied, never wrong.
        for i in 0..MAX_REMEMBERED + 10 {
            let v = format!("v:{i}");
            assert!(key(&v).ends_with(&digest(&[v.as_bytes()])));
        }
        assert_eq!(
            key("http://a:1/x/"),
            format!(
                "campus:v1:list:faculty:{{org_1}}:base~{}",
                digest(&[b"http://a:1/x/"])
            )
        );
    }

    #[test]
    fn defaults_and_empty_values_are_dropped() {
        let s = Scope::org(1);
        let a = kb()
            .entry(Kind::List, "faculty", &s)
            .param("page", "1")
            .param("search", "")
            .default("page", 1)
            .build()
            .unwrap();
        let b = kb()
            .entry(Kind::List, "faculty", &s)
            .default("page", 1)
            .build()
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(a, "campus:v1:list:faculty:{org_1}");
    }

    #[test]
    fn odd_values_are_hashed() {
        let s = Scope::org(1);
        let key = kb()
            .entry(Kind::List, "faculty", &s)
            .param("search", "x:{org_2}*")
            .build()
            .unwrap();
        assert!(
            key.starts_with("campus:v1:list:faculty:{org_1}:search~"),
            "{key}"
        );
        assert_eq!(key.matches('{').count(), 1);
        let long = "a".repeat(MAX_RAW_LEN + 1);
        let key = kb()
            .entry(Kind::List, "f", &s)
            .param("q", &long)
            .build()
            .unwrap();
        assert!(!key.contains(&long));
    }

    #[test]
    fn bad_segments_are_rejected() {
        assert!(KeyBuilder::new("cam:pus", "v1").is_err());
        assert!(KeyBuilder::new("campus", "").is_err());
        assert!(Scope::new("org_{1}").is_err());
        assert!(
            kb().entry(Kind::List, "fa culty", &Scope::org(1))
                .build()
                .is_err()
        );
    }

    fn param() -> impl Strategy<Value = (String, String)> {
        (
            prop_oneof![
                Just("page".to_owned()),
                Just("page_size".to_owned()),
                "[a-z_]{1,8}",
                ".{0,6}"
            ],
            prop_oneof!["[A-Za-z0-9_.-]{0,8}", ".{0,12}", "[=~:{}]{1,4}"],
        )
    }

    fn build(params: &[(String, String)]) -> String {
        kb().entry(Kind::List, "faculty", &Scope::org(1))
            .params(params.iter().cloned())
            .default("page", "1")
            .build()
            .unwrap()
    }

    /// The canonical form of a query: what the key must be a function of, and only of.
    fn canonical(params: &[(String, String)]) -> Vec<(String, String)> {
        let mut v: Vec<_> = params
            .iter()
            .filter(|(n, v)| !(v.is_empty() || (n == "page" && v == "1")))
            .cloned()
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    proptest! {
        #[test]
        fn permuted_queries_share_a_key(params in proptest::collection::vec(param(), 0..6), seed in any::<u64>()) {
            // Shuffle while keeping the relative order of repeated names.
            let mut shuffled = params.clone();
            let mut rng = fastrand::Rng::with_seed(seed);
            rng.shuffle(&mut shuffled);
            let mut reordered: Vec<(String, String)> = Vec::new();
            for (n, _) in &shuffled {
                if reordered.iter().any(|(m, _)| m == n) { continue; }
                reordered.extend(params.iter().filter(|(m, _)| m == n).cloned());
            }
            prop_assert_eq!(build(&params), build(&reordered));
        }

        #[test]
        fn different_queries_never_share_a_key(a in proptest::collection::vec(param(), 0..5), b in proptest::collection::vec(param(), 0..5)) {
            if canonical(&a) != canonical(&b) {
                prop_assert_ne!(build(&a), build(&b));
            } else {
                prop_assert_eq!(build(&a), build(&b));
            }
        }

        #[test]
        fn no_key_escapes_its_prefix_and_scope(params in proptest::collection::vec(param(), 0..6)) {
            let key = build(&params);
            let head = "campus:v1:list:faculty:{org_1}";
            prop_assert!(key.starts_with(head));
            let tail = &key[head.len()..];
            prop_assert!(!tail.contains(['{', '}']), "braces in {}", tail);
            for segment in tail.split(':').skip(1) {
                prop_assert!(segment.contains('=') || segment.contains('~'), "segment {}", segment);
            }
        }
    }
}
