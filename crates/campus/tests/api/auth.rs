//! Tokens (SimpleJWT shapes and messages), refresh, `me`, and every way a token
//! can be wrong.

mod organizations;
mod roles;

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
    // Its cached reads are refused, the record loaded beside the response's:
    // a list read before, one never read, and a bad page (a 401, not the
    // page's 404). Each time the record is not cached: an admin's write to
    // the user invalidates it.
    for (i, path) in [
        "/api/users/?search=org1-student",
        "/api/students/?page_size=3&ordering=-email",
        "/api/students/?page_size=3&page=99999",
    ]
    .into_iter()
    .enumerate()
    {
        let (status, _) = app
            .send(
                reqwest::Method::PATCH,
                &admin,
                &format!("/api/users/{id}/"),
                json!({"first_name": format!("Gone{i}")}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, v) = app.get_json(&student, path).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {v}");
    }
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
