//! Login, refresh-token rotation and reuse detection, logout, sessions, token checks and rate
//! limits — on both storage backends.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::harness::{ADMIN_PASSWORD, Backend, JWT_SECRET, Login, TestServer, on_both_backends};

on_both_backends!(
    login_returns_tokens_and_the_user,
    a_wrong_password_and_an_unknown_user_get_the_same_answer,
    refresh_rotates_and_a_reused_token_revokes_the_session,
    logout_ends_only_that_session,
    sessions_are_listed_and_can_be_ended,
    an_admin_lists_and_ends_the_sessions_of_the_tenants_users,
    expired_tampered_unsigned_and_foreign_tokens_are_refused,
    login_is_rate_limited_per_username_and_per_address,
    api_requests_are_rate_limited_per_user,
    a_restart_keeps_users_and_sessions,
);

async fn login_returns_tokens_and_the_user(backend: Backend) {
    let server = TestServer::start(backend).await;
    let reply = server
        .api()
        .post(
            "/auth/login",
            json!({ "username": "admin", "password": ADMIN_PASSWORD }),
        )
        .await
        .expect(200);
    let body = &reply.body;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert!(body["refresh_token"].as_str().unwrap().starts_with("rt_"));
    assert_eq!(body["user"]["username"], "admin");
    assert_eq!(body["user"]["role"], "admin");
    assert!(body["user"]["id"].as_str().unwrap().starts_with("usr_"));
    assert!(
        body["user"]["tenant_id"]
            .as_str()
            .unwrap()
            .starts_with("ten_")
    );

    let admin = Login::from_reply(&server.url, reply.body);
    let me = admin.api.get("/users/me").await.expect(200);
    assert_eq!(me.body["id"], admin.user["id"]);
    assert_eq!(me.body["display_name"], "Administrator");
}

async fn a_wrong_password_and_an_unknown_user_get_the_same_answer(backend: Backend) {
    let server = TestServer::start(backend).await;
    let wrong = server
        .api()
        .post(
            "/auth/login",
            json!({ "username": "admin", "password": "not-it" }),
        )
        .await
        .problem(401, "invalid_credentials");
    let unknown = server
        .api()
        .post(
            "/auth/login",
            json!({ "username": "nobody", "password": "not-it" }),
        )
        .await
        .problem(401, "invalid_credentials");
    assert_eq!(
        wrong.body["detail"],
        "the username or the password is wrong"
    );
    assert_eq!(wrong.body["detail"], unknown.body["detail"]);
}

async fn refresh_rotates_and_a_reused_token_revokes_the_session(backend: Backend) {
    let server = TestServer::start(backend).await;
    let first = server.admin().await;
    let other = server.admin().await;

    let rotated = server
        .api()
        .post(
            "/auth/refresh",
            json!({ "refresh_token": first.refresh_token }),
        )
        .await
        .expect(200);
    let second = Login::from_reply(&server.url, rotated.body);
    assert_ne!(second.refresh_token, first.refresh_token);
    second.api.get("/users/me").await.expect(200);

    // The first refresh token again: someone replayed it. The whole session goes.
    server
        .api()
        .post(
            "/auth/refresh",
            json!({ "refresh_token": first.refresh_token }),
        )
        .await
        .problem(401, "refresh_token_reused");
    server
        .api()
        .post(
            "/auth/refresh",
            json!({ "refresh_token": second.refresh_token }),
        )
        .await
        .problem(401, "invalid_refresh_token");
    second
        .api
        .get("/users/me")
        .await
        .problem(401, "session_ended");
    first
        .api
        .get("/users/me")
        .await
        .problem(401, "session_ended");

    // Another session of the same user is untouched.
    other.api.get("/users/me").await.expect(200);
    server
        .api()
        .post("/auth/refresh", json!({ "refresh_token": "rt_made-up" }))
        .await
        .problem(401, "invalid_refresh_token");
}

async fn logout_ends_only_that_session(backend: Backend) {
    let server = TestServer::start(backend).await;
    let leaving = server.admin().await;
    let staying = server.admin().await;
    leaving
        .api
        .post("/auth/logout", json!({}))
        .await
        .expect(204);
    leaving
        .api
        .get("/users/me")
        .await
        .problem(401, "session_ended");
    server
        .api()
        .post(
            "/auth/refresh",
            json!({ "refresh_token": leaving.refresh_token }),
        )
        .await
        .problem(401, "invalid_refresh_token");
    staying.api.get("/users/me").await.expect(200);
}

async fn sessions_are_listed_and_can_be_ended(backend: Backend) {
    let server = TestServer::start(backend).await;
    let laptop = server.admin().await;
    let phone = server.admin().await;
    let member = server.member(&laptop, "bob").await;

    let sessions = laptop.api.get("/auth/sessions").await.expect(200).body;
    let items = sessions["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items.iter().filter(|s| s["current"] == true).count(), 1);
    let phone_session = items.iter().find(|s| s["current"] == false).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    laptop
        .api
        .delete(&format!("/auth/sessions/{phone_session}"))
        .await
        .expect(204);
    phone
        .api
        .get("/users/me")
        .await
        .problem(401, "session_ended");
    laptop
        .api
        .delete(&format!("/auth/sessions/{phone_session}"))
        .await
        .problem(404, "not_found");

    // Someone else's session is not found, and keeps working.
    let bobs = member.api.get("/auth/sessions").await.expect(200).body;
    let bob_session = bobs["items"][0]["id"].as_str().unwrap().to_owned();
    laptop
        .api
        .delete(&format!("/auth/sessions/{bob_session}"))
        .await
        .problem(404, "not_found");
    member.api.get("/users/me").await.expect(200);
    laptop
        .api
        .delete("/auth/sessions/garbage")
        .await
        .problem(404, "not_found");
}

async fn an_admin_lists_and_ends_the_sessions_of_the_tenants_users(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    let bob_id = bob.user["id"].as_str().unwrap().to_owned();
    let other = server.tenant_admin("other").await;
    let other_id = other.user["id"].as_str().unwrap().to_owned();

    let listed = admin
        .api
        .get(&format!("/users/{bob_id}/sessions"))
        .await
        .expect(200)
        .body;
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["current"], false);
    let session = items[0]["id"].as_str().unwrap().to_owned();

    // A member may not; another tenant's user, a malformed id, an unknown session: 404.
    bob.api
        .get(&format!("/users/{bob_id}/sessions"))
        .await
        .problem(403, "admin_required");
    bob.api
        .delete(&format!("/users/{bob_id}/sessions/{session}"))
        .await
        .problem(403, "admin_required");
    admin
        .api
        .get(&format!("/users/{other_id}/sessions"))
        .await
        .problem(404, "not_found");
    admin
        .api
        .get("/users/garbage/sessions")
        .await
        .problem(404, "not_found");
    let other_session = other.api.get("/auth/sessions").await.expect(200).body["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    admin
        .api
        .delete(&format!("/users/{bob_id}/sessions/{other_session}"))
        .await
        .problem(404, "not_found");
    admin
        .api
        .delete(&format!("/users/{other_id}/sessions/{other_session}"))
        .await
        .problem(404, "not_found");
    other.api.get("/users/me").await.expect(200);
    bob.api.get("/users/me").await.expect(200);

    admin
        .api
        .delete(&format!("/users/{bob_id}/sessions/{session}"))
        .await
        .expect(204);
    bob.api.get("/users/me").await.problem(401, "session_ended");
    admin
        .api
        .delete(&format!("/users/{bob_id}/sessions/{session}"))
        .await
        .problem(404, "not_found");
    let after = admin
        .api
        .get(&format!("/users/{bob_id}/sessions"))
        .await
        .expect(200)
        .body;
    assert_eq!(after["items"], json!([]));
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

fn sign(claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

async fn expired_tampered_unsigned_and_foreign_tokens_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let api = server.api();
    let claims = claims(&admin.token);

    // Re-signing the same claims with the server's secret is accepted: the checks below
    // refuse what they should, not everything.
    let resigned = sign(&claims, JWT_SECRET.as_bytes());
    api.with_token(&resigned).get("/users/me").await.expect(200);

    let mut foreign_audience = claims.clone();
    foreign_audience["aud"] = json!("another-api");
    let mut foreign_issuer = claims.clone();
    foreign_issuer["iss"] = json!("someone-else");
    let mut missing_jti = claims.clone();
    missing_jti.as_object_mut().unwrap().remove("jti");
    let header =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let payload = admin.token.split('.').nth(1).unwrap();
    let mut tampered_claims = claims.clone();
    tampered_claims["role"] = json!("admin");
    tampered_claims["sub"] = json!("usr_01JZZZZZZZZZZZZZZZZZZZZZZZ");
    let tampered_payload =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tampered_claims.to_string());
    let signature = admin.token.split('.').nth(2).unwrap();

    for (what, token) in [
        ("alg none", format!("{header}.{payload}.")),
        (
            "tampered payload",
            format!(
                "{}.{tampered_payload}.{signature}",
                admin.token.split('.').next().unwrap()
            ),
        ),
        (
            "another secret",
            sign(&claims, b"another-secret-another-secret-another"),
        ),
        (
            "foreign audience",
            sign(&foreign_audience, JWT_SECRET.as_bytes()),
        ),
        (
            "foreign issuer",
            sign(&foreign_issuer, JWT_SECRET.as_bytes()),
        ),
        ("missing jti", sign(&missing_jti, JWT_SECRET.as_bytes())),
        ("garbage", "not.a.jwt".to_owned()),
    ] {
        let reply = api.with_token(&token).get("/users/me").await;
        assert_eq!(reply.status, 401, "{what}: {}", reply.body);
        reply.problem(401, "invalid_token");
    }

    let reply = api.get("/users/me").await.problem(401, "unauthenticated");
    assert_eq!(reply.headers["www-authenticate"], "Bearer");
    api.raw(reqwest::Method::GET, "/users/me", None, Vec::new())
        .await
        .problem(401, "unauthenticated");

    // 15 minutes and the clock-skew leeway later, the token has expired.
    server.clock.advance((900 + 31) * 1000);
    admin
        .api
        .get("/users/me")
        .await
        .problem(401, "token_expired");
    // The refresh token still works and gives a fresh access token.
    let fresh = server
        .api()
        .post(
            "/auth/refresh",
            json!({ "refresh_token": admin.refresh_token }),
        )
        .await
        .expect(200);
    Login::from_reply(&server.url, fresh.body)
        .api
        .get("/users/me")
        .await
        .expect(200);
}

async fn login_is_rate_limited_per_username_and_per_address(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.rate_limit_login_per_username = 3;
        config.rate_limit_login_per_ip = 5;
    })
    .await;
    let attempt = async |username: &str| {
        server
            .api()
            .post(
                "/auth/login",
                json!({ "username": username, "password": "wrong" }),
            )
            .await
    };
    for _ in 0..3 {
        attempt("admin").await.problem(401, "invalid_credentials");
    }
    let limited = attempt("admin").await.problem(429, "rate_limited");
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry_after), "retry-after {retry_after}");
    assert_eq!(
        limited.body["detail"],
        format!("too many requests; retry in {retry_after} s")
    );
    // Even the right password waits: the limit comes before the check.
    server
        .api()
        .post(
            "/auth/login",
            json!({ "username": "admin", "password": ADMIN_PASSWORD }),
        )
        .await
        .problem(429, "rate_limited");
    // The address has now made 5 attempts; the 6th is refused whatever the username.
    attempt("carol").await.problem(429, "rate_limited");
}

async fn api_requests_are_rate_limited_per_user(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.rate_limit_api_per_second = 1;
        config.rate_limit_api_burst = 2;
    })
    .await;
    let admin = server.admin().await;
    let member = server.member(&admin, "bob").await;
    member.api.get("/users/me").await.expect(200);
    member.api.get("/users/me").await.expect(200);
    let limited = member
        .api
        .get("/users/me")
        .await
        .problem(429, "rate_limited");
    assert!(limited.headers.contains_key("retry-after"));
}

async fn a_restart_keeps_users_and_sessions(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    let server = server.restart().await;
    // The restarted server listens on a new port; the tokens are the same.
    server
        .api()
        .with_token(&bob.token)
        .get("/users/me")
        .await
        .expect(200);
    let rotated = server
        .api()
        .post(
            "/auth/refresh",
            json!({ "refresh_token": bob.refresh_token }),
        )
        .await
        .expect(200);
    assert_eq!(rotated.body["user"]["username"], "bob");
    server.login("bob", "member-password").await;
    let users = server
        .api()
        .with_token(&admin.token)
        .get("/users")
        .await
        .expect(200)
        .body;
    assert_eq!(users["total"], 2);
}
