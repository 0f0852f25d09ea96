//! Invalidation for writes from outside the API (SPEC §5.5): listens on
//! PostgreSQL's `campus_changes` channel, fed by the triggers of migration 9,
//! and invalidates the named model for each organization a statement touched
//! (and, through the dependency graph, every view that embeds it).
//!
//! Notifications sent while the listener was disconnected are lost by
//! PostgreSQL's design, and nobody can say which rows they were about: after
//! every (re)connection the listener invalidates every cached model of every
//! organization. Cheap (one counter bump per model and organization) and it
//! errs on the side of a miss, never of a stale read.

use std::sync::atomic::Ordering;
use std::time::Duration;

use sea_orm::sqlx::postgres::PgListener;
use sea_orm::{DatabaseBackend, EntityTrait, QuerySelect};
use tierstamp::Scope;

use crate::entity::organization;
use crate::model::Model;
use crate::state::AppState;

pub const CHANNEL: &str = "campus_changes";

/// An API write whose invalidation did not reach Redis (this instance is cut
/// off from it, its peers perhaps not): this instance replays it before it
/// reads Redis again, but its peers would serve the old rows until then. The
/// write therefore tells them the way an outside write does, through
/// PostgreSQL, so they invalidate it in Redis themselves.
pub async fn notify_undelivered(state: &AppState, model: Model, org: i64) {
    if state.db.get_database_backend() != DatabaseBackend::Postgres {
        return;
    }
    let Some(table) = model.table() else { return };
    let sent = sea_orm::ConnectionTrait::execute_raw(
        &state.db,
        sea_orm::Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "SELECT pg_notify($1, $2)",
            [CHANNEL.into(), format!("{table} {org}").into()],
        ),
    )
    .await;
    match sent {
        Ok(_) => tracing::info!(
            model = model.name(),
            org,
            "invalidation sent through PostgreSQL: Redis did not take it"
        ),
        Err(e) => {
            tracing::warn!(model = model.name(), org, error = %e, "invalidation not delivered to other instances")
        }
    }
}

/// Longest wait for the organization listing before it counts as failed.
const LISTING_TIMEOUT: Duration = Duration::from_secs(5);

/// Every organization's id, retried until the database answers: an empty
/// list here would invalidate nothing while the listener looks healthy. Each
/// failure is counted and shown by `/readyz` (`"outside_writes": "retrying"`)
/// until a retry succeeds; notifications arriving meanwhile wait in the
/// listener's queue.
async fn all_orgs(state: &AppState) -> Vec<i64> {
    let mut backoff = Duration::from_millis(50);
    loop {
        // Bounded: a lock on the table (DDL, `VACUUM FULL`) makes the query
        // wait, not fail, and the wait must show on `/readyz` as a failure.
        let found = tokio::time::timeout(
            LISTING_TIMEOUT,
            organization::Entity::find()
                .select_only()
                .column(organization::Column::Id)
                .into_tuple::<i64>()
                .all(&state.db),
        )
        .await
        .unwrap_or_else(|_| Err(sea_orm::DbErr::Custom("listing timed out".into())));
        match found {
            Ok(orgs) => {
                state.changes.retrying.store(false, Ordering::SeqCst);
                return orgs;
            }
            Err(e) => {
                state.changes.failures.fetch_add(1, Ordering::SeqCst);
                state.changes.retrying.store(true, Ordering::SeqCst);
                tracing::warn!(error = %e, retry_in = ?backoff, "cannot list the organizations to invalidate; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// One notification: `{table} {org},{org}…` or `{table} *`.
async fn apply(state: &AppState, payload: &str) {
    let Some((table, orgs)) = payload.split_once(' ') else {
        return;
    };
    let Some(model) = Model::from_table(table) else {
        return;
    };
    let orgs: Vec<i64> = if orgs == "*" {
        all_orgs(state).await
    } else {
        orgs.split(',').filter_map(|o| o.parse().ok()).collect()
    };
    // One bump for every organization named (a few round trips, not one per
    // organization: a statement may touch thousands).
    let scopes: Vec<Scope> = orgs.iter().map(|&o| Scope::org(o)).collect();
    state
        .cache
        .invalidate_across(&[model.name()], &scopes)
        .await;
    for org in orgs {
        state
            .activity
            .invalidated(org, model, format!("outside write to {table} (NOTIFY)"));
    }
    tracing::debug!(payload, "invalidated for a write from outside the API");
}

/// After a (re)connection: whatever was missed, nothing old survives.
async fn invalidate_everything(state: &AppState) {
    let models: Vec<&str> = Model::ALL
        .into_iter()
        .filter(|m| m.table().is_some())
        .map(Model::name)
        .collect();
    let scopes: Vec<Scope> = all_orgs(state).await.into_iter().map(Scope::org).collect();
    state.cache.invalidate_across(&models, &scopes).await;
}

/// Starts the listener when the database is PostgreSQL; it runs until the
/// runtime stops, reconnecting after failures.
pub fn spawn(state: AppState) {
    if state.db.get_database_backend() != DatabaseBackend::Postgres {
        return;
    }
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            let listener = async {
                let mut l =
                    PgListener::connect_with(state.db.get_postgres_connection_pool()).await?;
                l.listen(CHANNEL).await?;
                Ok::<_, sea_orm::sqlx::Error>(l)
            };
            let mut listener = match listener.await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for outside writes; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            // Listening first, then the sweep: a write between the two is caught
            // by one or the other.
            invalidate_everything(&state).await;
            state.changes.connects.fetch_add(1, Ordering::SeqCst);
            state.changes.listening.store(true, Ordering::SeqCst);
            // `try_recv` says `None` when the connection dropped; the next call
            // would reconnect silently, so drop the listener and sweep again.
            while let Ok(Some(n)) = listener.try_recv().await {
                apply(&state, n.payload()).await;
            }
            state.changes.listening.store(false, Ordering::SeqCst);
            tracing::warn!("lost the connection listening for outside writes; reconnecting");
        }
    });
}
