//! Secrets never reach the logs: the real binary at `RUST_LOG=trace`, logins
//! (good and bad), authenticated reads and writes, a refresh, a user created
//! with a password, a bad token, a database that refuses the connection (and,
//! with `TEST_DATABASE_URL`, a server whose `DATABASE_URL` has a password); then
//! nothing it printed, on stdout or stderr, holds a token, the JWT secret, a
//! password, a password hash or the database password.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::helpers::{Env, Server, stderr, stdout};

const JWT_SECRET: &str = "jwt-secret-that-must-not-be-logged-7Qk2";
const PASSWORD: &str = "Seed-Passw0rd-never-logged-x9";
const NEW_USER_PASSWORD: &str = "New-User-Passw0rd-never-logged-3v";
const WRONG_PASSWORD: &str = "Wrong-Passw0rd-never-logged-5m";
const DB_PASSWORD: &str = "Db-Passw0rd-never-logged-8w";

/// A throwaway PostgreSQL database reached with a password in its URL (the
/// local server trusts loopback, so any password is accepted), when
/// `TEST_DATABASE_URL` is set; dropped at the end.
struct PgDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl PgDatabase {
    async fn create() -> Option<PgDatabase> {
        use sea_orm::ConnectionTrait;
        let admin_url = std::env::var("TEST_DATABASE_URL").ok()?;
        let name = format!(
            "campus_cli_secrets_{}_{:x}",
            std::process::id(),
            fastrand::u32(..)
        );
        let admin = sea_orm::Database::connect(&admin_url).await.unwrap();
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let _ = admin.close().await;
        // postgres://user@host:port/db → postgres://user:PASSWORD@host:port/db
        let (scheme, rest) = admin_url.split_once("://").unwrap();
        let (authority, _) = rest.split_once('/').unwrap();
        let (user, host) = authority.split_once('@').unwrap();
        let user = user.split(':').next().unwrap();
        let url = format!("{scheme}://{user}:{DB_PASSWORD}@{host}/{name}");
        Some(PgDatabase {
            admin_url,
            name,
            url,
        })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                use sea_orm::ConnectionTrait;
                if let Ok(db) = sea_orm::Database::connect(&url).await {
                    let _ = db
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// `campus serve`, with everything it prints on either stream collected.
fn serve_logged(env: &Env, log: &Arc<Mutex<String>>) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_campus"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.vars.iter().map(|(k, v)| (k, v)))
        .env("BIND", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("campus binary");
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    let log_out = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("Campus API listening on ") {
                let _ = tx.send(rest.trim_end_matches('/').to_owned());
            }
            let mut l = log_out.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    let mut err = child.stderr.take().unwrap();
    let log_err = log.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 64 * 1024];
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            log_err
                .lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let base = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("campus serve printed its address");
    Server {
        child,
        base,
        printed: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_logs() {
    let pg = PgDatabase::create().await;
    let mut extra = vec![("JWT_SECRET", JWT_SECRET), ("RUST_LOG", "trace")];
    if let Some(pg) = &pg {
        extra.push(("DATABASE_URL", pg.url.as_str()));
    }
    let env = Env::new("secrets", &extra);
    let mut printed = String::new();
    for args in [
        &["migrate"][..],
        &[
            "seed",
            "--orgs",
            "1",
            "--faculty",
            "3",
            "--students",
            "3",
            "--password",
            PASSWORD,
        ],
    ] {
        let out = env.campus(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        printed.push_str(&stdout(&out));
        printed.push_str(&stderr(&out));
    }

    let log = Arc::new(Mutex::new(String::new()));
    let server = serve_logged(&env, &log);
    let client = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", server.base);
    let login = |password: &'static str| {
        client
            .post(url("/api/auth/token/"))
            .json(&json!({"username": "org1-admin", "password": password}))
            .send()
    };
    let bad = login(WRONG_PASSWORD).await.unwrap();
    assert_eq!(bad.status(), reqwest::StatusCode::UNAUTHORIZED);
    let pair: Value = login(PASSWORD).await.unwrap().json().await.unwrap();
    let (access, refresh) = (
        pair["access"].as_str().unwrap().to_owned(),
        pair["refresh"].as_str().unwrap().to_owned(),
    );
    for path in [
        "/api/auth/me/",
        "/api/faculty/",
        "/api/faculty/?search=a",
        "/api/students/",
        "/api/stats/dashboard/",
    ] {
        let r = client
            .get(url(path))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }
    let r = client
        .post(url("/api/users/"))
        .bearer_auth(&access)
        .json(
            &json!({"username": "newbie", "email": "newbie@campus.example", "role": "staff",
                      "password": NEW_USER_PASSWORD}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    let r = client
        .post(url("/api/departments/"))
        .bearer_auth(&access)
        .json(&json!({"code": "LOG", "name": "Logging"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    let refreshed: Value = client
        .post(url("/api/auth/token/refresh/"))
        .json(&json!({"refresh": refresh}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access2 = refreshed["access"].as_str().unwrap().to_owned();
    let newbie: Value = client
        .post(url("/api/auth/token/"))
        .json(&json!({"username": "newbie", "password": NEW_USER_PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let newbie_access = newbie["access"].as_str().unwrap().to_owned();
    let r = client
        .get(url("/api/faculty/"))
        .bearer_auth(format!("{access}x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::UNAUTHORIZED);

    kill(Pid::from_raw(server.child.id() as i32), Signal::SIGTERM).unwrap();
    let mut server = server;
    let _ = tokio::task::spawn_blocking(move || server.child.wait())
        .await
        .unwrap();
    // The output threads finish once the pipes close.
    tokio::time::sleep(Duration::from_millis(200)).await;
    printed.push_str(&log.lock().unwrap());

    // A database that refuses the connection: the error names the URL.
    {
        let refused = format!("postgres://campus:{DB_PASSWORD}@127.0.0.1:1/campus");
        let out = env
            .campus(&["migrate", "--database-url", &refused])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains("127.0.0.1:1"), "{err}");
        printed.push_str(&stdout(&out));
        printed.push_str(&err);
    }

    // The terminal colours (the log is coloured even into a pipe) could split a
    // secret from the test's view; drop them.
    let printed = strip_ansi(&printed);
    // The log is the full trace, not an empty file that would pass anything.
    for expected in [
        "TRACE",
        "DEBUG",
        "uri=/api/auth/token/",
        "uri=/api/users/",
        "tierstamp::cache",
        "cannot connect",
    ] {
        assert!(
            printed.contains(expected),
            "no {expected:?} in the output: is RUST_LOG=trace taking effect?"
        );
    }
    let hash = {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        let db_url = env
            .vars
            .iter()
            .rev()
            .find(|(k, _)| k == "DATABASE_URL")
            .unwrap()
            .1
            .clone();
        let db = sea_orm::Database::connect(&db_url).await.unwrap();
        let u = campus::entity::User::find()
            .filter(campus::entity::user::Column::Username.eq("newbie"))
            .one(&db)
            .await
            .unwrap()
            .unwrap();
        let _ = db.close().await;
        u.password_hash
    };
    let signature = |t: &str| t.rsplit('.').next().unwrap().to_owned();
    let mut secrets = vec![
        ("the JWT secret", JWT_SECRET.to_owned()),
        ("the users' password", PASSWORD.to_owned()),
        ("a new user's password", NEW_USER_PASSWORD.to_owned()),
        ("a wrong password", WRONG_PASSWORD.to_owned()),
        ("a password hash", hash),
        ("the access token's signature", signature(&access)),
        ("the refresh token's signature", signature(&refresh)),
        ("a refreshed token's signature", signature(&access2)),
        (
            "the new user's token's signature",
            signature(&newbie_access),
        ),
    ];
    secrets.push(("the database password", DB_PASSWORD.to_owned()));
    for (what, secret) in secrets {
        if let Some(at) = printed.find(&secret) {
            let line_start = printed[..at].rfind('\n').map_or(0, |i| i + 1);
            let line_end = printed[at..].find('\n').map_or(printed.len(), |i| at + i);
            panic!(
                "{what} is in the output:\n{}",
                &printed[line_start..line_end]
            );
        }
    }
}

/// `text` without ANSI escape sequences (`ESC [ … letter`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
