//! `/healthz` (process up), `/readyz` (database reachable, cache ok/degraded),
//! `/metrics` (Prometheus text).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tierstamp::Health;

use crate::state::AppState;

pub(crate) async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

pub(crate) async fn readyz(State(st): State<AppState>) -> Response {
    use std::sync::atomic::Ordering::SeqCst;
    let db_ok = st.db.ping().await.is_ok();
    let cache = match st.cache.health() {
        Health::Ok => "ok",
        Health::Degraded => "degraded",
    };
    let status = if db_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "database": if db_ok { "ok" } else { "unreachable" },
            "cache": cache,
            "outside_writes": match st.db.get_database_backend() {
                sea_orm::DatabaseBackend::Postgres if st.changes.retrying.load(SeqCst) => "retrying",
                sea_orm::DatabaseBackend::Postgres if st.changes.listening.load(SeqCst) => "listening",
                sea_orm::DatabaseBackend::Postgres => "reconnecting",
                _ => "not watched (SQLite)",
            },
            "outside_writes_connects": st.changes.connects.load(SeqCst),
            "outside_writes_failures": st.changes.failures.load(SeqCst),
        })),
    )
        .into_response()
}

pub(crate) async fn metrics(State(st): State<AppState>) -> Response {
    // Look-ups are counted per thread and handed over in batches: all of them.
    tierstamp::publish_metrics();
    let body = st.metrics.as_ref().map(|h| h.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
