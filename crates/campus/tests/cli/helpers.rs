//! Starting the real `campus` binary on a free loopback port.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `campus serve`, killed (by its own PID) if the test did not stop it.
pub struct Server {
    pub child: Child,
    pub base: String,
    dir: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A scratch directory under the target dir, unique to this call.
pub fn scratch(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "campus-cli-{tag}-{}-{:x}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `campus serve --demo` on SQLite and the in-process cache, with `env` added,
/// once it has printed the address it listens on.
pub fn serve_demo(env: &[(&str, &str)]) -> Server {
    let dir = scratch("serve");
    let db = format!("sqlite://{}?mode=rwc", dir.join("campus.db").display());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_campus"));
    cmd.args(["serve", "--demo"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &db)
        .env("BIND", "127.0.0.1:0")
        .env("JWT_SECRET", "cli-test-secret-0123456789")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("campus binary");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("Campus API listening on ") {
                let _ = tx.send(rest.trim_end_matches('/').to_owned());
            }
        }
    });
    let base = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("campus serve printed its address");
    Server { child, base, dir }
}
