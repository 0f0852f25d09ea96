//! An entry key's parameters and their encoding: sorted, defaults dropped,
//! each written `name=value` when both are short identifiers and as a BLAKE3
//! digest otherwise, so that distinct queries never share a key.

use super::{KeyBuilder, Kind, Scope, check, is_ident};
use crate::error::Error;

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

impl<'a> EntryKeyBuilder<'a> {
    pub(super) fn new(keys: &'a KeyBuilder, kind: Kind, model: &'a str, scope: &'a Scope) -> Self {
        EntryKeyBuilder {
            keys,
            kind,
            model,
            scope,
            params: Vec::new(),
            defaults: Vec::new(),
        }
    }

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
pub(super) const MAX_REMEMBERED_LEN: usize = 256;
/// Most digests remembered before the memo is emptied (about 1 MB at most).
pub(super) const MAX_REMEMBERED: usize = 2048;

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
pub(super) fn digest(parts: &[&[u8]]) -> String {
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
