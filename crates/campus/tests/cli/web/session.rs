//! Logging in and out, and a session that ends on its own.

use serde_json::{Value, json};

use super::browser::{Browser, current_hash};
use crate::helpers::Server;

/// A student account that is deactivated while its session is open: the next
/// request is a 401, the refresh is refused, and the login form says why.
pub async fn a_deactivated_account_is_sent_back_to_the_login(
    b: &Browser,
    server: &Server,
    admin: &str,
    base: &str,
) {
    let client = reqwest::Client::new();
    let created: Value = client
        .post(format!("{}/api/users/", server.base))
        .bearer_auth(admin)
        .json(
            &json!({"username": "web-leaver", "email": "leaver@example.edu",
                      "role": "student", "password": "campus-demo"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    log_in(b, "web-leaver").await;
    let r = client
        .patch(format!("{}/api/users/{}/", server.base, created["id"]))
        .bearer_auth(admin)
        .json(&json!({"is_active": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let n = b.renders().await;
    b.client
        .goto(&format!("{base}/#/departments"))
        .await
        .unwrap();
    let text = b.rendered(n, "login").await;
    assert!(text.contains("Your session has ended"), "{text}");
    assert_eq!(b.js("return sessionStorage.length").await, json!(0));
    // The login form is at `#/departments`: back to where the session ended.
    b.js("history.replaceState(null, '', '#/')").await;
}

pub async fn log_in(b: &Browser, user: &str) {
    // Logging out (or a failed login) left the login form, at `#/`.
    let n = b.renders().await;
    b.rendered(n.saturating_sub(1), "login").await;
    assert_eq!(current_hash(b).await, "#/");
    b.fill("#username", user).await;
    b.fill("#password", "campus-demo").await;
    let n = b.renders().await;
    // From the keyboard: Enter in the password field submits.
    b.client
        .find(fantoccini::Locator::Css("#password"))
        .await
        .unwrap()
        .send_keys(&fantoccini::key::Key::Enter.to_string())
        .await
        .unwrap();
    b.rendered(n, "dashboard").await;
    let who = b.text("#who").await;
    assert!(who.starts_with(user), "{who}");
}

pub async fn log_out(b: &Browser) {
    assert!(logged_in_header_shown(b).await);
    let n = b.renders().await;
    b.click("#logout").await;
    let text = b.rendered(n, "login").await;
    assert!(text.contains("You are logged out."), "{text}");
    assert!(
        !logged_in_header_shown(b).await,
        "a Log out button after logout"
    );
}

pub async fn logged_in_header_shown(b: &Browser) -> bool {
    b.client
        .find(fantoccini::Locator::Css("#logout"))
        .await
        .unwrap()
        .is_displayed()
        .await
        .unwrap()
}

/// The access token is refreshed 30 s before its `exp`, by the token's own
/// claim: with the page's clock moved to 33 s before expiry (the access token
/// lives 30 minutes), the refresh comes 3 s after login, and the rotated
/// refresh token replaces the old one (a reload then resumes with it).
pub async fn the_access_token_is_refreshed_before_it_expires(b: &Browser, user: &str) {
    b.js("const real = Date.now.bind(Date); Date.now = () => real() + (1800 - 33) * 1000;")
        .await;
    log_in(b, user).await;
    let first = b
        .js("return sessionStorage.getItem('campus.refresh')")
        .await;
    assert!(first.is_string(), "no refresh token kept: {first}");
    let deadline = std::time::Instant::now() + super::browser::PATIENCE;
    loop {
        let now = b
            .js("return sessionStorage.getItem('campus.refresh')")
            .await;
        if now.is_string() && now != first {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no refresh before expiry: {now}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // A reload (a new page, its own clock) resumes the session with the
    // rotated refresh token.
    b.client.refresh().await.unwrap();
    b.rendered(0, "dashboard").await;
}

/// A tab opened from this one gets a copy of its sessionStorage (as a link
/// opened in a new tab can): exchanging the copied refresh token would rotate
/// it and end this tab's session at its next refresh, so the new tab asks for
/// a login and this tab's session goes on.
pub async fn a_tab_opened_from_another_logs_in_on_its_own(b: &Browser) {
    let first = b.client.window().await.unwrap();
    b.js("window.open(location.href)").await;
    let other = wait_for(|| async {
        let all = b.client.windows().await.unwrap();
        all.into_iter().find(|w| *w != first)
    })
    .await;
    b.client.switch_to_window(other).await.unwrap();
    b.rendered(0, "login").await;
    assert_eq!(
        b.js("return sessionStorage.getItem('campus.refresh')")
            .await,
        Value::Null
    );
    b.client.close_window().await.unwrap();
    b.client.switch_to_window(first).await.unwrap();
    // This tab's refresh token was not exchanged elsewhere: a reload resumes.
    b.client.refresh().await.unwrap();
    b.rendered(0, "dashboard").await;
}

/// The refresh before expiry: one the server could not answer (a network
/// error) keeps the session and is tried again; one answered after a logout
/// is dropped, so the logout holds (no token kept, a reload shows the login).
pub async fn a_refresh_answered_after_logout_is_dropped(b: &Browser, user: &str) {
    // The page's clock 31 s before expiry: the refresh comes 1 s after login.
    // The first refresh fails as a network error does; the retry is held until
    // `release()`, and `answered` is set once the client has read its answer.
    b.js(r#"
        const real = Date.now.bind(Date);
        Date.now = () => real() + (1800 - 31) * 1000;
        const send = window.fetch.bind(window);
        let refreshes = 0;
        window.fetch = (url, init) => {
          if (!String(url).includes('/api/auth/token/refresh/')) return send(url, init);
          refreshes += 1;
          if (refreshes === 1) return Promise.reject(new TypeError('Failed to fetch'));
          return new Promise((resolve, reject) => {
            window.release = () => send(url, init).then((res) => {
              const text = res.text();
              res.text = () => text.then((t) => {
                setTimeout(() => { window.answered = true; }, 0);
                return t;
              });
              resolve(res);
            }, reject);
          });
        };"#)
        .await;
    log_in(b, user).await;
    let first = b
        .js("return sessionStorage.getItem('campus.refresh')")
        .await;
    wait_for(|| async {
        b.js("return typeof window.release === 'function' || null")
            .await
            .as_bool()
    })
    .await;
    assert_eq!(
        b.js("return document.getElementById('main').dataset.view")
            .await,
        json!("dashboard"),
        "a refresh that could not reach the server ended the session"
    );
    assert_eq!(
        b.js("return sessionStorage.getItem('campus.refresh')")
            .await,
        first
    );
    log_out(b).await;
    b.js("window.release()").await;
    wait_for(|| async { b.js("return window.answered || null").await.as_bool() }).await;
    assert_eq!(
        b.js("return sessionStorage.length").await,
        json!(0),
        "a refresh answered after logout brought the session back"
    );
    b.client.refresh().await.unwrap();
    b.rendered(0, "login").await;
}

/// Polls `f` until it gives a value (within the browser's patience).
async fn wait_for<T, F, Fut>(f: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + super::browser::PATIENCE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "never happened");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
