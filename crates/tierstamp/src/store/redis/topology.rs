//! How the store reaches Redis: one server, a Cluster, or a master found through
//! Sentinel. [`RedisConnection`] hides the difference from the store's calls;
//! the few things that must see every node (the subscriber, `SCAN`) ask for
//! [`primaries`] or [`subscriber_client`].

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo,
    RedisFuture, RedisResult, Value,
};

use super::RedisConfig;
use super::cluster::{Call, Cluster};
use super::errors::{config_error, from_redis};
use super::master::{Master, OnConnect};
use crate::error::Error;

/// How the Redis behind a [`RedisStore`](crate::RedisStore) is deployed; which
/// one decides what [`RedisConfig::nodes`] lists.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Topology {
    /// One server (or a proxy that looks like one): exactly one node URL.
    Standalone,
    /// A Redis Cluster: the node URLs are seeds (any reachable one is enough to
    /// learn the rest). Keys of one scope share a hash tag, so every script stays
    /// in one slot; reads that span scopes are split by slot.
    Cluster,
    /// A master and its replicas watched by Redis Sentinel: the node URLs are the
    /// sentinels', `master` the name they monitor. The store talks to the master
    /// they report and finds the new one after a failover.
    Sentinel {
        /// The monitored master's name (`sentinel monitor <name> …`).
        master: String,
    },
}

impl Topology {
    /// `standalone`, `cluster` or `sentinel`.
    pub fn name(&self) -> &'static str {
        match self {
            Topology::Standalone => "standalone",
            Topology::Cluster => "cluster",
            Topology::Sentinel { .. } => "sentinel",
        }
    }
}

/// A connection to the store's Redis, whatever its [`Topology`]: it implements
/// the `redis` crate's `aio::ConnectionLike`, so `redis::cmd(…).query_async`
/// and scripts work on it. Cheap to clone; clones share the underlying
/// connections.
///
/// Commands are routed by key in a Cluster (one slot per command: use a hash
/// tag for multi-key commands); behind Sentinel they go to the current master.
/// Outside a Cluster, a connection that fails or lands on a demoted master
/// (`READONLY`) is rebuilt (from the sentinels' answer behind Sentinel) before
/// a later call.
#[derive(Clone)]
pub struct RedisConnection {
    conn: Conn,
    config: Arc<RedisConfig>,
}

#[derive(Clone)]
enum Conn {
    /// One server, or the master behind Sentinel.
    Master(Arc<Master>),
    Cluster(Arc<Cluster>),
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RedisConnection")
            .field(&self.config.topology.name())
            .finish()
    }
}

fn connection_infos(nodes: &[String]) -> Result<Vec<ConnectionInfo>, Error> {
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            n.as_str()
                .into_connection_info()
                .map_err(|e| config_error(&format!("Redis node URL #{}", i + 1), e))
        })
        .collect()
}

impl RedisConnection {
    /// Builds the connection without waiting for Redis (it connects on first
    /// use and never blocks start-up); checks the configuration only. What a
    /// [`RedisStore`](crate::RedisStore) uses; open one directly for reports
    /// or clean-up that should not start a store's subscriber.
    pub fn open(config: &RedisConfig) -> Result<Self, Error> {
        Ok(RedisConnection {
            conn: Self::open_conn(config)?,
            config: Arc::new(config.clone()),
        })
    }

    fn open_conn(config: &RedisConfig) -> Result<Conn, Error> {
        if config.nodes.is_empty() {
            return Err(Error::Config("no Redis node URL given".into()));
        }
        let infos = connection_infos(&config.nodes)?;
        match &config.topology {
            Topology::Standalone => {
                if infos.len() != 1 {
                    return Err(Error::Config(format!(
                        "standalone Redis takes one URL, got {} (a Cluster or Sentinel needs its topology set)",
                        infos.len()
                    )));
                }
                let info = infos.into_iter().next().expect("one URL");
                Ok(Conn::Master(Arc::new(Master::fixed(info, config)?)))
            }
            Topology::Cluster => {
                let client = ClusterClientBuilder::new(infos)
                    .connection_timeout(config.connect_timeout)
                    .response_timeout(config.op_timeout)
                    // The store's own breaker and timeout decide; a long retry loop
                    // in the client would only hide a failover from them.
                    .retries(2)
                    .min_retry_wait(10)
                    .max_retry_wait(100)
                    .build()
                    .map_err(|e| config_error("Redis Cluster URLs", e))?;
                let cluster_config = ClusterConfig::new()
                    .set_connection_timeout(config.connect_timeout)
                    .set_response_timeout(config.op_timeout);
                Ok(Conn::Cluster(Arc::new(Cluster::new(
                    client,
                    cluster_config,
                ))))
            }
            Topology::Sentinel { master } => {
                if master.is_empty() {
                    return Err(Error::Config("Sentinel needs the master's name".into()));
                }
                Ok(Conn::Master(Arc::new(Master::sentinel(
                    infos, master, config,
                )?)))
            }
        }
    }

    /// The deployment this connection reaches.
    pub fn topology(&self) -> &Topology {
        &self.config.topology
    }

    /// A plain connection to every primary, with its address: the server, the
    /// master behind Sentinel, or every master of a Cluster (from `CLUSTER
    /// NODES`, each confirmed by its `ROLE`). For what must see every key
    /// (`SCAN`, memory figures); each connection reaches one node, so a
    /// multi-key command on it must stay in one slot.
    pub async fn primaries(
        &self,
    ) -> Result<Vec<(String, MultiplexedConnection)>, crate::StoreError> {
        primaries(&self.config, self).await.map_err(from_redis)
    }

    /// Sets what every new connection to the master runs before it serves a
    /// command (the store's identity check). A Cluster's node connections are
    /// the `redis` crate's own and run nothing: the store checks them
    /// periodically instead.
    pub(crate) fn set_on_connect(&self, hook: OnConnect) {
        if let Conn::Master(m) = &self.conn {
            m.set_on_connect(hook);
        }
    }

    fn sentinel(&self) -> Option<&Arc<Master>> {
        match &self.conn {
            Conn::Master(m) if m.is_sentinel() => Some(m),
            _ => None,
        }
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.conn {
            Conn::Cluster(c) => {
                let c = c.clone();
                Box::pin(async move {
                    let (generation, mut conn) = c.current();
                    let call = Call::new(&c, generation);
                    let result = conn.req_packed_command(cmd).await;
                    call.finish(&result);
                    result
                })
            }
            Conn::Master(m) => {
                let m = m.clone();
                Box::pin(async move {
                    let (generation, mut conn) = m.current().await?;
                    let result = conn.req_packed_command(cmd).await;
                    m.check(generation, result.as_ref().err());
                    result
                })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.conn {
            Conn::Cluster(c) => {
                let c = c.clone();
                Box::pin(async move {
                    let (generation, mut conn) = c.current();
                    let call = Call::new(&c, generation);
                    let result = conn.req_packed_commands(pipeline, offset, count).await;
                    call.finish(&result);
                    result
                })
            }
            Conn::Master(m) => {
                let m = m.clone();
                Box::pin(async move {
                    let (generation, mut conn) = m.current().await?;
                    let result = conn.req_packed_commands(pipeline, offset, count).await;
                    m.check(generation, result.as_ref().err());
                    result
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match &self.conn {
            Conn::Cluster(_) => 0,
            Conn::Master(m) => m.db,
        }
    }
}

/// The client a subscription to the invalidation channel should use on its
/// `attempt`-th (re)connection: in a Cluster, PUBLISH reaches every node, so any
/// node will do, and each attempt tries the next one (a dead node must not stop
/// the channel); behind Sentinel, the current master.
pub(crate) async fn subscriber_client(
    conn: &RedisConnection,
    attempt: usize,
) -> RedisResult<Client> {
    let config = &conn.config;
    if let Some(s) = conn.sentinel() {
        return s.client().await;
    }
    let node = &config.nodes[attempt % config.nodes.len()];
    Client::open(node.as_str())
}

/// `client` (from [`subscriber_client`]) could not be reached: behind Sentinel,
/// the master it points at is forgotten if it is still the current one.
pub(crate) fn unreachable(conn: &RedisConnection, client: &Client) {
    if let Some(s) = conn.sentinel() {
        s.unreachable(client);
    }
}

/// A plain connection to every primary: the server itself, the master behind
/// Sentinel, or every master of a Cluster (from `CLUSTER NODES`, skipping those
/// marked failed). Paired with each node's address, for reports.
async fn primaries(
    config: &RedisConfig,
    conn: &RedisConnection,
) -> RedisResult<Vec<(String, MultiplexedConnection)>> {
    let connection = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(Some(config.op_timeout.max(Duration::from_secs(2))));
    let clients: Vec<Client> = match &conn.conn {
        Conn::Master(m) => vec![m.client().await?],
        Conn::Cluster(_) => {
            let nodes: String = redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async(&mut conn.clone())
                .await?;
            let seed = config.nodes[0].as_str().into_connection_info()?;
            cluster_masters(&nodes)
                .into_iter()
                .map(|(host, port)| {
                    let addr = match seed.addr().clone() {
                        ConnectionAddr::TcpTls {
                            insecure,
                            tls_params,
                            ..
                        } => ConnectionAddr::TcpTls {
                            host,
                            port,
                            insecure,
                            tls_params,
                        },
                        _ => ConnectionAddr::Tcp(host, port),
                    };
                    Client::open(seed.clone().set_addr(addr))
                })
                .collect::<RedisResult<_>>()?
        }
    };
    let mut out = Vec::with_capacity(clients.len());
    for client in clients {
        let mut c = client
            .get_multiplexed_async_connection_with_config(&connection)
            .await?;
        // The node's own word: a view of the topology may lag a failover.
        let role: Vec<Value> = redis::cmd("ROLE").query_async(&mut c).await?;
        if matches!(role.first(), Some(Value::BulkString(r)) if r.as_slice() == b"master") {
            out.push((client.get_connection_info().addr().to_string(), c));
        }
    }
    Ok(out)
}

/// `(host, port)` of each master in a `CLUSTER NODES` reply that is not marked
/// failed. Lines: `<id> <ip:port@cport[,hostname]> <flags> <master> …`.
fn cluster_masters(nodes: &str) -> Vec<(String, u16)> {
    nodes
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (_, addr, flags) = (f.next()?, f.next()?, f.next()?);
            let flags: Vec<&str> = flags.split(',').collect();
            // A master without slots holds no keys (or is a replica this node
            // has not yet heard was demoted).
            let serves_slots = line.split_whitespace().nth(8).is_some();
            if !flags.contains(&"master")
                || flags.iter().any(|f| f.starts_with("fail"))
                || !serves_slots
            {
                return None;
            }
            let hostport = addr.split(['@', ',']).next()?;
            let (host, port) = hostport.rsplit_once(':')?;
            Some((host.trim_matches(['[', ']']).to_owned(), port.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_lists_live_masters_only() {
        let reply = "\
07c3 127.0.0.1:30004@40004 slave e7d1 0 1426238317239 4 connected
67ed 127.0.0.1:30002@40002 master - 0 1426238316232 2 connected 5461-10922
292f 127.0.0.1:30003@40003,host3 master - 0 1426238318243 3 connected 10923-16383
6ec2 127.0.0.1:30005@40005 master,fail - 1426238316232 1426238315000 5 disconnected
9f00 127.0.0.1:30006@40006 master - 0 1426238316232 6 connected
e7d1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460
";
        assert_eq!(
            cluster_masters(reply),
            vec![
                ("127.0.0.1".to_owned(), 30002),
                ("127.0.0.1".to_owned(), 30003),
                ("127.0.0.1".to_owned(), 30001),
            ]
        );
    }
}
