//! The web client at `/` (`crates/campus/src/web`) in headless Chromium,
//! against `campus serve --demo`: each role logs in and sees the write
//! controls it may use and no others; search, paging, ordering, an edit with a
//! validation error that is then fixed and shows in the list at once, a
//! refused delete, a create and a delete, a session that ends, the
//! dashboard's chart, phone width, logout; markup from the
//! API shows as text; no console errors (CSP violations included). Screenshots
//! go to the test's directory, and to `docs/screenshots/` only with
//! `CAMPUS_SCREENSHOTS=docs/screenshots`.

mod browser;
mod lists;
mod records;
mod session;

use serde_json::{Value, json};

use crate::helpers::{Env, Server};
use browser::{Browser, wait_text};
use lists::{at_phone_width_the_page_does_not_scroll_sideways, searching_paging_and_ordering};
use records::{
    a_department_is_created_then_deleted, a_referenced_department_is_not_deleted,
    an_edit_shows_its_field_error_then_its_new_value,
};
use session::{
    a_deactivated_account_is_sent_back_to_the_login, a_refresh_answered_after_logout_is_dropped,
    a_tab_opened_from_another_logs_in_on_its_own, log_in, log_out, logged_in_header_shown,
    the_access_token_is_refreshed_before_it_expires,
};

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
        // A create form reached by its address: a message, no form.
        let form = b.open(&base, "#/users/new", "detail:users").await;
        assert!(form.contains("You do not have permission"), "{form}");
        assert_eq!(b.count("#save").await, 0);
        log_out(&b).await;
    }

    a_deactivated_account_is_sent_back_to_the_login(&b, &server, &admin, &base).await;

    // A reload in the tab keeps the session (the refresh token in
    // sessionStorage buys a new access token).
    the_access_token_is_refreshed_before_it_expires(&b, "org1-admin").await;
    a_tab_opened_from_another_logs_in_on_its_own(&b).await;
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
    a_department_is_created_then_deleted(&b, &base).await;
    at_phone_width_the_page_does_not_scroll_sideways(&b, &env, &base).await;

    log_out(&b).await;
    assert_eq!(b.js("return sessionStorage.length").await, json!(0));
    b.client.refresh().await.unwrap();
    b.rendered(0, "login").await;
    a_refresh_answered_after_logout_is_dropped(&b, "org1-admin").await;

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
    let schema: Value = client
        .get(format!("{}/api/schema/", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(schema["paths"]["/api/students/"].is_object());
    assert!(
        schema["paths"].get("/").is_none(),
        "the client is no API path"
    );
    for path in [
        "/app/nothing.js",
        "/app/%ff",
        "/api/nothing/",
        "/index.html",
    ] {
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
