//! An axum service with one cached route and invalidation on write.
//!
//! ```sh
//! cargo run -p tierstamp-axum --example axum_service                 # in-process cache
//! REDIS_URL=redis://127.0.0.1:6379/ cargo run -p tierstamp-axum --example axum_service
//! ```
//!
//! The service is `router` and its two handlers. `main` serves it on a loopback port,
//! checks it with an HTTP client (MISS, HIT, 304, a write, MISS with the new data)
//! and exits: 0 if every check held.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::{Router, routing::get};
use bytes::Bytes;
use tierstamp::{
    Cache, KeyBuilder, Kind, L1Check, MemoryStore, RedisConfig, RedisStore, Scope, TieredStore,
};
use tierstamp_axum::CachedResponse;

#[derive(Clone)]
struct App {
    cache: Cache,
    db: Arc<Mutex<Vec<String>>>, // stands in for your database
}

async fn list_todos(
    State(app): State<App>,
    headers: HeaderMap,
) -> Result<CachedResponse, StatusCode> {
    // A multi-tenant service takes the scope from the verified token (Scope::org(id)).
    let scope = Scope::global();
    let key = app
        .cache
        .key(Kind::List, "todo", &scope)
        .build()
        .map_err(|_| StatusCode::BAD_REQUEST)?;
    let db = app.db.clone();
    let load = async move { Bytes::from(serde_json::to_vec(&*db.lock().unwrap()).unwrap()) };
    Ok(CachedResponse::new(
        app.cache.get_with(&key, load).await,
        &headers,
    ))
}

async fn add_todo(State(app): State<App>, todo: String) -> StatusCode {
    let mut effects = app.cache.transaction(); // BEGIN
    app.db.lock().unwrap().push(todo); // INSERT
    effects.invalidate("todo", &Scope::global());
    effects.commit().await; // after COMMIT, before the response: read-your-writes
    StatusCode::CREATED
}

fn router(cache: Cache) -> Router {
    let app = App {
        cache,
        db: Arc::default(),
    };
    Router::new()
        .route("/todos", get(list_todos).post(add_todo))
        .with_state(app)
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let (cache, redis) = cache().await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/todos", listener.local_addr()?);
    let app = router(cache.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let checked = tokio::time::timeout(Duration::from_secs(30), check(&url)).await;
    server.abort();
    if let Some(redis) = redis {
        redis.unlink_prefix(cache.keys().prefix()).await?;
    }
    checked??;
    println!("ok: {url} cached, revalidated with 304 and invalidated on write");
    Ok(())
}

/// Redis with an in-process L1 when `REDIS_URL` is set (a namespace of this run's
/// own, removed at the end), in-process only otherwise.
async fn cache() -> Result<(Cache, Option<RedisStore>), BoxError> {
    let keys = KeyBuilder::new(
        &format!("tcexample-axum{}-{}", std::process::id(), rand()),
        "v1",
    )?;
    let (builder, redis) = match std::env::var("REDIS_URL") {
        Ok(url) => {
            let redis = RedisStore::connect(RedisConfig::new(url), &keys).await?;
            (
                Cache::builder(TieredStore::new(redis.clone(), 16 << 20, L1Check::Mirror)),
                Some(redis),
            )
        }
        Err(_) => (Cache::builder(MemoryStore::new(16 << 20)), None),
    };
    Ok((builder.keys(keys).build(), redis))
}

fn rand() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
}

async fn check(url: &str) -> Result<(), BoxError> {
    let http = reqwest::Client::new();
    let get = |etag: Option<&str>| {
        let request = http.get(url);
        match etag {
            Some(etag) => request.header("if-none-match", etag),
            None => request,
        }
        .send()
    };
    let first = get(None).await?;
    expect(first.headers()["x-cache"] == "MISS", "first read is a MISS")?;
    expect(first.text().await? == "[]", "empty list")?;

    let second = get(None).await?;
    expect(second.headers()["x-cache"] == "HIT", "second read is a HIT")?;
    let etag = second.headers()["etag"].to_str()?.to_owned();
    let revalidated = get(Some(&etag)).await?;
    expect(
        revalidated.status() == StatusCode::NOT_MODIFIED,
        "If-None-Match gives 304",
    )?;

    let created = http.post(url).body("write the docs").send().await?;
    expect(created.status() == StatusCode::CREATED, "write accepted")?;
    let after = get(Some(&etag)).await?;
    expect(
        after.status() == StatusCode::OK,
        "the old ETag no longer matches",
    )?;
    expect(
        after.headers()["x-cache"] == "MISS",
        "the write invalidated the entry",
    )?;
    expect(
        after.text().await? == r#"["write the docs"]"#,
        "the new data",
    )?;
    Ok(())
}

fn expect(holds: bool, what: &str) -> Result<(), BoxError> {
    if holds {
        Ok(())
    } else {
        Err(format!("check failed: {what}").into())
    }
}
