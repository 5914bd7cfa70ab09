//! `messages.mjs`: sending and following a message live, cancel, reschedule, deliver now,
//! the timeline, XSS as text, filters and keyset pages, dead letters replayed with progress.
//! Beside it, without a browser: another tenant's message is the 404 page.

use reqwest::StatusCode;
use reqwest::header::COOKIE;
use serde_json::json;

use crate::harness::{Backend, TestServer, on_both_backends};

async fn messages(backend: Backend) {
    super::browser_suite("messages.mjs", backend).await;
}

/// A console page as the holder of `token` sees it (the console takes the API's access token
/// in its session cookie): its status and its HTML.
async fn page(server: &TestServer, token: &str, path: &str) -> (StatusCode, String) {
    let answer = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}{path}", server.url))
        .header(COOKIE, format!("dms_session={token}"))
        .send()
        .await
        .unwrap();
    (answer.status(), answer.text().await.unwrap())
}

async fn another_tenants_message_is_the_404_page(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    let sent = admin
        .api
        .post(
            "/messages",
            json!({ "recipient_id": bob.user_id(), "content": "only for our tenant", "delay_seconds": 3600 }),
        )
        .await
        .expect(201)
        .body;
    let path = format!("/console/messages/{}", sent["id"].as_str().unwrap());
    let (status, html) = page(&server, &admin.token, &path).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("only for our tenant"), "{html}");

    // Another tenant's admin: the message is the 404 page, as is our tenant's listing of it.
    let other = server.tenant_admin("elsewhere").await;
    let (status, html) = page(&server, &other.token, &path).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("Not found"), "{html}");
    assert!(!html.contains("only for our tenant"), "{html}");
    let (status, html) = page(&server, &other.token, "/console/messages?box=all").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!html.contains(sent["id"].as_str().unwrap()), "{html}");
    let filtered = format!("/console/messages?box=all&recipient={}", bob.user_id());
    let (status, html) = page(&server, &other.token, &filtered).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("id=\"no-messages\""), "{html}");
}

on_both_backends!(messages, another_tenants_message_is_the_404_page);
