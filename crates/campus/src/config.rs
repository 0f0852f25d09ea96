//! Configuration, read once at start from the environment or CLI flags (SPEC §2).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use clap::builder::BoolishValueParser;

/// Everything `serve` needs; the same flags are accepted by the other commands
/// that touch the database or the cache.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Database URL: `sqlite://campus.db?mode=rwc` (embedded default) or `postgres://…`.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://campus.db?mode=rwc",
        hide_env_values = true
    )]
    pub database_url: String,
    /// Redis URL; unset: in-process cache only. With `REDIS_MODE=cluster`, a
    /// comma-separated list of node URLs; with `sentinel`, of sentinel URLs.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// How Redis is deployed: `standalone`, `cluster` or `sentinel`.
    #[arg(long, env = "REDIS_MODE", default_value = "standalone", value_parser = ["standalone", "cluster", "sentinel"])]
    pub redis_mode: String,
    /// The master's name the sentinels monitor (`REDIS_MODE=sentinel` only).
    #[arg(long, env = "REDIS_SENTINEL_MASTER")]
    pub redis_sentinel_master: Option<String>,
    /// A Redis call slower than this counts as a failure (the breaker opens
    /// after a few): short enough that a hung Redis costs little, long enough
    /// that a CPU-starved host does not take its own slowness for an outage.
    #[arg(long, env = "REDIS_TIMEOUT_MS", default_value_t = 250, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub redis_timeout_ms: u64,
    /// First key segment.
    #[arg(long, env = "CACHE_KEY_PREFIX", default_value = "campus")]
    pub cache_key_prefix: String,
    /// Second key segment; bumping it moves to a fresh keyspace.
    #[arg(long, env = "CACHE_VERSION", default_value = "v1")]
    pub cache_version: String,
    /// In-process L1 in front of Redis: `on` or `off`.
    #[arg(long, env = "CACHE_L1", default_value = "on", value_parser = ["on", "off"])]
    pub cache_l1: String,
    /// L1 (or in-process cache) size bound, in MB.
    #[arg(long, env = "CACHE_L1_MAX_MB", default_value_t = 64)]
    pub cache_l1_max_mb: u64,
    /// Validate each L1 hit against Redis' generations (no broadcast window).
    #[arg(long, env = "CACHE_L1_STRICT", default_value_t = false, value_parser = BoolishValueParser::new())]
    pub cache_l1_strict: bool,
    /// TTL of list entries, seconds.
    #[arg(long, env = "CACHE_TTL_LIST", default_value_t = 300)]
    pub cache_ttl_list: u64,
    /// TTL of detail entries, seconds.
    #[arg(long, env = "CACHE_TTL_DETAIL", default_value_t = 3600)]
    pub cache_ttl_detail: u64,
    /// TTL of stats entries, seconds.
    #[arg(long, env = "CACHE_TTL_STATS", default_value_t = 60)]
    pub cache_ttl_stats: u64,
    /// TTL of reference data (departments, programs), seconds.
    #[arg(long, env = "CACHE_TTL_REFERENCE", default_value_t = 86_400)]
    pub cache_ttl_reference: u64,
    /// Disable the cache entirely (every response `BYPASS`), for benchmarks.
    #[arg(long, env = "CACHE_DISABLED", default_value_t = false, value_parser = BoolishValueParser::new())]
    pub cache_disabled: bool,
    /// Expose `/bench/static` and `/bench/redis-get`, the floors the load
    /// benchmark compares cached routes with (off in production).
    #[arg(long, env = "CAMPUS_BENCH_ROUTES", default_value_t = false, value_parser = BoolishValueParser::new())]
    pub bench_routes: bool,
    /// Where a server without Redis writes its loopback admin endpoint's address
    /// and token (owner-only file), and where `warm-cache` / `cache-stats` look.
    #[arg(long, env = "CAMPUS_ADMIN_FILE", default_value = ".campus-admin.json")]
    pub admin_file: std::path::PathBuf,
    /// HS256 secret of the tokens; required unless `--demo`.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
}

impl Config {
    /// The Redis store's configuration, `None` without `REDIS_URL`. Errors name
    /// the variable to fix, in one line, without a password.
    pub fn redis(&self) -> anyhow::Result<Option<tiercache::RedisConfig>> {
        use tiercache::RedisConfig;
        let mode = self.redis_mode.as_str();
        let master = self.redis_sentinel_master.as_deref().map(str::trim);
        if master.is_some() && mode != "sentinel" {
            anyhow::bail!(
                "REDIS_SENTINEL_MASTER: only used with REDIS_MODE=sentinel (REDIS_MODE is {mode})"
            );
        }
        let Some(url) = &self.redis_url else {
            if mode != "standalone" {
                anyhow::bail!("REDIS_URL: required with REDIS_MODE={mode}");
            }
            return Ok(None);
        };
        let urls: Vec<String> = url.split(',').map(|u| u.trim().to_owned()).collect();
        if let Some(i) = urls.iter().position(String::is_empty) {
            anyhow::bail!(
                "REDIS_URL: entry {} of the comma-separated list is empty",
                i + 1
            );
        }
        for u in &urls {
            if let Err(e) = redis::Client::open(u.as_str()) {
                anyhow::bail!(
                    "REDIS_URL: {} is not a Redis URL: {e}",
                    crate::db::mask_url(u)
                );
            }
        }
        let mut config = match mode {
            "cluster" => RedisConfig::cluster(urls),
            "sentinel" => match master {
                Some(m) if !m.is_empty() => RedisConfig::sentinel(urls, m),
                _ => anyhow::bail!(
                    "REDIS_SENTINEL_MASTER: required with REDIS_MODE=sentinel (the name the sentinels monitor)"
                ),
            },
            _ if urls.len() > 1 => anyhow::bail!(
                "REDIS_URL: {} URLs given; a list needs REDIS_MODE=cluster or REDIS_MODE=sentinel",
                urls.len()
            ),
            _ => RedisConfig::new(urls.into_iter().next().expect("one URL")),
        };
        config.op_timeout = Duration::from_millis(self.redis_timeout_ms);
        Ok(Some(config))
    }

    pub fn ttl(&self) -> tiercache::TtlPolicy {
        tiercache::TtlPolicy::default()
            .list(Duration::from_secs(self.cache_ttl_list))
            .detail(Duration::from_secs(self.cache_ttl_detail))
            .stats(Duration::from_secs(self.cache_ttl_stats))
            .reference(Duration::from_secs(self.cache_ttl_reference))
            .reference_models(["department", "program"])
    }
}

/// `serve`'s own flags.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Listen address.
    #[arg(long, env = "BIND", default_value = "127.0.0.1:8000")]
    pub bind: SocketAddr,
    /// Demo mode: seed demo data on first start, random JWT secret if none.
    #[arg(long)]
    pub demo: bool,
}
