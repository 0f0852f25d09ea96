//! The invalidation outbox: a committed API write whose invalidation never ran
//! is swept by any instance, and one whose invalidation ran leaves no row.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_backends;
use crate::helpers::*;

both_backends!(
    a_committed_write_left_without_its_invalidation_is_swept_from_the_outbox,
    an_api_write_leaves_nothing_in_the_outbox
);

/// What a writer killed between its `COMMIT` and its invalidation leaves
/// behind: the rows changed, and its outbox row. Any instance's sweep must
/// invalidate what the row names (on PostgreSQL the write is marked as the
/// API's, so the change triggers stay silent, as they do for a real API write).
async fn a_committed_write_left_without_its_invalidation_is_swept_from_the_outbox(
    backend: Backend,
) {
    use sea_orm::{ConnectionTrait, TransactionTrait};

    let app = spawn_app(backend).await;
    let t = app.login("org1-admin").await;
    let (_, page) = app.get_json(&t, "/api/faculty/?ordering=id").await;
    let id = page["results"][0]["id"].as_i64().unwrap();
    let detail = format!("/api/faculty/{id}/");
    let _ = app.get(&t, &detail).await;
    assert_eq!(app.get(&t, &detail).await.headers()["x-cache"], "HIT");

    let old = chrono::Utc::now().timestamp_millis() - 60_000;
    let tx = app.db.begin().await.unwrap();
    if backend == Backend::Postgres {
        tx.execute_unprepared("SET LOCAL campus.origin = 'api'")
            .await
            .unwrap();
    }
    tx.execute_unprepared(&format!(
        "UPDATE faculty SET first_name = 'Recovered' WHERE id = {id}"
    ))
    .await
    .unwrap();
    tx.execute_unprepared(&format!(
        "INSERT INTO cache_outbox (model, organization_id, created_at_ms) VALUES ('faculty', 1, {old})"
    ))
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, v) = app.get_json(&t, &detail).await;
        if v["first_name"] == "Recovered" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the outbox row was never swept: {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(outbox_rows(&app).await, 0, "the swept row is deleted");
}

/// A write whose invalidation reached the cache deletes its outbox row: the
/// table stays empty in normal operation.
async fn an_api_write_leaves_nothing_in_the_outbox(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.login("org1-admin").await;
    let dept = app.department(&t, "CS").await;
    let (status, _) = app
        .send(
            Method::PATCH,
            &t,
            &format!("/api/departments/{}/", dept["id"]),
            json!({"name": "Computing"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while outbox_rows(&app).await != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the write's outbox row stayed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

async fn outbox_rows(app: &TestApp) -> i64 {
    use sea_orm::{ConnectionTrait, Statement};
    let row = app
        .db
        .query_one_raw(Statement::from_string(
            app.db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM cache_outbox",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "n").unwrap()
}
