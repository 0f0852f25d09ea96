//! Invalidation: which counters each entry point bumps (a model, a row, some
//! fields, across scopes). A bump is counted in `writes` before it is sent and
//! runs in a task of its own, so a caller cancelled after its commit never loses it.

use std::sync::atomic::Ordering;

use crate::error::Error;
use crate::key::{KeyBuilder, Scope};

use super::Cache;

/// What an invalidation is aimed at.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'a> {
    /// Every entry of the model: its counter, its all-rows counter and its
    /// shape counter.
    Model(&'a str),
    /// One row, fields unknown (or rows added or removed): the model's counter
    /// (model-wide entries), the row's and the shape counter.
    Row(&'a str, &'a str),
    /// Some fields of one row that existed before and after the write: the
    /// model's counter, the row's and those fields'.
    Fields(&'a str, &'a str, &'a [String]),
}

impl Target<'_> {
    fn model(&self) -> &str {
        match self {
            Target::Model(m) | Target::Row(m, _) | Target::Fields(m, _, _) => m,
        }
    }

    fn gen_keys(&self, keys: &KeyBuilder, scope: &Scope) -> Result<Vec<String>, Error> {
        Ok(match *self {
            Target::Model(m) => vec![
                keys.generation(m, scope)?,
                keys.rows_generation(m, scope)?,
                keys.shape_generation(m, scope)?,
            ],
            Target::Row(m, row) => vec![
                keys.generation(m, scope)?,
                keys.row_generation(m, scope, row)?,
                keys.shape_generation(m, scope)?,
            ],
            Target::Fields(m, row, fields) => {
                let mut out = Vec::with_capacity(fields.len() + 2);
                out.push(keys.generation(m, scope)?);
                out.push(keys.row_generation(m, scope, row)?);
                for f in fields {
                    out.push(keys.field_generation(m, scope, f)?);
                }
                out
            }
        })
    }
}

impl Cache {
    /// Invalidates every entry of `model` in `scope`, and every entry that depends on
    /// it. O(1): two counter bumps (the model's and its all-rows counter). Never
    /// fails: an invalidation that cannot reach the shared store is replayed
    /// before the store is read again.
    pub async fn invalidate(&self, model: &str, scope: &Scope) {
        self.invalidate_models([model], scope).await;
    }

    /// Invalidates what a write to one row of `model` changes: the model-wide
    /// entries (lists, counts, stats), that row's entries ([`KeyRequest::row`](crate::KeyRequest::row)),
    /// and every entry of a model that depends on `model`. Other rows' entries
    /// stay valid. For a write that may have changed other rows too, use
    /// [`invalidate`](Self::invalidate).
    pub async fn invalidate_row(&self, model: &str, row: impl ToString, scope: &Scope) {
        let row = row.to_string();
        self.bump(&[Target::Row(model, &row)], scope).await;
    }

    /// Invalidates what a write to `fields` of one row of `model` changes, when
    /// the row existed before the write and exists after it: what
    /// [`invalidate_row`](Self::invalidate_row) does, except that entries keyed
    /// with [`KeyRequest::fields`](crate::KeyRequest::fields) stay valid unless they name one of
    /// `fields`. Name every field the write may have changed, those the
    /// server sets by itself (an `updated_at`) included; when in doubt, use
    /// [`invalidate_row`](Self::invalidate_row).
    pub async fn invalidate_fields<F: AsRef<str>>(
        &self,
        model: &str,
        row: impl ToString,
        fields: &[F],
        scope: &Scope,
    ) {
        let row = row.to_string();
        let fields: Vec<String> = fields.iter().map(|f| f.as_ref().to_owned()).collect();
        self.bump(&[Target::Fields(model, &row, &fields)], scope)
            .await;
    }

    /// Invalidates several models of one scope in one round trip.
    pub async fn invalidate_models<'m>(
        &self,
        models: impl IntoIterator<Item = &'m str>,
        scope: &Scope,
    ) {
        let targets: Vec<Target<'_>> = models.into_iter().map(Target::Model).collect();
        self.bump(&targets, scope).await;
    }

    /// Invalidates `models` in each of `scopes` (a statement that touched many
    /// tenants) in as few round trips as the store allows: one per batch of
    /// counters (one per slot in a Cluster), instead of one per scope. Returns
    /// whether the shared store took every bump (one that did not is replayed,
    /// as for [`invalidate`](Self::invalidate)).
    pub async fn invalidate_across<'s>(
        &self,
        models: &[&str],
        scopes: impl IntoIterator<Item = &'s Scope>,
    ) -> bool {
        let mut gen_keys = Vec::new();
        let mut names = Vec::new();
        for scope in scopes {
            for m in models {
                match Target::Model(m).gen_keys(&self.inner.keys, scope) {
                    Ok(keys) => {
                        gen_keys.extend(keys);
                        names.push((*m).to_owned());
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "invalidation of an invalid model name ignored")
                    }
                }
            }
        }
        self.bump_gen_keys(gen_keys, names, "many scopes".to_owned())
            .await
            .is_some()
    }

    /// Bumps the counters of `targets` in `scope`; returns the new values if the
    /// shared store took them.
    pub(crate) async fn bump(
        &self,
        targets: &[Target<'_>],
        scope: &Scope,
    ) -> Option<Vec<(String, u64)>> {
        let mut gen_keys = Vec::new();
        let mut names = Vec::new();
        for t in targets {
            // A row or field that cannot be named in a key (not
            // `[A-Za-z0-9_.-]`): the whole model, rather than nothing.
            let whole = Target::Model(t.model());
            let keys = t
                .gen_keys(&self.inner.keys, scope)
                .or_else(|_| whole.gen_keys(&self.inner.keys, scope));
            match keys {
                Ok(keys) => {
                    for k in keys {
                        if !gen_keys.contains(&k) {
                            gen_keys.push(k);
                        }
                    }
                    names.push(t.model().to_owned());
                }
                Err(e) => {
                    tracing::error!(error = %e, "invalidation of an invalid model or row ignored")
                }
            }
        }
        self.bump_gen_keys(gen_keys, names, scope.to_string()).await
    }

    /// Bumps `gen_keys` (of the models `names`, for the logs) in a task of its
    /// own: a caller cancelled after its database commit (a client gone, a
    /// timeout) must not lose it.
    async fn bump_gen_keys(
        &self,
        gen_keys: Vec<String>,
        names: Vec<String>,
        scope: String,
    ) -> Option<Vec<(String, u64)>> {
        if gen_keys.is_empty() {
            return None;
        }
        // Before the bump, which may fail: a bypassed look-up that begins after
        // this call returns must not join a load that began before it.
        self.inner.writes.fetch_add(1, Ordering::SeqCst);
        let inner = self.inner.clone();
        let task = tokio::spawn(async move {
            let result = inner.store.bump(&gen_keys).await;
            let delivered = result.is_ok();
            if let Err(e) = &result {
                tracing::warn!(error = %e, models = ?names, %scope, "invalidation deferred until the shared store answers");
            }
            for m in &names {
                inner.counters.invalidation(delivered);
                crate::telemetry::invalidation(m);
            }
            tracing::debug!(models = ?names, %scope, delivered, "INVALIDATE");
            result
                .ok()
                .map(|values| gen_keys.into_iter().zip(values).collect())
        });
        task.await.ok().flatten()
    }
}
