//! The load benchmark's floors (`CAMPUS_BENCH_ROUTES=1` only): a fixed body
//! (2 KB, or `?bytes=N`), and one plain Redis `GET` of such a value through the
//! same connection the cache uses. A cached route is judged against these, measured in the same run.
//! `/bench/sleep?ms=N` holds a request open, so a test can stop the server with
//! a request in flight.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;

use crate::error::ApiError;
use crate::state::AppState;

/// `?bytes=N` sizes a floor's body like the cached response it is compared with:
/// the kernel's copy of a 20 KB response costs as much as some of the cache's
/// work, and a 2 KB floor would charge that copy to the cache.
#[derive(serde::Deserialize)]
struct Floor {
    bytes: Option<usize>,
}

impl Floor {
    fn len(&self) -> usize {
        self.bytes.unwrap_or(2000).clamp(32, 1 << 20)
    }
}

/// Sizes whose bodies are kept (at most 1 MiB each).
const MAX_SIZES: usize = 16;

/// A JSON body of exactly `len` bytes, built once per size (for the first
/// [`MAX_SIZES`] sizes).
type Bodies = std::sync::RwLock<std::collections::HashMap<usize, Bytes>>;

fn bodies() -> &'static Bodies {
    static BODIES: std::sync::OnceLock<Bodies> = std::sync::OnceLock::new();
    BODIES.get_or_init(Default::default)
}

fn body(len: usize) -> Bytes {
    let bodies = bodies();
    if let Some(b) = bodies.read().unwrap_or_else(|e| e.into_inner()).get(&len) {
        return b.clone();
    }
    let frame = "{\"count\":1,\"results\":[\"\"]}";
    let b = Bytes::from(format!(
        "{{\"count\":1,\"results\":[\"{}\"]}}",
        "x".repeat(len - frame.len())
    ));
    let mut bodies = bodies.write().unwrap_or_else(|e| e.into_inner());
    // A benchmark uses a few sizes; a client asking for every size gets its
    // bodies built each time instead of growing the map.
    if bodies.len() < MAX_SIZES {
        bodies.insert(len, b.clone());
    }
    b
}

async fn fixed(axum::extract::Query(q): axum::extract::Query<Floor>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body(q.len())).into_response()
}

async fn redis_get(
    State(st): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<Floor>,
) -> Result<Response, ApiError> {
    let redis = st.backend.redis().ok_or(ApiError::NotFound)?;
    let mut conn = redis.connection();
    let key = format!("campus-bench:redis-get:{}", q.len());
    let value: Option<Vec<u8>> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .map_err(anyhow::Error::new)?;
    let value = match value {
        Some(v) => Bytes::from(v),
        None => {
            let _: () = redis::cmd("SET")
                .arg(&key)
                .arg(body(q.len()).as_ref())
                .query_async(&mut conn)
                .await
                .map_err(anyhow::Error::new)?;
            body(q.len())
        }
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], value).into_response())
}

#[derive(serde::Deserialize)]
struct Sleep {
    ms: u64,
}

async fn sleep(axum::extract::Query(q): axum::extract::Query<Sleep>) -> Response {
    // Bounded: a benchmark route must not hold a connection forever.
    tokio::time::sleep(std::time::Duration::from_millis(q.ms.min(10_000))).await;
    (
        [(header::CONTENT_TYPE, "application/json")],
        "{\"slept\":true}",
    )
        .into_response()
}

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/bench/static", get(fixed))
        .route("/bench/sleep", get(sleep))
        .route("/bench/redis-get", get(redis_get))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_keeps_a_bounded_number_of_bodies() {
        for len in 100..100 + 4 * MAX_SIZES {
            assert_eq!(body(len).len(), len);
        }
        let kept = bodies().read().unwrap().len();
        assert!(kept <= MAX_SIZES, "{kept} bodies kept");
    }
}
