//! Durable invalidation of the API's own writes (SPEC §5.4): once a write has
//! committed, its invalidation happens, whatever becomes of the request.
//!
//! # Design
//!
//! A write's invalidation must not depend on the request's future, nor on the
//! process that served it:
//!
//! * **Cancellation.** The `COMMIT` and the invalidation run in one task the
//!   request cannot cancel ([`tiercache::Transaction::commit_after`]): a client
//!   that gives up during a slow `COMMIT`, a request timeout or a shutdown drop
//!   the handler, not the task. A `COMMIT` that reports an error may still have
//!   committed (its reply lost with the connection), so it invalidates too.
//! * **A process that dies** between the `COMMIT` and the bump leaves no task
//!   at all. So every write also inserts a row into `cache_outbox` inside its
//!   own transaction: the row exists exactly when the write committed. The
//!   write deletes it once its invalidation reached the cache; every instance
//!   sweeps the rows older than [`GRACE`] every [`SWEEP_EVERY`], invalidates
//!   what they name and deletes them. A row left behind (a writer killed, or
//!   Redis unreachable when it bumped) is invalidated by whichever instance
//!   sweeps first, within `GRACE + SWEEP_EVERY` of the commit.
//!
//! The same table works on SQLite and PostgreSQL, which is why it is an outbox
//! and not the change triggers' `NOTIFY` (PostgreSQL only; those stay for writes
//! from other programs, and skip the API's writes, which invalidate here).
//!
//! Costs: one `INSERT` in each write's transaction and one `DELETE` after its
//! response; each instance runs one indexed `SELECT` on an almost empty table
//! per [`SWEEP_EVERY`]. Invalidating twice (the writer and a sweeper, or two
//! sweepers) is harmless: a bump only costs readers a miss.
//!
//! `GRACE` keeps sweepers off the rows of writes whose own task is still
//! bumping; instances compare their own clock with the writer's, so clock skew
//! between hosts only moves that margin.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;
use std::time::Duration;

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use tiercache::Scope;

use crate::entity::outbox::{self, Column, Entity};
use crate::state::AppState;

/// How often each instance looks for rows left behind.
pub const SWEEP_EVERY: Duration = Duration::from_millis(500);
/// A row younger than this belongs to a write that may still be bumping.
pub const GRACE: Duration = Duration::from_secs(1);
/// Rows handled per sweep: a long outage's backlog goes in bounded steps.
const BATCH: u64 = 1000;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Records, inside the write's transaction `tx`, that `model` of `org` must be
/// invalidated once it commits. Returns the row's id.
pub async fn record(tx: &impl ConnectionTrait, model: &str, org: i64) -> Result<i64, DbErr> {
    let row = outbox::ActiveModel {
        model: Set(model.to_owned()),
        organization_id: Set(org),
        created_at_ms: Set(now_ms()),
        ..Default::default()
    }
    .insert(tx)
    .await?;
    Ok(row.id)
}

/// The write's invalidation reached the cache: its row is no longer needed.
pub async fn done(state: &AppState, id: i64) {
    if let Err(e) = Entity::delete_by_id(id).exec(&state.db).await {
        // The row stays and a sweep invalidates once more: a miss, not an error.
        tracing::debug!(error = %e, id, "outbox row not deleted; a sweep will take it");
    }
}

/// Invalidates what the rows older than `grace` name, and deletes the rows
/// whose invalidation reached the cache. Returns how many rows it deleted.
pub async fn sweep(state: &AppState, grace: Duration) -> Result<usize, DbErr> {
    let cutoff = now_ms() - grace.as_millis() as i64;
    let rows = Entity::find()
        .filter(Column::CreatedAtMs.lte(cutoff))
        .order_by_asc(Column::Id)
        .limit(BATCH)
        .all(&state.db)
        .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut by_org: BTreeMap<i64, (BTreeSet<String>, Vec<i64>)> = BTreeMap::new();
    for row in rows {
        let (models, ids) = by_org.entry(row.organization_id).or_default();
        models.insert(row.model);
        ids.push(row.id);
    }
    let mut delivered_ids = Vec::new();
    for (org, (models, ids)) in by_org {
        let mut effects = state.cache.transaction();
        for m in &models {
            effects.invalidate(m, &Scope::org(org));
        }
        if effects.commit().await {
            delivered_ids.extend(ids);
            for m in &models {
                state.activity.invalidated(
                    org,
                    m,
                    "committed write recovered from the outbox".into(),
                );
            }
        }
    }
    let deleted = delivered_ids.len();
    if deleted > 0 {
        tracing::warn!(
            rows = deleted,
            "invalidated committed writes whose own invalidation did not finish"
        );
        Entity::delete_many()
            .filter(Column::Id.is_in(delivered_ids))
            .exec(&state.db)
            .await?;
    }
    Ok(deleted)
}

/// Sweeps every [`SWEEP_EVERY`] until the runtime stops; the first sweep runs
/// at once, so a restarted instance takes what it left behind before it serves
/// for long.
pub fn spawn(state: AppState) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = sweep(&state, GRACE).await {
                tracing::warn!(error = %e, "outbox sweep failed; retrying");
            }
        }
    });
}

/// Test-only fault injection: with `CAMPUS_TEST_FAILPOINT=abort-after-commit`
/// the process exits right after a write's `COMMIT` succeeds, before its
/// invalidation (what a crash or `kill -9` there does). Read once.
pub fn abort_after_commit() -> bool {
    static SET: OnceLock<bool> = OnceLock::new();
    *SET.get_or_init(|| {
        std::env::var("CAMPUS_TEST_FAILPOINT").is_ok_and(|v| v == "abort-after-commit")
    })
}
