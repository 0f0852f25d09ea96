//! Hostile clients (SPEC §5.13): login floods, failed-login throttling, slow
//! and idle connections, request and statement timeouts.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

async fn login_as(
    app: &TestApp,
    username: &str,
    password: &str,
) -> (StatusCode, Value, Option<String>) {
    let r = app
        .client
        .post(app.url("/api/auth/token/"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, r.json().await.unwrap_or(Value::Null), retry)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// 200 concurrent logins (unknown usernames, so each would hash): at most the
/// configured number of hashes run at once, the excess is answered 503 with
/// `Retry-After` at once rather than queued without end, and a cached read
/// made meanwhile is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_runs_a_bounded_number_of_hashes_and_cached_reads_go_on() {
    let app = spawn_app_with(
        Backend::Sqlite,
        AppOptions {
            configure: |c| {
                c.limits.login_hash_concurrency = Some(2);
                c.limits.login_hash_queue = 4;
                c.limits.login_throttle_address = "100000/minute".parse().unwrap();
            },
            ..AppOptions::default()
        },
    )
    .await;
    let token = app.login("org1-admin").await;
    let read = |app: &TestApp| {
        let (client, url, token) = (
            app.client.clone(),
            app.url("/api/departments/"),
            token.clone(),
        );
        async move {
            let start = Instant::now();
            let r = client.get(url).bearer_auth(token).send().await.unwrap();
            let cache = r
                .headers()
                .get("x-cache")
                .map(|v| v.to_str().unwrap().to_owned());
            (r.status(), cache, start.elapsed())
        }
    };
    let _ = read(&app).await;
    let mut quiet = Vec::new();
    for _ in 0..50 {
        let (status, cache, took) = read(&app).await;
        assert_eq!((status, cache.as_deref()), (StatusCode::OK, Some("HIT")));
        quiet.push(took);
    }

    let started = Instant::now();
    let flood: Vec<_> = (0..200)
        .map(|i| {
            let (client, url) = (app.client.clone(), app.url("/api/auth/token/"));
            tokio::spawn(async move {
                let r = client
                    .post(url)
                    .json(&json!({"username": format!("nobody{i}"), "password": "guess"}))
                    .send()
                    .await
                    .unwrap();
                let retry = r.headers().get("retry-after").is_some();
                let status = r.status();
                let body: Value = r.json().await.unwrap_or(Value::Null);
                (status, retry, body)
            })
        })
        .collect();
    let mut during = Vec::new();
    while flood.iter().any(|t| !t.is_finished()) {
        let (status, _, took) = read(&app).await;
        assert_eq!(status, StatusCode::OK, "a cached read during the flood");
        during.push(took);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (mut refused, mut denied) = (0, 0);
    for t in flood {
        let (status, retry, body) = t.await.unwrap();
        match status {
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(retry, "a 503 says when to come back");
                assert!(body["detail"].is_string(), "{body}");
                refused += 1;
            }
            StatusCode::UNAUTHORIZED => denied += 1,
            other => panic!("{other}: {body}"),
        }
    }
    let flood_took = started.elapsed();
    let peak = app.state.login.hashes.peak();
    assert!(peak <= 2, "{peak} hashes ran at once, the bound is 2");
    assert!(refused > 0, "the excess is refused, not queued");
    assert!(flood_took < Duration::from_secs(60), "{flood_took:?}");
    quiet.sort();
    during.sort();
    eprintln!(
        "login flood: {denied} answered 401, {refused} answered 503, peak {peak} hashes, {flood_took:?}; \
         cached reads quiet p50 {:?} p99 {:?}; during the flood ({} reads) p50 {:?} p99 {:?} max {:?}",
        percentile(&quiet, 0.5),
        percentile(&quiet, 0.99),
        during.len(),
        percentile(&during, 0.5),
        percentile(&during, 0.99),
        during.last().unwrap(),
    );
}

fn throttled(wait: u64) -> Value {
    json!({"detail": format!("Request was throttled. Expected available in {wait} seconds.")})
}

/// Past its rate, a username's logins are answered with DRF's 429 (even with
/// the right password), while another username from the same address still
/// logs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_past_the_limit_for_a_username_get_drfs_429() {
    let app = spawn_app_with(
        Backend::Sqlite,
        AppOptions {
            configure: |c| {
                c.limits.login_throttle_username = "3/minute".parse().unwrap();
                c.limits.login_throttle_address = "1000/minute".parse().unwrap();
            },
            ..AppOptions::default()
        },
    )
    .await;
    for _ in 0..3 {
        let (status, _, _) = login_as(&app, "org1-admin", "wrong").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, body, retry) = login_as(&app, "org1-admin", "wrong").await;
    assert_eq!(
        (status, &body),
        (StatusCode::TOO_MANY_REQUESTS, &throttled(20))
    );
    assert_eq!(retry.as_deref(), Some("20"));
    let (status, _, _) = login_as(&app, "org1-admin", PASSWORD).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "the username is throttled"
    );
    let (status, _, _) = login_as(&app, "org1-staff", PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "another username is not");
}

/// Failures on other usernames count against the address only up to its own
/// limit: below it a successful login goes through (and takes its charge
/// back), past it the address is throttled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successful_login_is_not_blocked_by_failures_on_other_usernames_below_the_address_limit()
{
    let app = spawn_app_with(
        Backend::Sqlite,
        AppOptions {
            configure: |c| {
                c.limits.login_throttle_username = "3/minute".parse().unwrap();
                c.limits.login_throttle_address = "5/minute".parse().unwrap();
            },
            ..AppOptions::default()
        },
    )
    .await;
    for i in 0..4 {
        let (status, _, _) = login_as(&app, &format!("nobody{i}"), "guess").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    for _ in 0..3 {
        let (status, _, _) = login_as(&app, "org1-admin", PASSWORD).await;
        assert_eq!(status, StatusCode::OK, "below the address's limit");
    }
    let (status, _, _) = login_as(&app, "nobody9", "guess").await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the address's fifth failure"
    );
    let (status, body, retry) = login_as(&app, "org1-admin", PASSWORD).await;
    assert_eq!(
        (status, &body),
        (StatusCode::TOO_MANY_REQUESTS, &throttled(12))
    );
    assert_eq!(retry.as_deref(), Some("12"));
}

/// Reads until the server closes the connection; how long that took.
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// A connection that never finishes its request head is closed after the
/// header timeout, and so is a kept-alive connection that stays idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_header_and_idle_connections_are_closed_after_the_header_timeout() {
    let app = spawn_app_with(
        Backend::Sqlite,
        AppOptions {
            configure: |c| c.limits.http_header_timeout_ms = 500,
            ..AppOptions::default()
        },
    )
    .await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let took = closed_within(&mut slow, Duration::from_secs(5))
        .await
        .expect("a slow-header connection is closed");
    assert!(took >= Duration::from_millis(400), "{took:?}");

    let mut idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    closed_within(&mut idle, Duration::from_secs(5))
        .await
        .expect("an idle kept-alive connection is closed");
}

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

/// 2,000 connections that send half a request head and stall: with the
/// connection cap, the server holds at most `cap` of them (the rest wait in the
/// kernel's backlog, and the header timeout closes each in turn), so a real
/// client is served. The test process gets a file budget of the 2,000 client
/// sockets, the cap and a margin, as a production process has its `ulimit
/// -n`: a server that accepted them all would exhaust it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_slow_connections_do_not_keep_a_real_client_out() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    const SLOW: u64 = 2000;
    const CAP: u32 = 256;
    let app = spawn_app_with(
        Backend::Sqlite,
        AppOptions {
            configure: |c| {
                c.limits.http_header_timeout_ms = 500;
                c.limits.http_max_connections = Some(CAP);
            },
            ..AppOptions::default()
        },
    )
    .await;
    let token = app.login("org1-admin").await;
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let budget = open_fds() + SLOW + u64::from(CAP) + 200;
    assert!(
        budget <= hard,
        "the hard limit {hard} allows the test's {budget} files"
    );
    setrlimit(Resource::RLIMIT_NOFILE, budget, hard).unwrap();

    let addr = app.base.trim_start_matches("http://").to_owned();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let slow: Vec<_> = (0..SLOW)
        .map(|_| {
            let (addr, mut stop) = (addr.clone(), stop_rx.clone());
            tokio::spawn(async move {
                let connect = tokio::net::TcpStream::connect(addr);
                let Ok(Ok(mut s)) = tokio::time::timeout(Duration::from_secs(5), connect).await
                else {
                    return false;
                };
                let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
                let _ = stop.wait_for(|stop| *stop).await;
                true
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let started = Instant::now();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let served = client
        .get(app.url("/api/departments/"))
        .bearer_auth(&token)
        .send()
        .await
        .map(|r| r.status());
    let took = started.elapsed();
    let _ = stop_tx.send(true);
    let mut opened = 0;
    for t in slow {
        opened += u32::from(t.await.unwrap());
    }
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
    eprintln!("{opened} slow connections opened; the real request took {took:?}: {served:?}");
    assert_eq!(served.unwrap(), StatusCode::OK);
}

/// A request not answered within the request timeout gets a DRF-style 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_the_request_timeout_is_answered_503() {
    let app = spawn_app_with(
        Backend::Sqlite,
        AppOptions {
            configure: |c| {
                c.bench_routes = true;
                c.limits.http_request_timeout_ms = 200;
            },
            ..AppOptions::default()
        },
    )
    .await;
    let started = Instant::now();
    let r = app
        .client
        .get(app.url("/bench/sleep?ms=5000"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().get("retry-after").is_some());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!({"detail": "Request timed out."}));
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// The serving pool's PostgreSQL connections carry `statement_timeout`; a
/// statement past it is a 503 (overload), not a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_past_the_statement_timeout_is_cancelled_on_postgres() {
    use sea_orm::ConnectionTrait;
    let url = std::env::var("TEST_DATABASE_URL").expect("TEST_DATABASE_URL");
    let db = campus::db::connect_with(&url, Some(Duration::from_millis(200)))
        .await
        .unwrap();
    let started = Instant::now();
    let err = db
        .execute_unprepared("SELECT pg_sleep(5)")
        .await
        .expect_err("cancelled by statement_timeout");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(campus::db::is_unavailable(&err), "{err}");
    let db = campus::db::connect(&url).await.unwrap();
    db.execute_unprepared("SELECT pg_sleep(0.5)").await.unwrap();
}

/// A failed login from `client` as a trusted proxy would forward it.
async fn forwarded_login(app: &TestApp, client: &str) -> StatusCode {
    app.client
        .post(app.url("/api/auth/token/"))
        .header("x-forwarded-for", client)
        .json(&json!({"username": format!("nobody-{client}"), "password": "guess"}))
        .send()
        .await
        .unwrap()
        .status()
}

/// The `next` link of a one-row faculty page, requested with `headers`.
async fn next_link(app: &TestApp, token: &str, headers: &[(&str, &str)]) -> String {
    let mut req = app
        .client
        .get(app.url("/api/faculty/?page_size=1"))
        .bearer_auth(token);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    body["next"].as_str().expect("a next link").to_owned()
}

const FROM_TLS_PROXY: [(&str, &str); 2] = [
    ("x-forwarded-proto", "https"),
    ("x-forwarded-host", "api.example.edu"),
];

/// Behind a trusted proxy, page links carry the scheme and host the client
/// used, and the same list asked for directly (another origin, so another memo
/// entry and cache key) keeps `http://` and its own host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_links_follow_the_scheme_and_host_a_trusted_proxy_forwarded() {
    let app = spawn_app_with(
        Backend::Sqlite,
        AppOptions {
            configure: |c| c.limits.trusted_proxies = "127.0.0.1, ::1".parse().unwrap(),
            ..AppOptions::default()
        },
    )
    .await;
    let token = app.login("org1-admin").await;
    for _ in 0..2 {
        assert_eq!(
            next_link(&app, &token, &FROM_TLS_PROXY).await,
            "https://api.example.edu/api/faculty/?page=2&page_size=1"
        );
        assert_eq!(
            next_link(&app, &token, &[]).await,
            app.url("/api/faculty/?page=2&page_size=1")
        );
    }
}

/// The same headers from a client that is not a configured proxy (none is, by
/// default) change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_from_an_untrusted_client_are_ignored() {
    let app = spawn_app_with(
        Backend::Sqlite,
        AppOptions {
            configure: |c| {
                c.limits.login_throttle_address = "2/minute".parse().unwrap();
                c.limits.login_throttle_username = "1000/minute".parse().unwrap();
            },
            ..AppOptions::default()
        },
    )
    .await;
    let token = app.login("org1-admin").await;
    assert_eq!(
        next_link(&app, &token, &FROM_TLS_PROXY).await,
        app.url("/api/faculty/?page=2&page_size=1")
    );
    // A client cannot escape the address throttle by naming other addresses.
    for (client, expected) in [
        ("203.0.113.1", StatusCode::UNAUTHORIZED),
        ("203.0.113.2", StatusCode::UNAUTHORIZED),
        ("203.0.113.3", StatusCode::TOO_MANY_REQUESTS),
    ] {
        assert_eq!(forwarded_login(&app, client).await, expected, "{client}");
    }
}

/// Behind a trusted proxy, the login throttle counts each forwarded client
/// apart: one client's failures do not lock out the others that share the
/// proxy's address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_address_throttle_counts_each_client_behind_a_trusted_proxy() {
    let app = spawn_app_with(
        Backend::Sqlite,
        AppOptions {
            configure: |c| {
                c.limits.trusted_proxies = "127.0.0.0/8, ::1".parse().unwrap();
                c.limits.login_throttle_address = "2/minute".parse().unwrap();
                c.limits.login_throttle_username = "1000/minute".parse().unwrap();
            },
            ..AppOptions::default()
        },
    )
    .await;
    for (client, expected) in [
        ("203.0.113.1", StatusCode::UNAUTHORIZED),
        ("203.0.113.1", StatusCode::UNAUTHORIZED),
        ("203.0.113.1", StatusCode::TOO_MANY_REQUESTS),
        // Prepended by the client itself: the proxy's own value still counts.
        ("198.51.100.5, 203.0.113.1", StatusCode::TOO_MANY_REQUESTS),
        ("203.0.113.2", StatusCode::UNAUTHORIZED),
    ] {
        assert_eq!(forwarded_login(&app, client).await, expected, "{client}");
    }
}

/// `/admin/cache/data` through `router`, as `token`.
async fn dashboard_data(router: &axum::Router, token: &str) -> Value {
    use tower::ServiceExt;
    let req = axum::http::Request::builder()
        .uri("/admin/cache/data")
        .header("authorization", format!("Bearer {token}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let r = router.clone().oneshot(req).await.unwrap();
    assert_eq!(r.status(), axum::http::StatusCode::OK);
    let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// An admin polling the dashboard cannot make instances walk the keyspace:
/// one walk serves a minute of polls on this instance, and another instance
/// of the deployment takes that walk's shared report instead of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_polls_walk_the_keyspace_once_a_minute_per_deployment() {
    use std::sync::atomic::Ordering;
    let app = spawn_app(Backend::Sqlite).await;
    let token = app.login("org1-admin").await;
    let router = app.router();
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        let d = dashboard_data(&router, &token).await;
        if !d["keys"].is_null() {
            break d;
        }
        assert!(Instant::now() < deadline, "no report after 10 s: {d}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(first["keys"]["total"].as_u64().unwrap() > 0, "{first}");
    for _ in 0..30 {
        dashboard_data(&router, &token).await;
    }
    assert_eq!(app.state.reports.walks.load(Ordering::Relaxed), 1);

    // A second instance of the same deployment (same Redis and prefix).
    let campus::state::Backend::Redis { prefix, .. } = &app.state.backend else {
        panic!("a Redis deployment");
    };
    let prefix = prefix.clone();
    let config = config("sqlite::memory:", &prefix);
    let other = campus::server::build_state(
        &config,
        app.db.clone(),
        config.jwt_secret.as_deref().unwrap().as_bytes(),
    )
    .await
    .unwrap();
    let other_router = campus::server::app(other.clone());
    for _ in 0..30 {
        let d = dashboard_data(&other_router, &token).await;
        assert_eq!(d["keys"], first["keys"], "the shared report");
    }
    assert_eq!(other.reports.walks.load(Ordering::Relaxed), 0);
}
