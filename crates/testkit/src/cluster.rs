//! A local Redis Cluster: `masters` masters with `replicas` replicas each.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::process::{Server, free_ports, info, redis_cli, scratch_dir};
use crate::wait_until;

/// A Redis Cluster on loopback, created with `redis-cli --cluster create`.
/// Nodes time out after 1 s (`cluster-node-timeout 1000`), so a killed master's
/// replica takes over within a few seconds. Dropping it kills every node.
pub struct Cluster {
    nodes: Vec<Server>,
    dir: PathBuf,
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone)]
pub struct Node {
    /// Its client port.
    pub port: u16,
    /// `master` (and not failed).
    pub master: bool,
    /// Slot ranges it serves, inclusive.
    pub slots: Vec<(u16, u16)>,
}

impl Cluster {
    /// Starts `masters * (1 + replicas)` nodes and forms the cluster; returns
    /// once every slot is served and every replica is in sync.
    pub fn start(masters: usize, replicas: usize) -> Cluster {
        let n = masters * (1 + replicas);
        let ports = free_ports(2 * n);
        let dir = scratch_dir("cluster");
        let nodes: Vec<Server> = (0..n)
            .map(|i| {
                let (port, bus) = (ports[i], ports[n + i]);
                Server::start(
                    port,
                    &dir,
                    [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        &format!("nodes-{port}.conf"),
                        "--cluster-port",
                        &bus.to_string(),
                        "--cluster-node-timeout",
                        "1000",
                        // A replica may take over whatever its replication lag.
                        "--cluster-replica-validity-factor",
                        "0",
                        "--repl-diskless-sync-delay",
                        "0",
                    ]
                    .map(String::from)
                    .to_vec(),
                )
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        let out = Command::new(redis_cli())
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Cluster { nodes, dir };
        cluster.wait_healthy(Duration::from_secs(30));
        cluster
    }

    /// Every node's URL (the seeds a client may be given).
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Server::url).collect()
    }

    /// The node URLs joined by commas, as `REDIS_URL` takes them.
    pub fn url_list(&self) -> String {
        self.urls().join(",")
    }

    /// The cluster's view, from the first live node that answers.
    pub fn topology(&self) -> Vec<Node> {
        for s in self.nodes.iter().filter(|s| s.is_running()) {
            let Ok(mut c) = s.connection() else { continue };
            let Ok(text) = redis::cmd("CLUSTER").arg("NODES").query::<String>(&mut c) else {
                continue;
            };
            return parse_nodes(&text);
        }
        panic!("no cluster node answers");
    }

    /// Ports of the live masters that serve slots.
    pub fn masters(&self) -> Vec<u16> {
        self.topology()
            .into_iter()
            .filter(|n| n.master && !n.slots.is_empty())
            .map(|n| n.port)
            .collect()
    }

    /// The port of the master serving `key`.
    pub fn master_of(&self, key: &str) -> u16 {
        let s = self.nodes.iter().find(|s| s.is_running()).expect("a node");
        let mut c = s.connection().expect("connection");
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut c)
            .expect("CLUSTER KEYSLOT");
        self.topology()
            .into_iter()
            .find(|n| n.master && n.slots.iter().any(|&(a, b)| a <= slot && slot <= b))
            .map(|n| n.port)
            .expect("a master for the slot")
    }

    /// The node on `port`.
    pub fn node(&mut self, port: u16) -> &mut Server {
        self.nodes
            .iter_mut()
            .find(|s| s.port == port)
            .expect("a node on that port")
    }

    /// Kills the node on `port` (SIGKILL, by PID).
    pub fn kill(&mut self, port: u16) {
        self.node(port).kill();
    }

    /// Waits until every live node says `cluster_state:ok`, the live masters
    /// cover all 16384 slots, and every live replica's link to its master is up.
    pub fn wait_healthy(&self, timeout: Duration) {
        wait_until(timeout, "cluster healthy", || {
            let live: Vec<&Server> = self.nodes.iter().filter(|s| s.is_running()).collect();
            let ok = live.iter().all(|s| {
                s.connection()
                    .ok()
                    .and_then(|mut c| {
                        let cluster: String =
                            redis::cmd("CLUSTER").arg("INFO").query(&mut c).ok()?;
                        let repl = info(&mut c, "replication").ok()?;
                        let link_ok = repl.get("role").map(String::as_str) != Some("slave")
                            || repl.get("master_link_status").map(String::as_str) == Some("up");
                        Some(cluster.lines().any(|l| l.trim() == "cluster_state:ok") && link_ok)
                    })
                    .unwrap_or(false)
            });
            ok && {
                let covered: u32 = self
                    .topology()
                    .iter()
                    .filter(|n| {
                        n.master
                            && self
                                .nodes
                                .iter()
                                .any(|s| s.port == n.port && s.is_running())
                    })
                    .flat_map(|n| n.slots.iter().map(|&(a, b)| u32::from(b - a) + 1))
                    .sum();
                covered == 16384
            }
        });
    }

    /// Where the nodes' logs and cluster files are.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for s in &mut self.nodes {
            s.kill();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn parse_nodes(text: &str) -> Vec<Node> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let addr = f.get(1)?.split(['@', ',']).next()?;
            let port = addr.rsplit_once(':')?.1.parse().ok()?;
            let flags: Vec<&str> = f.get(2)?.split(',').collect();
            let master = flags.contains(&"master") && !flags.iter().any(|x| x.starts_with("fail"));
            let slots = f
                .iter()
                .skip(8)
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => s.parse().ok().map(|x| (x, x)),
                })
                .collect();
            Some(Node {
                port,
                master,
                slots,
            })
        })
        .collect()
}
