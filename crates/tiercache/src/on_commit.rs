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

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use crate::cache::{Cache, CacheKey};
use crate::envelope::Stamp;
use crate::key::Scope;

enum Effect {
    Set(CacheKey, Stamp, Bytes),
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

    /// Queues storing `body` under `key` after the commit.
    ///
    /// `stamp` must be captured with [`Cache::stamp`] *before* `body` is computed.
    /// At commit the stamp is advanced past this transaction's own invalidations,
    /// and the set happens only if nothing else moved it: a write by anyone else
    /// since the capture (whose data `body` may lack) cancels the set, never the
    /// other way round.
    pub fn set(&mut self, key: CacheKey, stamp: Stamp, body: Bytes) {
        self.effects.push(Effect::Set(key, stamp, body));
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
    ///
    /// Returns whether every invalidation reached the shared store. When one did
    /// not, this instance replays it before it reads the store again, but other
    /// instances do not know of the write until then: an application with another
    /// way to reach them (a database notification, say) should use it.
    pub async fn commit(self) -> bool {
        // In its own task: the database has committed, so the effects must not be
        // lost to the caller being cancelled.
        let task = tokio::spawn(async move {
            let mut bumped: HashMap<String, u64> = HashMap::new();
            let mut all_delivered = true;
            for (scope, models) in &self.invalidations {
                match self
                    .cache
                    .bump_models(models.iter().map(String::as_str), scope)
                    .await
                {
                    Some(values) => bumped.extend(values),
                    None => all_delivered = false,
                }
            }
            for effect in self.effects {
                match effect {
                    Effect::Set(key, stamp, body) => {
                        if all_delivered && let Some(stamp) = advance(&key, stamp, &bumped) {
                            self.cache.put_checked(&key, stamp, body).await;
                        }
                    }
                    Effect::Delete(key) => self.cache.delete(&key).await,
                }
            }
            all_delivered
        });
        task.await.unwrap_or(false)
    }

    /// Discards the queued effects (the database transaction rolled back).
    pub fn rollback(self) {}
}

/// The stamp `captured` would have after this transaction's own bumps, if they were
/// the only writes since: each bumped counter must have moved by exactly one.
fn advance(key: &CacheKey, mut captured: Stamp, bumped: &HashMap<String, u64>) -> Option<Stamp> {
    for (gen_key, value) in key.gen_keys().iter().zip(captured.gens.iter_mut()) {
        if let Some(new) = bumped.get(gen_key) {
            if *new != value.checked_add(1)? {
                return None;
            }
            *value = *new;
        }
    }
    Some(captured)
}
