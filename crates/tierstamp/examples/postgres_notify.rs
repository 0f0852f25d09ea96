//! Rows changed by another program (plain SQL, no cache code) invalidate the cache:
//! PostgreSQL triggers + `LISTEN/NOTIFY`.
//!
//! What a service adds:
//!
//! 1. On each cached table, a trigger that sends `NOTIFY tierstamp, '{model} {org}'`
//!    for every row it changes (`*` for a `TRUNCATE`). PostgreSQL delivers
//!    notifications when the transaction commits and never for one that rolls back,
//!    so these invalidations are transaction-safe by construction; identical ones in
//!    one transaction arrive once.
//! 2. In every instance, before it serves: a listener that turns each notification
//!    into `cache.invalidate(model, scope)`. A write between serving and listening
//!    would otherwise go unheard.
//! 3. When the listener's connection drops, notifications sent meanwhile are lost:
//!    once it listens again, it invalidates every scope of every cached model.
//!
//! ```sh
//! TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//! REDIS_URL=redis://127.0.0.1:6379/ cargo run -p tierstamp --example postgres_notify
//! ```
//!
//! It creates a database of its own and drops it at the end; without
//! `TEST_DATABASE_URL` it says why it skips and exits 0. Without `REDIS_URL` the cache
//! is in-process. It checks what it shows and fails loudly otherwise.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, PgConnection, raw_sql};
use tierstamp::{
    Cache, KeyBuilder, Kind, L1Check, Lookup, MemoryStore, RedisConfig, RedisStore, Scope, Status,
    TieredStore,
};

/// The application's tables and the trigger that reports their changes.
const SCHEMA: &str = r#"
CREATE TABLE org (id bigint PRIMARY KEY);
CREATE TABLE faculty (
    id bigserial PRIMARY KEY,
    org_id bigint NOT NULL REFERENCES org (id),
    name text NOT NULL
);

CREATE FUNCTION tiercache_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('tierstamp', TG_TABLE_NAME || ' *');
        RETURN NULL;
    END IF;
    -- An UPDATE may move a row between tenants: both lose their entries.
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('tierstamp', TG_TABLE_NAME || ' ' || OLD.org_id);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pg_notify('tierstamp', TG_TABLE_NAME || ' ' || NEW.org_id);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER faculty_tiercache AFTER INSERT OR UPDATE OR DELETE ON faculty
    FOR EACH ROW EXECUTE FUNCTION tiercache_notify();
CREATE TRIGGER faculty_tiercache_truncate AFTER TRUNCATE ON faculty
    FOR EACH STATEMENT EXECUTE FUNCTION tiercache_notify();
"#;

/// The models whose tables carry the trigger.
const CACHED_MODELS: &[&str] = &["faculty"];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Ok(url) = std::env::var("TEST_DATABASE_URL") else {
        println!(
            "skipped: set TEST_DATABASE_URL=postgres://user@host/db (scripts/test.sh does) to run it"
        );
        return Ok(());
    };
    let admin_options: PgConnectOptions = url.parse().context("TEST_DATABASE_URL")?;
    let mut admin = PgConnection::connect_with(&admin_options).await?;
    let name = format!(
        "tiercache_example_{}_{}",
        std::process::id(),
        fastrand::u32(..)
    );
    raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await?;
    let options = admin_options.clone().database(&name);
    let outcome = tokio::time::timeout(Duration::from_secs(60), run(options)).await;
    // Dropped whatever happened; FORCE ends the connections `run` may have left open.
    raw_sql(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await?;
    outcome.context("the example took longer than 60 s")??;
    println!("ok: every change made outside the cache's process reached it");
    Ok(())
}

async fn run(options: PgConnectOptions) -> anyhow::Result<()> {
    let db = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options.clone())
        .await?;
    raw_sql(SCHEMA).execute(&db).await?;
    raw_sql(
        "INSERT INTO org VALUES (1), (2);
         INSERT INTO faculty (org_id, name) VALUES (1, 'Ada'), (1, 'Grace'), (2, 'Edsger');",
    )
    .execute(&db)
    .await?;

    let (cache, redis) = cache().await?;
    let mut listener = PgListener::connect_with(
        &PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?,
    )
    .await?;
    listener.listen("tierstamp").await?;
    let listening = tokio::spawn(invalidate_on_notify(listener, cache.clone(), db.clone()));

    let result = check(&cache, &db, &options).await;
    listening.abort();
    if let Some(redis) = redis {
        redis.unlink_prefix(cache.keys().prefix()).await?;
    }
    db.close().await;
    result
}

/// Turns notifications into invalidations, for as long as the service runs.
async fn invalidate_on_notify(mut listener: PgListener, cache: Cache, db: PgPool) {
    let mut missed = false;
    loop {
        match listener.try_recv().await {
            Ok(Some(n)) => match n.payload().split_once(' ') {
                Some((model, "*")) => invalidate_every_org(&cache, &db, &[model]).await,
                Some((model, org)) => match org.parse() {
                    Ok(org) => cache.invalidate(model, &Scope::org(org)).await,
                    Err(_) => eprintln!("ignored notification {:?}", n.payload()),
                },
                None => eprintln!("ignored notification {:?}", n.payload()),
            },
            // The connection dropped and was re-established (eager reconnect): what
            // was sent in between is lost.
            Ok(None) => missed = true,
            Err(e) => {
                eprintln!("listener: {e}; retrying");
                missed = true;
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        }
        // Only after listening again, or a write in between would still be missed.
        if missed {
            invalidate_every_org(&cache, &db, CACHED_MODELS).await;
            missed = false;
        }
    }
}

async fn invalidate_every_org(cache: &Cache, db: &PgPool, models: &[&str]) {
    match sqlx::query_scalar::<_, i64>("SELECT id FROM org")
        .fetch_all(db)
        .await
    {
        Ok(orgs) => {
            for org in orgs {
                cache
                    .invalidate_models(models.iter().copied(), &Scope::org(org))
                    .await;
            }
        }
        Err(e) => eprintln!("cannot list orgs to invalidate: {e}"),
    }
}

/// The cached read: an org's faculty names as JSON, built by PostgreSQL.
async fn faculty(cache: &Cache, db: &PgPool, org: i64) -> anyhow::Result<Lookup> {
    let key = cache.key(Kind::List, "faculty", &Scope::org(org)).build()?;
    let db = db.clone();
    let lookup = cache
        .try_get_with(&key, async move {
            sqlx::query_scalar::<_, String>(
                "SELECT coalesce(json_agg(name ORDER BY id), '[]')::text FROM faculty WHERE org_id = $1",
            )
            .bind(org)
            .fetch_one(&db)
            .await
            .map(Bytes::from)
        })
        .await?;
    Ok(lookup)
}

/// Waits until org `org`'s cached list reads `want`; returns how long it took.
async fn converges(cache: &Cache, db: &PgPool, org: i64, want: &str) -> anyhow::Result<Duration> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        if faculty(cache, db, org).await?.body == want.as_bytes() {
            return Ok(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    bail!("org {org} still reads the old list after 1 s")
}

async fn check(cache: &Cache, db: &PgPool, options: &PgConnectOptions) -> anyhow::Result<()> {
    for org in [1, 2] {
        ensure!(faculty(cache, db, org).await?.status == Status::Miss);
        ensure!(faculty(cache, db, org).await?.status == Status::Hit);
    }
    // "Another program": its own connection, plain SQL, no cache code.
    let mut other = PgConnection::connect_with(options).await?;

    raw_sql("UPDATE faculty SET name = 'Grace Hopper' WHERE name = 'Grace'")
        .execute(&mut other)
        .await?;
    let took = converges(cache, db, 1, r#"["Ada", "Grace Hopper"]"#).await?;
    println!("an UPDATE by another connection reached the cache in {took:?}");
    let org2 = faculty(cache, db, 2).await?;
    ensure!(
        org2.status == Status::Hit,
        "org 2 was not written: still cached"
    );

    let mut tx = other.begin().await?;
    raw_sql("UPDATE faculty SET name = 'nobody' WHERE org_id = 2")
        .execute(&mut *tx)
        .await?;
    tx.rollback().await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let org2 = faculty(cache, db, 2).await?;
    ensure!(
        (org2.status, &org2.body[..]) == (Status::Hit, &br#"["Edsger"]"#[..]),
        "a rolled-back write must not invalidate"
    );
    println!("a rolled-back UPDATE invalidated nothing");

    raw_sql("TRUNCATE faculty").execute(&mut other).await?;
    for org in [1, 2] {
        let took = converges(cache, db, org, "[]").await?;
        println!("a TRUNCATE reached org {org}'s entries in {took:?}");
    }
    other.close().await?;
    Ok(())
}

/// Redis with an in-process L1 when `REDIS_URL` is set, in-process only otherwise;
/// a namespace of this run's own either way.
async fn cache() -> anyhow::Result<(Cache, Option<RedisStore>)> {
    let keys = KeyBuilder::new(
        &format!("tcexample-pg{}-{}", std::process::id(), fastrand::u32(..)),
        "v1",
    )?;
    let (builder, redis) = match std::env::var("REDIS_URL") {
        Ok(url) => {
            let redis = RedisStore::connect(RedisConfig::new(url), &keys).await?;
            let tiered = TieredStore::new(redis.clone(), 16 << 20, L1Check::Mirror);
            (Cache::builder(tiered), Some(redis))
        }
        Err(_) => (Cache::builder(MemoryStore::new(16 << 20)), None),
    };
    Ok((builder.keys(keys).build(), redis))
}
