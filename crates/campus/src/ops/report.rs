//! The `cache-stats` report (SPEC §3): gathered from Redis, or from the
//! in-process cache of a running server ([`gather`]), and printed in the
//! original's shape.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Instant;

use serde::{Deserialize, Serialize};

mod gather;

pub(crate) use gather::{gather_local, gather_redis};

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
