//! A test's keys in a shared Redis: listed with SCAN (never KEYS, which blocks
//! the server) and removed with UNLINK when the test is done, whether it
//! passed or not.

use std::time::Duration;

/// Every key of `conn`'s server matching `pattern`, listed with SCAN.
pub fn scan(conn: &mut redis::Connection, pattern: &str) -> redis::RedisResult<Vec<String>> {
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query(conn)?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// Removes the keys of a prefix from the Redis at `url`: `{prefix}:*`, and
/// the store's identity marker `{{prefix}:epoch}:identity`, which lives
/// outside it (a namespace clear keeps it). Errors are ignored: this runs in
/// `Drop`, after a test that may have stopped its Redis on purpose.
pub fn remove_prefix(url: &str, prefix: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(500)) else {
        return;
    };
    let _: redis::RedisResult<u64> = redis::cmd("UNLINK")
        .arg(format!("{{{prefix}:epoch}}:identity"))
        .query(&mut conn);
    let Ok(keys) = scan(&mut conn, &format!("{prefix}:*")) else {
        return;
    };
    for batch in keys.chunks(1000) {
        let _: redis::RedisResult<u64> = redis::cmd("UNLINK").arg(batch).query(&mut conn);
    }
}

/// Removes a prefix's keys ([`remove_prefix`]) when dropped.
#[derive(Debug)]
pub struct PrefixGuard {
    pub url: String,
    pub prefix: String,
}

impl Drop for PrefixGuard {
    fn drop(&mut self) {
        remove_prefix(&self.url, &self.prefix);
    }
}

/// A name no other test of any process on this machine uses at the same
/// time: `{stem}p{pid}n{counter}r{random}`.
pub fn unique(stem: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let random = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{stem}p{}n{}r{random}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}
