//! One `redis-server` process, and the ports and binaries it needs.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The `redis-server` binary: `TIERCACHE_REDIS_SERVER`, else `redis-server`.
/// Panics with a clear message if it cannot be run.
pub fn redis_server() -> PathBuf {
    let bin = std::env::var("TIERCACHE_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
    let ok = Command::new(&bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "cannot run redis-server ({bin:?}): install it (scripts/test.sh does) or set TIERCACHE_REDIS_SERVER"
    );
    PathBuf::from(bin)
}

/// `redis-cli`: next to the server binary if there is one, else on `PATH`.
pub fn redis_cli() -> PathBuf {
    let server = redis_server();
    let beside = server.parent().map(|d| d.join("redis-cli"));
    let bin = match beside {
        Some(p) if p.is_file() => p,
        _ => PathBuf::from("redis-cli"),
    };
    let ok = Command::new(&bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "cannot run redis-cli ({bin:?}): it ships with redis-server (Debian: redis-tools)"
    );
    bin
}

/// `n` distinct free loopback ports, all held at once while they are chosen
/// (so they differ), then released for the servers to bind.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free loopback port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("bound").port())
        .collect()
}

/// A fresh directory under the system's temporary directory.
pub(crate) fn scratch_dir(what: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "testkit-{what}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// A `redis-server` (or sentinel) process on loopback, killed by PID when
/// dropped or [`kill`](Server::kill)ed.
pub struct Server {
    child: Option<Child>,
    /// Its port.
    pub port: u16,
    args: Vec<String>,
    dir: PathBuf,
}

impl Server {
    /// Starts `redis-server` with `args` (after `--port` and `--bind`), in
    /// `dir`, and waits until it answers `PING`.
    pub fn start(port: u16, dir: &Path, args: Vec<String>) -> Server {
        let mut s = Server {
            child: None,
            port,
            args,
            dir: dir.to_owned(),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.join(format!("{}.log", self.port)))
            .expect("server log file");
        let mut cmd = Command::new(redis_server());
        // A config file, if any, must come first.
        let (file, rest) = match self.args.first() {
            Some(f) if f.ends_with(".conf") => (Some(f.clone()), &self.args[1..]),
            _ => (None, &self.args[..]),
        };
        if let Some(f) = file {
            cmd.arg(f);
        }
        let child = cmd
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(rest)
            .current_dir(&self.dir)
            .stdout(Stdio::from(log))
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let client = redis::Client::open(self.url()).expect("url");
        for _ in 0..300 {
            if let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(100))
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "redis-server did not start on port {} (log: {})",
            self.port,
            self.dir.join(format!("{}.log", self.port)).display()
        );
    }

    /// `redis://127.0.0.1:{port}/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A plain synchronous connection (for checks and set-up).
    pub fn connection(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(self.url())?.get_connection_with_timeout(Duration::from_secs(2))
    }

    /// Whether the process runs.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL by PID: the abrupt death of a node.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with the same arguments.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `INFO {section}` of a connection as `field -> value`.
pub(crate) fn info(
    conn: &mut redis::Connection,
    section: &str,
) -> redis::RedisResult<std::collections::HashMap<String, String>> {
    let text: String = redis::cmd("INFO").arg(section).query(conn)?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect())
}
