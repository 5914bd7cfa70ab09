//! The conventions every endpoint follows: problem+json bodies with exact codes, 413, 415,
//! 400, 422 naming the field, 404 and 405 as problems, and a request id on every response.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Backend, TestServer, on_both_backends};

fn without_request_id(mut body: Value) -> Value {
    body.as_object_mut().unwrap().remove("request_id");
    body
}

#[tokio::test]
async fn bad_bodies_get_exact_problems() {
    let server =
        TestServer::start_with(Backend::Sqlite, |config| config.max_body_bytes = 2048).await;
    let api = server.api();

    let too_large = api
        .raw(
            Method::POST,
            "/auth/login",
            Some("application/json"),
            vec![b' '; 4096],
        )
        .await
        .problem(413, "payload_too_large");
    assert_eq!(
        without_request_id(too_large.body),
        json!({
            "type": "/problems/payload_too_large",
            "title": "Payload too large",
            "status": 413,
            "detail": "the request body is larger than the server accepts (max_body_bytes)",
            "code": "payload_too_large",
        })
    );

    let wrong_type = api
        .raw(
            Method::POST,
            "/auth/login",
            Some("text/plain"),
            b"{}".to_vec(),
        )
        .await
        .problem(415, "unsupported_media_type");
    assert_eq!(
        without_request_id(wrong_type.body),
        json!({
            "type": "/problems/unsupported_media_type",
            "title": "Unsupported media type",
            "status": 415,
            "detail": "the body must be JSON (content-type: application/json); got content-type text/plain",
            "code": "unsupported_media_type",
        })
    );
    api.raw(Method::POST, "/auth/login", None, b"{}".to_vec())
        .await
        .problem(415, "unsupported_media_type");

    let malformed = api
        .raw(
            Method::POST,
            "/auth/login",
            Some("application/json"),
            b"{\"username\": ".to_vec(),
        )
        .await
        .problem(400, "malformed_json");
    assert_eq!(
        without_request_id(malformed.body),
        json!({
            "type": "/problems/malformed_json",
            "title": "Malformed JSON",
            "status": 400,
            "detail": "the body is not valid JSON: EOF while parsing a value at line 1 column 13",
            "code": "malformed_json",
        })
    );

    let wrong_field = api
        .post(
            "/auth/login",
            json!({ "username": "admin", "password": 42 }),
        )
        .await
        .problem(422, "invalid_field");
    assert_eq!(
        without_request_id(wrong_field.body),
        json!({
            "type": "/problems/invalid_field",
            "title": "Invalid field",
            "status": 422,
            "detail": "/password: invalid type: integer `42`, expected a string",
            "code": "invalid_field",
            "field": "/password",
        })
    );

    let missing = api
        .post("/auth/login", json!({ "username": "admin" }))
        .await
        .problem(422, "invalid_field");
    assert_eq!(missing.body["field"], "/password");
    assert_eq!(
        missing.body["detail"],
        "/password: missing field `password`"
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let server = TestServer::start(Backend::Sqlite).await;
    let api = server.api();
    let missing = api.get("/nope").await.problem(404, "route_not_found");
    assert_eq!(missing.body["detail"], "no endpoint matches GET /nope");
    let wrong_method = api
        .send(Method::PATCH, "/users/me", None)
        .await
        .problem(405, "method_not_allowed");
    assert_eq!(wrong_method.headers["allow"], "GET,HEAD");
    assert_eq!(wrong_method.body["detail"], "/users/me does not take PATCH");
}

#[tokio::test]
async fn every_response_has_a_request_id_and_the_clients_is_kept() {
    let server = TestServer::start(Backend::Sqlite).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let fresh = client
        .get(format!("{}/health", server.url))
        .send()
        .await
        .unwrap();
    let id = fresh.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let kept = client
        .get(format!("{}/nope", server.url))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(kept.headers()["x-request-id"], "trace-me-123");
    let body: Value = serde_json::from_slice(&kept.bytes().await.unwrap()).unwrap();
    assert_eq!(body["request_id"], "trace-me-123");
}

#[tokio::test]
async fn problem_types_are_documented_by_the_api() {
    let server = TestServer::start(Backend::Sqlite).await;
    let described = server
        .api()
        .get("/problems/rate_limited")
        .await
        .expect(200)
        .body;
    assert_eq!(described["status"], 429);
    assert_eq!(described["title"], "Too many requests");
    server
        .api()
        .get("/problems/nonsense")
        .await
        .problem(404, "not_found");
}

#[tokio::test]
async fn health_endpoints_report_each_dependency() {
    let server = TestServer::start(Backend::Sqlite).await;
    let health = server.api().get("/health").await.expect(200).body;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(health["storage"], "sqlite");
    let db = server.api().get("/health/db").await.expect(200).body;
    assert_eq!(db["status"], "ok");
    assert!(db["latency_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(
        server.api().get("/health/redis").await.expect(200).body,
        json!({ "status": "disabled" })
    );
}

on_both_backends!(nul_characters_get_the_same_answer_on_both_backends);

/// Text with a NUL character: SQLite stores it, PostgreSQL `text` cannot, so a handler that
/// passed one on answered 201 on SQLite and 500 on PostgreSQL (found by fuzzing). Where a NUL
/// can be stored (encrypted content, JSON-encoded metadata) it is; elsewhere it is refused
/// with the field named, the same on both backends.
async fn nul_characters_get_the_same_answer_on_both_backends(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let me = admin.user_id();
    let cases = [
        (
            Method::POST,
            "/auth/login",
            json!({ "username": "ad\u{0}min", "password": "x" }),
            401,
            Some(("invalid_credentials", None)),
        ),
        (
            Method::POST,
            "/users",
            json!({ "username": "nul", "password": "long-enough", "display_name": "a\u{0}b" }),
            422,
            Some(("invalid_field", Some("/display_name"))),
        ),
        (
            Method::POST,
            "/messages",
            json!({ "recipient_id": me, "content": "hi", "content_type": "text/\u{0}plain" }),
            422,
            Some(("invalid_field", Some("/content_type"))),
        ),
        (
            Method::PUT,
            "/users/me/webhook",
            json!({ "url": "https://example.com/\u{0}" }),
            422,
            Some(("invalid_field", Some("/url"))),
        ),
        (
            Method::POST,
            "/messages",
            json!({ "recipient_id": me, "content": "h\u{0}i", "metadata": { "k\u{0}": "v\u{0}" } }),
            201,
            None,
        ),
        (
            Method::POST,
            "/auth/refresh",
            json!({ "refresh_token": "a\u{0}b" }),
            401,
            Some(("invalid_refresh_token", None)),
        ),
    ];
    for (method, path, body, status, problem) in cases {
        let reply = admin
            .api
            .send(method.clone(), path, Some(body.clone()))
            .await;
        let reply = match problem {
            Some((code, field)) => {
                let reply = reply.problem(status, code);
                assert_eq!(
                    reply.body["field"].as_str(),
                    field,
                    "{method} {path} {body}"
                );
                reply
            }
            None => reply.expect(status),
        };
        if status == 201 {
            let id = reply.body["id"].as_str().unwrap();
            let stored = admin.api.get(&format!("/messages/{id}")).await.expect(200);
            assert_eq!(stored.body["content"], "h\u{0}i");
            assert_eq!(stored.body["metadata"]["k\u{0}"], "v\u{0}");
        }
    }
}
