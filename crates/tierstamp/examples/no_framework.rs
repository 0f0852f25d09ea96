//! The cache with no web framework: plain async code, such as a queue consumer, a
//! CLI or a gRPC handler, in front of an expensive per-tenant computation.
//!
//! ```sh
//! cargo run -p tierstamp --no-default-features --example no_framework
//! ```
//!
//! In-process only, so it builds without the Redis client (`--no-default-features`).
//! Values are bytes: serialise what you cache (here a number as text). It checks
//! what it shows and exits non-zero otherwise.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::ensure;
use bytes::Bytes;
use tierstamp::{Cache, Dependencies, KeyBuilder, Kind, MemoryStore, Scope, Status, TtlPolicy};

/// The "database": one counter per table, and how often it was queried.
#[derive(Default)]
struct Db {
    invoices: AtomicU64,
    customers: AtomicU64,
    queries: AtomicUsize,
}

impl Db {
    /// The expensive report: slow, and it reads two tables.
    async fn revenue_report(&self, org: i64) -> Bytes {
        self.queries.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let total = self.invoices.load(Ordering::SeqCst) * 100 + org as u64;
        let customers = self.customers.load(Ordering::SeqCst);
        Bytes::from(format!("{total} from {customers} customers"))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tokio::time::timeout(Duration::from_secs(30), run()).await?
}

async fn run() -> anyhow::Result<()> {
    let cache = Cache::builder(MemoryStore::new(32 << 20))
        .keys(KeyBuilder::new("billing", "v1")?)
        .ttl(TtlPolicy::default().stats(Duration::from_secs(30)))
        // A report is computed from invoices and customers: a write to either must
        // invalidate it.
        .dependencies(Dependencies::new().model("report", ["invoice", "customer"]))
        .build();
    let db = Arc::new(Db::default());
    let acme = Scope::org(1);

    let key = cache
        .key(Kind::Stats, "report", &acme)
        .param("period", "2026-Q1")
        .build()?;
    let read = |cache: Cache, db: Arc<Db>| {
        let key = key.clone();
        async move {
            cache
                .get_with(&key, async move { db.revenue_report(1).await })
                .await
        }
    };

    // A hundred concurrent requests on a cold key: one computation.
    let mut tasks = Vec::new();
    for _ in 0..100 {
        tasks.push(tokio::spawn(read(cache.clone(), db.clone())));
    }
    for task in tasks {
        ensure!(task.await?.body == "1 from 0 customers");
    }
    ensure!(
        db.queries.load(Ordering::SeqCst) == 1,
        "one load for 100 misses"
    );
    ensure!(read(cache.clone(), db.clone()).await.status == Status::Hit);
    println!("100 concurrent misses, 1 computation; then a hit");

    // A write in a database transaction: its invalidation waits for the commit, and
    // a rollback drops it.
    let mut effects = cache.transaction();
    effects.invalidate("customer", &acme);
    effects.rollback();
    ensure!(read(cache.clone(), db.clone()).await.status == Status::Hit);

    let mut effects = cache.transaction();
    db.customers.fetch_add(1, Ordering::SeqCst); // the write, inside the transaction
    effects.invalidate("customer", &acme);
    // ... COMMIT ...
    effects.commit().await;
    let fresh = read(cache.clone(), db.clone()).await;
    ensure!((fresh.status, &fresh.body[..]) == (Status::Miss, &b"1 from 1 customers"[..]));
    println!("a committed write to a dependency refreshed the report");

    // Another tenant's write leaves acme's entry alone.
    cache.invalidate("invoice", &Scope::org(2)).await;
    ensure!(read(cache.clone(), db.clone()).await.status == Status::Hit);

    // A fallible computation: its error reaches the caller, nothing is cached.
    let other = cache
        .key(Kind::Stats, "report", &acme)
        .param("period", "bad")
        .build()?;
    let failed = cache
        .try_get_with(&other, async {
            Err::<Bytes, _>(std::io::Error::other("period unknown"))
        })
        .await;
    ensure!(failed.is_err() && cache.get(&other).await.is_none());

    let stats = cache.stats();
    println!(
        "{} hits, {} misses, {} loads, hit rate {:.1}%",
        stats.hits,
        stats.misses,
        stats.loads,
        stats.hit_rate()
    );
    Ok(())
}
