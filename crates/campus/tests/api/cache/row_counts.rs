//! The row counts the triggers keep (PostgreSQL, migration 14): every list's
//! unfiltered total is read from them, so they must equal `count(*)` after
//! any write, from the API or from anywhere else, committed or not.

use reqwest::{Method, StatusCode};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::json;

use crate::helpers::*;

/// The cached tables and their lists (the list of each table is its name).
const TABLES: &[&str] = &["departments", "programs", "faculty", "students", "users"];

async fn counted(db: &DatabaseConnection, sql: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

/// For every table and the first three organizations: the kept count is the
/// rows' count.
async fn assert_counts_agree(db: &DatabaseConnection, after: &str) {
    for table in TABLES {
        for org in 1..=3 {
            let kept = campus::query::row_count(db, table, org).await.unwrap();
            let real = counted(
                db,
                &format!("SELECT count(*) FROM {table} WHERE organization_id = {org}"),
            )
            .await;
            assert_eq!(
                kept.map(|n| n as i64),
                Some(real),
                "{table} of organization {org} after {after}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_row_counts_follow_every_write_and_answer_every_unfiltered_total() {
    let app = spawn_app(Backend::Postgres).await;
    let db = &app.db;
    assert_counts_agree(db, "the seed").await;

    // Each list's unfiltered total is the organization's count: no resource
    // narrows its list beyond the organization and the request's filters.
    let admin = app.login("org1-admin").await;
    for table in TABLES {
        let (status, page) = app.get_json(&admin, &format!("/api/{table}/")).await;
        assert_eq!(status, StatusCode::OK);
        let real = counted(
            db,
            &format!("SELECT count(*) FROM {table} WHERE organization_id = 1"),
        )
        .await;
        assert_eq!(page["count"], real, "/api/{table}/");
    }

    // One statement over two organizations, from another program.
    db.execute_unprepared(
        "INSERT INTO students (organization_id, department_id, program_id, roll_number, \
           first_name, last_name, email, semester, batch, is_active, created_at, updated_at) \
         SELECT organization_id, department_id, program_id, roll_number || '-copy', \
           first_name, last_name, 'copy.' || email, semester, batch, is_active, created_at, updated_at \
         FROM students WHERE organization_id IN (1, 2) ORDER BY id LIMIT 40",
    )
    .await
    .unwrap();
    assert_counts_agree(db, "a bulk insert").await;
    db.execute_unprepared("DELETE FROM students WHERE roll_number LIKE '%-copy'")
        .await
        .unwrap();
    assert_counts_agree(db, "a bulk delete").await;

    // A row moved to another organization (one nothing refers to: the
    // foreign keys hold the organization too).
    db.execute_unprepared(
        "INSERT INTO departments (organization_id, code, name) VALUES (1, 'MV1', 'Moving'); \
         UPDATE departments SET organization_id = 2 WHERE organization_id = 1 AND code = 'MV1';",
    )
    .await
    .unwrap();
    // An update that moves nothing.
    db.execute_unprepared("UPDATE students SET semester = semester WHERE organization_id = 3")
        .await
        .unwrap();
    assert_counts_agree(db, "a move between organizations").await;

    // A delete rolled back to a savepoint of a transaction that commits, and
    // an insert of which one row is skipped by its conflict.
    db.execute_unprepared(
        "BEGIN; \
         INSERT INTO departments (organization_id, code, name) VALUES (1, 'SP1', 'Kept'); \
         SAVEPOINT s; DELETE FROM departments WHERE organization_id = 1 AND code = 'SP1'; \
         ROLLBACK TO SAVEPOINT s; COMMIT; \
         INSERT INTO departments (organization_id, code, name) \
           VALUES (1, 'CS', 'Taken'), (1, 'OC1', 'New') ON CONFLICT DO NOTHING;",
    )
    .await
    .unwrap();
    assert_counts_agree(db, "a savepoint's rollback and an insert's conflict").await;

    // The API's own writes.
    let dept = app.department(&admin, "CS").await["id"].as_i64().unwrap();
    let (_, programs) = app.get_json(&admin, "/api/programs/").await;
    let prog = programs["results"][0]["id"].as_i64().unwrap();
    let (status, created) = app
        .send(
            Method::POST,
            &admin,
            "/api/students/",
            json!({"roll_number": "CNT001", "first_name": "Ada", "last_name": "Count",
                   "email": "ada.count@campus.example", "semester": 1, "batch": 2025,
                   "department_id": dept, "program_id": prog}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_counts_agree(db, "a POST").await;
    let (_, page) = app.get_json(&admin, "/api/students/").await;
    let real = counted(
        db,
        "SELECT count(*) FROM students WHERE organization_id = 1",
    )
    .await;
    assert_eq!(page["count"], real, "the list after a POST");
    let id = created["id"].as_i64().unwrap();
    let (status, _) = app
        .send(
            Method::DELETE,
            &admin,
            &format!("/api/students/{id}/"),
            json!(null),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_counts_agree(db, "a DELETE").await;

    // A TRUNCATE: counted (not read from deltas it may not match) until a
    // read's rebuild is done.
    db.execute_unprepared("TRUNCATE students").await.unwrap();
    let first = campus::query::row_count(db, "students", 1).await.unwrap();
    assert_eq!(first, None, "a truncated table's deltas are not trusted");
    let (_, page) = app.get_json(&admin, "/api/students/").await;
    assert_eq!(page["count"], 0, "the list after a TRUNCATE");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while campus::query::row_count(db, "students", 1)
        .await
        .unwrap()
        .is_none()
    {
        assert!(std::time::Instant::now() < deadline, "never rebuilt");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_counts_agree(db, "a TRUNCATE").await;
}

/// A list that neither filters nor searches takes its total from the kept
/// counts (a delta written by hand shows), a filtered one counts; and
/// rebuilding the counts (`campus cache-stats --clear`) puts them right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfiltered_totals_are_read_from_the_counts_and_a_rebuild_puts_them_right() {
    let app = spawn_app(Backend::Postgres).await;
    let db = &app.db;
    let admin = app.login("org1-admin").await;
    let real = counted(
        db,
        "SELECT count(*) FROM students WHERE organization_id = 1",
    )
    .await;
    db.execute_unprepared(
        "INSERT INTO row_counts (table_name, organization_id, n) VALUES ('students', 1, 1000)",
    )
    .await
    .unwrap();
    let (_, page) = app.get_json(&admin, "/api/students/").await;
    assert_eq!(page["count"], real + 1000, "read from the counts");
    let (_, active) = app.get_json(&admin, "/api/students/?is_active=true").await;
    let active_real = counted(
        db,
        "SELECT count(*) FROM students WHERE organization_id = 1 AND is_active",
    )
    .await;
    assert_eq!(active["count"], active_real, "a filtered total is counted");
    // Two at once (as two `cache-stats --clear` would): each fails or
    // rebuilds, none counts twice.
    let (one, two) = tokio::join!(
        campus::query::rebuild_row_counts(db, "students"),
        campus::query::rebuild_row_counts(db, "students")
    );
    assert!(one.is_ok() || two.is_ok(), "{one:?} {two:?}");
    assert_counts_agree(db, "two rebuilds at once").await;
    campus::query::rebuild_all_row_counts(db).await.unwrap();
    assert_counts_agree(db, "a rebuild").await;
}

/// Many deltas are folded into one row by a read, and the total is the same
/// before, during and after, with inserts going on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_folds_many_deltas_into_one_and_keeps_the_total() {
    let app = spawn_app(Backend::Postgres).await;
    let db = &app.db;
    let insert = |i: usize| {
        format!(
            "INSERT INTO departments (organization_id, code, name) VALUES (1, 'F{i}', 'Fold {i}')"
        )
    };
    for i in 0..40 {
        db.execute_unprepared(&insert(i)).await.unwrap();
    }
    let deltas = || async {
        counted(
            db,
            "SELECT count(*) FROM row_counts \
             WHERE table_name = 'departments' AND organization_id = 1",
        )
        .await
    };
    assert!(deltas().await > 40);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut i = 40;
    loop {
        // Reads fold (in the background) while inserts go on.
        db.execute_unprepared(&insert(i)).await.unwrap();
        i += 1;
        assert_counts_agree(db, "inserts while folding").await;
        if deltas().await <= 2 {
            assert_counts_agree(db, "folding").await;
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never folded: {} deltas",
            deltas().await
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
