//! Status callbacks for senders, end to end on both deployments: a sender's endpoint (a real
//! loopback receiver) is told of the chosen statuses of the messages it sends, signed per
//! Standard Webhooks with the endpoint's own secret (checked with the reference library), and
//! delivered like a webhook message (retried when the receiver fails). The dispatcher is driven
//! by hand on a manual clock.

use serde_json::{Value, json};

use crate::harness::{Answer, Backend, Login, Receiver, TestServer, ms, on_both_backends, status};
use crate::webhook_signature::verify_with_reference_library;

on_both_backends!(
    the_sender_is_told_of_the_chosen_statuses_signed,
    a_failing_callback_endpoint_is_retried_and_callbacks_make_no_callbacks,
    rotation_changes_the_secret_and_deleting_stops_callbacks,
    bad_input_is_refused_exactly_and_nothing_is_written,
    a_deleted_sender_is_told_nothing,
);

async fn send(from: &Login, to: &Login, extra: Value) -> String {
    let mut body = json!({ "recipient_id": to.user_id(), "content": "hello" });
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    let reply = from.api.post("/messages", body).await.expect(201);
    reply.body["id"].as_str().unwrap().to_owned()
}

/// Sets `who`'s callback endpoint; returns its secret.
async fn subscribe(who: &Login, url: &str, events: &[&str]) -> String {
    let set = who
        .api
        .put(
            "/users/me/callbacks",
            json!({ "url": url, "events": events }),
        )
        .await
        .expect(200);
    assert_eq!(set.body["url"], url);
    assert_eq!(set.body["events"], json!(events));
    let secret = set.body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    secret
}

/// The bodies the receiver got, parsed.
fn bodies(receiver: &Receiver) -> Vec<Value> {
    receiver
        .received()
        .iter()
        .map(|received| serde_json::from_slice(&received.body).unwrap())
        .collect()
}

async fn the_sender_is_told_of_the_chosen_statuses_signed(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    let carol = server.member(&admin, "carol").await;
    let callbacks = Receiver::start(vec![Answer::status(204)]).await;
    let secret = subscribe(
        &admin,
        &callbacks.url,
        &["delivered", "dead", "read", "cancelled"],
    )
    .await;
    let shown = admin.api.get("/users/me/callbacks").await.expect(200).body;
    assert_eq!(shown["url"], callbacks.url);
    assert_eq!(
        shown["events"],
        json!(["delivered", "dead", "read", "cancelled"])
    );
    assert_eq!(shown["active_secrets"], 1);
    assert!(shown.get("secret").is_none(), "secrets are shown once");
    // Bob's webhook fails once, then takes the message: `retrying` was not chosen.
    let hook = Receiver::start(vec![Answer::status(500), Answer::status(200)]).await;
    bob.api
        .put("/users/me/webhook", json!({ "url": hook.url }))
        .await
        .expect(200);

    // Delivered (inbox), then read by bob.
    let inboxed = send(&admin, &bob, json!({})).await;
    let report = server.dispatch().await;
    assert_eq!(report.delivered, 2, "the message, then its callback");
    bob.api
        .post(&format!("/messages/{inboxed}/read"), json!({}))
        .await
        .expect(200);
    assert_eq!(server.dispatch().await.delivered, 1, "the read callback");
    // Cancelled while waiting.
    let cancelled = send(&admin, &bob, json!({ "delay_seconds": 3600 })).await;
    admin
        .api
        .delete(&format!("/messages/{cancelled}"))
        .await
        .expect(200);
    assert_eq!(server.dispatch().await.delivered, 1, "the cancel callback");
    // A webhook message that fails once (no callback) and then is delivered.
    let retried = send(&admin, &bob, json!({ "channel": "webhook" })).await;
    let report = server.dispatch().await;
    assert_eq!((report.retried, report.delivered), (1, 0));
    let waiting = status(&admin, &retried).await;
    server
        .clock
        .advance(ms(&waiting["deliver_at"]).saturating_sub(server.clock.now_ms()));
    assert_eq!(server.dispatch().await.delivered, 2);
    // Carol has no webhook: dead at once.
    let dead = send(&admin, &carol, json!({ "channel": "webhook" })).await;
    let report = server.dispatch().await;
    assert_eq!((report.dead, report.delivered), (1, 1));

    let got = bodies(&callbacks);
    let seen: Vec<(&str, &str)> = got
        .iter()
        .map(|body| {
            (
                body["type"].as_str().unwrap(),
                body["data"]["message_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("message.delivered", inboxed.as_str()),
            ("message.read", inboxed.as_str()),
            ("message.cancelled", cancelled.as_str()),
            ("message.delivered", retried.as_str()),
            ("message.dead", dead.as_str()),
        ]
    );
    // The whole body of one, and of the dead one with its error.
    let delivered = &got[3];
    assert_eq!(
        delivered["data"],
        json!({
            "message_id": retried,
            "status": "delivered",
            "recipient_id": bob.user_id(),
            "channel": "webhook",
            "attempts": 2,
            "at": delivered["timestamp"],
        })
    );
    assert_eq!(
        got[4]["data"],
        json!({
            "message_id": dead,
            "status": "dead",
            "recipient_id": carol.user_id(),
            "channel": "webhook",
            "attempts": 1,
            "at": got[4]["timestamp"],
            "last_error": format!(
                "recipient {} has no webhook endpoint; set one with PUT /users/me/webhook",
                carol.user_id()
            ),
        })
    );
    assert_eq!(ms(&got[4]["timestamp"]), server.clock.now_ms());
    // Each signed with the callback's secret, under its own id (not the message's).
    let mut ids = std::collections::BTreeSet::new();
    for received in callbacks.received() {
        verify_with_reference_library(&secret, &received).expect("a valid signature");
        let id = received.headers["webhook-id"].to_str().unwrap().to_owned();
        assert!(id.starts_with("msg_"), "{id}");
        assert!(![&inboxed, &cancelled, &retried, &dead].contains(&&id));
        ids.insert(id);
    }
    assert_eq!(ids.len(), 5, "one callback per event");

    // The callbacks are in nobody's boxes, and the sender's feed did not hear of them.
    for (who, mailbox, expected) in [
        (&admin, "sent", vec![&dead, &retried, &cancelled, &inboxed]),
        (&admin, "received", vec![]),
        (&bob, "received", vec![&retried, &inboxed]),
    ] {
        let listed = who
            .api
            .get(&format!("/messages?box={mailbox}"))
            .await
            .expect(200)
            .body;
        let listed: Vec<&str> = listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|message| message["id"].as_str().unwrap())
            .collect();
        let expected: Vec<&str> = expected.iter().map(|id| id.as_str()).collect();
        assert_eq!(listed, expected, "{mailbox}");
    }
    // A callback is a message of its owner's, delivered like one.
    let one = ids.first().unwrap();
    let callback = status(&admin, one).await;
    assert_eq!(callback["status"], "delivered");
}

async fn a_failing_callback_endpoint_is_retried_and_callbacks_make_no_callbacks(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    let callbacks = Receiver::start(vec![
        Answer::status(503).header("retry-after", "30"),
        Answer::status(200),
    ])
    .await;
    // Every event, so a callback about a callback would show.
    let secret = subscribe(
        &admin,
        &callbacks.url,
        &["delivered", "retrying", "dead", "read", "cancelled"],
    )
    .await;
    let id = send(&admin, &bob, json!({})).await;
    let report = server.dispatch().await;
    assert_eq!((report.delivered, report.retried), (1, 1));
    let first = callbacks.received();
    assert_eq!(first.len(), 1);
    let callback_id = first[0].headers["webhook-id"].to_str().unwrap().to_owned();
    let waiting = status(&admin, &callback_id).await;
    assert_eq!(waiting["status"], "retrying");
    assert_eq!(waiting["last_error"], "HTTP 503: receiver says hi");
    assert!(ms(&waiting["deliver_at"]) >= server.clock.now_ms() + 30_000);

    server
        .clock
        .advance(ms(&waiting["deliver_at"]) - server.clock.now_ms());
    assert_eq!(server.dispatch().await.delivered, 1);
    assert_eq!(status(&admin, &callback_id).await["status"], "delivered");
    let all = callbacks.received();
    assert_eq!(
        all.len(),
        2,
        "the same callback again, and nothing about it"
    );
    assert_eq!(all[1].headers["webhook-id"], callback_id.as_str());
    assert_eq!(all[0].body, all[1].body, "the retry sends the same body");
    verify_with_reference_library(&secret, &all[1]).expect("a valid signature");
    let body: Value = serde_json::from_slice(&all[1].body).unwrap();
    assert_eq!(body["type"], "message.delivered");
    assert_eq!(body["data"]["message_id"], id);
    // Its history is a webhook delivery's: scheduled, a failed attempt, a delivered one.
    let history = admin
        .api
        .get(&format!("/messages/{callback_id}/events"))
        .await
        .expect(200)
        .body;
    let transitions: Vec<&str> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["type"] == "transition")
        .map(|event| event["to"].as_str().unwrap())
        .collect();
    assert_eq!(
        transitions,
        [
            "scheduled",
            "delivering",
            "retrying",
            "delivering",
            "delivered"
        ]
    );
    assert!(server.dispatch().await.claimed == 0, "nothing more to do");
}

async fn rotation_changes_the_secret_and_deleting_stops_callbacks(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    let callbacks = Receiver::start(vec![Answer::status(200)]).await;
    admin
        .api
        .post("/users/me/callbacks/rotate", json!({}))
        .await
        .problem(404, "not_found");
    let old = subscribe(&admin, &callbacks.url, &["delivered"]).await;
    let rotated = admin
        .api
        .post("/users/me/callbacks/rotate", json!({}))
        .await
        .expect(200)
        .body;
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(
        ms(&rotated["previous_secrets_valid_until"]),
        server.clock.now_ms() + 24 * 3_600_000
    );
    assert_eq!(
        admin.api.get("/users/me/callbacks").await.expect(200).body["active_secrets"],
        2
    );
    send(&admin, &bob, json!({})).await;
    server.dispatch().await;
    let during = &callbacks.received()[0];
    verify_with_reference_library(&new, during).expect("the new secret verifies");
    verify_with_reference_library(&old, during).expect("the old one still does, for a day");

    // Setting the endpoint again replaces every secret.
    let fresh = subscribe(&admin, &callbacks.url, &["delivered"]).await;
    send(&admin, &bob, json!({})).await;
    server.dispatch().await;
    let after = &callbacks.received()[1];
    verify_with_reference_library(&fresh, after).expect("the new endpoint's secret verifies");
    assert!(verify_with_reference_library(&new, after).is_err());
    assert!(verify_with_reference_library(&old, after).is_err());
    // The webhook secret of the same user signs nothing here.
    let webhook = admin
        .api
        .put("/users/me/webhook", json!({ "url": callbacks.url }))
        .await
        .expect(200)
        .body;
    assert!(verify_with_reference_library(webhook["secret"].as_str().unwrap(), after).is_err());

    // Deleted: later deliveries make no callback, and the endpoint is gone.
    admin.api.delete("/users/me/callbacks").await.expect(204);
    admin
        .api
        .get("/users/me/callbacks")
        .await
        .problem(404, "not_found");
    admin
        .api
        .delete("/users/me/callbacks")
        .await
        .problem(404, "not_found");
    let before = server.storage().count("messages").await;
    send(&admin, &bob, json!({})).await;
    let report = server.dispatch().await;
    assert_eq!(report.delivered, 1, "the message alone");
    assert_eq!(callbacks.received().len(), 2);
    assert_eq!(server.storage().count("messages").await, before + 1);

    // A callback made before the deletion and not delivered yet ends dead, saying why.
    subscribe(&admin, &callbacks.url, &["cancelled"]).await;
    let id = send(&admin, &bob, json!({ "delay_seconds": 60 })).await;
    admin
        .api
        .delete(&format!("/messages/{id}"))
        .await
        .expect(200);
    admin.api.delete("/users/me/callbacks").await.expect(204);
    let report = server.dispatch().await;
    assert_eq!((report.dead, report.delivered), (1, 0));
    assert_eq!(callbacks.received().len(), 2);
}

/// Asserts a 422 about `field` with exactly this `detail`.
#[track_caller]
fn refused(reply: crate::harness::Reply, field: &str, detail: &str) {
    let reply = reply.problem(422, "invalid_field");
    let mut body = reply.body.clone();
    body.as_object_mut().unwrap().remove("request_id");
    assert_eq!(
        body,
        json!({
            "type": "/problems/invalid_field",
            "title": "Invalid field",
            "status": 422,
            "detail": detail,
            "code": "invalid_field",
            "field": field,
        })
    );
}

async fn bad_input_is_refused_exactly_and_nothing_is_written(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.allow_private_networks = false;
    })
    .await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    let put = |body: Value| {
        let admin = &admin;
        async move { admin.api.put("/users/me/callbacks", body).await }
    };
    refused(
        put(json!({ "url": "ftp://example.com/cb", "events": ["delivered"] })).await,
        "/url",
        "/url: the URL must be http or https",
    );
    refused(
        put(json!({ "url": "http://127.0.0.1:9/cb", "events": ["delivered"] })).await,
        "/url",
        "/url: the host is a loopback address, which deliveries may not reach",
    );
    refused(
        put(json!({ "url": "https://10.1.2.3/cb", "events": ["delivered"] })).await,
        "/url",
        "/url: the host is a private address, which deliveries may not reach",
    );
    refused(
        put(json!({ "url": "https://example.com/cb", "events": ["delivered", "sent"] })).await,
        "/events/1",
        "/events/1: unknown event \"sent\"; expected one of delivered, retrying, dead, read, cancelled",
    );
    refused(
        put(json!({ "url": "https://example.com/cb", "events": [] })).await,
        "/events",
        "/events: choose at least one event of delivered, retrying, dead, read, cancelled",
    );
    put(json!({ "url": "https://example.com/cb" }))
        .await
        .problem(422, "invalid_field");
    put(json!({ "url": "https://example.com/cb", "events": ["delivered"], "secret": "x" }))
        .await
        .problem(422, "invalid_field");
    // A message may not pose as a callback.
    refused(
        admin
            .api
            .post(
                "/messages",
                json!({
                    "recipient_id": bob.user_id(),
                    "content": "{}",
                    "content_type": "application/vnd.dms.callback+json",
                }),
            )
            .await,
        "/content_type",
        "/content_type: application/vnd.dms.callback+json is reserved for the status callbacks DMS sends (PUT /users/me/callbacks)",
    );
    admin
        .api
        .get("/users/me/callbacks")
        .await
        .problem(404, "not_found");
    assert_eq!(server.storage().count("callbacks").await, 0);
    assert_eq!(server.storage().count("messages").await, 0);

    // A public URL is taken (nothing is sent until a message changes).
    let set = admin
        .api
        .put(
            "/users/me/callbacks",
            json!({ "url": "https://example.com/cb", "events": ["dead", "dead"] }),
        )
        .await
        .expect(200);
    assert_eq!(set.body["events"], json!(["dead"]));
    let shown = admin.api.get("/users/me/callbacks").await.expect(200).body;
    assert_eq!(
        shown["events"],
        json!(["dead"]),
        "a repeated event counts once"
    );
    assert_eq!(server.storage().count("callbacks").await, 1);
}

async fn a_deleted_sender_is_told_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    let sam = server.member(&admin, "sam").await;
    let callbacks = Receiver::start(vec![Answer::status(200)]).await;
    subscribe(&sam, &callbacks.url, &["delivered"]).await;
    send(&sam, &bob, json!({ "delay_seconds": 60 })).await;
    admin
        .api
        .delete(&format!("/users/{}", sam.user_id()))
        .await
        .expect(204);
    server.clock.advance(60_000);
    let report = server.dispatch().await;
    assert_eq!(report.delivered, 1, "the message, and no callback");
    assert!(callbacks.received().is_empty());
    assert_eq!(server.storage().count("callbacks").await, 0);
}
