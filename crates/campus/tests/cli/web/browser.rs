//! Headless Chromium driven through chromedriver (WebDriver): one driver per
//! test on a free port, a throwaway profile, stopped by its own PID.

use std::io::{Read as _, Write as _};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::helpers::Env;

/// How long a view or a message may take to show: generous, because the
/// whole suite shares two cores with this browser and a debug server.
pub const PATIENCE: Duration = Duration::from_secs(30);

fn existing(paths: &[&'static str], what: &str) -> &'static str {
    paths
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or_else(|| {
            panic!("{what} is not installed: scripts/test.sh installs it (apt-get install chromium chromium-driver)")
        })
}

/// This test's chromedriver, stopped by its PID when dropped, also when
/// starting the browser fails half-way.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Browser {
    pub client: Client,
    port: u16,
    session: String,
    /// Dropped after `drop` below has ended the session.
    _driver: Driver,
}

impl Drop for Browser {
    /// Ends the session (which quits Chromium) even when the test failed
    /// half-way; then the chromedriver is stopped (`Driver`).
    fn drop(&mut self) {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(
                s,
                "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                self.session
            );
            let _ = s.read_to_end(&mut Vec::new());
        }
    }
}

impl Browser {
    /// Chromium at 1280x800 with its console kept (`goog:loggingPrefs`).
    pub async fn start(env: &Env) -> Browser {
        let chromium = existing(
            &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
            "chromium",
        );
        let chromedriver = existing(&["/usr/bin/chromedriver"], "chromedriver");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Driver(
            Command::new(chromedriver)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver starts"),
        );
        let webdriver = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + PATIENCE;
        while reqwest::get(format!("{webdriver}/status")).await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver never answered");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = env.dir.join(format!("chromium-{:x}", fastrand::u64(..)));
        let caps = json!({
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--window-size=1280,800",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&webdriver)
            .await
            .unwrap_or_else(|e| panic!("no WebDriver session: {e}"));
        let session = client.session_id().await.unwrap().expect("a session id");
        Browser {
            client,
            port,
            session,
            _driver: driver,
        }
    }

    pub async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    /// How many views the client has rendered so far.
    pub async fn renders(&self) -> u64 {
        self.js("return Number(document.getElementById('main').dataset.renders || 0)")
            .await
            .as_u64()
            .unwrap()
    }

    /// Waits until a render after the `after`-th shows `view` and returns the
    /// main element's text.
    pub async fn rendered(&self, after: u64, view: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let v = self
                .js("const m = document.getElementById('main'); \
                     return [Number(m.dataset.renders || 0), m.dataset.view || '', m.dataset.state, m.innerText]")
                .await;
            if v[0].as_u64().unwrap() > after && v[1] == view && v[2] == "ready" {
                return v[3].as_str().unwrap().to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "never showed {view} (render {after}): {v}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Opens `#hash` (a hash change: the page is not reloaded) and waits for `view`.
    pub async fn open(&self, base: &str, hash: &str, view: &str) -> String {
        let n = self.renders().await;
        self.client.goto(&format!("{base}/{hash}")).await.unwrap();
        self.rendered(n, view).await
    }

    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Clears the input at `css` and types `text`.
    pub async fn fill(&self, css: &str, text: &str) {
        let el = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
        el.clear().await.unwrap();
        el.send_keys(text).await.unwrap();
    }

    pub async fn count(&self, css: &str) -> usize {
        self.client.find_all(Locator::Css(css)).await.unwrap().len()
    }

    pub async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    /// The console's errors since the last call (chromedriver's browser log,
    /// which holds uncaught exceptions, failed loads and CSP violations).
    pub async fn console_errors(&self) -> Vec<String> {
        let v: Value = reqwest::Client::new()
            .post(format!(
                "http://127.0.0.1:{}/session/{}/se/log",
                self.port, self.session
            ))
            .json(&json!({"type": "browser"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["value"]
            .as_array()
            .unwrap_or_else(|| panic!("no browser log: {v}"))
            .iter()
            .filter(|e| e["level"] == "SEVERE" || e["level"] == "WARNING")
            .map(|e| format!("{} {}", e["source"], e["message"]))
            .collect()
    }

    /// A PNG of the window, into the test's directory, and into the committed
    /// `docs/screenshots/` only when `CAMPUS_SCREENSHOTS` names it.
    pub async fn screenshot(&self, env: &Env, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        assert!(png.len() > 5_000, "{name}: a {}-byte screenshot", png.len());
        std::fs::write(env.dir.join(format!("{name}.png")), &png).unwrap();
        if let Ok(dir) = std::env::var("CAMPUS_SCREENSHOTS") {
            let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            let dir = root.join(dir);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("{name}.png")), &png).unwrap();
        }
    }
}

/// The view's X-Cache (or "revalidated") and HTTP status, from its cache line.
pub async fn status(b: &Browser) -> (String, String) {
    let v = b
        .js("const s = document.getElementById('cache-status'); return [s.dataset.cache, s.dataset.http]")
        .await;
    (v[0].as_str().unwrap().into(), v[1].as_str().unwrap().into())
}

pub async fn current_hash(b: &Browser) -> String {
    b.js("return location.hash")
        .await
        .as_str()
        .unwrap()
        .to_owned()
}

/// The text of column `n` (1-based) of the list's rows.
pub async fn column(b: &Browser, n: usize) -> Vec<String> {
    let v = b
        .js(&format!(
            "return [...document.querySelectorAll('#results tbody tr td:nth-child({n})')].map(c => c.textContent)"
        ))
        .await;
    serde_json::from_value(v).unwrap()
}

/// Waits for `css` to hold `text` (any text when empty); returns its text.
pub async fn wait_text(b: &Browser, css: &str, text: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(el) = b.client.find(fantoccini::Locator::Css(css)).await
            && let Ok(t) = el.text().await
            && !t.is_empty()
            && t.contains(text)
        {
            return t;
        }
        assert!(Instant::now() < deadline, "{css} never showed {text:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
