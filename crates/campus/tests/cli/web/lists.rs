//! The lists in the browser: search, filters, ordering, pages, revalidation,
//! bad input, and phone width.

use serde_json::json;

use super::browser::{Browser, column, current_hash, status};
use crate::helpers::Env;

pub async fn searching_paging_and_ordering(b: &Browser, env: &Env, base: &str) {
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
    // The keyboard keeps its place: the header just used has the focus.
    assert_eq!(
        b.js("return document.activeElement.id").await,
        json!("sort-last_name")
    );
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
    // Enter in the search box submits the form.
    b.client
        .find(fantoccini::Locator::Css("#f-search"))
        .await
        .unwrap()
        .send_keys(&fantoccini::key::Key::Enter.to_string())
        .await
        .unwrap();
    let text = b.rendered(n, "list:students").await;
    assert!(current_hash(b).await.contains("search="), "{text}");
    assert_eq!(
        b.js("return document.activeElement.id").await,
        json!("f-search")
    );
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
    // Filters by reference: faculty of one department, programs of another.
    for (hash, view, column_of_department) in [
        ("#/faculty", "list:faculty", 6),
        ("#/programs", "list:programs", 4),
    ] {
        b.open(base, hash, view).await;
        for code in ["CS", "EE"] {
            b.client
                .find(fantoccini::Locator::Css("#f-department"))
                .await
                .unwrap()
                .select_by_value(code)
                .await
                .unwrap();
            let n = b.renders().await;
            b.click("#list-filters button[type=submit]").await;
            b.rendered(n, view).await;
            let departments = column(b, column_of_department).await;
            assert!(!departments.is_empty(), "{hash}: no {code} rows");
            assert!(
                departments.iter().all(|d| d == code),
                "{hash}: {departments:?}"
            );
        }
    }
    // A page past the end, and a place that does not exist: a message, and
    // the way back.
    let text = b.open(base, "#/students?page=999", "list:students").await;
    assert!(text.contains("Invalid page."), "{text}");
    b.open(base, "#/nowhere", "missing").await;
    b.open(base, "#/constructor", "missing").await;
    // A record's address is its id: `.` and `..` would make the record's
    // request `/api/students/` (the list, then saved as `…/undefined/`) and
    // `/api/`.
    for hash in ["#/students/.", "#/students/..", "#/students/1x"] {
        b.open(base, hash, "missing").await;
    }
    // The skip link moves the focus to the content; it is no route (`#main`).
    b.open(base, "#/departments", "list:departments").await;
    b.js("document.querySelector('.skip').focus()").await;
    b.client
        .find(fantoccini::Locator::Css(".skip"))
        .await
        .unwrap()
        .send_keys(&fantoccini::key::Key::Enter.to_string())
        .await
        .unwrap();
    assert_eq!(current_hash(b).await, "#/departments");
    assert_eq!(
        b.js("return document.activeElement.id").await,
        json!("main")
    );
    assert_eq!(b.count("#nav a").await, 6);
}

pub async fn at_phone_width_the_page_does_not_scroll_sideways(b: &Browser, env: &Env, base: &str) {
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
