//! Writes from outside the API (SPEC §5.5, PostgreSQL only): the change
//! triggers' `NOTIFY` and the listener invalidate what they touch within a
//! second, and a lost listener or a failed listing never passes for "nothing
//! changed".

use serde_json::Value;

use crate::helpers::*;

async fn readyz(app: &TestApp) -> Value {
    app.client
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits until `/readyz` reports the outside-writes listener up with at least
/// `connects` connections made; returns the count.
async fn listening(app: &TestApp, connects: u64) -> u64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let v = readyz(app).await;
        let n = v["outside_writes_connects"].as_u64().unwrap_or(0);
        if v["outside_writes"] == "listening" && n >= connects {
            return n;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "listener never up: {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Polls `path` until `check` holds, for at most one second (SPEC §5.5).
async fn within_a_second(app: &TestApp, token: &str, path: &str, check: impl Fn(&Value) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        let (_, v) = app.get_json(token, path).await;
        if check(&v) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not visible within 1 s: {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// SPEC §5.5 on PostgreSQL: a plain SQL `UPDATE`/`DELETE`, a bulk
/// `update_many` and a `TRUNCATE`-free bulk delete from another connection
/// show through the API within a second, by the triggers' `NOTIFY`; and after
/// the listener's connection is cut, everything cached is invalidated (what
/// was missed meanwhile cannot be known).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_from_outside_the_api_reach_the_cache() {
    use campus::entity::faculty;
    use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, sea_query::Expr};

    let app = spawn_app(Backend::Postgres).await;
    let connects = listening(&app, 1).await;
    let t = app.login("org1-admin").await;
    let list = "/api/faculty/?ordering=id";
    let (_, page) = app.get_json(&t, list).await;
    let id = page["results"][0]["id"].as_i64().unwrap();
    let x_cache = |r: reqwest::Response| r.headers()["x-cache"].to_str().unwrap().to_owned();
    assert_eq!(x_cache(app.get(&t, list).await), "HIT");

    app.db
        .execute_unprepared(&format!(
            "UPDATE faculty SET first_name = 'Outsider' WHERE id = {id}"
        ))
        .await
        .unwrap();
    within_a_second(&app, &t, list, |v| {
        v["results"][0]["first_name"] == "Outsider"
    })
    .await;
    within_a_second(&app, &t, &format!("/api/faculty/{id}/"), |v| {
        v["first_name"] == "Outsider"
    })
    .await;

    // A bulk update through the ORM, another organization's rows included.
    faculty::Entity::update_many()
        .col_expr(faculty::Column::LastName, Expr::value("Bulk"))
        .filter(faculty::Column::IsActive.eq(true))
        .exec(&app.db)
        .await
        .unwrap();
    within_a_second(&app, &t, list, |v| v["results"][0]["last_name"] == "Bulk").await;

    let (_, before) = app.get_json(&t, "/api/students/").await;
    app.db
        .execute_unprepared("DELETE FROM students WHERE organization_id = 1 AND id IN (SELECT id FROM students WHERE organization_id = 1 ORDER BY id LIMIT 3)")
        .await
        .unwrap();
    let expected = before["count"].as_i64().unwrap() - 3;
    within_a_second(&app, &t, "/api/students/", |v| v["count"] == expected).await;

    // Cut the listener's connection: once it is back, nothing cached before
    // survives.
    app.get(&t, list).await;
    assert_eq!(x_cache(app.get(&t, list).await), "HIT");
    app.db
        .execute_unprepared(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%{}%'",
            campus::changes::CHANNEL
        ))
        .await
        .unwrap();
    listening(&app, connects + 1).await;
    assert_eq!(x_cache(app.get(&t, list).await), "MISS");
}

/// An outside bulk statement over 2,000 organizations (its organization list
/// longer than `pg_notify`'s 8,000 bytes) succeeds, and still invalidates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outside_statement_over_two_thousand_organizations_succeeds_and_invalidates() {
    use sea_orm::ConnectionTrait;

    let app = spawn_app(Backend::Postgres).await;
    let t = app.login("org1-admin").await;
    app.db
        .execute_unprepared(
            "INSERT INTO organizations (code, name, created_at) \
               SELECT 'bulk' || i, 'Bulk ' || i, now() FROM generate_series(1, 2000) i; \
             INSERT INTO departments (organization_id, code, name) \
               SELECT id, 'CS', 'Computer Science' FROM organizations WHERE code LIKE 'bulk%';",
        )
        .await
        .unwrap();
    let path = "/api/departments/?ordering=id";
    // The inserts' own notification invalidates too, a moment later.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.get(&t, path).await.headers()["x-cache"] != "HIT" {
        assert!(std::time::Instant::now() < deadline, "never cached");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let touched = app
        .db
        .execute_unprepared("UPDATE departments SET name = name || ' (bulk)'")
        .await
        .expect("the other program's statement is not failed by our trigger");
    assert!(touched.rows_affected() > 2000);
    within_a_second(&app, &t, path, |v| {
        v["results"][0]["name"]
            .as_str()
            .is_some_and(|n| n.ends_with(" (bulk)"))
    })
    .await;
}

/// When the listener cannot list the organizations (for a `TRUNCATE`, or a
/// statement over too many of them), it says so on `/readyz` and retries until
/// it can, then invalidates: it never takes the failure for "no organization".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_organization_listing_is_retried_and_reported() {
    use sea_orm::ConnectionTrait;

    let app = spawn_app(Backend::Postgres).await;
    let t = app.login("org1-admin").await;
    let path = "/api/departments/?ordering=id";
    let _ = app.get(&t, path).await;
    assert_eq!(app.get(&t, path).await.headers()["x-cache"], "HIT");

    // The listing fails while the table is away; a plain-SQL write whose
    // notification says "every organization" arrives meanwhile.
    app.db
        .execute_unprepared("ALTER TABLE organizations RENAME TO organizations_away")
        .await
        .unwrap();
    // The update itself is silent (marked as the API's, whose writes the
    // triggers skip): only the "every organization" notification carries it.
    app.db
        .execute_unprepared(
            "BEGIN; SET LOCAL campus.origin = 'api'; \
             UPDATE departments SET name = 'Renamed in the dark' \
               WHERE id = (SELECT min(id) FROM departments WHERE organization_id = 1); \
             NOTIFY campus_changes, 'departments *'; COMMIT;",
        )
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let v = readyz(&app).await;
        if v["outside_writes"] == "retrying" && v["outside_writes_failures"].as_u64() >= Some(1) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the failure is never reported: {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    app.db
        .execute_unprepared("ALTER TABLE organizations_away RENAME TO organizations")
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, v) = app.get_json(&t, path).await;
        if v["results"][0]["name"] == "Renamed in the dark" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the retry never invalidated: {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let v = readyz(&app).await;
    assert_eq!(v["outside_writes"], "listening", "{v}");
}
