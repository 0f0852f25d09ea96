//! Micro benchmarks of the cache's hot paths, against a private `redis-server`
//! started on a free port (killed at the end; `TIERCACHE_REDIS_SERVER` or PATH).
//!
//! `cargo bench -p tierstamp --bench cache` — results and ratios in BENCHMARKS.md.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use tierstamp::{
    Cache, KeyBuilder, Kind, L1Check, MemoryStore, RedisConfig, RedisStore, Scope, TieredStore,
};
use tokio::runtime::Runtime;

struct Server(Child, u16);

impl Server {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let bin = std::env::var("TIERCACHE_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(bin)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--enable-debug-command", "yes"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server");
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
        for _ in 0..200 {
            if client.get_connection().is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Server(child, port)
    }
    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.1)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn body() -> Bytes {
    // A 2 KB JSON page, like a small list response.
    Bytes::from(format!(
        "{{\"count\":1,\"results\":[\"{}\"]}}",
        "x".repeat(2000)
    ))
}

fn benches(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let server = Server::start();
    let url = server.url();
    let keys = KeyBuilder::new("bench", "v1").unwrap();
    let org = Scope::org(1);

    c.bench_function("key/build (4 params, one hashed)", |b| {
        let cache = Cache::builder(MemoryStore::new(1 << 20))
            .keys(keys.clone())
            .build();
        b.iter(|| {
            cache
                .key(Kind::List, "faculty", &org)
                .param("department", "CS")
                .param("page", 3)
                .param("ordering", "-last_name")
                .param("search", "ada lovelace")
                .default("page", 1)
                .build()
                .unwrap()
        })
    });

    let memory = Cache::builder(MemoryStore::new(64 << 20))
        .keys(keys.clone())
        .build();
    let (tiered, l2_only, mut plain) = rt.block_on(async {
        let l2 = RedisStore::connect(RedisConfig::new(&url), &keys)
            .await
            .unwrap();
        let tiered = Cache::builder(TieredStore::new(l2.clone(), 64 << 20, L1Check::Mirror))
            .keys(keys.clone())
            .build();
        while !l2.channel_up() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let l2_only = Cache::builder(l2.clone()).keys(keys.clone()).build();
        (tiered, l2_only, l2.connection())
    });
    let key = memory
        .key(Kind::List, "faculty", &org)
        .param("page", 1)
        .build()
        .unwrap();
    let warm = |cache: &Cache| {
        rt.block_on(async {
            cache
                .try_get_with(&key, async { Ok::<_, std::io::Error>(body()) })
                .await
                .unwrap();
        })
    };
    warm(&memory);
    warm(&tiered);
    warm(&l2_only);
    let hit = |cache: &Cache| {
        let (cache, key) = (cache.clone(), key.clone());
        async move {
            let r = cache
                .try_get_with(&key, async { Ok::<_, std::io::Error>(body()) })
                .await
                .unwrap();
            assert_eq!(r.status, tierstamp::Status::Hit);
            r
        }
    };
    c.bench_function("hit/memory store", |b| {
        b.to_async(&rt).iter(|| hit(&memory))
    });
    c.bench_function("hit/L1 (tiered)", |b| b.to_async(&rt).iter(|| hit(&tiered)));
    c.bench_function("hit/L2 (redis, one EVALSHA)", |b| {
        b.to_async(&rt).iter(|| hit(&l2_only))
    });
    c.bench_function("redis/plain GET of the same 2 KB value", |b| {
        b.to_async(&rt).iter(|| {
            let mut conn = plain.clone();
            let k = key.as_str().to_owned();
            async move {
                let v: Vec<u8> = redis::cmd("GET")
                    .arg(&k)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                assert!(v.len() > 2000);
                v
            }
        })
    });

    // Invalidation at 10k, 100k and 1M cached keys in the scope's slot.
    let mut admin = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let mut populated = 0u64;
    for total in [10_000u64, 100_000, 1_000_000] {
        let prefix = format!("{}:list:faculty:{}:p=", keys.namespace(), org);
        let _: () = redis::cmd("DEBUG")
            .arg("POPULATE")
            .arg(total)
            .arg(&prefix)
            .arg(256)
            .query(&mut admin)
            .unwrap();
        populated = populated.max(total);
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query(&mut admin)
            .unwrap();
        c.bench_function(
            &format!("invalidate/one model at {total} keys (round trip)"),
            |b| {
                b.to_async(&rt).iter(|| {
                    let cache = l2_only.clone();
                    let org = org.clone();
                    async move { cache.invalidate("faculty", &org).await }
                })
            },
        );
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut admin)
            .unwrap();
        let line = info
            .lines()
            .find(|l| l.starts_with("cmdstat_evalsha:"))
            .unwrap_or("none");
        println!("redis-side cost at {total} keys: {line}");
    }
    let dbsize: u64 = redis::cmd("DBSIZE").query(&mut admin).unwrap();
    println!("keys in the benchmark server: {dbsize} (populated {populated})");
    let _ = &mut plain;
}

criterion_group! {
    name = cache;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(cache);
