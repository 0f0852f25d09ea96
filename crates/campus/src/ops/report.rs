//! The `cache-stats` report (SPEC §3): gathered from Redis, or from the
//! in-process cache of a running server, and printed in the original's shape.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tierstamp::{Cache, MemoryStore};

/// The kinds the report always lists, in the original's order.
pub(crate) const KINDS: [&str; 4] = ["list", "detail", "count", "stats"];

/// When the cache counts as unhealthy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Thresholds {
    /// Hit rate (percent) below which the cache is unhealthy…
    pub min_hit_rate: f64,
    /// …once at least this many look-ups were counted.
    pub min_lookups: u64,
    /// Fraction of Redis' `maxmemory` above which it is unhealthy.
    pub max_memory: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            min_hit_rate: 50.0,
            min_lookups: 1000,
            max_memory: 0.9,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct Report {
    /// `redis` or `in-process`.
    pub backend: String,
    pub reachable: bool,
    pub memory_used_bytes: u64,
    /// 0: no limit.
    pub memory_max_bytes: u64,
    pub total_keys: u64,
    /// Every kind of [`KINDS`], and any other kind segment found.
    pub keys_by_kind: BTreeMap<String, u64>,
    /// Look-ups answered from the cache (`HIT` and `STALE`), summed over the
    /// instances that published in the last seconds.
    pub hits: u64,
    /// Look-ups that had to load (`MISS`).
    pub misses: u64,
    /// Percent; 0 before any look-up.
    pub hit_rate: f64,
    /// Instances whose counters are summed.
    pub instances: u64,
    pub healthy: bool,
    /// Why it is unhealthy (empty when healthy).
    pub problems: Vec<String>,
    /// Keys removed by `--clear`, when asked.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cleared: Option<u64>,
}

impl Report {
    /// A report of a cache that could not be reached.
    pub(crate) fn unreachable(backend: &str, why: String) -> Self {
        Report {
            backend: backend.to_owned(),
            reachable: false,
            healthy: false,
            problems: vec![why],
            ..Report::default()
        }
    }

    /// Fills the hit rate and the verdict from the figures.
    pub(crate) fn judge(mut self, t: Thresholds) -> Self {
        for kind in KINDS {
            self.keys_by_kind.entry(kind.to_owned()).or_insert(0);
        }
        let lookups = self.hits + self.misses;
        self.hit_rate = if lookups == 0 {
            0.0
        } else {
            self.hits as f64 * 100.0 / lookups as f64
        };
        if self.reachable {
            if self.memory_max_bytes > 0
                && self.memory_used_bytes as f64 > t.max_memory * self.memory_max_bytes as f64
            {
                self.problems.push(format!(
                    "memory use {} is above {:.0}% of the maximum {}",
                    human_bytes(self.memory_used_bytes),
                    t.max_memory * 100.0,
                    human_bytes(self.memory_max_bytes)
                ));
            }
            if lookups >= t.min_lookups && self.hit_rate < t.min_hit_rate {
                self.problems.push(format!(
                    "hit rate {:.2}% is below {:.0}% after {} look-ups",
                    self.hit_rate,
                    t.min_hit_rate,
                    thousands(lookups)
                ));
            }
        }
        self.healthy = self.reachable && self.problems.is_empty();
        self
    }

    /// The text report, in the original `cache_stats` command's shape.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let title = if self.backend == "redis" {
            "Redis"
        } else {
            "In-process"
        };
        let _ = writeln!(out, "=== {title} Cache Statistics ===");
        if let Some(n) = self.cleared {
            let _ = writeln!(out, "\nCleared: {} keys", thousands(n));
        }
        if self.reachable {
            let max = if self.memory_max_bytes == 0 {
                "unlimited".to_owned()
            } else {
                human_bytes(self.memory_max_bytes)
            };
            let _ = writeln!(
                out,
                "\nMemory:\n  Used: {}\n  Max: {max}",
                human_bytes(self.memory_used_bytes)
            );
            let _ = writeln!(out, "\nKeys:\n  Total keys: {}", thousands(self.total_keys));
            let _ = writeln!(out, "\nKey Patterns:");
            for kind in KINDS {
                let n = self.keys_by_kind.get(kind).copied().unwrap_or(0);
                let _ = writeln!(out, "  {kind}:*: {} keys", thousands(n));
            }
            let _ = writeln!(
                out,
                "\nCache Performance:\n  Hits: {}\n  Misses: {}\n  Hit Rate: {:.2}%",
                thousands(self.hits),
                thousands(self.misses),
                self.hit_rate
            );
        }
        if self.healthy {
            let _ = writeln!(out, "\n✓ Cache is healthy");
        } else {
            let _ = writeln!(out, "\n✗ Cache is unhealthy: {}", self.problems.join("; "));
        }
        out
    }
}

/// `1247` → `1,247`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes as the original printed them: `45.2 MB`, `256 MB`, `812.5 KB`.
pub(crate) fn human_bytes(n: u64) -> String {
    let (value, unit) = if n >= 1 << 30 {
        (n as f64 / (1u64 << 30) as f64, "GB")
    } else if n >= 1 << 20 {
        (n as f64 / (1u64 << 20) as f64, "MB")
    } else if n >= 1 << 10 {
        (n as f64 / 1024.0, "KB")
    } else {
        return format!("{n} B");
    };
    let text = format!("{value:.1}");
    format!("{} {unit}", text.strip_suffix(".0").unwrap_or(&text))
}

/// Every key of `prefix` (`{prefix}:*`), a batch at a time, with `SCAN`: never
/// `KEYS`, which blocks the server for the whole walk.
pub(crate) struct Scan {
    pattern: String,
    cursor: u64,
    done: bool,
}

impl Scan {
    pub(crate) fn new(prefix: &str) -> Scan {
        Scan {
            pattern: format!("{prefix}:*"),
            cursor: 0,
            done: false,
        }
    }

    /// The next batch (possibly empty), or `None` once the walk is over.
    pub(crate) async fn next(
        &mut self,
        conn: &mut redis::aio::MultiplexedConnection,
    ) -> redis::RedisResult<Option<Vec<String>>> {
        if self.done {
            return Ok(None);
        }
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(self.cursor)
            .arg("MATCH")
            .arg(&self.pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        self.cursor = next;
        self.done = next == 0;
        Ok(Some(keys))
    }
}

/// The report of the Redis behind `conn` (`url`, masked, names it in errors),
/// for every key of `prefix`: summed over every primary (each master of a
/// Cluster), since each holds its own share of the keys.
pub(crate) async fn gather_redis(
    conn: &tierstamp::RedisConnection,
    url: &str,
    prefix: &str,
    t: Thresholds,
) -> Report {
    let masked = url
        .split(',')
        .map(crate::db::mask_url)
        .collect::<Vec<_>>()
        .join(",");
    let primaries =
        match tokio::time::timeout(std::time::Duration::from_secs(3), conn.primaries()).await {
            Ok(Ok(p)) if !p.is_empty() => p,
            Ok(Ok(_)) => {
                return Report::unreachable(
                    "redis",
                    format!("Redis unreachable at {masked}: no primary answers"),
                );
            }
            Ok(Err(e)) => {
                return Report::unreachable("redis", format!("Redis unreachable at {masked}: {e}"));
            }
            Err(_) => {
                return Report::unreachable(
                    "redis",
                    format!("Redis unreachable at {masked}: no answer in 3 s"),
                );
            }
        };
    let mut report = Report {
        backend: "redis".into(),
        reachable: true,
        ..Report::default()
    };
    let mut unlimited = false;
    for (addr, mut node) in primaries {
        match gather_redis_on(&mut node, prefix, &mut report).await {
            Ok(max) => unlimited |= max == 0,
            Err(e) => {
                return Report::unreachable("redis", format!("Redis error on {addr}: {e}"));
            }
        }
    }
    if unlimited {
        // One node without a limit: the deployment has none to be near.
        report.memory_max_bytes = 0;
    }
    report.judge(t)
}

/// Adds one primary's figures to `report`; returns its `maxmemory`.
async fn gather_redis_on(
    conn: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
    report: &mut Report,
) -> redis::RedisResult<u64> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(conn).await?;
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let max = field("maxmemory");
    report.memory_used_bytes += field("used_memory");
    report.memory_max_bytes += max;
    let mut instances = Vec::new();
    let mut scan = Scan::new(prefix);
    while let Some(keys) = scan.next(conn).await? {
        for key in keys {
            report.total_keys += 1;
            let kind = key.split(':').nth(2).unwrap_or("other");
            *report.keys_by_kind.entry(kind.to_owned()).or_insert(0) += 1;
            if kind == super::instances::KIND {
                instances.push(key);
            }
        }
    }
    // Each hash is read on the primary whose SCAN found it (its slot lives there).
    for key in instances {
        let (hits, stale, misses): (Option<u64>, Option<u64>, Option<u64>) = redis::cmd("HMGET")
            .arg(&key)
            .arg("hits")
            .arg("stale")
            .arg("misses")
            .query_async(conn)
            .await?;
        // An instance that expired between the SCAN and here is simply gone.
        if let (Some(h), Some(s), Some(m)) = (hits, stale, misses) {
            report.hits += h + s;
            report.misses += m;
            report.instances += 1;
        }
    }
    Ok(max)
}

/// This instance's last report and its walks.
#[derive(Debug, Default)]
pub struct Reports {
    last: std::sync::Mutex<Option<(Instant, Report)>>,
    pub(crate) walking: AtomicBool,
    /// Keyspace walks this instance started.
    pub walks: AtomicU64,
}

impl Reports {
    pub(crate) fn last(&self) -> Option<(Instant, Report)> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn remember(&self, r: Report) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), r));
    }
}

/// The report of this process's in-process cache (embedded mode).
pub(crate) fn gather_local(local: Option<&MemoryStore>, cache: &Cache, t: Thresholds) -> Report {
    let Some(local) = local else {
        return Report::unreachable("in-process", "this server uses Redis".into());
    };
    let usage = local.usage();
    let stats = cache.stats();
    Report {
        backend: "in-process".into(),
        reachable: true,
        memory_used_bytes: usage.bytes,
        memory_max_bytes: usage.max_bytes,
        total_keys: usage.total_keys,
        keys_by_kind: usage.keys_by_kind,
        hits: stats.hits + stats.stale,
        misses: stats.misses,
        instances: 1,
        ..Report::default()
    }
    .judge(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_printed_like_the_original() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1247), "1,247");
        assert_eq!(thousands(45_231), "45,231");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(human_bytes(256 << 20), "256 MB");
        assert_eq!(human_bytes(47_395_635), "45.2 MB");
        assert_eq!(human_bytes(512), "512 B");
    }

    #[test]
    fn the_report_keeps_the_original_shape() {
        let report = Report {
            backend: "redis".into(),
            reachable: true,
            memory_used_bytes: 47_395_635,
            memory_max_bytes: 256 << 20,
            total_keys: 1247,
            keys_by_kind: [("list", 523), ("detail", 689), ("count", 24), ("stats", 11)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            hits: 45_231,
            misses: 2_187,
            ..Report::default()
        }
        .judge(Thresholds::default());
        let expected = "=== Redis Cache Statistics ===

Memory:
  Used: 45.2 MB
  Max: 256 MB

Keys:
  Total keys: 1,247

Key Patterns:
  list:*: 523 keys
  detail:*: 689 keys
  count:*: 24 keys
  stats:*: 11 keys

Cache Performance:
  Hits: 45,231
  Misses: 2,187
  Hit Rate: 95.39%

✓ Cache is healthy
";
        assert_eq!(report.render(), expected);
    }

    #[test]
    fn unhealthy_reports_say_why() {
        let low = Report {
            backend: "redis".into(),
            reachable: true,
            memory_used_bytes: 95,
            memory_max_bytes: 100,
            hits: 100,
            misses: 900,
            ..Report::default()
        }
        .judge(Thresholds::default());
        assert!(!low.healthy);
        assert_eq!(low.problems.len(), 2, "{:?}", low.problems);
        assert!(low.render().ends_with(
            "✗ Cache is unhealthy: memory use 95 B is above 90% of the maximum 100 B; hit rate 10.00% is below 50% after 1,000 look-ups\n"
        ));
        // Too few look-ups to judge the hit rate.
        let early = Report {
            reachable: true,
            hits: 1,
            misses: 9,
            ..Report::default()
        }
        .judge(Thresholds::default());
        assert!(early.healthy);
        let down = Report::unreachable("redis", "Redis unreachable at redis://h:1/".into())
            .judge(Thresholds::default());
        assert_eq!(
            down.render(),
            "=== Redis Cache Statistics ===\n\n✗ Cache is unhealthy: Redis unreachable at redis://h:1/\n"
        );
    }
}
