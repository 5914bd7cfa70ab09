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

/// A status filter walks at most `SEARCH_WINDOW` (10,000) messages a page: a cancelled message
/// older than 10,000 scheduled ones is not on the first page, which says where its search
/// stopped and links on; the next page finds it.
async fn a_rare_status_is_searched_a_window_at_a_time(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    let old = admin
        .api
        .post(
            "/messages",
            json!({ "recipient_id": bob.user_id(), "content": "cancelled long ago", "delay_seconds": 3600 }),
        )
        .await
        .expect(201)
        .body;
    let old_id = old["id"].as_str().unwrap().to_owned();
    admin
        .api
        .delete(&format!("/messages/{old_id}"))
        .await
        .expect(200);
    let item = json!({ "recipient_id": bob.user_id(), "content": "newer", "delay_seconds": 3600 });
    for _ in 0..10 {
        let batch: Vec<_> = (0..1_000).map(|_| item.clone()).collect();
        admin
            .api
            .post("/messages/batch", json!({ "messages": batch }))
            .await
            .expect(200);
    }

    let (status, first) = page(
        &server,
        &admin.token,
        "/console/messages?box=sent&status=cancelled",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(first.contains("id=\"no-messages\""), "{first}");
    assert!(!first.contains(&old_id), "{first}");
    let link = first
        .split("id=\"searched\"")
        .nth(1)
        .and_then(|rest| rest.split("href=\"").nth(1))
        .and_then(|rest| rest.split('"').next())
        .expect("the page links to the older messages")
        .replace("&#38;", "&")
        .replace("&amp;", "&");
    assert!(
        link.contains("status=cancelled") && link.contains("cursor=msg_"),
        "{link}"
    );
    let (status, next) = page(&server, &admin.token, &link).await;
    assert_eq!(status, StatusCode::OK);
    assert!(next.contains(&old_id), "{next}");
    assert!(
        !next.contains("id=\"searched\""),
        "nothing older remains: {next}"
    );

    // Without a status, the newest page is full and links on by its last row.
    let (_, all) = page(&server, &admin.token, "/console/messages?box=sent").await;
    assert!(all.contains("rel=\"next\"") && !all.contains("id=\"searched\""));
}

on_both_backends!(
    messages,
    another_tenants_message_is_the_404_page,
    a_rare_status_is_searched_a_window_at_a_time,
);
