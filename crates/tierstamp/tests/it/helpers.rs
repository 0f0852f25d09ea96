//! Test helpers: namespaces that clean up after themselves, caches over each kind
//! of store, and private `redis-server` processes.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tierstamp::{
    BreakerConfig, Cache, CacheBuilder, Dependencies, KeyBuilder, L1Check, MemoryStore,
    RedisConfig, RedisStore, TieredStore,
};

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned())
}

pub fn deps() -> Dependencies {
    Dependencies::new()
        .model("faculty", ["department"])
        .model("student", ["department", "program"])
        .model("dashboard", ["department", "program", "faculty", "student"])
}

/// A key prefix of its own (counters, epoch, identity marker and channel
/// included: they are shared by every version of a prefix), removed from Redis
/// (SCAN + UNLINK) when dropped.
pub struct Namespace {
    pub keys: KeyBuilder,
    url: String,
}

impl Namespace {
    pub fn new(url: &str) -> Self {
        let prefix = testkit::unique("tctest-");
        Namespace {
            keys: KeyBuilder::new(&prefix, "v1").unwrap(),
            url: url.to_owned(),
        }
    }

    /// The same prefix under another version (a rolling deploy's other half).
    /// Only the first of the two needs to outlive the test: it removes both.
    pub fn with_version(&self, version: &str) -> KeyBuilder {
        KeyBuilder::new(self.keys.prefix(), version).unwrap()
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        testkit::remove_prefix(&self.url, self.keys.prefix());
    }
}

pub fn fast_breaker(url: &str) -> RedisConfig {
    let mut c = RedisConfig::new(url);
    c.op_timeout = Duration::from_millis(150);
    c.connect_timeout = Duration::from_millis(300);
    c.breaker = BreakerConfig {
        threshold: 3,
        cooldown: Duration::from_millis(100),
        max_cooldown: Duration::from_millis(400),
        probe_timeout: Duration::from_millis(500),
    };
    c.ping_interval = Duration::from_millis(200);
    c.identity_interval = Duration::from_millis(200);
    c
}

/// For tests whose subject is not timing: a loaded CI machine (1,000 tasks on two
/// cores beside other suites) can hold a Redis reply past the default 250 ms
/// `op_timeout`, which would turn a look-up into a `BYPASS` the test did not ask for.
pub fn patient(url: &str) -> RedisConfig {
    let mut c = RedisConfig::new(url);
    c.op_timeout = Duration::from_secs(5);
    c
}

pub fn memory(ns: &Namespace) -> CacheBuilder {
    Cache::builder(MemoryStore::new(16 << 20))
        .keys(ns.keys.clone())
        .dependencies(deps())
}

pub async fn redis_store(ns: &Namespace, config: RedisConfig) -> RedisStore {
    RedisStore::connect(config, &ns.keys).await.unwrap()
}

pub async fn redis(ns: &Namespace, config: RedisConfig) -> (CacheBuilder, RedisStore) {
    let store = redis_store(ns, config).await;
    (
        Cache::builder(store.clone())
            .keys(ns.keys.clone())
            .dependencies(deps()),
        store,
    )
}

pub async fn tiered(
    ns: &Namespace,
    config: RedisConfig,
    strict: bool,
) -> (CacheBuilder, TieredStore) {
    let check = if strict {
        L1Check::Strict
    } else {
        L1Check::Mirror
    };
    let store = TieredStore::new(redis_store(ns, config).await, 16 << 20, check);
    wait_for(|| store.l2().channel_up(), "invalidation channel up").await;
    (
        Cache::builder(store.clone())
            .keys(ns.keys.clone())
            .dependencies(deps()),
        store,
    )
}

/// One cache of each kind over a fresh namespace, for tests of behaviour every
/// store must share.
pub async fn each_store() -> Vec<(&'static str, Cache, Namespace)> {
    let url = redis_url();
    let (m, r, t) = (
        Namespace::new(&url),
        Namespace::new(&url),
        Namespace::new(&url),
    );
    let memory_cache = memory(&m).build();
    let redis_cache = redis(&r, RedisConfig::new(&url)).await.0.build();
    let tiered_cache = tiered(&t, RedisConfig::new(&url), false).await.0.build();
    vec![
        ("memory", memory_cache, m),
        ("redis", redis_cache, r),
        ("tiered", tiered_cache, t),
    ]
}

/// The "database" of a test: a value and a count of the queries made against it.
#[derive(Clone, Default)]
pub struct Db {
    value: Arc<std::sync::Mutex<String>>,
    pub queries: Arc<AtomicUsize>,
}

impl Db {
    pub fn new(v: &str) -> Self {
        let db = Db::default();
        db.write(v);
        db
    }
    pub fn write(&self, v: &str) {
        *self.value.lock().unwrap() = v.to_owned();
    }
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
    /// A loader that reads the current value, after `delay`.
    /// The load of this row: it queries when polled, which the cache does on
    /// a miss only.
    pub fn loader(
        &self,
        delay: Duration,
    ) -> futures::future::BoxFuture<'static, Result<Bytes, std::io::Error>> {
        let db = self.clone();
        Box::pin(async move {
            db.queries.fetch_add(1, Ordering::SeqCst);
            let v = db.value.lock().unwrap().clone();
            tokio::time::sleep(delay).await;
            Ok(Bytes::from(v))
        })
    }
}

pub fn text(b: &Bytes) -> &str {
    std::str::from_utf8(b).unwrap()
}

pub async fn wait_for(mut cond: impl FnMut() -> bool, what: &str) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// A private `redis-server`, killed by PID when dropped.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
}

impl RedisServer {
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut s = RedisServer { child: None, port };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let bin =
            std::env::var("TIERCACHE_REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned());
        let child = Command::new(bin)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--enable-debug-command", "yes", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (scripts/test.sh installs it)");
        self.child = Some(child);
        let client = redis::Client::open(self.url()).unwrap();
        for _ in 0..200 {
            if let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(100))
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.as_ref().expect("running").id() as i32)
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// SIGSTOP: the server hangs with its connections open (a partition).
    pub fn pause(&self) {
        nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGSTOP).unwrap();
    }

    /// SIGCONT.
    pub fn resume(&self) {
        nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGCONT).unwrap();
    }

    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGCONT);
        }
        self.kill();
    }
}

/// Until `key` is answered from `cache`'s L1.
pub async fn wait_for_l1(cache: &Cache, key: &tierstamp::CacheKey, db: &Db) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = cache
            .try_get_with(key, db.loader(Duration::ZERO))
            .await
            .unwrap();
        if r.tier == Some(tierstamp::store::Tier::L1) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never answered from L1"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Twenty reads of `key` on `cache`, none of which may return `"old"`: what a
/// write that has returned replaced.
pub async fn never_old(cache: &Cache, key: &tierstamp::CacheKey, db: &Db) {
    for _ in 0..20 {
        let r = cache
            .try_get_with(key, db.loader(Duration::ZERO))
            .await
            .unwrap();
        assert_eq!(
            text(&r.body),
            "new",
            "another instance served what a returned write replaced ({:?}, {:?})",
            r.status,
            r.tier
        );
    }
}

/// The key of faculty `id`'s detail in `org`: an entry that depends on its own
/// row's counter.
pub fn detail(cache: &Cache, org: &tierstamp::Scope, id: i64) -> tierstamp::CacheKey {
    cache
        .key(tierstamp::Kind::Detail, "faculty", org)
        .row(id)
        .build()
        .unwrap()
}
