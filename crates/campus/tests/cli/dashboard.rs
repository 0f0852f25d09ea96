//! `/admin/cache/` in a real browser: headless Chromium (installed by
//! `scripts/test.sh`) opens the page with an admin's session while the server
//! has traffic, and must render live figures: the plot, the per-model table
//! and the invalidation caused by a write. A screenshot is kept.

use std::process::Command;

use crate::helpers::Env;

fn chromium() -> &'static str {
    for path in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if std::path::Path::new(path).exists() {
            return path;
        }
    }
    panic!("chromium is not installed: scripts/test.sh installs it (apt-get install chromium)");
}

/// Chromium, headless, with a throwaway profile, on `url`.
fn browse(env: &Env, extra: &[&str], url: &str) -> std::process::Output {
    let profile = env.dir.join(format!("chromium-{:x}", fastrand::u64(..)));
    Command::new(chromium())
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--window-size=1280,1000",
            "--virtual-time-budget=8000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("chromium runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_dashboard_shows_live_figures_in_a_browser() {
    let env = Env::new("dashboard", &[]);
    let server = env.serve_demo(&[]);
    let client = reqwest::Client::new();
    let admin = server.login("org1-admin").await;
    // Traffic: misses, then hits, then a write that invalidates.
    for _ in 0..3 {
        server.x_cache(&admin, "/api/faculty/?page=1").await;
        server.x_cache(&admin, "/api/departments/?page=1").await;
    }
    let departments: serde_json::Value = client
        .get(format!("{}/api/departments/", server.base))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = departments["results"][0]["id"].as_i64().unwrap();
    let r = client
        .patch(format!("{}/api/departments/{id}/", server.base))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"name": "Renamed for the dashboard"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());

    // A student's token opens no data.
    let student = server.login("org1-student").await;
    let r = client
        .get(format!("{}/admin/cache/data", server.base))
        .bearer_auth(&student)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // The page runs its own script and style only, and no one can frame it.
    let page = client
        .get(format!("{}/admin/cache/", server.base))
        .send()
        .await
        .unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    for part in [
        "default-src 'none'",
        "script-src 'sha256-",
        "style-src 'sha256-",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "{part} missing from {csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(page.headers()["x-frame-options"], "DENY");

    let url = format!("{}/admin/cache/#token={admin}", server.base);
    let out = browse(&env, &["--dump-dom"], &url);
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        dom.contains(r#"data-loaded="1""#),
        "the page never showed data:\n{dom}"
    );
    let points: u32 = regex_lite::Regex::new(r#"data-points="(\d+)""#)
        .unwrap()
        .captures(&dom)
        .and_then(|c| c[1].parse().ok())
        .expect("the plot's points");
    assert!(points >= 1, "an empty plot:\n{dom}");
    assert!(dom.matches("<circle").count() as u32 == points, "{dom}");
    // The faculty row: 3 look-ups, 1 miss then 2 hits (the table's cells are
    // model, hit, miss, stale, bypass).
    assert!(
        dom.contains("<tr><td>faculty</td><td>2</td><td>1</td><td>0</td><td>0</td></tr>"),
        "faculty row missing:\n{dom}"
    );
    assert!(
        dom.contains("patch department #"),
        "the invalidation is missing:\n{dom}"
    );
    assert!(
        dom.contains("program, faculty, student, dashboard"),
        "{dom}"
    );
    // Whose session this is, always on screen (a planted link cannot hide it).
    assert!(
        dom.contains("Signed in as <strong id=\"who-name\">org1-admin (organization "),
        "{dom}"
    );
    assert!(
        !dom.contains("org2"),
        "another organization's figures:\n{dom}"
    );

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cache-dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let out = browse(&env, &[&format!("--screenshot={}", shot.display())], &url);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 10_000,
        "screenshot {} is {size} bytes",
        shot.display()
    );
    eprintln!("screenshot: {}", shot.display());
}
