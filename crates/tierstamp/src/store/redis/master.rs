//! The one connection a store shares to its master (one server, or the master
//! behind Sentinel), rebuilt when it is lost and checked before it is used.
//!
//! redis-rs's `ConnectionManager` reconnects invisibly, and its Sentinel client
//! answers with the master of the moment and never follows a failover by itself
//! (redis-rs issue 1438): a `MultiplexedConnection` to a dead master fails
//! forever, one to a demoted master answers `READONLY`. So a call whose error
//! says the master is lost ([`lost_master`]) drops the connection, and the next
//! call connects again: to the fixed server, or to the master the sentinels
//! report now. A new connection runs the [`OnConnect`] hook before it serves
//! anything: the store's identity check (`identity.rs`), which makes a server
//! that came back with older data count as an outage.
//!
//! One task rebuilds at a time (the others wait for its result rather than each
//! connecting), and a failed rebuild is not retried for [`RETRY_AFTER`], so
//! callers during an outage or a failover fail fast instead of queueing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use redis::aio::MultiplexedConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{AsyncConnectionConfig, Client, ConnectionInfo, RedisError, RedisResult};

use super::RedisConfig;
use super::errors::{config_error, lost_master};
use crate::error::Error;

/// Run on every new connection before it serves a command; an error means the
/// connection is not used (the call that needed it fails, and the breaker
/// counts it).
pub(crate) type OnConnect =
    Arc<dyn Fn(MultiplexedConnection) -> BoxFuture<'static, RedisResult<()>> + Send + Sync>;

/// How the master is found.
enum Locate {
    /// One server at a fixed address.
    Fixed(Client),
    /// Whatever master the sentinels report.
    Sentinel(tokio::sync::Mutex<SentinelClient>),
}

pub(super) struct Master {
    locate: Locate,
    current: RwLock<Option<Current>>,
    rebuild: tokio::sync::Mutex<Option<Instant>>,
    generation: AtomicUsize,
    connection: AsyncConnectionConfig,
    /// Bounds one rebuild: finding the master, connecting, and the hook.
    rebuild_timeout: Duration,
    on_connect: OnceLock<OnConnect>,
    pub(super) db: i64,
}

#[derive(Clone)]
struct Current {
    generation: usize,
    conn: MultiplexedConnection,
    client: Client,
}

const RETRY_AFTER: Duration = Duration::from_millis(100);

impl Master {
    /// The server at `info`.
    pub(super) fn fixed(info: ConnectionInfo, config: &RedisConfig) -> Result<Self, Error> {
        let db = info.redis_settings().db();
        let client = Client::open(info).map_err(|e| config_error("Redis URL", e))?;
        Ok(Self::new(
            Locate::Fixed(client),
            db,
            config.connect_timeout,
            config,
        ))
    }

    /// The master named `master`, found through the sentinels at `infos`.
    pub(super) fn sentinel(
        infos: Vec<ConnectionInfo>,
        master: &str,
        config: &RedisConfig,
    ) -> Result<Self, Error> {
        // The master and replicas take the credentials and database of the
        // first sentinel URL.
        let sentinels = infos.len();
        let redis_settings = infos[0].redis_settings().clone();
        let db = redis_settings.db();
        let node_info =
            SentinelNodeConnectionInfo::default().set_redis_connection_info(redis_settings);
        let sentinel = SentinelClient::build(
            infos,
            master.to_owned(),
            Some(node_info),
            SentinelServerType::Master,
        )
        .map_err(|e| config_error("Redis Sentinel URLs", e))?;
        // Each sentinel may cost a connection attempt before one answers, then
        // the master one more.
        let lookup = config.connect_timeout.max(Duration::from_secs(1)) * (sentinels as u32 + 1);
        Ok(Self::new(
            Locate::Sentinel(tokio::sync::Mutex::new(sentinel)),
            db,
            lookup,
            config,
        ))
    }

    fn new(locate: Locate, db: i64, lookup: Duration, config: &RedisConfig) -> Self {
        Master {
            locate,
            current: RwLock::new(None),
            rebuild: tokio::sync::Mutex::new(None),
            generation: AtomicUsize::new(0),
            connection: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(config.connect_timeout))
                .set_response_timeout(Some(config.op_timeout)),
            // The hook's script may take a round trip more the first time
            // (NOSCRIPT, then the script itself).
            rebuild_timeout: lookup + config.op_timeout * 3,
            on_connect: OnceLock::new(),
            db,
        }
    }

    pub(super) fn is_sentinel(&self) -> bool {
        matches!(self.locate, Locate::Sentinel(_))
    }

    /// Sets the hook every later connection runs first. Once: a second call is
    /// ignored (each store opens its own connection).
    pub(super) fn set_on_connect(&self, hook: OnConnect) {
        let _ = self.on_connect.set(hook);
    }

    fn cached(&self) -> Option<Current> {
        self.current.read().expect("master lock").clone()
    }

    /// The connection to use, and its generation (for [`check`](Self::check)).
    pub(super) async fn current(self: &Arc<Self>) -> RedisResult<(usize, MultiplexedConnection)> {
        if let Some(c) = self.cached() {
            return Ok((c.generation, c.conn));
        }
        self.rebuild().await.map(|c| (c.generation, c.conn))
    }

    /// The master's client (for a subscription, or a plain connection): the
    /// fixed server's, or the one Sentinel reports (rebuilding if needed).
    pub(super) async fn client(self: &Arc<Self>) -> RedisResult<Client> {
        if let Locate::Fixed(client) = &self.locate {
            return Ok(client.clone());
        }
        match self.cached() {
            Some(c) => Ok(c.client),
            None => self.rebuild().await.map(|c| c.client),
        }
    }

    /// Runs [`rebuild_now`](Self::rebuild_now) in a task of its own: callers
    /// give up after their operation timeout, shorter than a lookup that must
    /// skip an unreachable sentinel, and a rebuild dropped half-way would start
    /// again from the first sentinel every time and never finish.
    async fn rebuild(self: &Arc<Self>) -> RedisResult<Current> {
        let this = self.clone();
        tokio::spawn(async move { this.rebuild_now().await })
            .await
            .unwrap_or_else(|_| Err(io_error("Redis connection task failed")))
    }

    async fn rebuild_now(&self) -> RedisResult<Current> {
        let mut last_failure = self.rebuild.lock().await;
        // Another caller rebuilt while this one waited.
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        if let Some(at) = *last_failure
            && at.elapsed() < RETRY_AFTER
        {
            return Err(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "no reachable Redis master yet",
            )));
        }
        let found = tokio::time::timeout(self.rebuild_timeout, self.connect())
            .await
            .unwrap_or_else(|_| {
                Err(RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connecting to the Redis master timed out",
                )))
            });
        match found {
            Ok((client, conn)) => {
                *last_failure = None;
                let current = Current {
                    generation: self.generation.fetch_add(1, Ordering::SeqCst) + 1,
                    conn,
                    client,
                };
                let master = current.client.get_connection_info().addr();
                match self.locate {
                    Locate::Sentinel(_) => {
                        tracing::info!(%master, "connected to the master Sentinel reports")
                    }
                    Locate::Fixed(_) => tracing::debug!(%master, "connected to Redis"),
                }
                *self.current.write().expect("master lock") = Some(current.clone());
                Ok(current)
            }
            Err(e) => {
                *last_failure = Some(Instant::now());
                Err(e)
            }
        }
    }

    /// Finds the master, connects, and runs the hook on the new connection.
    async fn connect(&self) -> RedisResult<(Client, MultiplexedConnection)> {
        let client = match &self.locate {
            Locate::Fixed(client) => client.clone(),
            Locate::Sentinel(s) => s.lock().await.async_get_client().await?,
        };
        let conn = client
            .get_multiplexed_async_connection_with_config(&self.connection)
            .await?;
        if let Some(hook) = self.on_connect.get() {
            hook(conn.clone()).await.map_err(|e| {
                // Whatever the reason (a timeout, a script error, an ACL that
                // denies a key), an unchecked server must not be read: the
                // caller counts it as an outage, so the breaker sees it.
                if lost_master(&e) {
                    e
                } else {
                    io_error(format!("identity check failed: {e}"))
                }
            })?;
        }
        Ok((client, conn))
    }

    /// After a call on connection `generation`: drops that connection if the
    /// error says its master is gone (a newer connection is left alone).
    pub(super) fn check(&self, generation: usize, error: Option<&RedisError>) {
        if !error.is_some_and(lost_master) {
            return;
        }
        let mut current = self.current.write().expect("master lock");
        if current.as_ref().is_some_and(|c| c.generation == generation) {
            tracing::warn!(error = %error.expect("checked"), "Redis connection lost: connecting again before the next call");
            *current = None;
        }
    }

    /// `client` (from [`client`](Self::client)) could not be reached: behind
    /// Sentinel, the master it points at is forgotten if it is still the
    /// current one.
    pub(super) fn unreachable(&self, client: &Client) {
        if !self.is_sentinel() {
            return;
        }
        let mut current = self.current.write().expect("master lock");
        if current.as_ref().is_some_and(|c| {
            c.client.get_connection_info().addr() == client.get_connection_info().addr()
        }) {
            tracing::warn!("master unreachable for the subscription: asking Sentinel again");
            *current = None;
        }
    }
}

fn io_error(message: impl Into<String>) -> RedisError {
    RedisError::from(std::io::Error::other(message.into()))
}
