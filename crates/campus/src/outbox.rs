//! Durable invalidation of the API's own writes (SPEC §5.4): once a write has
//! committed, its invalidation happens, whatever becomes of the request.
//!
//! # Design
//!
//! A write's invalidation must not depend on the request's future, nor on the
//! process that served it:
//!
//! * **Cancellation.** The `COMMIT` and the invalidation run in one task the
//!   request cannot cancel ([`tierstamp::Transaction::commit_after`]): a client
//!   that gives up during a slow `COMMIT`, a request timeout or a shutdown drop
//!   the handler, not the task. A `COMMIT` that reports an error may still have
//!   committed (its reply lost with the connection), so it invalidates too.
//! * **A process that dies** between the `COMMIT` and the bump leaves no task
//!   at all. So every write also inserts a row into `cache_outbox` inside its
//!   own transaction: the row exists exactly when the write committed. The
//!   write deletes it once its invalidation reached the cache; every instance
//!   looks at the table every [`SWEEP_EVERY`], and invalidates what the rows it
//!   has seen for [`GRACE`] name, then deletes them. A row left behind (a
//!   writer killed, or Redis unreachable when it bumped) is invalidated by
//!   whichever instance sweeps first, within `GRACE + SWEEP_EVERY` of the
//!   commit.
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
//! bumping. It is measured from when a sweeper first saw the row, on its own
//! clock: neither clock skew between hosts nor a slow `COMMIT` (a row written
//! long before it became visible) makes a sweeper take a row early. Sweeps
//! pause while Redis is unreachable: the writers' own replay covers those
//! bumps, and an outage's backlog is then taken a batch of rows, one bump per
//! model, at a time.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use tierstamp::Scope;

use crate::entity::outbox::{self, Column, Entity};
use crate::model::Model;
use crate::state::AppState;

/// How often each instance looks for rows left behind.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_millis(500);
/// A row younger than this belongs to a write that may still be bumping.
pub(crate) const GRACE: Duration = Duration::from_secs(1);
/// Rows looked at per sweep: a long outage's backlog goes in bounded steps
/// (each model bumped once per step, whatever the number of rows).
const BATCH: u64 = 10_000;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Records, inside the write's transaction `tx`, that `model` of `org` must be
/// invalidated once it commits. Returns the row's id.
pub(crate) async fn record(
    tx: &impl ConnectionTrait,
    model: Model,
    org: i64,
) -> Result<i64, DbErr> {
    let row = outbox::ActiveModel {
        model: Set(model.name().to_owned()),
        organization_id: Set(org),
        created_at_ms: Set(now_ms()),
        ..Default::default()
    }
    .insert(tx)
    .await?;
    Ok(row.id)
}

/// The write's invalidation reached the cache: its row is no longer needed.
pub(crate) async fn done(state: &AppState, id: i64) {
    if let Err(e) = Entity::delete_by_id(id).exec(&state.db).await {
        // The row stays and a sweep invalidates once more: a miss, not an error.
        tracing::debug!(error = %e, id, "outbox row not deleted; a sweep will take it");
    }
}

/// A sweeper's memory of the rows it has seen: a row is taken once it has
/// been visible for [`GRACE`], judged by this instance's own clock (not by the
/// writer's, nor by when the row was written: a slow `COMMIT` makes an old row
/// visible late, and its writer is still about to bump it).
#[derive(Default)]
pub(crate) struct Sweeper {
    seen: HashMap<i64, Instant>,
}

impl Sweeper {
    /// Invalidates what the rows visible for `grace` or longer name (each
    /// model and organization once), and deletes those rows once the
    /// invalidation reached the cache. Returns how many rows it deleted.
    ///
    /// Skipped while the cache reports itself degraded (Redis unreachable):
    /// the bumps would fail, and their own replay covers what they would do.
    pub(crate) async fn sweep(
        &mut self,
        state: &AppState,
        grace: Duration,
    ) -> Result<usize, DbErr> {
        if state.cache.health() == tierstamp::Health::Degraded {
            return Ok(0);
        }
        let rows = Entity::find()
            .order_by_asc(Column::Id)
            .limit(BATCH)
            .all(&state.db)
            .await?;
        let now = Instant::now();
        let visible: HashSet<i64> = rows.iter().map(|r| r.id).collect();
        self.seen.retain(|id, _| visible.contains(id));
        // By model, the organizations it changed in, and the rows that say so.
        let mut due: BTreeMap<String, (BTreeSet<i64>, Vec<i64>)> = BTreeMap::new();
        for row in rows {
            let first = *self.seen.entry(row.id).or_insert(now);
            if now.duration_since(first) >= grace {
                let (orgs, ids) = due.entry(row.model).or_default();
                orgs.insert(row.organization_id);
                ids.push(row.id);
            }
        }
        let mut delivered_ids = Vec::new();
        for (model, (orgs, ids)) in due {
            let scopes: Vec<Scope> = orgs.iter().map(|&o| Scope::org(o)).collect();
            if state.cache.invalidate_across(&[&model], &scopes).await {
                delivered_ids.extend(ids);
                // A model this release does not know (written by another
                // version) is invalidated all the same; the dashboard skips it.
                if let Some(model) = Model::from_name(&model) {
                    for org in orgs {
                        state.activity.invalidated(
                            org,
                            model,
                            "committed write recovered from the outbox".into(),
                        );
                    }
                }
            }
        }
        let deleted = delivered_ids.len();
        if deleted > 0 {
            tracing::warn!(
                rows = deleted,
                "invalidated committed writes whose own invalidation did not finish"
            );
            for id in &delivered_ids {
                self.seen.remove(id);
            }
            Entity::delete_many()
                .filter(Column::Id.is_in(delivered_ids))
                .exec(&state.db)
                .await?;
        }
        Ok(deleted)
    }
}

/// Sweeps every [`SWEEP_EVERY`] until the runtime stops.
pub(crate) fn spawn(state: AppState) {
    tokio::spawn(async move {
        let mut sweeper = Sweeper::default();
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = sweeper.sweep(&state, GRACE).await {
                tracing::warn!(error = %e, "outbox sweep failed; retrying");
            }
        }
    });
}

/// Test-only fault injection: with `CAMPUS_TEST_FAILPOINT=abort-after-commit`
/// the process exits right after a write's `COMMIT` succeeds, before its
/// invalidation (what a crash or `kill -9` there does). Read once.
pub(crate) fn abort_after_commit() -> bool {
    static SET: OnceLock<bool> = OnceLock::new();
    *SET.get_or_init(|| {
        std::env::var("CAMPUS_TEST_FAILPOINT").is_ok_and(|v| v == "abort-after-commit")
    })
}
