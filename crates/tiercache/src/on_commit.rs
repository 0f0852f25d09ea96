//! The on-commit buffer.
//!
//! Invalidating before a database transaction commits lets a reader, between the
//! invalidation and the commit, cache the old rows again; invalidating for a
//! transaction that rolls back is wasted. So cache effects of a transaction are
//! queued here and applied after the commit, before the response is sent:
//!
//! ```no_run
//! # async fn demo(cache: tiercache::Cache) {
//! use tiercache::Scope;
//! let scope = Scope::org(1);
//! let mut effects = cache.transaction();
//! // ... UPDATE departments ... inside the database transaction
//! effects.invalidate("department", &scope);
//! // db_tx.commit().await?;
//! effects.commit().await; // only now do other readers see the invalidation
//! # }
//! ```
//!
//! Dropping the buffer (or [`Transaction::rollback`]) discards every effect.
//! Reads made inside an open write transaction should call their loader directly:
//! they may see uncommitted rows, which must never be cached.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::cache::{Cache, CacheKey};
use crate::key::Scope;

enum Effect {
    Set(CacheKey, Bytes),
    Delete(CacheKey),
}

/// Cache effects waiting for a database commit; see the module docs.
#[must_use = "a transaction's effects are applied by commit() and dropped otherwise"]
pub struct Transaction {
    cache: Cache,
    invalidations: BTreeMap<Scope, Vec<String>>,
    effects: Vec<Effect>,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("invalidations", &self.invalidations)
            .field("effects", &self.effects.len())
            .finish()
    }
}

impl Transaction {
    pub(crate) fn new(cache: Cache) -> Self {
        Transaction {
            cache,
            invalidations: BTreeMap::new(),
            effects: Vec::new(),
        }
    }

    /// Queues the invalidation of `model` in `scope` (deduplicated).
    pub fn invalidate(&mut self, model: &str, scope: &Scope) {
        let models = self.invalidations.entry(scope.clone()).or_default();
        if !models.iter().any(|m| m == model) {
            models.push(model.to_owned());
        }
    }

    /// Queues storing `body` under `key` (applied after the invalidations).
    pub fn set(&mut self, key: CacheKey, body: Bytes) {
        self.effects.push(Effect::Set(key, body));
    }

    /// Queues removing the entry under `key`.
    pub fn delete(&mut self, key: CacheKey) {
        self.effects.push(Effect::Delete(key));
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.invalidations.is_empty() && self.effects.is_empty()
    }

    /// Applies the queued effects: invalidations first (one round trip per scope),
    /// then sets and deletes in order. Call it after the database commit succeeded.
    pub async fn commit(self) {
        for (scope, models) in &self.invalidations {
            self.cache
                .invalidate_models(models.iter().map(String::as_str), scope)
                .await;
        }
        for effect in self.effects {
            match effect {
                Effect::Set(key, body) => {
                    self.cache.set(&key, body).await;
                }
                Effect::Delete(key) => self.cache.delete(&key).await,
            }
        }
    }

    /// Discards the queued effects (the database transaction rolled back).
    pub fn rollback(self) {}
}
