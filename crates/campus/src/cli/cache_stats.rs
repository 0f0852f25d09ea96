//! `campus cache-stats [--clear] [--json]`.

use clap::Args;

use crate::config::Config;
use crate::ops::report::{self, Report, Thresholds};

#[derive(Debug, Clone, Args)]
pub struct StatsArgs {
    /// Remove this application's keys (`CACHE_KEY_PREFIX`, every version) with
    /// SCAN + UNLINK, then report. Other keys in the same Redis are kept; the
    /// running instances of this `CACHE_VERSION` drop their in-process entries.
    /// On PostgreSQL, the row counts that lists' totals are read from are
    /// rebuilt from the rows too (after writes that bypassed the triggers).
    #[arg(long)]
    pub clear: bool,
    /// The same figures as JSON, for scripts.
    #[arg(long)]
    pub json: bool,
    /// Unhealthy when the hit rate (percent) is below this…
    #[arg(long, default_value_t = 50.0)]
    pub min_hit_rate: f64,
    /// …after at least this many look-ups.
    #[arg(long, default_value_t = 1000)]
    pub min_lookups: u64,
}

pub async fn run(args: StatsArgs, config: Config) -> anyhow::Result<()> {
    let t = Thresholds {
        min_hit_rate: args.min_hit_rate,
        min_lookups: args.min_lookups,
        ..Thresholds::default()
    };
    let report: Report = match (config.redis()?, &config.redis_url) {
        (Some(redis_config), Some(url)) => {
            let cleared = if args.clear {
                let keys =
                    tierstamp::KeyBuilder::new(&config.cache_key_prefix, &config.cache_version)
                        .map_err(|e| anyhow::anyhow!("CACHE_KEY_PREFIX / CACHE_VERSION: {e}"))?;
                let store = tierstamp::RedisStore::connect(redis_config.clone(), &keys)
                    .await
                    .map_err(|e| anyhow::anyhow!("REDIS_URL: {e}"))?;
                // Every version of this application's keys, SCAN + UNLINK on
                // every primary.
                let removed = store
                    .unlink_prefix(&config.cache_key_prefix)
                    .await
                    .map_err(|e| anyhow::anyhow!("REDIS_URL: clearing failed: {e}"))?;
                // Redis is empty now, but every instance's L1 still holds what it
                // read: a new epoch, published, makes them drop it too.
                store.bump_epoch().await.map_err(|e| {
                    anyhow::anyhow!("REDIS_URL: cleared, but the new epoch failed: {e}")
                })?;
                Some(removed)
            } else {
                None
            };
            let conn = tierstamp::RedisConnection::open(&redis_config)
                .map_err(|e| anyhow::anyhow!("REDIS_URL: {e}"))?;
            let mut r = report::gather_redis(&conn, url, &config.cache_key_prefix, t).await;
            r.cleared = cleared;
            r
        }
        _ => {
            let admin = crate::ops::admin::Client::discover(&config.admin_file).await?;
            let cleared = if args.clear {
                Some(admin.clear().await?)
            } else {
                None
            };
            let mut r = admin.report(t).await?;
            r.cleared = cleared;
            r
        }
    };
    if args.clear && crate::db::is_postgres_url(&config.database_url) {
        let db = crate::db::connect(&config.database_url).await?;
        crate::query::rebuild_all_row_counts(&db)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "DATABASE_URL: the cache was cleared, but rebuilding the row counts failed: {e}"
                )
            })?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    if !report.healthy {
        // The report said why; the exit status is for scripts and monitors.
        std::process::exit(1);
    }
    Ok(())
}
