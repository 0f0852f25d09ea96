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
    no_escalation_and_deleted_accounts_lose_access
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
    let (status, _) = app
        .send(
            reqwest::Method::POST,
            "",
            "/api/auth/token/refresh/",
            json!({"refresh": access}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
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
        &jsonwebtoken::EncodingKey::from_secret(b"test-secret-0123456789abcdef"),
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
