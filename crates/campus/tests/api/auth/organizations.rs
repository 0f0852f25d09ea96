//! Deleting an organization: its tokens, access and refresh, are refused once
//! its users are gone (through the API, or with SQL on PostgreSQL), and stay
//! refused when one of the same code and usernames is created again.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{login_pair, refresh_status};
use crate::both_backends;
use crate::helpers::*;

both_backends!(a_deleted_organizations_tokens_are_refused);

/// Deletes what `org` owns except its users, children first: every foreign key
/// is `ON DELETE RESTRICT`, so that is the only order the schema allows.
async fn delete_rows_of(db: &sea_orm::DatabaseConnection, org: i64) {
    use campus::entity::prelude::*;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    Student::delete_many()
        .filter(student::Column::OrganizationId.eq(org))
        .exec(db)
        .await
        .unwrap();
    Faculty::delete_many()
        .filter(faculty::Column::OrganizationId.eq(org))
        .exec(db)
        .await
        .unwrap();
    Program::delete_many()
        .filter(program::Column::OrganizationId.eq(org))
        .exec(db)
        .await
        .unwrap();
    Department::delete_many()
        .filter(department::Column::OrganizationId.eq(org))
        .exec(db)
        .await
        .unwrap();
}

/// An organization cannot be deleted while anything refers to it (every
/// foreign key is `ON DELETE RESTRICT`, and there is no API for it): deleting
/// one means deleting its users (through the API, which invalidates their
/// cached auth records at once) and its other rows, then the row itself. Its
/// tokens, access and refresh, used or not, are refused from the first user
/// deletion on, and stay refused when an organization of the same code and
/// usernames is created again (ids are never reused).
async fn a_deleted_organizations_tokens_are_refused(backend: Backend) {
    use campus::entity::prelude::*;
    use sea_orm::EntityTrait;

    let app = spawn_app(backend).await;
    let (admin, admin_refresh) = login_pair(&app, "org2-admin").await;
    let student = app.login("org2-student").await;
    let unused = app.login("org2-staff").await;
    let (_, me) = app.get_json(&admin, "/api/auth/me/").await;
    let (org, admin_id) = (
        me["organization_id"].as_i64().unwrap(),
        me["id"].as_i64().unwrap(),
    );
    // Used: their auth records are in the cache now.
    for t in [&admin, &student] {
        assert_eq!(app.get_json(t, "/api/faculty/").await.0, StatusCode::OK);
    }
    assert!(
        Organization::delete_by_id(org).exec(&app.db).await.is_err(),
        "an organization with rows cannot be deleted"
    );

    // An admin cannot delete itself: a second admin deletes every user, the
    // first admin last, and its own row goes with the other rows.
    let (status, v) = app
        .send(
            reqwest::Method::POST,
            &admin,
            "/api/users/",
            json!({"username": "org2-remover", "email": "remover@org2.example", "first_name": "R",
                   "last_name": "M", "role": "admin", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let remover_id = v["id"].as_i64().unwrap();
    let remover = app.login("org2-remover").await;
    let (_, users) = app.get_json(&admin, "/api/users/?page_size=500").await;
    let ids: Vec<i64> = users["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_i64().unwrap())
        .filter(|id| *id != admin_id && *id != remover_id)
        .chain([admin_id])
        .collect();
    for id in ids {
        let (status, v) = app
            .send(
                reqwest::Method::DELETE,
                &remover,
                &format!("/api/users/{id}/"),
                Value::Null,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "delete user {id}: {v}");
    }
    User::delete_by_id(remover_id).exec(&app.db).await.unwrap();
    delete_rows_of(&app.db, org).await;
    Organization::delete_by_id(org).exec(&app.db).await.unwrap();
    assert!(
        Organization::find_by_id(org)
            .one(&app.db)
            .await
            .unwrap()
            .is_none()
    );

    let refused = |why: &'static str| {
        move |(status, v): (StatusCode, Value)| {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{why}: {v}");
        }
    };
    for (t, why) in [
        (&admin, "the admin's token"),
        (&student, "a used token"),
        (&unused, "a token never used before"),
    ] {
        refused(why)(app.get_json(t, "/api/faculty/").await);
        refused(why)(app.get_json(t, "/api/auth/me/").await);
        refused(why)(app.get_json(t, "/api/stats/dashboard/").await);
    }
    assert_eq!(
        refresh_status(&app, &admin_refresh).await,
        StatusCode::UNAUTHORIZED
    );
    let (status, _) = app
        .send(
            reqwest::Method::POST,
            "",
            "/api/auth/token/",
            json!({"username": "org2-admin", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The same code and usernames again (seeding skips org1, creates org2).
    let options = campus::seed::SeedOptions {
        orgs: 2,
        faculty: 3,
        students: 3,
        password: PASSWORD.into(),
        seed: 9,
        progress: false,
    };
    campus::seed::seed(&app.db, &options).await.unwrap();
    let reborn = app.login("org2-admin").await;
    let (_, me) = app.get_json(&reborn, "/api/auth/me/").await;
    assert_ne!(me["organization_id"].as_i64().unwrap(), org);
    assert_ne!(me["id"].as_i64().unwrap(), admin_id);
    let (_, faculty) = app.get_json(&reborn, "/api/faculty/").await;
    assert_eq!(faculty["count"], 3, "only the new organization's rows");
    for t in [&admin, &student, &unused] {
        refused("an old token after re-creation")(app.get_json(t, "/api/faculty/").await);
    }
    assert_eq!(
        refresh_status(&app, &admin_refresh).await,
        StatusCode::UNAUTHORIZED
    );
}

/// Deleting a whole organization with SQL, outside the API (PostgreSQL: the
/// change triggers tell every server): its live, cached tokens are refused
/// within a second. SQLite has no such channel (README: writes from outside the
/// API); there, delete the users through the API first, as above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_organization_with_sql_refuses_its_live_tokens_on_postgres() {
    use campus::entity::prelude::*;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

    let app = spawn_app(Backend::Postgres).await;
    let student = app.login("org1-student").await;
    let (_, me) = app.get_json(&student, "/api/auth/me/").await;
    let org = me["organization_id"].as_i64().unwrap();
    let r = app.get(&student, "/api/faculty/").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        app.get(&student, "/api/faculty/").await.headers()["x-cache"],
        "HIT"
    );
    delete_rows_of(&app.db, org).await;
    User::delete_many()
        .filter(user::Column::OrganizationId.eq(org))
        .exec(&app.db)
        .await
        .unwrap();
    Organization::delete_by_id(org).exec(&app.db).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        let (status, _) = app.get_json(&student, "/api/faculty/").await;
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a deleted organization's token still answered {status} after 1 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        app.get_json(&student, "/api/auth/me/").await.0,
        StatusCode::UNAUTHORIZED
    );
}
