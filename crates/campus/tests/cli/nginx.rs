//! `deploy/nginx.conf` as shipped (only its three ports rewritten to free
//! ones), run by a real nginx in front of two `campus serve` instances sharing
//! one database and one Redis. nginx comes from Debian (`scripts/test.sh`
//! installs it); without it the test fails and says so.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::*;

/// nginx, stopped by its own PID.
struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM to the master, which stops its workers (a SIGKILLed master
        // leaves them running); SIGKILL only if it does not exit.
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..100 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nginx_bin() -> String {
    for bin in ["nginx", "/usr/sbin/nginx"] {
        if Command::new(bin)
            .arg("-v")
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            return bin.to_owned();
        }
    }
    panic!("nginx not found: scripts/test.sh installs it (Debian package nginx-light)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_behind_the_shipped_nginx_config() {
    let nginx = nginx_bin();
    let redis_url = redis_url();
    let prefix = format!("nginx{:x}", fastrand::u32(..));
    // Declared before the servers, so dropped after them: their keys are removed
    // last, even when an assertion fails half-way.
    let _cleanup = Cleanup(vec![format!("{prefix}:*")]);
    let env = Env::new(
        "nginx",
        &[("REDIS_URL", &redis_url), ("CACHE_KEY_PREFIX", &prefix)],
    );
    let a = env.serve_demo(&[]);
    let mut b = env.serve_demo(&[]);

    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let shipped = include_str!("../../../../deploy/nginx.conf");
    for port in ["127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8080"] {
        assert!(
            shipped.contains(port),
            "deploy/nginx.conf no longer has {port}"
        );
    }
    let conf = shipped
        .replace("127.0.0.1:8001", a.host())
        .replace("127.0.0.1:8002", b.host())
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{listen}"));
    std::fs::write(env.dir.join("nginx.conf"), conf).unwrap();
    let child = Command::new(&nginx)
        .arg("-p")
        .arg(&env.dir)
        .arg("-c")
        .arg(env.dir.join("nginx.conf"))
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx");
    let _nginx = Nginx(child);
    let front = format!("http://127.0.0.1:{listen}");
    let client = reqwest::Client::new();
    let start = Instant::now();
    while client.get(format!("{front}/healthz")).send().await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "nginx did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let token: serde_json::Value = client
        .post(format!("{front}/api/auth/token/"))
        .json(&serde_json::json!({"username": "org1-admin", "password": "campus-demo"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access"]
        .as_str()
        .expect("a token through nginx")
        .to_owned();

    // Round robin: both instances answer (request ids carry a per-process
    // prefix), and links name the address the client used.
    let mut processes = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let r = client
            .get(format!("{front}/api/faculty/?page_size=1"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        processes.insert(id.rsplit_once('-').unwrap().0.to_owned());
        let body: serde_json::Value = r.json().await.unwrap();
        let next = body["next"].as_str().unwrap();
        assert!(next.starts_with(&format!("{front}/api/faculty/")), "{next}");
    }
    assert_eq!(
        processes.len(),
        2,
        "nginx did not spread requests: {processes:?}"
    );

    // A write through nginx is seen by the next reads, whichever instance
    // serves them (shared Redis, broadcast invalidation).
    let list: serde_json::Value = client
        .get(format!("{front}/api/departments/"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = list["results"][0]["id"].as_i64().unwrap();
    let name = format!("Renamed {}", fastrand::u32(..));
    let r = client
        .patch(format!("{front}/api/departments/{id}/"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": name}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..10 {
        let v: serde_json::Value = client
            .get(format!("{front}/api/departments/{id}/"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["name"], name.as_str());
    }

    // One instance dies: nginx sends its share to the other.
    let _ = b.child.kill();
    let _ = b.child.wait();
    for _ in 0..20 {
        let r = client
            .get(format!("{front}/api/faculty/"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "a GET failed with one instance down");
    }
    // /metrics is scraped per instance, not through the balancer.
    let r = client.get(format!("{front}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    drop(a);
}
