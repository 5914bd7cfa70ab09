//! What a receiver or a plugin can put into a delivery's outcome: control characters, secrets
//! in URLs, and data the database refuses; none of it may leave a message undeliverable. And
//! what a recipient may set as their endpoint, and how a database restart is answered.

use serde_json::{Value, json};

use crate::harness::{Answer, Backend, Login, Receiver, TestServer, on_both_backends, status};

on_both_backends!(
    control_characters_from_a_receiver_are_stored_escaped_and_the_retry_schedule_holds,
    an_outcome_the_database_refuses_is_recorded_without_its_details,
    the_sender_never_sees_the_path_or_query_of_the_recipients_endpoint,
    an_endpoint_that_can_never_be_reached_is_refused_when_it_is_set,
);

async fn admin_and_bob(server: &TestServer) -> (Login, Login) {
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    (admin, bob)
}

/// Sends a webhook message from `from` to `to`; returns its id.
async fn send_webhook(from: &Login, to: &Login) -> String {
    let reply = from
        .api
        .post(
            "/messages",
            json!({ "recipient_id": to.user_id(), "content": "hello bob", "channel": "webhook" }),
        )
        .await
        .expect(201);
    reply.body["id"].as_str().unwrap().to_owned()
}

async fn events(who: &Login, id: &str) -> Vec<Value> {
    let reply = who
        .api
        .get(&format!("/messages/{id}/events"))
        .await
        .expect(200);
    reply.body["items"].as_array().unwrap().clone()
}

/// Every result of a message's history, joined.
async fn history(who: &Login, id: &str) -> String {
    events(who, id)
        .await
        .iter()
        .map(|event| event["result"].as_str().unwrap_or_default().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A receiver's 500 whose body holds a NUL, an escape sequence and a newline: PostgreSQL `text`
/// cannot hold the NUL, so the outcome could not be committed and the message stayed
/// `delivering`, delivered again at every lease expiry without the attempt ever counting. Now
/// the text is stored with the characters escaped, on both backends, and the message follows
/// its retry schedule to `dead` like any other; a 400 with the same body is a permanent failure.
async fn control_characters_from_a_receiver_are_stored_escaped_and_the_retry_schedule_holds(
    backend: Backend,
) {
    let server = TestServer::start(backend).await;
    let (admin, bob) = admin_and_bob(&server).await;
    let body = b"bad\0gateway \x1b[31mred\x1b[0m\nINFO forged line \xe2\x80\xae";
    let receiver = Receiver::start(vec![Answer::status(500).body(body)]).await;
    bob.api
        .put("/users/me/webhook", json!({ "url": receiver.url }))
        .await
        .expect(200);
    let escaped = "HTTP 500: bad\\0gateway \\u{1b}[31mred\\u{1b}[0m\\nINFO forged line \\u{202e}";

    let id = send_webhook(&admin, &bob).await;
    let report = server.dispatch().await;
    assert_eq!((report.retried, report.stale), (1, 0), "{report:?}");
    let first = status(&admin, &id).await;
    assert_eq!(first["status"], "retrying");
    assert_eq!(first["attempts"], 1);
    assert_eq!(first["last_error"], escaped);
    assert!(history(&admin, &id).await.contains(escaped));

    // Every attempt counts: after the standard policy's 8 attempts the message is dead.
    for _ in 1..8 {
        let due = crate::harness::ms(&status(&admin, &id).await["deliver_at"]);
        server
            .clock
            .advance(due.saturating_sub(server.clock.now_ms()));
        server.dispatch().await;
    }
    let done = status(&admin, &id).await;
    assert_eq!(done["status"], "dead", "{done}");
    assert_eq!(done["attempts"], 8);
    assert_eq!(receiver.received().len(), 8);

    let refusing = Receiver::start(vec![Answer::status(400).body(body)]).await;
    bob.api
        .put("/users/me/webhook", json!({ "url": refusing.url }))
        .await
        .expect(200);
    let id = send_webhook(&admin, &bob).await;
    assert_eq!(server.dispatch().await.dead, 1);
    let dead = status(&admin, &id).await;
    assert_eq!(dead["status"], "dead");
    assert_eq!(
        dead["last_error"],
        escaped.replace("HTTP 500", "HTTP 400").as_str()
    );
}

/// Refuses, inside the database, any history entry whose result contains `xyzzy`: data the
/// database will not hold, however the server cleans it.
async fn refuse_xyzzy_in_history(server: &TestServer) {
    match server.backend {
        Backend::Sqlite => {
            server
                .sql(
                    "CREATE TRIGGER refuse_xyzzy BEFORE INSERT ON message_events \
                     WHEN NEW.result LIKE '%xyzzy%' \
                     BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
                )
                .await
        }
        Backend::Postgres => {
            server
                .sql(
                    "CREATE FUNCTION refuse_xyzzy() RETURNS trigger AS $$ BEGIN \
                       IF NEW.result LIKE '%xyzzy%' THEN \
                         RAISE EXCEPTION 'refused by the test' USING ERRCODE = '22023'; \
                       END IF; RETURN NEW; END $$ LANGUAGE plpgsql; \
                     CREATE TRIGGER refuse_xyzzy BEFORE INSERT ON message_events \
                     FOR EACH ROW EXECUTE FUNCTION refuse_xyzzy();",
                )
                .await
        }
    }
}

/// When the database refuses an outcome's data, committing it again would fail the same way
/// and leaving it to the lease would deliver the message again and again, the attempt never
/// counted. The decision is committed without the refused details: the attempt counts, the
/// retry schedule holds, and the history says what happened.
async fn an_outcome_the_database_refuses_is_recorded_without_its_details(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (admin, bob) = admin_and_bob(&server).await;
    refuse_xyzzy_in_history(&server).await;
    let receiver = Receiver::start(vec![Answer::status(503).body(b"xyzzy")]).await;
    bob.api
        .put("/users/me/webhook", json!({ "url": receiver.url }))
        .await
        .expect(200);

    let id = send_webhook(&admin, &bob).await;
    let report = server.dispatch().await;
    assert_eq!((report.retried, report.stale), (1, 0), "{report:?}");
    let first = status(&admin, &id).await;
    assert_eq!(first["status"], "retrying");
    assert_eq!(first["attempts"], 1);
    let note = "the outcome of attempt 1 could not be stored (\
                refused by the test); it is recorded without its details";
    assert_eq!(first["last_error"], note);
    let recorded = events(&admin, &id).await;
    let last = &recorded[recorded.len() - 1];
    assert_eq!(
        (&last["from"], &last["to"], &last["result"]),
        (&json!("delivering"), &json!("retrying"), &json!(note)),
        "{recorded:?}"
    );
    assert!(ms_after(&first["deliver_at"], server.clock.now_ms()));

    // The next attempt, delivered, commits as usual.
    let receiver = Receiver::start(vec![Answer::status(200)]).await;
    bob.api
        .put("/users/me/webhook", json!({ "url": receiver.url }))
        .await
        .expect(200);
    let due = crate::harness::ms(&first["deliver_at"]);
    server
        .clock
        .advance(due.saturating_sub(server.clock.now_ms()));
    assert_eq!(server.dispatch().await.delivered, 1);
    let done = status(&admin, &id).await;
    assert_eq!(
        (&done["status"], &done["attempts"]),
        (&json!("delivered"), &json!(2))
    );
}

fn ms_after(time: &Value, now: u64) -> bool {
    crate::harness::ms(time) > now
}

/// Receivers keep tokens in their endpoint's path and query, and the sender reads a message's
/// errors and history: those name the endpoint's host and the failure, never the path or the
/// query, whether the failure is a refused connection, a redirect or an HTTP status.
async fn the_sender_never_sees_the_path_or_query_of_the_recipients_endpoint(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (admin, bob) = admin_and_bob(&server).await;
    let secrets = ["s3cret-path", "t0ken", "k3y"];
    let leaks = |text: &str| secrets.iter().any(|secret| text.contains(secret));

    // Nothing listens on port 1: the connection is refused.
    bob.api
        .put(
            "/users/me/webhook",
            json!({ "url": "http://127.0.0.1:1/in/s3cret-path?token=t0ken" }),
        )
        .await
        .expect(200);
    let refused = send_webhook(&admin, &bob).await;
    assert_eq!(server.dispatch().await.retried, 1);
    let error = status(&admin, &refused).await["last_error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(error.starts_with("could not reach the endpoint"), "{error}");
    assert!(!leaks(&error), "{error}");
    assert!(!leaks(&history(&admin, &refused).await));

    let receiver = Receiver::start(vec![Answer::status(302).header(
        "location",
        "https://elsewhere.example/in/s3cret-path?key=k3y",
    )])
    .await;
    bob.api
        .put(
            "/users/me/webhook",
            json!({ "url": format!("{}/s3cret-path?token=t0ken", receiver.url) }),
        )
        .await
        .expect(200);
    let redirected = send_webhook(&admin, &bob).await;
    assert_eq!(server.dispatch().await.dead, 1);
    let error = status(&admin, &redirected).await["last_error"].clone();
    assert_eq!(
        error,
        "HTTP 302: receiver says hi; redirects are not followed (location: https://elsewhere.example/…)"
    );
    assert!(!leaks(&history(&admin, &redirected).await));
    // The endpoint's owner still sees their own URL.
    let own = bob.api.get("/users/me/webhook").await.expect(200);
    assert!(
        own.body["url"]
            .as_str()
            .unwrap()
            .ends_with("/s3cret-path?token=t0ken")
    );
}

/// `PUT /users/me/webhook` refuses what could never be delivered to, with the reason, and keeps
/// the endpoint as it was; private and loopback literals only where the operator allows them.
async fn an_endpoint_that_can_never_be_reached_is_refused_when_it_is_set(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.allow_private_networks = false;
    })
    .await;
    let admin = server.admin().await;
    let cases = [
        ("http:///x", "/url: the URL has no host"),
        ("https://", "/url: not a URL: empty host"),
        (
            "https://user:pw@example.com/hook",
            "/url: the URL may not contain a user name or password; put a token in the path or query",
        ),
        (
            "https://example.com:0/hook",
            "/url: the port must be from 1 to 65535",
        ),
        (
            "https://example.com:65536/hook",
            "/url: not a URL: invalid port number",
        ),
        (
            "http://127.0.0.1:4000/hook",
            "/url: the host is a loopback address, which deliveries may not reach",
        ),
        (
            "http://0x7f000001/hook",
            "/url: the host is a loopback address, which deliveries may not reach",
        ),
        (
            "http://10.1.2.3/hook",
            "/url: the host is a private address, which deliveries may not reach",
        ),
        (
            "http://169.254.169.254/latest/meta-data",
            "/url: the host is a link-local (cloud metadata) address, which deliveries may not reach",
        ),
        (
            "http://[::1]/hook",
            "/url: the host is a loopback address, which deliveries may not reach",
        ),
        (
            "http://[::ffff:10.0.0.1]/hook",
            "/url: the host is a private address, which deliveries may not reach",
        ),
        (
            "http://[::127.0.0.1]/hook",
            "/url: the host is a loopback address, which deliveries may not reach",
        ),
        (
            "http://[2002:c0a8:101::1]/hook",
            "/url: the host is a private address, which deliveries may not reach",
        ),
        (
            "http://localhost:8080/hook",
            "/url: the host is localhost (a loopback address), which deliveries may not reach",
        ),
        (
            "http://api.localhost./hook",
            "/url: the host is localhost (a loopback address), which deliveries may not reach",
        ),
    ];
    for (url, detail) in cases {
        let refused = admin
            .api
            .put("/users/me/webhook", json!({ "url": url }))
            .await
            .problem(422, "invalid_field");
        assert_eq!(refused.body["field"], "/url", "{url}");
        assert_eq!(refused.body["detail"], detail, "{url}");
    }
    admin
        .api
        .get("/users/me/webhook")
        .await
        .problem(404, "not_found");
    let set = admin
        .api
        .put(
            "/users/me/webhook",
            json!({ "url": "https://hooks.example.com:8443/in?t=1" }),
        )
        .await
        .expect(200);
    assert_eq!(set.body["url"], "https://hooks.example.com:8443/in?t=1");

    // Where private networks are allowed, the literals are accepted (tests, on-premise).
    let open = TestServer::start(backend).await;
    let admin = open.admin().await;
    admin
        .api
        .put(
            "/users/me/webhook",
            json!({ "url": "http://127.0.0.1:4000/hook" }),
        )
        .await
        .expect(200);
}

/// A PostgreSQL restart ends the server's connections with "terminating connection due to
/// administrator command" (SQLSTATE 57P01), and a request that was using one answered 500. It
/// is a database outage like any other: 503 `service_unavailable`, and the next request is
/// served on a new connection. Terminating the one backend that waits on a row lock the test
/// holds strikes exactly that request, as a restart strikes whatever is in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_connection_ended_by_a_restart_is_a_503_not_a_500() {
    use sqlx::Connection as _;

    let server = TestServer::start(Backend::Postgres).await;
    let admin = server.admin().await;
    let url = json!({ "url": "https://hooks.example.com/in" });
    admin
        .api
        .put("/users/me/webhook", url.clone())
        .await
        .expect(200);

    let mut holder = sqlx::PgConnection::connect(server.database_url().unwrap())
        .await
        .unwrap();
    sqlx::raw_sql("BEGIN; SELECT * FROM webhooks FOR UPDATE;")
        .execute(&mut holder)
        .await
        .unwrap();
    let blocked = tokio::spawn({
        let api = admin.api.clone();
        let url = url.clone();
        async move { api.put("/users/me/webhook", url).await }
    });
    let mut terminated = 0_i64;
    for _ in 0..100 {
        terminated = sqlx::query_scalar(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut holder)
        .await
        .unwrap();
        if terminated > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(terminated, 1, "the request waited on the lock");
    let answer = blocked.await.unwrap().problem(503, "service_unavailable");
    assert_eq!(
        answer.body["detail"], "the database is unavailable; retry shortly",
        "{}",
        answer.body
    );
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .unwrap();
    admin.api.put("/users/me/webhook", url).await.expect(200);
}
