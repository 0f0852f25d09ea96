//! Keys: [`CacheKey`] and the [`KeyRequest`] that builds it, with the
//! generation counters an entry depends on (chosen by its basis: the model, one
//! row, or some fields), memoised per scope and model.

use std::sync::Arc;

use crate::error::Error;
use crate::hash::FastMap;
use crate::key::{EntryKeyBuilder, Kind, Scope};
use crate::memo::Memo;

use super::{Cache, Inner};

/// A fully built key: the entry key and the generation counters it depends on.
#[derive(Debug, Clone)]
pub struct CacheKey {
    pub(super) key: Arc<str>,
    pub(super) kind: Kind,
    pub(super) model: Arc<str>,
    scope: Scope,
    pub(super) gen_keys: Arc<[String]>,
    /// The key of the entry derived for it in process (`cache/derived.rs`),
    /// made on first use: a key kept and reused (a list's, memoised by its
    /// application) makes it once.
    pub(super) derived: std::sync::OnceLock<Box<str>>,
}

/// Keys are equal when their entry keys and counters are; the derived key
/// follows from the entry key.
impl PartialEq for CacheKey {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
            && self.kind == other.kind
            && self.model == other.model
            && self.scope == other.scope
            && self.gen_keys == other.gen_keys
    }
}

impl Eq for CacheKey {}

impl std::hash::Hash for CacheKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key.hash(state);
        self.kind.hash(state);
        self.model.hash(state);
        self.scope.hash(state);
        self.gen_keys.hash(state);
    }
}

impl CacheKey {
    /// The entry's key in the store.
    pub fn as_str(&self) -> &str {
        &self.key
    }
    /// The entry's kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }
    /// The model the entry belongs to.
    pub fn model(&self) -> &str {
        &self.model
    }
    /// The entry's scope.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }
    /// The generation counters the entry depends on.
    pub fn gen_keys(&self) -> &[String] {
        &self.gen_keys
    }
}

/// Builds a [`CacheKey`]; see [`Cache::key`].
#[derive(Debug)]
pub struct KeyRequest<'a> {
    cache: &'a Cache,
    entry: EntryKeyBuilder<'a>,
    kind: Kind,
    model: &'a str,
    scope: &'a Scope,
    basis: Basis,
}

/// What an entry is computed from, which picks the counters it depends on.
#[derive(Debug)]
enum Basis {
    /// Any rows of its model: the model's counter.
    Model,
    /// One row ([`KeyRequest::row`]).
    Row(String),
    /// Which rows exist and some of their fields ([`KeyRequest::fields`]).
    Fields(Vec<String>),
}

impl<'a> KeyRequest<'a> {
    /// Adds a query parameter (client input is normalised and hashed).
    pub fn param(mut self, name: impl Into<String>, value: impl ToString) -> Self {
        self.entry = self.entry.param(name, value);
        self
    }
    /// Adds parameters.
    pub fn params<I, N, V>(mut self, params: I) -> Self
    where
        I: IntoIterator<Item = (N, V)>,
        N: Into<String>,
        V: ToString,
    {
        self.entry = self.entry.params(params);
        self
    }
    /// Declares a parameter's default, dropped from the key.
    pub fn default(mut self, name: impl Into<String>, value: impl ToString) -> Self {
        self.entry = self.entry.default(name, value);
        self
    }
    /// Makes this the key of one row's entry (a detail, an auth record): it
    /// gets the parameter `row={row}` and depends on that row's counter, the
    /// model's all-rows counter and the model's dependencies, instead of the
    /// model's own counter. [`Cache::invalidate_row`] of another row leaves it
    /// valid; [`Cache::invalidate`] of the model, or of a model it depends on,
    /// does not.
    ///
    /// Only for entries computed from that row (and from the models the
    /// model's declared dependencies name) alone: an entry that reads other
    /// rows of its own model must stay a model-wide key.
    pub fn row(mut self, row: impl ToString) -> Self {
        let row = row.to_string();
        self.entry = self.entry.param("row", &row);
        self.basis = Basis::Row(row);
        self
    }
    /// Makes this the key of an entry computed from *which* rows of its model
    /// exist and from the named fields of them, not from the rest of their
    /// fields: the ids of a list's page in its order, a count. It depends on
    /// the model's shape counter, on one counter per field and on the model's
    /// dependencies, instead of on the model's own counter.
    ///
    /// [`Cache::invalidate_fields`] of other fields leaves it valid; a write
    /// that may add or remove rows or does not name its fields
    /// ([`Cache::invalidate_row`], [`Cache::invalidate`]), a write to one of
    /// `fields`, or an invalidation of a model it depends on, does not. Name
    /// every field the entry's rows were chosen, filtered or ordered by.
    /// Replaces [`row`](Self::row) (the last call wins).
    pub fn fields<I, F>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = F>,
        F: Into<String>,
    {
        let mut fields: Vec<String> = fields.into_iter().map(Into::into).collect();
        fields.sort();
        fields.dedup();
        self.basis = Basis::Fields(fields);
        self
    }
    /// The key, with the generation keys of the model and its dependencies.
    pub fn build(self) -> Result<CacheKey, Error> {
        let inner = &self.cache.inner;
        let (model, gen_keys) = match &self.basis {
            Basis::Model => inner.generations(self.model, self.scope)?,
            Basis::Row(row) => {
                let (model, tail) = inner.row_generations(self.model, self.scope)?;
                let mut keys = Vec::with_capacity(tail.len() + 1);
                keys.push(inner.keys.row_generation(self.model, self.scope, row)?);
                keys.extend(tail.iter().cloned());
                (model, keys.into())
            }
            Basis::Fields(fields) => {
                // The model's own counter comes first in the model-wide keys;
                // its dependencies' follow.
                let (model, model_wide) = inner.generations(self.model, self.scope)?;
                let mut keys = Vec::with_capacity(fields.len() + model_wide.len());
                keys.push(inner.keys.shape_generation(self.model, self.scope)?);
                for f in fields {
                    keys.push(inner.keys.field_generation(self.model, self.scope, f)?);
                }
                keys.extend(model_wide[1..].iter().cloned());
                (model, keys.into())
            }
        };
        Ok(CacheKey {
            key: self.entry.build()?.into(),
            kind: self.kind,
            model,
            scope: self.scope.clone(),
            gen_keys,
            derived: std::sync::OnceLock::new(),
        })
    }
}

impl Cache {
    /// Starts a key for an entry of `kind` of `model` in `scope`.
    pub fn key<'a>(&'a self, kind: Kind, model: &'a str, scope: &'a Scope) -> KeyRequest<'a> {
        KeyRequest {
            cache: self,
            entry: self.inner.keys.entry(kind, model, scope),
            kind,
            model,
            scope,
            basis: Basis::Model,
        }
    }
}

/// Per scope, each model's [`Memoized`] generation keys. A scope's models are
/// few: a new one is added by replacing the scope's map.
pub(super) type Generations = Memo<Scope, Arc<FastMap<Box<str>, Memoized>>, MAX_MEMO_SCOPES>;

/// A model's shared name, the generation keys of its model-wide entries (its
/// own counter, then its dependencies'), and those of its row entries after
/// the row's own counter (its all-rows counter, then its dependencies').
#[derive(Clone)]
pub(super) struct Memoized {
    model: Arc<str>,
    gen_keys: Arc<[String]>,
    row_tail: Arc<[String]>,
}

/// Most scopes whose generation keys are remembered before the memo is emptied
/// (it is rebuilt on use): about 2 KB per scope of a few models, 20 MB at most.
const MAX_MEMO_SCOPES: usize = 10_000;

impl Inner {
    /// The model's shared name and the generation keys of its model-wide
    /// entries.
    fn generations(&self, model: &str, scope: &Scope) -> Result<(Arc<str>, Arc<[String]>), Error> {
        let m = self.memoized(model, scope)?;
        Ok((m.model, m.gen_keys))
    }

    /// The model's shared name and the generation keys of its row entries,
    /// after the row's own counter.
    fn row_generations(
        &self,
        model: &str,
        scope: &Scope,
    ) -> Result<(Arc<str>, Arc<[String]>), Error> {
        let m = self.memoized(model, scope)?;
        Ok((m.model, m.row_tail))
    }

    fn memoized(&self, model: &str, scope: &Scope) -> Result<Memoized, Error> {
        if let Some(Some(found)) = self
            .generations
            .read_with(scope, |models| models.get(model).cloned())
        {
            return Ok(found);
        }
        let gen_keys = self
            .deps
            .each(model)
            .map(|m| self.keys.generation(m, scope))
            .collect::<Result<Arc<[String]>, _>>()?;
        let row_tail = std::iter::once(self.keys.rows_generation(model, scope))
            .chain(gen_keys[1..].iter().cloned().map(Ok))
            .collect::<Result<Arc<[String]>, _>>()?;
        let found = Memoized {
            model: Arc::from(model),
            gen_keys,
            row_tail,
        };
        // Two models of a scope memoized at once may drop one of them: it is
        // built again on its next use.
        let mut models = self
            .generations
            .get(scope)
            .map(|models| FastMap::clone(&models))
            .unwrap_or_default();
        models.insert(model.into(), found.clone());
        self.generations.insert(scope.clone(), Arc::new(models));
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;
    use crate::invalidation::Dependencies;

    #[test]
    fn generation_keys_are_remembered_per_scope_and_model() {
        let cache = Cache::builder(MemoryStore::new(1 << 20))
            .dependencies(Dependencies::new().model("faculty", ["department"]))
            .build();
        let key = |model, scope: &Scope| cache.key(Kind::List, model, scope).build().unwrap();
        let (one, two) = (Scope::org(1), Scope::org(2));
        let a = key("faculty", &one);
        let b = key("faculty", &one);
        assert!(Arc::ptr_eq(&a.gen_keys, &b.gen_keys), "built once");
        assert_eq!(
            a.gen_keys(),
            [
                "tierstamp:gen:faculty:{org_1}",
                "tierstamp:gen:department:{org_1}"
            ]
        );
        assert_eq!(
            key("faculty", &two).gen_keys(),
            [
                "tierstamp:gen:faculty:{org_2}",
                "tierstamp:gen:department:{org_2}"
            ]
        );
        assert_eq!(
            key("department", &one).gen_keys(),
            ["tierstamp:gen:department:{org_1}"]
        );
        // A bad model name is refused every time, never remembered.
        for _ in 0..2 {
            assert!(cache.key(Kind::List, "no:pe", &one).build().is_err());
        }
    }
}
