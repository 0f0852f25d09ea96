//! The processes a scenario runs: a throwaway PostgreSQL cluster, a private
//! `redis-server`, and `campus serve` instances. Each is started on a free
//! loopback port and stopped by its own PID (or `pg_ctl` on its own data
//! directory); the machine's shared services are never touched.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub fn free_port() -> u16 {
    testkit::free_ports(1)[0]
}

fn scratch(tag: &str) -> PathBuf {
    // /tmp rather than $TMPDIR: the postgres user must reach it, and the unix
    // socket path must stay short.
    let dir = PathBuf::from(format!(
        "/tmp/campus-chaos-{tag}-{}-{:x}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A command run as the owner of the cluster (initdb refuses root).
fn as_pg(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn pg_bin() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs.into_iter()
        .rev()
        .find(|d| d.join("initdb").exists())
        .expect("PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql: scripts/test.sh installs them")
}

/// A PostgreSQL cluster of the test's own, with `pg_stat_statements` loaded.
pub struct Pg {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
}

impl Pg {
    pub fn start() -> Pg {
        let bin = pg_bin();
        let dir = scratch("pg");
        if is_root() {
            assert!(
                Command::new("chown")
                    .args(["postgres:postgres"])
                    .arg(&dir)
                    .status()
                    .unwrap()
                    .success()
            );
        }
        let out = as_pg(&bin.join("initdb"))
            .arg("-D")
            .arg(dir.join("data"))
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .current_dir("/")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = Pg { dir, bin, port: 0 };
        for _ in 0..5 {
            pg.port = free_port();
            if pg.pg_ctl_start() {
                return pg;
            }
        }
        panic!("could not start a private PostgreSQL cluster");
    }

    fn pg_ctl_start(&self) -> bool {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off \
             -c shared_preload_libraries=pg_stat_statements",
            self.port,
            self.dir.display()
        );
        as_pg(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("postgres.log"))
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .current_dir("/")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }

    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Stops the server (`-m fast`: connections are cut, as in a real restart).
    pub fn stop(&self) {
        let _ = as_pg(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["stop", "-m", "fast", "-w", "-t", "30"])
            .current_dir("/")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    pub fn start_again(&self) {
        assert!(self.pg_ctl_start(), "PostgreSQL did not come back");
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = as_pg(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["stop", "-m", "immediate", "-w", "-t", "30"])
            .current_dir("/")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private `redis-server` without persistence: a restart comes back empty, as
/// a crashed cache would.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
}

impl Redis {
    pub fn start() -> Redis {
        let mut r = Redis {
            child: None,
            port: free_port(),
            dir: scratch("redis"),
        };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts the server (again) on its port and waits until it answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let bin =
            std::env::var("TIERCACHE_REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned());
        let child = Command::new(&bin)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{bin}: {e} (scripts/test.sh installs redis-server)"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.ping().is_err() {
            assert!(Instant::now() < deadline, "redis-server did not answer");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, as a crash: no clean shutdown, nothing saved.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn conn(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(self.url())?.get_connection_with_timeout(Duration::from_secs(1))
    }

    fn ping(&self) -> redis::RedisResult<()> {
        redis::cmd("PING").query(&mut self.conn()?)
    }

    /// `CLIENT PAUSE ms ALL`: the server stops answering every client.
    pub fn pause(&self, ms: u64) {
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(ms)
            .arg("ALL")
            .query(&mut self.conn().unwrap())
            .unwrap();
    }

    /// Cuts every pub/sub connection; returns how many were cut.
    pub fn kill_pubsub(&self) -> u64 {
        redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query(&mut self.conn().unwrap())
            .unwrap()
    }

    /// Keys matching `pattern`, listed with SCAN (never KEYS).
    pub fn scan(&self, pattern: &str) -> Vec<String> {
        testkit::scan(&mut self.conn().unwrap(), pattern).unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `campus serve` process; its stdout and stderr go to a log file the
/// secrecy check reads.
pub struct Campus {
    child: Option<Child>,
    pub name: String,
    pub base: String,
    pub log: PathBuf,
}

impl Campus {
    pub fn campus_cmd(env: &[(String, String)]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_campus"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    pub fn spawn(name: &str, dir: &Path, env: &[(String, String)]) -> Campus {
        let log = dir.join(format!("{name}.log"));
        let file = File::create(&log).unwrap();
        let child = Self::campus_cmd(env)
            .arg("serve")
            .env("BIND", "127.0.0.1:0")
            .env("CAMPUS_ADMIN_FILE", dir.join(format!("{name}.admin.json")))
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("campus binary");
        let deadline = Instant::now() + Duration::from_secs(60);
        let base = loop {
            let mut text = String::new();
            File::open(&log).unwrap().read_to_string(&mut text).unwrap();
            if let Some(line) = text
                .lines()
                .find_map(|l| l.strip_prefix("Campus API listening on "))
            {
                break line.trim().trim_end_matches('/').to_owned();
            }
            assert!(Instant::now() < deadline, "{name} did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        };
        Campus {
            child: Some(child),
            name: name.to_owned(),
            base,
            log,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILL: the process dies with whatever it held (a lease, say).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for Campus {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM first: a clean stop removes its admin file.
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The scratch directory of a scenario: logs and admin files.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        Scratch(scratch(tag))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("CHAOS_KEEP").is_some() {
            eprintln!("CHAOS_KEEP: logs kept in {}", self.0.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A TCP proxy to Redis for one instance: cutting it leaves that instance alone
/// without Redis while its peers keep theirs (a partial network failure).
pub struct Proxy {
    pub port: u16,
    target: u16,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    pub async fn start(target: u16) -> Proxy {
        let mut p = Proxy {
            port: free_port(),
            target,
            task: None,
        };
        p.restore().await;
        p
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Accepts again, on the same port.
    pub async fn restore(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        let target = self.target;
        self.task = Some(tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                conns.spawn(async move {
                    if let Ok(mut server) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        }));
    }

    /// Closes the listener and every connection through it (dropping the task
    /// drops the `JoinSet`, which aborts the copies): connection attempts are
    /// refused until [`restore`](Self::restore).
    pub async fn cut(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
