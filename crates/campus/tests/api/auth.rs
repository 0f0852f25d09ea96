//! Tokens (SimpleJWT shapes and messages), refresh, `me`, and every way a token
//! can be wrong.

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::*;

both_backends!(
    login_refresh_and_me,
    bad_credentials_and_inactive_users,
    tampered_tokens_are_rejected,
    header_forms_are_read_alike_before_and_after_a_token_is_remembered,
    no_escalation_and_deleted_accounts_lose_access,
    a_deleted_organizations_tokens_are_refused,
    roles_and_organizations_cannot_be_changed_by_their_holders
);

async fn login_refresh_and_me(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = app
        .client
        .post(app.url("/api/auth/token/"))
        .json(&json!({"username": "org1-staff", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let pair: Value = r.json().await.unwrap();
    let (access, refresh) = (
        pair["access"].as_str().unwrap(),
        pair["refresh"].as_str().unwrap(),
    );

    let (status, me) = app.get_json(access, "/api/auth/me/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["username"], "org1-staff");
    assert_eq!(me["role"], "staff");
    assert!(me.get("password").is_none() && me.get("password_hash").is_none());

    let (status, _) = app.get_json(refresh, "/api/auth/me/").await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a refresh token is not an access token"
    );

    let (status, v) = app
        .send(
            reqwest::Method::POST,
            "",
            "/api/auth/token/refresh/",
            json!({"refresh": refresh}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .get_json(v["access"].as_str().unwrap(), "/api/auth/me/")
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app
        .send(
            reqwest::Method::POST,
            "",
            "/api/auth/token/refresh/",
            json!({"refresh": access}),
        )
        .await;
    assert_eq!(
        (status, &body),
        (
            StatusCode::UNAUTHORIZED,
            &json!({"detail": "Token has wrong type", "code": "token_not_valid"})
        ),
        "an access token cannot refresh"
    );

    let r = app
        .client
        .get(app.url("/api/faculty/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"detail": "Authentication credentials were not provided."})
    );
}

async fn bad_credentials_and_inactive_users(backend: Backend) {
    let app = spawn_app(backend).await;
    let expected = json!({"detail": "No active account found with the given credentials"});
    for body in [
        json!({"username": "org1-admin", "password": "wrong"}),
        json!({"username": "nobody", "password": PASSWORD}),
    ] {
        let (status, v) = app
            .send(reqwest::Method::POST, "", "/api/auth/token/", body)
            .await;
        assert_eq!((status, v), (StatusCode::UNAUTHORIZED, expected.clone()));
    }
    let (status, v) = app
        .send(
            reqwest::Method::POST,
            "",
            "/api/auth/token/",
            json!({"username": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["password"][0], "This field is required.");

    // An admin deactivates the student: the student's live token stops working at
    // once, and no new token is issued.
    let admin = app.login("org1-admin").await;
    let student = app.login("org1-student").await;
    assert_eq!(
        app.get_json(&student, "/api/auth/me/").await.0,
        StatusCode::OK
    );
    let (_, users) = app
        .get_json(&admin, "/api/users/?search=org1-student")
        .await;
    let id = users["results"][0]["id"].as_i64().unwrap();
    let (status, _) = app
        .send(
            reqwest::Method::PATCH,
            &admin,
            &format!("/api/users/{id}/"),
            json!({"is_active": false}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        app.get_json(&student, "/api/auth/me/").await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, v) = app
        .send(
            reqwest::Method::POST,
            "",
            "/api/auth/token/",
            json!({"username": "org1-student", "password": PASSWORD}),
        )
        .await;
    assert_eq!((status, v), (StatusCode::UNAUTHORIZED, expected));
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

async fn tampered_tokens_are_rejected(backend: Backend) {
    let app = spawn_app(backend).await;
    let good = app.login("org1-faculty").await;
    let parts: Vec<&str> = good.split('.').collect();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap(),
    )
    .unwrap();
    let mut other_org = claims.clone();
    other_org["org_id"] = json!(claims["org_id"].as_i64().unwrap() + 1);
    let mut expired = claims.clone();
    expired["exp"] = json!(1);
    let wrong_key = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"not-the-secret-at-all"),
    )
    .unwrap();
    let expired_signed = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &expired,
        &jsonwebtoken::EncodingKey::from_secret(b"test-secret-0123456789abcdef01234567"),
    )
    .unwrap();
    let tampered = [
        format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT"})),
            parts[1]
        ),
        format!("{}.{}.{}", parts[0], b64(&other_org), parts[2]),
        wrong_key,
        expired_signed,
        format!("{good}x"),
        "not.a.token".into(),
        "garbage".into(),
    ];
    for token in tampered {
        let r = app.get(&token, "/api/faculty/").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "token {token}");
        let v: Value = r.json().await.unwrap();
        assert!(v["detail"].is_string());
    }
}

/// A verified token is remembered and looked up straight from a `Bearer ` header;
/// every other form of the header must get the answer the full parse gives, both
/// for a token never seen and for one remembered.
async fn header_forms_are_read_alike_before_and_after_a_token_is_remembered(backend: Backend) {
    let app = spawn_app(backend).await;
    let status = |header: String| {
        let request = app
            .client
            .get(app.url("/api/faculty/"))
            .header("authorization", header);
        async move { request.send().await.unwrap().status() }
    };
    type Form = fn(&str) -> String;
    let forms: [(Form, StatusCode); 7] = [
        (|t| format!("bearer {t}"), StatusCode::OK),
        (|t| format!("Bearer  {t}"), StatusCode::OK),
        (|t| format!("Bearer\t{t} "), StatusCode::OK),
        (|t| format!("Bearer {t} extra"), StatusCode::UNAUTHORIZED),
        (|t| format!("Token {t}"), StatusCode::UNAUTHORIZED),
        (|t| format!("Bearer {t}x"), StatusCode::UNAUTHORIZED),
        (|_| "Bearer ".to_owned(), StatusCode::UNAUTHORIZED),
    ];
    for (form, expected) in forms {
        // A token never used, then the same token once the plain form made it known.
        let token = app.login("org1-faculty").await;
        assert_eq!(
            status(form(&token)).await,
            expected,
            "unseen: {:?}",
            form(&token)
        );
        assert_eq!(status(format!("Bearer {token}")).await, StatusCode::OK);
        assert_eq!(
            status(form(&token)).await,
            expected,
            "remembered: {:?}",
            form(&token)
        );
    }
}

/// Role and tenant come from the server's records, never from what a client
/// writes: a staff member cannot make itself admin, an admin cannot move a user
/// to another organization, and a deleted user's live token stops working.
async fn no_escalation_and_deleted_accounts_lose_access(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.login("org1-admin").await;
    let staff = app.login("org1-staff").await;
    let (_, me) = app.get_json(&staff, "/api/auth/me/").await;
    let staff_id = me["id"].as_i64().unwrap();
    let (status, _) = app
        .send(
            reqwest::Method::PATCH,
            &staff,
            &format!("/api/users/{staff_id}/"),
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.get_json(&staff, "/api/auth/me/").await.1["role"],
        "staff"
    );

    // `organization` is not writable: ignored, as DRF ignores read-only fields.
    let (status, v) = app
        .send(
            reqwest::Method::PATCH,
            &admin,
            &format!("/api/users/{staff_id}/"),
            json!({"organization": 2, "organization_id": 2, "first_name": "Moved"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (_, me) = app.get_json(&staff, "/api/auth/me/").await;
    assert_eq!(me["first_name"], "Moved");
    let org2 = app.login("org2-admin").await;
    let (_, seen) = app.get_json(&org2, "/api/users/?search=Moved").await;
    assert_eq!(seen["count"], 0, "{seen}");

    // Deleted: the live token is refused at once.
    let student = app.login("org1-student").await;
    let (_, me) = app.get_json(&student, "/api/auth/me/").await;
    let id = me["id"].as_i64().unwrap();
    let (status, _) = app
        .send(
            reqwest::Method::DELETE,
            &admin,
            &format!("/api/users/{id}/"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, v) = app.get_json(&student, "/api/faculty/").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
}

async fn login_pair(app: &TestApp, username: &str) -> (String, String) {
    let (status, v) = app
        .send(
            reqwest::Method::POST,
            "",
            "/api/auth/token/",
            json!({"username": username, "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "login {username}");
    (
        v["access"].as_str().unwrap().to_owned(),
        v["refresh"].as_str().unwrap().to_owned(),
    )
}

async fn refresh_status(app: &TestApp, refresh: &str) -> StatusCode {
    app.send(
        reqwest::Method::POST,
        "",
        "/api/auth/token/refresh/",
        json!({"refresh": refresh}),
    )
    .await
    .0
}

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

/// Nobody changes their own role or organization, and staff cannot write
/// users at all: each attempt is refused or ignored, and the database says the
/// same afterwards.
async fn roles_and_organizations_cannot_be_changed_by_their_holders(backend: Backend) {
    use campus::entity::prelude::*;
    use sea_orm::EntityTrait;

    let app = spawn_app(backend).await;
    let user = |id: i64| {
        let db = app.db.clone();
        async move { User::find_by_id(id).one(&db).await.unwrap().unwrap() }
    };
    let admin = app.login("org1-admin").await;
    let mut me = std::collections::HashMap::new();
    for role in ["staff", "faculty", "student"] {
        let t = app.login(&format!("org1-{role}")).await;
        let (_, v) = app.get_json(&t, "/api/auth/me/").await;
        me.insert(role, (t, v["id"].as_i64().unwrap()));
    }
    let (_, v) = app.get_json(&admin, "/api/auth/me/").await;
    let (admin_id, org) = (
        v["id"].as_i64().unwrap(),
        v["organization_id"].as_i64().unwrap(),
    );
    let org2 = app.login("org2-admin").await;
    let (_, v) = app.get_json(&org2, "/api/auth/me/").await;
    let (org2_admin_id, other_org) = (
        v["id"].as_i64().unwrap(),
        v["organization_id"].as_i64().unwrap(),
    );
    let forbidden = json!({"detail": "You do not have permission to perform this action."});

    // Every non-admin, on its own record: role, organization, activity.
    for (role, (t, id)) in &me {
        let path = format!("/api/users/{id}/");
        for body in [
            json!({"role": "admin"}),
            json!({"organization": other_org, "organization_id": other_org}),
            json!({"is_active": true, "role": "admin", "username": format!("org1-{role}")}),
        ] {
            for method in [reqwest::Method::PATCH, reqwest::Method::PUT] {
                let (status, v) = app.send(method.clone(), t, &path, body.clone()).await;
                assert_eq!(
                    (status, v),
                    (StatusCode::FORBIDDEN, forbidden.clone()),
                    "{role}: {method} {body}"
                );
            }
        }
        let row = user(*id).await;
        assert_eq!(
            (row.role.as_str(), row.organization_id),
            (*role, org),
            "{role} changed itself"
        );
    }

    // Staff write no user: not another's role, not a new admin, not a deletion.
    let (staff, _) = &me["staff"];
    let (_, student_id) = me["student"];
    let (status, _) = app
        .send(
            reqwest::Method::PATCH,
            staff,
            &format!("/api/users/{student_id}/"),
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app
        .send(
            reqwest::Method::POST,
            staff,
            "/api/users/",
            json!({"username": "sneaky", "email": "sneaky@campus.example", "role": "admin",
                   "password": "long-enough-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app
        .send(
            reqwest::Method::DELETE,
            staff,
            &format!("/api/users/{admin_id}/"),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(user(student_id).await.role, "student");
    assert_eq!(user(admin_id).await.role, "admin");
    {
        use sea_orm::{ColumnTrait, PaginatorTrait, QueryFilter};
        let sneaky = User::find()
            .filter(campus::entity::user::Column::Username.eq("sneaky"))
            .count(&app.db)
            .await
            .unwrap();
        assert_eq!(sneaky, 0, "staff created a user");
    }
    // The staff token still acts as staff: the role comes from the database.
    let (status, _) = app
        .send(
            reqwest::Method::POST,
            staff,
            "/api/users/",
            json!({"username": "sneaky2", "email": "sneaky2@campus.example", "role": "student",
                   "password": "long-enough-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // An admin: its organization is not writable (ignored, as DRF ignores
    // read-only fields), an unknown role is a 400, another organization's user
    // is a 404; nothing of it reaches the database.
    let path = format!("/api/users/{admin_id}/");
    let (status, v) = app
        .send(
            reqwest::Method::PATCH,
            &admin,
            &path,
            json!({"organization": other_org, "organization_id": other_org}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v.get("organization").is_none() && v.get("organization_id").is_none());
    let (status, v) = app
        .send(
            reqwest::Method::PATCH,
            &admin,
            &path,
            json!({"role": "superuser"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["role"][0], "\"superuser\" is not a valid choice.");
    let row = user(admin_id).await;
    assert_eq!((row.role.as_str(), row.organization_id), ("admin", org));
    let (status, _) = app
        .send(
            reqwest::Method::PATCH,
            &admin,
            &format!("/api/users/{org2_admin_id}/"),
            json!({"role": "student", "is_active": false}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let row = user(org2_admin_id).await;
    assert_eq!(
        (row.role.as_str(), row.is_active, row.organization_id),
        ("admin", true, other_org)
    );
    assert_eq!(
        app.get_json(&org2, "/api/auth/me/").await.0,
        StatusCode::OK,
        "org2's admin untouched"
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

both_backends!(an_admin_cannot_remove_itself_nor_the_last_admin);

/// An admin cannot delete, deactivate or demote itself (403 with the reason),
/// and two admins demoting each other at once never leave the organization
/// without an active admin (one of them gets a 400).
async fn an_admin_cannot_remove_itself_nor_the_last_admin(backend: Backend) {
    use reqwest::Method;

    let app = spawn_app(backend).await;
    let admin = app.login("org1-admin").await;
    let (_, me) = app.get_json(&admin, "/api/auth/me/").await;
    let me_path = format!("/api/users/{}/", me["id"]);
    let refused = json!({"detail": "You cannot delete, deactivate or demote yourself."});
    for (method, body) in [
        (Method::DELETE, json!({})),
        (Method::PATCH, json!({"is_active": false})),
        (Method::PATCH, json!({"role": "staff"})),
        (
            Method::PUT,
            json!({"username": "org1-admin", "email": "x@org1.example", "first_name": "A",
                             "last_name": "B", "role": "faculty", "is_active": true}),
        ),
    ] {
        let (status, v) = app.send(method.clone(), &admin, &me_path, body).await;
        assert_eq!(
            (status, v),
            (StatusCode::FORBIDDEN, refused.clone()),
            "{method}"
        );
    }
    // Harmless changes to oneself stay allowed.
    let (status, _) = app
        .send(
            Method::PATCH,
            &admin,
            &me_path,
            json!({"first_name": "Ada", "role": "admin"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, second) = app
        .send(
            Method::POST,
            &admin,
            "/api/users/",
            json!({"username": "org1-admin2", "email": "a2@org1.example", "first_name": "B",
                   "last_name": "C", "role": "admin", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    let second_path = format!("/api/users/{}/", second["id"]);
    let ids = [me["id"].as_i64().unwrap(), second["id"].as_i64().unwrap()];
    for round in 0..10 {
        let tokens = [
            app.login("org1-admin").await,
            app.login("org1-admin2").await,
        ];
        // Each demotes the other, at once.
        let (a, b) = tokio::join!(
            app.send(
                Method::PATCH,
                &tokens[0],
                &second_path,
                json!({"role": "staff"})
            ),
            app.send(
                Method::PATCH,
                &tokens[1],
                &me_path,
                json!({"role": "staff"})
            ),
        );
        let admins = active_admins(&app, &ids).await;
        assert!(
            !admins.is_empty(),
            "round {round}: no admin left ({a:?}, {b:?})"
        );
        for (status, v) in [a, b] {
            assert!(
                // 401: the other's change came first and revoked this token.
                status == StatusCode::OK
                    || status == StatusCode::UNAUTHORIZED
                    || status == StatusCode::FORBIDDEN
                    || (status == StatusCode::BAD_REQUEST
                        && v == json!({"detail": "An organization must keep at least one active admin."})),
                "round {round}: {status} {v}"
            );
        }
        // The one left promotes the other again.
        let (left, other) = if admins[0] == ids[0] {
            (0, &second_path)
        } else {
            (1, &me_path)
        };
        let token = [
            app.login("org1-admin").await,
            app.login("org1-admin2").await,
        ][left]
            .clone();
        let (status, v) = app
            .send(Method::PATCH, &token, other, json!({"role": "admin"}))
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }
}

async fn active_admins(app: &TestApp, ids: &[i64]) -> Vec<i64> {
    use campus::entity::user;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
    user::Entity::find()
        .filter(user::Column::Id.is_in(ids.to_vec()))
        .filter(user::Column::Role.eq("admin"))
        .filter(user::Column::IsActive.eq(true))
        .order_by_asc(user::Column::Id)
        .all(&app.db)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect()
}

both_backends!(tokens_die_with_the_password_and_refresh_tokens_rotate);

/// A password change, a deactivation (even if undone) and a role change revoke
/// every token issued before; a refresh token is good for one exchange.
async fn tokens_die_with_the_password_and_refresh_tokens_rotate(backend: Backend) {
    use reqwest::Method;

    let app = spawn_app(backend).await;
    let admin = app.login("org1-admin").await;
    let (_, users) = app
        .get_json(&admin, "/api/users/?username=org1-staff&page_size=500")
        .await;
    let staff = users["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "org1-staff")
        .cloned()
        .unwrap();
    let path = format!("/api/users/{}/", staff["id"]);
    let patch = |change: Value| {
        let (app, admin, path) = (&app, &admin, &path);
        async move {
            let (status, v) = app.send(Method::PATCH, admin, path, change).await;
            assert_eq!(status, StatusCode::OK, "{v}");
        }
    };
    let works = |token: String| {
        let app = &app;
        async move { app.get_json(&token, "/api/faculty/").await.0 == StatusCode::OK }
    };

    // A password change.
    let (access, refresh) = login_pair(&app, "org1-staff").await;
    assert!(works(access.clone()).await);
    patch(json!({"password": "a-new-password-1"})).await;
    assert!(
        !works(access).await,
        "an access token outlived the password"
    );
    assert_eq!(
        refresh_status(&app, &refresh).await,
        StatusCode::UNAUTHORIZED
    );
    patch(json!({"password": PASSWORD})).await;

    // A deactivation, undone: the tokens from before stay dead.
    let (access, refresh) = login_pair(&app, "org1-staff").await;
    for active in [false, true] {
        patch(json!({"is_active": active})).await;
    }
    assert!(!works(access).await, "reactivation revived a token");
    assert_eq!(
        refresh_status(&app, &refresh).await,
        StatusCode::UNAUTHORIZED
    );

    // A role change.
    let (access, _) = login_pair(&app, "org1-staff").await;
    patch(json!({"role": "faculty"})).await;
    assert!(
        !works(access).await,
        "a token outlived the role it was issued for"
    );

    // Other changes leave tokens alone.
    let (access, _) = login_pair(&app, "org1-staff").await;
    patch(json!({"first_name": "Renamed"})).await;
    assert!(works(access).await);

    // Rotation: each refresh token is exchanged once.
    let (_, refresh) = login_pair(&app, "org1-staff").await;
    let exchange = || {
        app.send(
            reqwest::Method::POST,
            "",
            "/api/auth/token/refresh/",
            json!({"refresh": refresh}),
        )
    };
    let (status, pair) = exchange().await;
    assert_eq!(status, StatusCode::OK);
    assert!(works(pair["access"].as_str().unwrap().to_owned()).await);
    let (status, body) = exchange().await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // SimpleJWT's refresh view: detail and code, no per-token-class messages.
    assert_eq!(
        body,
        json!({"detail": "Token is blacklisted", "code": "token_not_valid"})
    );
    let next = pair["refresh"].as_str().unwrap();
    assert_eq!(refresh_status(&app, next).await, StatusCode::OK);
}
