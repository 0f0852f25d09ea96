//! A cache in front of a slow loader: misses, hits, an invalidation, a stampede.
//!
//! `cargo run --release -p tierstamp --example demo` (in-process store), or with
//! `REDIS_URL=redis://127.0.0.1:6379/` to use Redis with an L1 in front.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tierstamp::{
    Cache, Dependencies, KeyBuilder, Kind, L1Check, MemoryStore, RedisConfig, RedisStore, Scope,
    TieredStore,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tokio::time::timeout(Duration::from_secs(60), run()).await?
}

async fn run() -> anyhow::Result<()> {
    let keys = KeyBuilder::new(&format!("demo{}", std::process::id()), "v1")?;
    let deps = Dependencies::new().model("faculty", ["department"]);
    let mut redis = None;
    let cache = match std::env::var("REDIS_URL") {
        Ok(url) => {
            let l2 = RedisStore::connect(RedisConfig::new(url), &keys).await?;
            redis = Some(l2.clone());
            println!("store: Redis with an in-process L1");
            Cache::builder(TieredStore::new(l2, 64 << 20, L1Check::Mirror))
        }
        Err(_) => {
            println!("store: in-process (set REDIS_URL to use Redis)");
            Cache::builder(MemoryStore::new(64 << 20))
        }
    }
    .keys(keys.clone())
    .dependencies(deps)
    .build();

    let db_queries = Arc::new(AtomicUsize::new(0));
    // Run (polled) only on a miss.
    let slow_query = |q: Arc<AtomicUsize>, name: &'static str| async move {
        q.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(200)).await; // the slow database
        Ok::<_, std::io::Error>(Bytes::from(format!(
            "[{{\"name\":\"{name}\",\"department\":\"CS\"}}]"
        )))
    };

    let org = Scope::org(1);
    let key = cache
        .key(Kind::List, "faculty", &org)
        .param("page", 1)
        .default("page", 1)
        .build()?;
    println!("key:   {}", key.as_str());

    for round in 1..=3 {
        let t = Instant::now();
        let r = cache
            .try_get_with(&key, slow_query(db_queries.clone(), "Ada"))
            .await?;
        println!(
            "read {round}: {:<6} in {:>9.3?}  {}",
            r.status.as_str(),
            t.elapsed(),
            String::from_utf8_lossy(&r.body)
        );
    }

    println!(
        "-- a department is renamed: invalidate `department` in org 1 (faculty lists embed it)"
    );
    cache.invalidate("department", &org).await;
    let t = Instant::now();
    let r = cache
        .try_get_with(&key, slow_query(db_queries.clone(), "Ada (renamed dept)"))
        .await?;
    println!(
        "read 4: {:<6} in {:>9.3?}  {}",
        r.status.as_str(),
        t.elapsed(),
        String::from_utf8_lossy(&r.body)
    );

    println!("-- 500 concurrent requests on a cold key");
    cache.invalidate("faculty", &org).await;
    let before = db_queries.load(Ordering::SeqCst);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..500 {
        let (cache, key, q) = (cache.clone(), key.clone(), db_queries.clone());
        tasks.push(tokio::spawn(async move {
            cache.try_get_with(&key, slow_query(q, "Ada")).await
        }));
    }
    for t in tasks {
        t.await??;
    }
    println!(
        "500 requests answered in {:.3?} with {} database query",
        t.elapsed(),
        db_queries.load(Ordering::SeqCst) - before
    );
    let s = cache.stats();
    println!(
        "stats: {} hits, {} misses, hit rate {:.1}%",
        s.hits,
        s.misses,
        s.hit_rate()
    );
    if let Some(redis) = redis {
        // Leave nothing behind (SCAN + UNLINK on this run's prefix, never KEYS).
        redis.unlink_prefix(keys.prefix()).await?;
    }
    Ok(())
}
