//! Running the real `campus` binary: one scratch directory and environment per
//! test, servers on free loopback ports, stopped by their own PID.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A scratch directory and the environment every command of a test shares.
pub struct Env {
    pub dir: std::path::PathBuf,
    pub vars: Vec<(String, String)>,
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Env {
    /// SQLite in a fresh directory, the admin file beside it, and `extra`.
    pub fn new(tag: &str, extra: &[(&str, &str)]) -> Env {
        let dir = std::env::temp_dir().join(format!(
            "campus-cli-{tag}-{}-{:x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut vars = vec![
            (
                "DATABASE_URL".to_owned(),
                format!("sqlite://{}?mode=rwc", dir.join("campus.db").display()),
            ),
            (
                "CAMPUS_ADMIN_FILE".to_owned(),
                dir.join("admin.json").display().to_string(),
            ),
            (
                "JWT_SECRET".to_owned(),
                "cli-test-secret-0123456789abcdef0123".to_owned(),
            ),
            ("RUST_LOG".to_owned(), "warn".to_owned()),
        ];
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Env { dir, vars }
    }

    /// `campus args…` with exactly this environment (nothing inherited but PATH).
    pub fn campus(&self, args: &[&str]) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::new(env!("CARGO_BIN_EXE_campus"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .timeout(Duration::from_secs(120));
        cmd
    }

    /// `campus serve --demo`, once it has printed the address it listens on.
    pub fn serve_demo(&self, extra: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_campus"));
        cmd.args(["serve", "--demo"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .env("BIND", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("campus binary");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut before = Vec::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("Campus API listening on ") {
                    let base = rest.trim_end_matches('/').to_owned();
                    let _ = tx.send((base, std::mem::take(&mut before)));
                } else {
                    before.push(line);
                }
            }
        });
        let (base, printed) = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("campus serve printed its address");
        Server {
            child,
            base,
            printed,
        }
    }
}

/// A running `campus serve`, killed by its own PID if the test did not stop it.
pub struct Server {
    pub child: Child,
    pub base: String,
    /// What `serve` printed before its address.
    pub printed: Vec<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// `host:port`, what clients send as `Host`.
    pub fn host(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    pub async fn login(&self, username: &str) -> String {
        let v: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/api/auth/token/", self.base))
            .json(&serde_json::json!({"username": username, "password": "campus-demo"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["access"].as_str().expect("a token").to_owned()
    }

    /// The `X-Cache` of a GET.
    pub async fn x_cache(&self, token: &str, path: &str) -> String {
        let r = reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.headers()["x-cache"].to_str().unwrap().to_owned()
    }
}

/// A command's standard output, as text.
pub fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// Removes every key this test may have written (its prefix, and the foreign
/// keys it planted around it), even when the test fails half-way.
pub struct Cleanup(pub Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Ok(mut conn) = redis::Client::open(redis_url()).and_then(|c| c.get_connection()) else {
            return;
        };
        // Each pattern again behind a `{`: tierstamp's identity marker,
        // `{prefix:epoch}:identity`, lives outside `prefix:`.
        let patterns = self.0.iter().flat_map(|p| [p.clone(), format!("{{{p}")]);
        for pattern in patterns {
            let Ok(keys) = testkit::scan(&mut conn, &pattern) else {
                continue;
            };
            for batch in keys.chunks(1000) {
                let _: redis::RedisResult<()> = redis::cmd("UNLINK").arg(batch).query(&mut conn);
            }
        }
    }
}
