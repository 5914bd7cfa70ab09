//! `sign_in.mjs` in the browser: signing in and out, cookies, sessions, users, the
//! anti-forgery rule, 404s. And the same rules over plain HTTP, with exact answers.

use reqwest::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};
use serde_json::json;

use crate::harness::{ADMIN_PASSWORD, Backend, TestServer, on_both_backends};

async fn sign_in(backend: Backend) {
    super::browser_suite("sign_in.mjs", backend).await;
}

/// The API takes the console's session cookie; a change needs the anti-forgery header with
/// the anti-forgery cookie's value, and without it changes nothing.
async fn cookie_changes_need_the_anti_forgery_header(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let client = reqwest::Client::new();
    let session = format!("dms_session={}; dms_csrf=token-a", admin.token);
    let me = client
        .get(format!("{}/users/me", server.url))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    for header in [None, Some("token-b"), Some("")] {
        let mut request = client
            .post(format!("{}/users", server.url))
            .header(COOKIE, &session)
            .json(&json!({"username": "forged", "password": "forged-password"}));
        if let Some(value) = header {
            request = request.header("x-dms-csrf", value);
        }
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status(), 403);
        assert_eq!(answer.headers()[CONTENT_TYPE], "application/problem+json");
        let body: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(body["code"], "csrf_rejected");
        assert_eq!(body["type"], "/problems/csrf_rejected");
        assert_eq!(
            body["detail"],
            "this request carries the console's session cookie but not its anti-forgery token; reload the console page and try again"
        );
    }
    let users = admin.api.get("/users?limit=100").await.expect(200).body;
    assert!(
        !users["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|user| user["username"] == "forged")
    );
    let created = client
        .post(format!("{}/users", server.url))
        .header(COOKIE, &session)
        .header("x-dms-csrf", "token-a")
        .json(&json!({"username": "welcome", "password": "welcome-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
}

/// The sign-in form refuses a post without the anti-forgery field (another site's form),
/// and a wrong password, with the detail on the page and no session started.
async fn the_sign_in_form_refuses_forgeries_and_wrong_passwords(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = format!("{}/console/login", server.url);
    let form = client.get(&url).send().await.unwrap();
    assert_eq!(form.status(), 200);
    let csrf = form
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(|cookie| cookie.strip_prefix("dms_csrf="))
        .and_then(|rest| rest.split(';').next())
        .expect("the form sets an anti-forgery cookie")
        .to_owned();
    let forged = client
        .post(&url)
        .header(COOKIE, format!("dms_csrf={csrf}"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(
            serde_urlencoded::to_string([("username", "admin"), ("password", ADMIN_PASSWORD)])
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert!(forged.headers().get(SET_COOKIE).is_none());
    let page = forged.text().await.unwrap();
    assert!(page.contains("not its anti-forgery token"), "{page}");

    let wrong = client
        .post(&url)
        .header(COOKIE, format!("dms_csrf={csrf}"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(
            serde_urlencoded::to_string([
                ("username", "admin"),
                ("password", "wrong"),
                ("csrf", csrf.as_str()),
            ])
            .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(
        wrong
            .text()
            .await
            .unwrap()
            .contains("the username or the password is wrong")
    );

    let admin = server.admin().await;
    let sessions = admin.api.get("/auth/sessions").await.expect(200).body;
    assert_eq!(sessions["items"].as_array().unwrap().len(), 1);

    let signed_in = client
        .post(&url)
        .header(COOKIE, format!("dms_csrf={csrf}"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(
            serde_urlencoded::to_string([
                ("username", "admin"),
                ("password", ADMIN_PASSWORD),
                ("csrf", csrf.as_str()),
                ("next", "https://elsewhere.example/"),
            ])
            .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    assert_eq!(signed_in.headers()["location"], "/console/");
    let sessions = admin.api.get("/auth/sessions").await.expect(200).body;
    assert_eq!(sessions["items"].as_array().unwrap().len(), 2);
}

on_both_backends!(
    sign_in,
    cookie_changes_need_the_anti_forgery_header,
    the_sign_in_form_refuses_forgeries_and_wrong_passwords,
);
