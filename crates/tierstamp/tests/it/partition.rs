//! An instance whose own path to Redis breaks at once (a refused or reset
//! connection) while the others' goes silent (Redis hung): the writer learns
//! of the failure immediately, the others only by their heartbeat. Its
//! response must still wait until they stopped trusting their L1.

use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use tierstamp::{Kind, Scope};

use crate::helpers::*;

/// A loopback TCP proxy that can be cut: its listener and every connection
/// through it are dropped, so calls fail at once instead of timing out.
struct Proxy {
    port: u16,
    tasks: JoinSet<()>,
}

impl Proxy {
    async fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                conns.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(("127.0.0.1", target)).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Proxy { port, tasks }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Drops the listener and every connection (the tasks own them).
    async fn cut(&mut self) {
        self.tasks.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_fails_at_once_still_waits_out_the_others_l1() {
    let server = RedisServer::start();
    let mut proxy = Proxy::start(server.port).await;
    let ns = Namespace::new(&server.url());
    let mut config = fast_breaker(&server.url());
    config.op_timeout = Duration::from_millis(400);
    let reader = tiered(&ns, config.clone(), false).await.0.build();
    config.nodes = vec![proxy.url()];
    let writer = redis(&ns, config).await.0.build();
    let db = Db::new("old");
    let org = Scope::org(1);
    let key = reader.key(Kind::Detail, "student", &org).build().unwrap();
    // The writer has a connection to lose.
    writer
        .try_get_with(&key, db.loader(Duration::ZERO))
        .await
        .unwrap();
    wait_for_l1(&reader, &key, &db).await;

    // Redis hangs for the reader (its pings go unanswered), and the writer's
    // connection is refused outright.
    server.pause();
    proxy.cut().await;
    db.write("new");
    writer.invalidate("student", &org).await;
    never_old(&reader, &key, &db).await;
    server.resume();
}
