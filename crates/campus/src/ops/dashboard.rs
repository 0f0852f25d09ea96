//! `/admin/cache/`: a page for an organization's admins to watch the cache
//! work. Server-rendered HTML with a small script that polls
//! `/admin/cache/data` every two seconds; no front-end build step.
//!
//! The page is public (it holds no data); the data endpoint wants an admin's
//! token. The page keeps the token in `sessionStorage` after its login form,
//! or takes it once from the URL fragment (`#token=…`, never sent to a
//! server), which is how a script or a test opens an admin session.
//!
//! Figures of the caller's organization only (look-ups, hit rate,
//! invalidations); memory, key counts and the breaker are the shared cache's.

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tiercache::Health;

use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::ops::report::{self, Report, Thresholds};
use crate::state::AppState;

/// Reports walk every key; the dashboard reuses one this long.
const REPORT_MAX_AGE: Duration = Duration::from_secs(10);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/cache/", get(page))
        .route("/admin/cache/data", get(data))
}

async fn page() -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Html(include_str!("dashboard.html")),
    )
        .into_response()
}

async fn shared_report(st: &AppState) -> Report {
    let mut cached = st.report.lock().await;
    if let Some((at, r)) = cached.as_ref()
        && at.elapsed() < REPORT_MAX_AGE
    {
        return r.clone();
    }
    let r = match (&st.redis, &st.redis_target) {
        (Some(store), Some((url, prefix))) => {
            report::gather_redis(&store.connection(), url, prefix, Thresholds::default()).await
        }
        _ => report::gather_local(st, Thresholds::default()),
    };
    *cached = Some((Instant::now(), r.clone()));
    r
}

async fn data(State(st): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    if caller.role != Role::Admin {
        return Err(ApiError::Forbidden);
    }
    let (models, series, invalidations) = st.activity.of_org(caller.org_id);
    let totals = models.iter().fold([0u64; 4], |mut t, (_, c)| {
        t[0] += c.hit;
        t[1] += c.miss;
        t[2] += c.stale;
        t[3] += c.bypass;
        t
    });
    let served = totals[0] + totals[2];
    let hit_rate = if served + totals[1] == 0 {
        None
    } else {
        Some(served as f64 * 100.0 / (served + totals[1]) as f64)
    };
    let r = shared_report(&st).await;
    let health = st.cache.health();
    let body = json!({
        "organization": caller.org_id,
        "backend": r.backend,
        "cache": if matches!(health, Health::Ok) { "ok" } else { "degraded" },
        "breaker": match (&st.redis, health) {
            (None, _) => "none (in-process cache)",
            (Some(_), Health::Ok) => "closed",
            (Some(_), _) => "open (bypassing Redis)",
        },
        "hit_rate": hit_rate,
        "totals": {"hit": totals[0], "miss": totals[1], "stale": totals[2], "bypass": totals[3]},
        "models": models.iter().map(|(m, c)| json!({"model": m, "hit": c.hit, "miss": c.miss, "stale": c.stale, "bypass": c.bypass})).collect::<Vec<_>>(),
        "series": series,
        "bucket_seconds": crate::ops::activity::BUCKET_SECONDS,
        "keys": {"total": r.total_keys, "by_kind": r.keys_by_kind},
        "memory": {"used": r.memory_used_bytes, "max": r.memory_max_bytes,
                   "used_text": report::human_bytes(r.memory_used_bytes),
                   "max_text": if r.memory_max_bytes == 0 { "unlimited".to_owned() } else { report::human_bytes(r.memory_max_bytes) }},
        "invalidations": invalidations,
    });
    Ok(([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response())
}
