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
//!
//! Key counts walk the whole keyspace with `SCAN`, and any organization's admin
//! can poll: so no request waits for a walk, and a deployment walks at most
//! once per [`REPORT_MAX_AGE`] however many instances and admins poll. The
//! instance that takes the lock key (`SET NX EX`) walks in the background and
//! shares its report under a key that expires with its age; the others, and
//! every poll meanwhile, answer the last report they have (without key counts
//! before the first).

use std::sync::LazyLock;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use sea_orm::EntityTrait;
use serde_json::json;
use tierstamp::Health;

use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::ops::report::{self, Report, Thresholds};
use crate::state::{AppState, Backend};

/// How old a report may be before a poll starts a new walk; also the least
/// time between two walks in a deployment.
const REPORT_MAX_AGE: Duration = Duration::from_secs(60);

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/cache/", get(page))
        .route("/admin/cache/data", get(data))
}

async fn page() -> Response {
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        crate::web::page_headers(CSP.clone()),
        Html(PAGE),
    )
        .into_response()
}

const PAGE: &str = include_str!("dashboard.html");

/// The page may run only its own inline script and style (by their hashes: no
/// injected markup can run code or restyle it), talk only to this origin, and
/// be framed by nobody.
static CSP: LazyLock<HeaderValue> = LazyLock::new(|| {
    use base64::Engine as _;
    use sha2::Digest as _;
    let hash = |tag: &str| {
        let open = format!("<{tag}>");
        let start = PAGE.find(&open).expect("the page has the tag") + open.len();
        let end = start + PAGE[start..].find(&format!("</{tag}>")).expect("closed");
        let digest = sha2::Sha256::digest(&PAGE.as_bytes()[start..end]);
        format!(
            "'sha256-{}'",
            base64::engine::general_purpose::STANDARD.encode(digest)
        )
    };
    let csp = format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; \
         img-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'",
        hash("script"),
        hash("style")
    );
    HeaderValue::from_str(&csp).expect("base64 and ASCII are a valid header value")
});

/// The shared cache's report: the last one this instance has, fresh or not;
/// a new walk is started in the background when it is older than
/// [`REPORT_MAX_AGE`] and no other instance has a fresher one.
async fn shared_report(st: &AppState) -> Option<Report> {
    let last = st.reports.last();
    let fresh = |at: &Instant| at.elapsed() < REPORT_MAX_AGE;
    let Backend::Redis { store, url, prefix } = &st.backend else {
        // The in-process cache: counting its entries walks no keyspace.
        if let Some((at, r)) = &last
            && fresh(at)
        {
            return Some(r.clone());
        }
        let r = report::gather_local(st.backend.local(), &st.cache, Thresholds::default());
        st.reports.remember(r.clone());
        return Some(r);
    };
    if let Some((at, r)) = &last
        && fresh(at)
    {
        return Some(r.clone());
    }
    let mut conn = store.connection();
    let (report_key, lock_key) = keys(prefix);
    // A Redis that does not answer costs a poll a second, not its whole time.
    let mut cmd = redis::cmd("GET");
    let get = cmd.arg(&report_key).query_async(&mut conn);
    let shared: Option<String> = tokio::time::timeout(Duration::from_secs(1), get)
        .await
        .ok()
        .and_then(Result::ok)
        .flatten();
    if let Some(r) = shared.and_then(|s| serde_json::from_str::<Report>(&s).ok()) {
        st.reports.remember(r.clone());
        return Some(r);
    }
    // The lock and the walk run in a task of their own: a poll dropped
    // mid-way (client gone) cannot leave `walking` set for good.
    if !st.reports.walking.swap(true, Ordering::AcqRel) {
        let (st, url, prefix) = (st.clone(), url.clone(), prefix.clone());
        tokio::spawn(async move {
            walk(&st, &url, &prefix, report_key, lock_key).await;
            st.reports.walking.store(false, Ordering::Release);
        });
    }
    last.map(|(_, r)| r)
}

/// Walks the keyspace and shares the report, if no instance of the
/// deployment walked in the last [`REPORT_MAX_AGE`] (the lock key says).
async fn walk(st: &AppState, url: &str, prefix: &str, report_key: String, lock_key: String) {
    let Some(store) = st.backend.redis() else {
        return;
    };
    let mut conn = store.connection();
    let age = REPORT_MAX_AGE.as_secs();
    let locked: Option<String> = redis::cmd("SET")
        .arg(&lock_key)
        .arg(1)
        .arg("NX")
        .arg("EX")
        .arg(age)
        .query_async(&mut conn)
        .await
        .unwrap_or(None);
    if locked.is_none() {
        return;
    }
    st.reports.walks.fetch_add(1, Ordering::Relaxed);
    let r = report::gather_redis(&conn, url, prefix, Thresholds::default()).await;
    if r.reachable
        && let Ok(json) = serde_json::to_string(&r)
    {
        let _: redis::RedisResult<()> = redis::cmd("SET")
            .arg(&report_key)
            .arg(json)
            .arg("EX")
            .arg(age)
            .query_async(&mut conn)
            .await;
    }
    st.reports.remember(r);
}

/// The shared report's key and the walk's lock key (both expire).
fn keys(prefix: &str) -> (String, String) {
    (
        format!("{prefix}:ops:dashboard:report"),
        format!("{prefix}:ops:dashboard:walk"),
    )
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
    let username = crate::entity::user::Entity::find_by_id(caller.user_id)
        .one(&st.db)
        .await
        .map_err(anyhow::Error::new)?
        .map(|u| u.username);
    let health = st.cache.health();
    let body = json!({
        "organization": caller.org_id,
        "username": username,
        "backend": r.as_ref().map(|r| r.backend.clone()),
        "cache": if matches!(health, Health::Ok) { "ok" } else { "degraded" },
        "breaker": match (st.backend.redis(), health) {
            (None, _) => "none (in-process cache)",
            (Some(_), Health::Ok) => "closed",
            (Some(_), _) => "open (bypassing Redis)",
        },
        "hit_rate": hit_rate,
        "totals": {"hit": totals[0], "miss": totals[1], "stale": totals[2], "bypass": totals[3]},
        "models": models.iter().map(|(m, c)| json!({"model": m, "hit": c.hit, "miss": c.miss, "stale": c.stale, "bypass": c.bypass})).collect::<Vec<_>>(),
        "series": series,
        "bucket_seconds": crate::ops::activity::BUCKET_SECONDS,
        // Null until this instance has a report (the first walk is under way).
        "keys": r.as_ref().map(|r| json!({"total": r.total_keys, "by_kind": r.keys_by_kind})),
        "memory": r.as_ref().map(|r| json!({"used": r.memory_used_bytes, "max": r.memory_max_bytes,
                   "used_text": report::human_bytes(r.memory_used_bytes),
                   "max_text": if r.memory_max_bytes == 0 { "unlimited".to_owned() } else { report::human_bytes(r.memory_max_bytes) }})),
        "invalidations": invalidations,
    });
    Ok(([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response())
}
