//! The web client at `/` (`crates/campus/src/web`) in headless Chromium,
//! against `campus serve --demo`: each role logs in and sees the write
//! controls it may use and no others; search, paging, ordering, an edit with a
//! validation error that is then fixed and shows in the list at once, a
//! refused delete, the dashboard's chart, phone width, logout; markup from the
//! API shows as text; no console errors (CSP violations included). Screenshots
//! go to the test's directory, and to `docs/screenshots/` only with
//! `CAMPUS_SCREENSHOTS=docs/screenshots`.

mod browser;

use serde_json::{Value, json};

use crate::helpers::{Env, Server};
use browser::Browser;

/// The name planted through the API; the client must show it as text.
const MARKUP: &str = "<img src=x onerror=\"window.pwned=1\">";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_client_serves_every_role_in_a_real_browser() {
    let env = Env::new("web", &[]);
    let server = env.serve_demo(&[]);
    let base = server.base.clone();
    the_client_is_served_with_a_strict_policy(&server).await;
    let admin = server.login("org1-admin").await;
    let planted = plant_markup(&server, &admin).await;

    let b = Browser::start(&env).await;
    b.client.goto(&format!("{base}/#/")).await.unwrap();
    b.rendered(0, "login").await;
    assert!(!logged_in_header_shown(&b).await, "a header before login");
    b.screenshot(&env, "login").await;
    // A wrong password: the API's message on the page, which stays usable.
    let n = b.renders().await;
    b.fill("#username", "org1-admin").await;
    b.fill("#password", "not-the-password").await;
    b.click("#login button[type=submit]").await;
    wait_text(&b, "#login-errors", "No active account").await;
    assert_eq!(b.renders().await, n, "a failed login left the login form");

    for (user, writes, writes_users) in [
        ("org1-student", false, false),
        ("org1-faculty", false, false),
        ("org1-staff", true, false),
    ] {
        log_in(&b, user).await;
        b.open(&base, "#/departments", "list:departments").await;
        assert_eq!(b.count("#new").await == 1, writes, "{user}: a New button");
        let view = if writes {
            "form:departments"
        } else {
            "detail:departments"
        };
        let n = b.renders().await;
        b.click("#results tbody tr a").await;
        b.rendered(n, view).await;
        assert_eq!(b.count("#save").await == 1, writes, "{user}: a Save button");
        assert_eq!(
            b.count("#delete").await == 1,
            writes,
            "{user}: a Delete button"
        );
        let users = b.open(&base, "#/users", "list:users").await;
        assert_eq!(b.count("#new").await == 1, writes_users, "{user}: {users}");
        log_out(&b).await;
    }

    a_deactivated_account_is_sent_back_to_the_login(&b, &server, &admin, &base).await;

    log_in(&b, "org1-admin").await;
    // A reload in the tab keeps the session (the refresh token in
    // sessionStorage buys a new access token).
    b.client.refresh().await.unwrap();
    b.rendered(0, "dashboard").await;
    let dashboard = b.open(&base, "#/dashboard", "dashboard").await;
    let bars = b.count("#chart rect.bar").await;
    assert!(bars >= 2, "{bars} bars:\n{dashboard}");
    assert_eq!(
        b.js("return Number(document.getElementById('chart').dataset.bars)")
            .await,
        json!(bars)
    );
    b.screenshot(&env, "dashboard").await;

    // Markup from the API is text: the cell shows it, no element is made.
    b.open(
        &base,
        &format!("#/students?search={planted}"),
        "list:students",
    )
    .await;
    assert_eq!(b.text("#results tbody td:nth-child(2)").await, MARKUP);
    assert_eq!(b.count("#results img").await, 0);
    assert_eq!(b.js("return window.pwned === undefined").await, json!(true));

    searching_paging_and_ordering(&b, &env, &base).await;
    an_edit_shows_its_field_error_then_its_new_value(&b, &env, &base).await;
    a_referenced_department_is_not_deleted(&b, &server, &admin, &base).await;
    at_phone_width_the_page_does_not_scroll_sideways(&b, &env, &base).await;

    log_out(&b).await;
    assert_eq!(b.js("return sessionStorage.length").await, json!(0));
    b.client.refresh().await.unwrap();
    b.rendered(0, "login").await;

    let errors: Vec<String> = b
        .console_errors()
        .await
        .into_iter()
        .filter(|e| !expected_failed_request(e))
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}

/// `/` and its assets: a CSP without inline script, revalidation by ETag; the
/// API's 404s are untouched.
async fn the_client_is_served_with_a_strict_policy(server: &Server) {
    let client = reqwest::Client::new();
    let page = client
        .get(format!("{}/", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let h = page.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    let csp = h["content-security-policy"].to_str().unwrap();
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "{part} missing from {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cache-control"], "no-cache");

    let js = client
        .get(format!("{}/app/app.js", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        js.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let etag = js.headers()["etag"].clone();
    let again = client
        .get(format!("{}/app/app.js", server.base))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    for path in ["/app/nothing.js", "/api/nothing/", "/index.html"] {
        let r = client
            .get(format!("{}{path}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body, json!({"detail": "Not found."}), "{path}");
    }
}

/// A student whose first name is markup; returns its roll number.
async fn plant_markup(server: &Server, admin: &str) -> String {
    let client = reqwest::Client::new();
    let programs: Value = client
        .get(format!("{}/api/programs/?page_size=1", server.base))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let program = &programs["results"][0];
    let r = client
        .post(format!("{}/api/students/", server.base))
        .bearer_auth(admin)
        .json(&json!({
            "roll_number": "MARKUP-1", "first_name": MARKUP, "last_name": "Planted",
            "email": "planted@example.edu", "semester": 1, "batch": 2024, "is_active": true,
            "department_id": program["department"]["id"], "program_id": program["id"],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    "MARKUP-1".into()
}

async fn searching_paging_and_ordering(b: &Browser, env: &Env, base: &str) {
    let first = b.open(base, "#/students", "list:students").await;
    let pages = b.text("#page-info").await;
    assert!(pages.starts_with("Page 1 of "), "{pages}\n{first}");
    assert_ne!(pages, "Page 1 of 1", "the demo has one page of students");
    // Seen before in this session: the ETag map revalidates (304).
    b.open(base, "#/departments", "list:departments").await;
    b.open(base, "#/students", "list:students").await;
    assert_eq!(
        status(b).await.0,
        "revalidated",
        "{}",
        b.text("#cache-status").await
    );

    let n = b.renders().await;
    b.click("#page-next").await;
    b.rendered(n, "list:students").await;
    assert!(b.text("#page-info").await.starts_with("Page 2 of "));
    assert!(current_hash(b).await.contains("page=2"));

    // Ordering by a header: ascending, then descending, shown by aria-sort.
    let n = b.renders().await;
    b.click("th button[data-sort=last_name]").await;
    b.rendered(n, "list:students").await;
    assert!(b.text("#page-info").await.starts_with("Page 1 of "));
    let th = "th[aria-sort] button[data-sort=last_name]";
    assert_eq!(b.count(th).await, 1);
    let names = column(b, 3).await;
    let mut sorted = names.clone();
    sorted.sort_by_key(|s| s.to_lowercase());
    assert_eq!(names, sorted);
    let n = b.renders().await;
    b.click(th).await;
    b.rendered(n, "list:students").await;
    assert!(current_hash(b).await.contains("ordering=-last_name"));

    // The search form: every row matches; a bad filter is the API's message.
    let someone = column(b, 3).await[0].clone();
    b.fill("#f-search", &someone).await;
    let n = b.renders().await;
    b.click("#list-filters button[type=submit]").await;
    let text = b.rendered(n, "list:students").await;
    assert!(current_hash(b).await.contains("search="), "{text}");
    let rows = b
        .js("return [...document.querySelectorAll('#results tbody tr')].map(r => r.textContent.toLowerCase())")
        .await;
    let rows: Vec<String> = serde_json::from_value(rows).unwrap();
    assert!(!rows.is_empty());
    for row in rows {
        assert!(
            row.contains(&someone.to_lowercase()),
            "{row} does not match {someone}"
        );
    }
    b.screenshot(env, "students").await;
    b.fill("#f-semester", "first").await;
    let n = b.renders().await;
    b.click("#list-filters button[type=submit]").await;
    b.rendered(n, "list:students").await;
    assert!(
        b.text("#errors")
            .await
            .contains("A valid integer is required."),
        "{}",
        b.text("main").await
    );
    assert_eq!(b.count("#list-filters").await, 1, "the form is gone");
    // A page past the end, and a place that does not exist: a message, and
    // the way back.
    let text = b.open(base, "#/students?page=999", "list:students").await;
    assert!(text.contains("Invalid page."), "{text}");
    b.open(base, "#/nowhere", "missing").await;
    assert_eq!(b.count("#nav a").await, 6);
}

async fn an_edit_shows_its_field_error_then_its_new_value(b: &Browser, env: &Env, base: &str) {
    b.open(base, "#/students?ordering=id", "list:students")
        .await;
    let n = b.renders().await;
    b.click("#results tbody tr:first-child a").await;
    b.rendered(n, "form:students").await;
    let id = current_hash(b).await.rsplit('/').next().unwrap().to_owned();
    b.fill("#i-email", "not-an-email").await;
    b.click("#save").await;
    wait_text(b, "#e-email", "Enter a valid email address.").await;
    let email = "#i-email[aria-invalid=true][aria-describedby=e-email]";
    assert_eq!(b.count(email).await, 1);
    b.screenshot(env, "edit-error").await;

    b.fill("#i-email", "renamed@example.edu").await;
    b.fill("#i-last_name", "Renamed-In-Browser").await;
    let n = b.renders().await;
    b.click("#save").await;
    let list = b.rendered(n, "list:students").await;
    assert!(list.contains("Saved "), "{list}");
    let row = b.text(&format!("#results tr[data-id='{id}']")).await;
    assert!(row.contains("Renamed-In-Browser"), "a stale row: {row}");
    assert!(row.contains("renamed@example.edu"), "{row}");
    // A changed list is downloaded, not revalidated.
    assert_ne!(status(b).await.0, "revalidated");
}

async fn a_referenced_department_is_not_deleted(
    b: &Browser,
    server: &Server,
    admin: &str,
    base: &str,
) {
    b.open(base, "#/departments?ordering=id", "list:departments")
        .await;
    let n = b.renders().await;
    b.click("#results tbody tr:first-child a").await;
    b.rendered(n, "form:departments").await;
    let id = current_hash(b).await.rsplit('/').next().unwrap().to_owned();
    b.click("#delete").await;
    b.click("#confirm-delete").await;
    let refused = wait_text(b, "#form-errors", "").await;
    assert!(!refused.is_empty());
    let r = reqwest::Client::new()
        .get(format!("{}/api/departments/{id}/", server.base))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "the department is gone (the page said {refused})"
    );
    assert_eq!(b.count("#delete").await, 1, "the form is still usable");
}

async fn at_phone_width_the_page_does_not_scroll_sideways(b: &Browser, env: &Env, base: &str) {
    b.client.set_window_size(390, 844).await.unwrap();
    for (hash, view, shot) in [
        ("#/students", "list:students", "phone-students"),
        ("#/students/new", "form:students", ""),
        ("#/dashboard", "dashboard", ""),
    ] {
        b.open(base, hash, view).await;
        let v = b
            .js("return [document.documentElement.scrollWidth, window.innerWidth]")
            .await;
        assert!(v[1].as_u64().unwrap() <= 420, "not a phone's width: {v}");
        assert!(
            v[0].as_u64() <= v[1].as_u64(),
            "{hash} scrolls sideways: {v}"
        );
        let unlabelled = b
            .js("return [...document.querySelectorAll('main input, main select')] \
                 .filter(i => !document.querySelector(`label[for='${i.id}']`)).map(i => i.outerHTML)")
            .await;
        assert_eq!(unlabelled, json!([]), "{hash}: fields without a label");
        if !shot.is_empty() {
            b.screenshot(env, shot).await;
        }
    }
    b.client.set_window_size(1280, 800).await.unwrap();
}

/// A student account that is deactivated while its session is open: the next
/// request is a 401, the refresh is refused, and the login form says why.
async fn a_deactivated_account_is_sent_back_to_the_login(
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

async fn log_in(b: &Browser, user: &str) {
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

async fn log_out(b: &Browser) {
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

async fn logged_in_header_shown(b: &Browser) -> bool {
    b.client
        .find(fantoccini::Locator::Css("#logout"))
        .await
        .unwrap()
        .is_displayed()
        .await
        .unwrap()
}

/// The view's X-Cache (or "revalidated") and HTTP status, from its cache line.
async fn status(b: &Browser) -> (String, String) {
    let v = b
        .js("const s = document.getElementById('cache-status'); return [s.dataset.cache, s.dataset.http]")
        .await;
    (v[0].as_str().unwrap().into(), v[1].as_str().unwrap().into())
}

async fn current_hash(b: &Browser) -> String {
    b.js("return location.hash")
        .await
        .as_str()
        .unwrap()
        .to_owned()
}

/// The text of column `n` (1-based) of the list's rows.
async fn column(b: &Browser, n: usize) -> Vec<String> {
    let v = b
        .js(&format!(
            "return [...document.querySelectorAll('#results tbody tr td:nth-child({n})')].map(c => c.textContent)"
        ))
        .await;
    serde_json::from_value(v).unwrap()
}

/// Waits for `css` to hold `text` (any text when empty); returns its text.
async fn wait_text(b: &Browser, css: &str, text: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        if let Ok(el) = b.client.find(fantoccini::Locator::Css(css)).await
            && let Ok(t) = el.text().await
            && !t.is_empty()
            && t.contains(text)
        {
            return t;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{css} never showed {text:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The browser logs each refused API request (the wrong password's and the
/// deactivated account's 401s, the bad filter's and the validation's 400s,
/// the delete's 409, the page past the end's 404) as a failed load; those are
/// the test's doing. Anything else is an error.
fn expected_failed_request(entry: &str) -> bool {
    entry.starts_with("\"network\"")
        && entry.contains("/api/")
        && (["status of 400", "status of 401", "status of 409"]
            .iter()
            .any(|s| entry.contains(s))
            || entry.contains(
                "?page=999 - Failed to load resource: the server responded with a status of 404",
            ))
}
