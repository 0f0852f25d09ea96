//! Where a report's figures come from: every Redis primary (`INFO`, a `SCAN`
//! of the prefix's keys, the instances' published counters), or this process's
//! in-process cache.

use tierstamp::{Cache, MemoryStore};

use super::{Report, Thresholds};

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
            if kind == crate::ops::instances::KIND {
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
