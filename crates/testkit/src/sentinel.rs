//! A local master + replica watched by three sentinels.

use std::path::PathBuf;
use std::time::Duration;

use crate::process::{Server, free_ports, info, scratch_dir};
use crate::wait_until;

/// A master, one replica and three sentinels (quorum 2) on loopback. A master
/// is declared down after 1 s (`down-after-milliseconds 1000`), so a failover
/// completes a few seconds after it dies. Dropping it kills every process.
pub struct Sentinels {
    /// The data nodes: the original master first, then the replica.
    pub data: Vec<Server>,
    /// The sentinels.
    pub sentinels: Vec<Server>,
    /// The monitored master's name.
    pub name: String,
    dir: PathBuf,
}

impl Sentinels {
    /// Starts everything and returns once the sentinels know the replica and
    /// each other (a failover is possible from then on).
    pub fn start(name: &str) -> Sentinels {
        let ports = free_ports(5);
        let dir = scratch_dir("sentinel");
        let fast_sync = || vec!["--repl-diskless-sync-delay".to_owned(), "0".to_owned()];
        let master = Server::start(ports[0], &dir, fast_sync());
        let replica = Server::start(
            ports[1],
            &dir,
            vec![
                "--replicaof".into(),
                "127.0.0.1".into(),
                ports[0].to_string(),
            ],
        );
        let sentinels = ports[2..]
            .iter()
            .map(|&port| {
                let conf = dir.join(format!("sentinel-{port}.conf"));
                std::fs::write(
                    &conf,
                    format!(
                        "sentinel monitor {name} 127.0.0.1 {m} 2\n\
                         sentinel down-after-milliseconds {name} 1000\n\
                         sentinel failover-timeout {name} 3000\n\
                         sentinel parallel-syncs {name} 1\n",
                        m = ports[0]
                    ),
                )
                .expect("sentinel.conf");
                Server::start(
                    port,
                    &dir,
                    vec![conf.display().to_string(), "--sentinel".into()],
                )
            })
            .collect();
        let s = Sentinels {
            data: vec![master, replica],
            sentinels,
            name: name.to_owned(),
            dir,
        };
        wait_until(Duration::from_secs(30), "sentinels ready", || s.ready());
        s
    }

    /// Every sentinel sees the master, its replica and the two other sentinels,
    /// and the replica is in sync.
    fn ready(&self) -> bool {
        let replica_up = self.data[1]
            .connection()
            .ok()
            .and_then(|mut c| info(&mut c, "replication").ok())
            .is_some_and(|r| r.get("master_link_status").map(String::as_str) == Some("up"));
        replica_up
            && self.sentinels.iter().all(|s| {
                let Ok(mut c) = s.connection() else {
                    return false;
                };
                let replicas: redis::RedisResult<Vec<redis::Value>> = redis::cmd("SENTINEL")
                    .arg("REPLICAS")
                    .arg(&self.name)
                    .query(&mut c);
                let others: redis::RedisResult<Vec<redis::Value>> = redis::cmd("SENTINEL")
                    .arg("SENTINELS")
                    .arg(&self.name)
                    .query(&mut c);
                matches!((replicas, others), (Ok(r), Ok(o)) if !r.is_empty() && o.len() == 2)
            })
    }

    /// The sentinels' URLs joined by commas, as `REDIS_URL` takes them.
    pub fn url_list(&self) -> String {
        self.urls().join(",")
    }

    /// The sentinels' URLs.
    pub fn urls(&self) -> Vec<String> {
        self.sentinels.iter().map(Server::url).collect()
    }

    /// The port of the master the first answering sentinel reports.
    pub fn master_port(&self) -> u16 {
        for s in &self.sentinels {
            let Ok(mut c) = s.connection() else { continue };
            if let Ok((_, port)) = redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(&self.name)
                .query::<(String, u16)>(&mut c)
            {
                return port;
            }
        }
        panic!("no sentinel answers");
    }

    /// Kills the current master (SIGKILL, by PID); returns its port.
    pub fn kill_master(&mut self) -> u16 {
        let port = self.master_port();
        self.data
            .iter_mut()
            .find(|s| s.port == port)
            .expect("the master is one of ours")
            .kill();
        port
    }

    /// Waits until the sentinels report a master other than `old` and it
    /// answers as a master.
    pub fn wait_failover(&self, old: u16, timeout: Duration) -> u16 {
        let mut new = old;
        wait_until(timeout, "Sentinel failover", || {
            new = self.master_port();
            new != old
                && self
                    .data
                    .iter()
                    .find(|s| s.port == new)
                    .and_then(|s| s.connection().ok())
                    .and_then(|mut c| info(&mut c, "replication").ok())
                    .is_some_and(|r| r.get("role").map(String::as_str) == Some("master"))
        });
        new
    }

    /// Where the logs and sentinel files are.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}

impl Drop for Sentinels {
    fn drop(&mut self) {
        for s in self.sentinels.iter_mut().chain(self.data.iter_mut()) {
            s.kill();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
