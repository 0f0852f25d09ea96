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
    /// What a hostile client may consume (SPEC §5.13).
    #[command(flatten)]
    pub limits: Limits,
}

/// The bounds on what one client can make the instance spend (SPEC §5.13):
/// login hashing and throttling, connections, request and statement time; and
/// whom it believes about where a request came from.
/// Their defaults are the flags' ([`Config::default`]).
#[derive(Debug, Clone, Args)]
pub struct Limits {
    /// Password hashes (argon2: 19 MiB and tens of ms of CPU each) run at once;
    /// default: the available parallelism.
    #[arg(long, env = "LOGIN_HASH_CONCURRENCY", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub login_hash_concurrency: Option<u32>,
    /// Logins that may wait for a hash slot; past them a login is answered 503
    /// with `Retry-After` at once.
    #[arg(long, env = "LOGIN_HASH_QUEUE", default_value_t = Limits::LOGIN_HASH_QUEUE)]
    pub login_hash_queue: usize,
    /// Failed logins allowed per username, DRF's rate form (`10/minute`,
    /// `5/s`, `100/hour`, `1000/day`); more are answered 429.
    #[arg(long, env = "LOGIN_THROTTLE_USERNAME", default_value = Limits::LOGIN_THROTTLE_USERNAME)]
    pub login_throttle_username: crate::login::throttle::Rate,
    /// Failed logins allowed per client address (an IPv6 /64 counts as one).
    #[arg(long, env = "LOGIN_THROTTLE_ADDRESS", default_value = Limits::LOGIN_THROTTLE_ADDRESS)]
    pub login_throttle_address: crate::login::throttle::Rate,
    /// Most usernames (and, apart, addresses) the login throttle remembers.
    #[arg(long, env = "LOGIN_THROTTLE_ENTRIES", default_value_t = Limits::LOGIN_THROTTLE_ENTRIES, value_parser = clap::value_parser!(u32).range(16..))]
    pub login_throttle_entries: u32,
    /// Most client connections open at once; more wait in the kernel's listen
    /// backlog. Default: the open-files limit less 128 (kept for the database,
    /// Redis and files), at most 10,000.
    #[arg(long, env = "HTTP_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..))]
    pub http_max_connections: Option<u32>,
    /// A connection must send a request's whole head within this; it is also
    /// how long an idle keep-alive connection stays open (hyper starts the
    /// same timer when it waits for the next request).
    #[arg(long, env = "HTTP_HEADER_TIMEOUT_MS", default_value_t = Limits::HTTP_HEADER_TIMEOUT_MS, value_parser = clap::value_parser!(u64).range(1..))]
    pub http_header_timeout_ms: u64,
    /// A request (body included) not answered within this gets 503.
    #[arg(long, env = "HTTP_REQUEST_TIMEOUT_MS", default_value_t = Limits::HTTP_REQUEST_TIMEOUT_MS, value_parser = clap::value_parser!(u64).range(1..))]
    pub http_request_timeout_ms: u64,
    /// PostgreSQL's `statement_timeout` on the serving pool (0: none). SQLite
    /// has none.
    #[arg(long, env = "DATABASE_STATEMENT_TIMEOUT_MS", default_value_t = Limits::DATABASE_STATEMENT_TIMEOUT_MS)]
    pub database_statement_timeout_ms: u64,
    /// Proxies whose `X-Forwarded-Proto`, `X-Forwarded-Host` and
    /// `X-Forwarded-For` are believed (page links' scheme and host, the login
    /// throttle's client address): comma-separated addresses or networks,
    /// `127.0.0.1,10.0.0.0/8`. Default: none; from anyone else those headers
    /// are ignored.
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: crate::server::forwarded::TrustedProxies,
}

impl Limits {
    pub const LOGIN_HASH_QUEUE: usize = 16;
    pub const LOGIN_THROTTLE_USERNAME: &str = "10/minute";
    pub const LOGIN_THROTTLE_ADDRESS: &str = "60/minute";
    pub const LOGIN_THROTTLE_ENTRIES: u32 = 100_000;
    pub const HTTP_HEADER_TIMEOUT_MS: u64 = 10_000;
    pub const HTTP_REQUEST_TIMEOUT_MS: u64 = 30_000;
    /// Below the request timeout, so a statement stops before its request gives up.
    pub const DATABASE_STATEMENT_TIMEOUT_MS: u64 = 20_000;

    /// Hash slots: the setting, or the available parallelism.
    pub fn hash_concurrency(&self) -> usize {
        match self.login_hash_concurrency {
            Some(n) => n as usize,
            None => std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }

    /// The connection cap: the setting, or what the open-files limit allows.
    pub fn max_connections(&self) -> usize {
        const RESERVED_FDS: u64 = 128;
        match self.http_max_connections {
            Some(n) => n as usize,
            None => crate::server::connections::open_files_limit().map_or(1024, |soft| {
                soft.saturating_sub(RESERVED_FDS).clamp(64, 10_000)
            }) as usize,
        }
    }

    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.http_header_timeout_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.http_request_timeout_ms)
    }

    /// `None` when disabled.
    pub fn statement_timeout(&self) -> Option<Duration> {
        (self.database_statement_timeout_ms > 0)
            .then(|| Duration::from_millis(self.database_statement_timeout_ms))
    }
}

/// The flags alone, for [`Config::default`].
#[derive(clap::Parser)]
struct Flags {
    #[command(flatten)]
    config: Config,
}

/// The command that reads [`Config`] from flags only: no flag falls back on
/// an environment variable.
fn flags_only() -> clap::Command {
    <Flags as clap::CommandFactory>::command().mut_args(|a| a.env(None))
}

impl Default for Config {
    /// Every setting at its flag's default, whatever the environment holds:
    /// the defaults are declared once, on the flags.
    fn default() -> Self {
        let matches = flags_only()
            .try_get_matches_from(["campus"])
            .expect("every setting has a default or is optional");
        <Flags as clap::FromArgMatches>::from_arg_matches(&matches)
            .expect("the defaults parse")
            .config
    }
}

impl Config {
    /// The Redis store's configuration, `None` without `REDIS_URL`. Errors name
    /// the variable to fix, in one line, without a password.
    pub fn redis(&self) -> anyhow::Result<Option<tierstamp::RedisConfig>> {
        use tierstamp::RedisConfig;
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

    pub fn ttl(&self) -> tierstamp::TtlPolicy {
        tierstamp::TtlPolicy::default()
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
    /// Serve `/metrics` on this address only (a private network or loopback
    /// for Prometheus) instead of on `BIND` with the API.
    #[arg(long, env = "METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_flags_and_ignore_the_environment() {
        use clap::CommandFactory;
        assert!(
            Flags::command()
                .get_arguments()
                .any(|a| a.get_env().is_some()),
            "the flags read the environment"
        );
        assert!(
            flags_only().get_arguments().all(|a| a.get_env().is_none()),
            "the defaults do not"
        );
        let c = Config::default();
        assert_eq!(c.cache_key_prefix, "campus");
        assert_eq!(c.redis_timeout_ms, 250);
        assert_eq!(c.redis_url, None);
        assert_eq!(
            c.limits.http_request_timeout_ms,
            Limits::HTTP_REQUEST_TIMEOUT_MS
        );
    }
}
