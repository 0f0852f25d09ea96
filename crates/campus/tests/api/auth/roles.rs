//! Roles and tenants come from the server's records, never from a client: no
//! escalation, no change of one's own role or organization, and never an
//! organization left without an active admin.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::*;

both_backends!(
    no_escalation_and_deleted_accounts_lose_access,
    roles_and_organizations_cannot_be_changed_by_their_holders,
    an_admin_cannot_remove_itself_nor_the_last_admin,
);

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
