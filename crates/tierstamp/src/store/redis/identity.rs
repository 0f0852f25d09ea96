//! A Redis that comes back with older data counts as an outage.
//!
//! A server restarted from its RDB or AOF, a replica promoted before it received
//! the last bumps, a flush: each holds counters older than writes already
//! acknowledged, and the entries that match them. A restart can be too quick for
//! the breaker to open, so the store identifies the server instead. The marker
//! key ([`KeyBuilder::identity`](crate::KeyBuilder)) holds the `run_id` of the
//! process on which the epoch was last validated; `identity.lua` compares it
//! with the `run_id` of the server running it and, if they differ (or the marker
//! is gone), bumps the epoch and rewrites the marker. Entries carry their epoch,
//! so every entry written before is dead, for every instance, including one that
//! starts later against the restored data: the check reads the data's marker,
//! not this process's memory.
//!
//! When it runs:
//! * on every new connection to the master (one server, or behind Sentinel),
//!   before it serves any command ([`on_connect`]);
//! * every `identity_interval` ([`watch`]): the marker again (a flush breaks no
//!   connection), and in a Cluster, whose node connections redis-rs hides, the
//!   `run_id` of every master the client talks to, compared with the one seen
//!   before at that address.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use redis::Value;
use redis::aio::ConnectionLike;

use super::master::OnConnect;
use super::{Inner, RedisStore, Topology, parse_u64};

/// The hook a store's connection runs on every new connection: the identity
/// check, whose epoch is adopted before the connection serves anything.
pub(super) fn on_connect(store: Weak<Inner>) -> OnConnect {
    Arc::new(move |mut conn| {
        let store = store.clone();
        Box::pin(async move {
            let Some(inner) = store.upgrade() else {
                return Ok(());
            };
            let store = RedisStore { inner };
            let (epoch, bumped) = store.run_identity(&mut conn).await?;
            store.adopt_identity(epoch, bumped);
            Ok(())
        })
    })
}

impl RedisStore {
    /// Runs `identity.lua` on `conn`: the current epoch, and whether the server
    /// was another one than the marker says (the script then bumped the epoch).
    async fn run_identity(
        &self,
        conn: &mut impl ConnectionLike,
    ) -> redis::RedisResult<(u64, bool)> {
        let inner = &self.inner;
        let (raw, bumped): (String, i64) = inner
            .scripts
            .identity
            .key(&inner.epoch_key)
            .key(&inner.identity_key)
            .arg(self.epoch())
            .arg(&inner.channel)
            .invoke_async(conn)
            .await?;
        let epoch = parse_u64(&raw).map_err(|_| {
            redis::RedisError::from((
                redis::ErrorKind::Parse,
                "identity.lua returned a malformed epoch",
            ))
        })?;
        Ok((epoch, bumped == 1))
    }

    /// Adopts the epoch an identity check returned. A bump means the server's
    /// data may be older than what this instance saw: its L1 and the counters it
    /// mirrors are dropped as after an outage.
    fn adopt_identity(&self, epoch: u64, bumped: bool) {
        self.observe_epoch(epoch);
        if bumped {
            tracing::warn!(
                epoch,
                "Redis holds data not validated on this server process (restarted from \
                 persistence, a failover or a flush): epoch bumped, entries written before are dead"
            );
            if let Some(l) = self.listener() {
                l.on_outage();
            }
        }
    }

    /// A server whose `run_id` changed without this instance seeing a failed
    /// call: treated like an outage, so the epoch is bumped before Redis is read
    /// again.
    fn identity_outage(&self, addr: &str) {
        tracing::warn!(
            node = addr,
            "a Redis master was restarted or replaced: treated as an outage"
        );
        self.inner.outages.fetch_add(1, Ordering::SeqCst);
        if let Some(l) = self.listener() {
            l.on_outage();
        }
    }

    /// One round of the periodic check. Not breaker-guarded and not counted
    /// among the store's calls: the store's own calls notice an outage; this
    /// only looks for a server that changed under a working connection.
    async fn check_identity(&self, run_ids: &mut RunIds) {
        if self.inner.breaker_open.load(Ordering::SeqCst) {
            return;
        }
        let timeout = self.inner.config.op_timeout * 2;
        let mut conn = self.inner.conn.clone();
        match tokio::time::timeout(timeout, self.run_identity(&mut conn)).await {
            Ok(Ok((epoch, bumped))) => self.adopt_identity(epoch, bumped),
            Ok(Err(e)) => tracing::debug!(error = %e, "identity check failed"),
            Err(_) => tracing::debug!("identity check timed out"),
        }
        if self.inner.config.topology == Topology::Cluster {
            let info = tokio::time::timeout(
                timeout,
                redis::cmd("INFO")
                    .arg("server")
                    .query_async::<Value>(&mut conn),
            )
            .await;
            match info {
                Ok(Ok(reply)) => {
                    for addr in run_ids.update(masters_run_ids(reply)) {
                        self.identity_outage(&addr);
                    }
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "INFO of the Cluster's masters failed"),
                Err(_) => tracing::debug!("INFO of the Cluster's masters timed out"),
            }
        }
    }
}

/// The `run_id` last seen at each master's address.
#[derive(Default)]
pub(super) struct RunIds {
    seen: HashMap<String, String>,
    /// A first answer was recorded: masters that appear later are new.
    seeded: bool,
}

impl RunIds {
    /// Records this round's `(address, run_id)` pairs; returns the addresses
    /// whose master is not the process seen there before. Addresses missing from
    /// a round (a dead master) are remembered: one that comes back with another
    /// `run_id` was restarted.
    ///
    /// A master at an address never seen before counts too (after the first
    /// round): a replica promoted by a failover this instance did not notice may
    /// lack the old master's last writes. A master added to scale out costs one
    /// epoch bump for the same reason.
    fn update(&mut self, round: Vec<(String, String)>) -> Vec<String> {
        if round.is_empty() {
            return Vec::new();
        }
        let mut changed = Vec::new();
        for (addr, run_id) in round {
            match self.seen.insert(addr.clone(), run_id.clone()) {
                Some(before) if before == run_id => {}
                None if !self.seeded => {}
                _ => changed.push(addr),
            }
        }
        self.seeded = true;
        changed
    }
}

/// `(address, run_id)` of each master in the reply of `INFO server` sent
/// through a Cluster connection (a map of address to that node's answer). A
/// node that answered with an error is left out.
fn masters_run_ids(reply: Value) -> Vec<(String, String)> {
    let Value::Map(nodes) = reply else {
        return Vec::new();
    };
    nodes
        .into_iter()
        .filter_map(|(addr, info)| {
            let addr = text(addr)?;
            let info = text(info)?;
            let run_id = info
                .lines()
                .find_map(|l| l.strip_prefix("run_id:"))?
                .trim()
                .to_owned();
            Some((addr, run_id))
        })
        .collect()
}

fn text(v: Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        Value::VerbatimString { text, .. } => Some(text),
        _ => None,
    }
}

/// Runs [`check_identity`](RedisStore::check_identity) every `identity_interval`
/// while the store lives. A task of its own, not a branch of the subscriber's
/// loop: a slow check must not delay the invalidations the channel delivers.
pub(super) async fn watch(store: Weak<Inner>) {
    let Some(every) = store.upgrade().map(|i| i.config.identity_interval) else {
        return;
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut run_ids = RunIds::default();
    loop {
        tick.tick().await;
        let Some(inner) = store.upgrade() else {
            return;
        };
        RedisStore { inner }.check_identity(&mut run_ids).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, r)| (a.to_string(), r.to_string()))
            .collect()
    }

    #[test]
    fn a_master_restarted_or_replaced_is_a_change_and_the_first_round_is_not() {
        let mut ids = RunIds::default();
        assert!(
            ids.update(round(&[("a:1", "r1"), ("b:2", "r2")]))
                .is_empty()
        );
        assert!(
            ids.update(round(&[("a:1", "r1"), ("b:2", "r2")]))
                .is_empty()
        );
        // b died: nothing to say yet; an empty (failed) round changes nothing.
        assert!(ids.update(round(&[("a:1", "r1")])).is_empty());
        assert!(ids.update(Vec::new()).is_empty());
        // b's replica took over at another address; then b came back restarted.
        assert_eq!(ids.update(round(&[("a:1", "r1"), ("c:3", "r3")])), ["c:3"]);
        assert_eq!(ids.update(round(&[("b:2", "r4"), ("c:3", "r3")])), ["b:2"]);
        assert!(
            ids.update(round(&[("b:2", "r4"), ("c:3", "r3")]))
                .is_empty()
        );
    }

    #[test]
    fn run_ids_are_read_from_each_nodes_info() {
        let info = |id: &str| {
            Value::BulkString(
                format!("# Server\r\nredis_version:7.0.15\r\nrun_id:{id}\r\ntcp_port:7000\r\n")
                    .into_bytes(),
            )
        };
        let reply = Value::Map(vec![
            (Value::BulkString(b"127.0.0.1:7000".to_vec()), info("abc")),
            // A node that answered with an error (here: something not text).
            (Value::BulkString(b"127.0.0.1:7001".to_vec()), Value::Int(0)),
        ]);
        assert_eq!(
            masters_run_ids(reply),
            vec![("127.0.0.1:7000".to_owned(), "abc".to_owned())]
        );
        assert!(masters_run_ids(Value::Nil).is_empty());
    }
}
