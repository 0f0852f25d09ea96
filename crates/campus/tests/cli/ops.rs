//! `warm-cache` and `cache-stats` against a real server: through Redis, and
//! through the loopback admin endpoint of a server without Redis.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{Cleanup, Env, redis_url, stderr, stdout};

async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// The figure after `label` in the warm-cache summary.
fn figure(summary: &str, label: &str) -> u64 {
    summary
        .lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.replace(',', "").parse().ok())
        .unwrap_or_else(|| panic!("no {label:?} in:\n{summary}"))
}

/// Line by line, the shape of SPEC §3's report.
fn assert_report_shape(text: &str, title: &str) {
    let patterns = [
        format!("^=== {title} Cache Statistics ===$"),
        "^$".into(),
        "^Memory:$".into(),
        r"^  Used: [0-9.]+ (B|KB|MB|GB)$".into(),
        r"^  Max: ([0-9.]+ (B|KB|MB|GB)|unlimited)$".into(),
        "^$".into(),
        "^Keys:$".into(),
        r"^  Total keys: [0-9,]+$".into(),
        "^$".into(),
        "^Key Patterns:$".into(),
        r"^  list:\*: [0-9,]+ keys$".into(),
        r"^  detail:\*: [0-9,]+ keys$".into(),
        r"^  count:\*: [0-9,]+ keys$".into(),
        r"^  stats:\*: [0-9,]+ keys$".into(),
        "^$".into(),
        "^Cache Performance:$".into(),
        r"^  Hits: [0-9,]+$".into(),
        r"^  Misses: [0-9,]+$".into(),
        r"^  Hit Rate: [0-9]+\.[0-9]{2}%$".into(),
        "^$".into(),
        "^✓ Cache is healthy$".into(),
    ];
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), patterns.len(), "{text}");
    for (line, pattern) in lines.iter().zip(&patterns) {
        let re = regex_lite::Regex::new(pattern).unwrap();
        assert!(re.is_match(line), "{line:?} !~ {pattern:?} in:\n{text}");
    }
}

fn stats_json(env: &Env) -> Value {
    let out = env.campus(&["cache-stats", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_redis_warm_then_hit_report_and_clear_only_this_prefix() {
    let prefix = format!("clitest{:x}", fastrand::u64(..));
    let url = redis_url();
    let env = Env::new(
        "redis",
        &[("REDIS_URL", &url), ("CACHE_KEY_PREFIX", &prefix)],
    );
    let _cleanup = Cleanup(vec![format!("{prefix}*"), format!("other{prefix}*")]);
    let server = env.serve_demo(&[]);
    // Keys of other applications, one of them a prefix-extension trap.
    let mut conn = redis().await;
    let foreign = [
        format!("{prefix}x:v1:list:keep"),
        format!("other{prefix}:v1:list:keep"),
    ];
    for key in &foreign {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg("keep")
            .query_async(&mut conn)
            .await
            .unwrap();
    }

    let out = env
        .campus(&["warm-cache", "--host", server.host(), "--pages", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = stdout(&out);
    assert!(figure(&summary, "Keys written:") > 10, "{summary}");
    assert_eq!(figure(&summary, "Errors:"), 0, "{summary}");
    // Warming wrote exactly what a request reads: the next request is a HIT.
    let token = server.login("org1-staff").await;
    for path in [
        "/api/faculty/?page=1",
        "/api/departments/?page=1",
        "/api/stats/dashboard/",
    ] {
        assert_eq!(server.x_cache(&token, path).await, "HIT", "{path}");
    }
    let line = stderr(&env.campus(&["warm-cache", "--org", "99"]).output().unwrap());
    assert!(
        line.contains(r#"unknown organization "99" (valid: 1 (org1), 2 (org2))"#),
        "{line}"
    );

    // A second instance with hits of its own: every instance publishes its
    // counters every 2 s, and the report sums the live ones.
    let second = env.serve_demo(&[]);
    let token2 = second.login("org2-staff").await;
    for _ in 0..2 {
        second.x_cache(&token2, "/api/faculty/?page=1").await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let report = loop {
        let r = stats_json(&env);
        if r["instances"] == 2 && r["hits"].as_u64().unwrap_or(0) >= 4 {
            break r;
        }
        assert!(Instant::now() < deadline, "counters never summed: {r}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(report["backend"], "redis");
    // A stopped instance ages out (its counters' TTL is three periods).
    drop(second);
    let deadline = Instant::now() + Duration::from_secs(20);
    while stats_json(&env)["instances"] != 1 {
        assert!(Instant::now() < deadline, "a dead instance never aged out");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // `count`: the lists' totals, cached apart from their pages.
    for kind in ["list", "detail", "count", "stats"] {
        assert!(
            report["keys_by_kind"][kind].as_u64().unwrap() > 0,
            "{kind}: {report}"
        );
    }
    let out = env.campus(&["cache-stats"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_report_shape(&stdout(&out), "Redis");

    // Unhealthy by the operator's threshold: ✗, the reason, exit status 1.
    let out = env
        .campus(&["cache-stats", "--min-hit-rate", "101", "--min-lookups", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("✗ Cache is unhealthy: hit rate"),
        "{}",
        stdout(&out)
    );

    let out = env
        .campus(&["cache-stats", "--clear", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let cleared: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(cleared["cleared"].as_u64().unwrap() > 10, "{cleared}");
    for kind in ["list", "detail", "stats"] {
        assert_eq!(cleared["keys_by_kind"][kind], 0, "{cleared}");
    }
    for key in &foreign {
        let kept: Option<String> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(kept.as_deref(), Some("keep"), "{key} was removed");
    }
    // Cleared entries are loaded again, not served from the server's L1 either:
    // the clear's new epoch reaches it over the invalidation channel (within
    // the broadcast window, milliseconds).
    let deadline = Instant::now() + Duration::from_secs(2);
    while server.x_cache(&token, "/api/stats/dashboard/").await == "HIT" {
        assert!(
            Instant::now() < deadline,
            "the server's L1 kept a cleared entry"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    drop(server);
    let _: () = redis::cmd("DEL")
        .arg(&foreign[..])
        .query_async(&mut conn)
        .await
        .unwrap();
    env.campus(&["cache-stats", "--clear"]).output().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_the_commands_reach_the_server_through_its_admin_endpoint() {
    let env = Env::new("embedded", &[]);
    let server = env.serve_demo(&[]);
    let admin_file = env.dir.join("admin.json");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&admin_file).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "the admin file must be the owner's only"
        );
    }
    let admin: Value =
        serde_json::from_str(&std::fs::read_to_string(&admin_file).unwrap()).unwrap();
    let admin_url = admin["url"].as_str().unwrap();
    assert!(admin_url.starts_with("http://127.0.0.1:"), "{admin_url}");
    assert_ne!(
        admin_url, server.base,
        "the admin endpoint has its own port"
    );
    // Without the token: 401. Nor is it on the API's port.
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{admin_url}/admin/cache/report"))
        .bearer_auth("guess")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .get(format!("{}/admin/cache/report", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let out = env.campus(&["cache-stats"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_report_shape(&stdout(&out), "In-process");

    let out = env
        .campus(&["warm-cache", "--model", "Faculty", "--org", "org1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = stdout(&out);
    assert!(figure(&summary, "Keys written:") > 1, "{summary}");
    // Not a terminal: plain progress lines.
    assert!(
        stderr(&out).contains("warm-cache: 1/1 organization 1 faculty"),
        "{}",
        stderr(&out)
    );
    let token = server.login("org1-student").await;
    assert_eq!(server.x_cache(&token, "/api/faculty/?page=1").await, "HIT");

    let report = stats_json(&env);
    assert_eq!(report["backend"], "in-process");
    assert!(
        report["keys_by_kind"]["list"].as_u64().unwrap() >= 1,
        "{report}"
    );
    assert!(report["hits"].as_u64().unwrap() >= 1, "{report}");

    let out = env.campus(&["cache-stats", "--clear"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Cleared: "), "{}", stdout(&out));
    assert_eq!(server.x_cache(&token, "/api/faculty/?page=1").await, "MISS");

    // A server that dies leaves its file behind: recognised as stale.
    let saved = std::fs::read(&admin_file).unwrap();
    let mut server = server;
    use nix::sys::signal::{Signal, kill};
    kill(
        nix::unistd::Pid::from_raw(server.child.id() as i32),
        Signal::SIGTERM,
    )
    .unwrap();
    assert!(server.child.wait().unwrap().success());
    // A server that stops removes its admin file.
    assert!(!admin_file.exists(), "admin file left behind");
    let out = env.campus(&["cache-stats"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    std::fs::write(&admin_file, saved).unwrap();
    let out = env.campus(&["warm-cache"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("refused the connection"),
        "{}",
        stderr(&out)
    );
}

/// With `METRICS_BIND`, `/metrics` is served on that address alone: the public
/// bind answers it 404, and the metrics listener serves nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_bind_moves_metrics_off_the_public_address() {
    let env = Env::new("metrics-bind", &[]);
    let server = env.serve_demo(&[("METRICS_BIND", "127.0.0.1:0")]);
    let metrics = server
        .printed
        .iter()
        .find_map(|l| l.strip_prefix("Metrics on "))
        .unwrap_or_else(|| panic!("no metrics address in {:?}", server.printed))
        .to_owned();
    let client = reqwest::Client::new();
    let get = |url: String| {
        let client = client.clone();
        async move { client.get(url).send().await.unwrap() }
    };
    assert_eq!(get(format!("{}/healthz", server.base)).await.status(), 200);
    assert_eq!(get(format!("{}/metrics", server.base)).await.status(), 404);
    let scraped = get(metrics.clone()).await;
    assert_eq!(scraped.status(), 200);
    let text = scraped.text().await.unwrap();
    assert!(text.contains("http_requests_total"), "{text}");
    let other = metrics.replace("/metrics", "/healthz");
    assert_eq!(get(other).await.status(), 404);
}
