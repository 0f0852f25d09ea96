//! Deep pages of a list ordered by `id` alone are read from the list's cached
//! anchors (the id at every 1000th position): they must be the pages an
//! `OFFSET` reads, and a write that moves positions must move the anchors.

use reqwest::{Method, StatusCode};
use sea_orm::ConnectionTrait;
use serde_json::Value;

use crate::both_backends;
use crate::helpers::*;

both_backends!(deep_pages_read_from_anchors_are_the_pages_an_offset_reads);

/// Enough students in org 1 that pages lie past two anchors.
async fn grow(app: &TestApp, extra: u32) {
    let sql = format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {extra}) \
         INSERT INTO students (organization_id, department_id, program_id, roll_number, \
         first_name, last_name, email, semester, batch, is_active, created_at, updated_at) \
         SELECT s.organization_id, s.department_id, s.program_id, 'ANCHOR' || n.i, \
         s.first_name, s.last_name, 'anchor' || n.i || '@example.test', s.semester, s.batch, \
         s.is_active, s.created_at, s.updated_at \
         FROM n, (SELECT * FROM students WHERE organization_id = 1 ORDER BY id LIMIT 1) s"
    );
    app.db.execute_unprepared(&sql).await.unwrap();
}

/// Org 1's student ids in the list's order, read from the database.
async fn reference(app: &TestApp, desc: bool) -> Vec<i64> {
    let sql = format!(
        "SELECT id FROM students WHERE organization_id = 1 ORDER BY id {}",
        if desc { "DESC" } else { "ASC" }
    );
    let backend = app.db.get_database_backend();
    app.db
        .query_all_raw(sea_orm::Statement::from_string(backend, sql))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get_by_index::<i64>(0).unwrap())
        .collect()
}

fn ids(page: &Value) -> Vec<i64> {
    page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect()
}

/// Each page of `size` from `first` to `last` against the database's order.
async fn check_pages(app: &TestApp, token: &str, ordering: &str, size: u64, pages: &[u64]) {
    let expected = reference(app, ordering == "-id").await;
    for &n in pages {
        let path = format!("/api/students/?ordering={ordering}&page_size={size}&page={n}");
        let (status, page) = app.get_json(token, &path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {page}");
        let start = usize::try_from((n - 1) * size).unwrap();
        let end = (start + usize::try_from(size).unwrap()).min(expected.len());
        assert_eq!(ids(&page), expected[start..end], "{path}");
        assert_eq!(page["count"].as_u64().unwrap(), expected.len() as u64);
    }
}

async fn deep_pages_read_from_anchors_are_the_pages_an_offset_reads(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.login("org1-admin").await;
    grow(&app, 2300).await;
    let total = reference(&app, false).await.len() as u64;
    assert!(total > 2000, "{total} students");
    for ordering in ["id", "-id"] {
        // Pages across the anchors at 1000 and 2000 (sizes 8 and 10 start a
        // page on one), then the last page; each
        // size a new list key, so every page is read cold. The first round
        // finds no anchors (and caches them in the background), the later
        // ones read from them.
        for size in [8u64, 10, 7, 11] {
            let deep = |offset: u64| offset / size + 1;
            let pages = [
                deep(995),
                deep(1000),
                deep(1006),
                deep(1999),
                deep(2001),
                total.div_ceil(size),
            ];
            check_pages(&app, &admin, ordering, size, &pages).await;
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    // A delete before the first anchor moves every position after it: the
    // anchors must move with it.
    let first = reference(&app, false).await[3];
    let (status, _) = app
        .send(
            Method::DELETE,
            &admin,
            &format!("/api/students/{first}/"),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for size in [8u64, 10, 7, 11] {
        for ordering in ["id", "-id"] {
            let pages = [1001 / size + 1, 2001 / size + 1];
            check_pages(&app, &admin, ordering, size, &pages).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
