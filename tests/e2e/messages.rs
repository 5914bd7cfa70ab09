//! Messages end to end on both deployments' storage: submit → validate → plan → store →
//! schedule → dispatch → deliver → status, with retries, dead letters, cancel, reschedule,
//! idempotency and encryption at rest. The dispatcher is driven by hand on a manual clock.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Answer, Backend, Login, Receiver, TestServer, ms, on_both_backends, status};
use crate::webhook_signature::verify_with_reference_library;

on_both_backends!(
    a_delayed_message_is_scheduled_then_delivered_to_the_inbox,
    a_webhook_delivery_retries_then_succeeds_signed,
    cancel_stops_delivery_only_while_the_message_waits,
    cancel_racing_the_dispatcher_lets_exactly_one_win,
    reschedule_and_deliver_now_go_through_the_delay_policy,
    an_idempotency_key_replays_the_first_response,
    rejections_name_the_plugin_and_its_code,
    max_attempts_dead_letter_then_replay_delivers,
    a_410_disables_the_webhook_and_a_302_is_not_followed,
    bulk_replay_is_paced,
    only_the_sender_the_recipient_and_admins_see_a_message,
    content_is_encrypted_at_rest_and_swapped_ciphertexts_fail_clearly,
    webhook_secrets_rotate_with_an_overlap,
    listing_is_newest_first_with_offsets_and_cursors,
    a_rotated_key_seals_new_messages_and_opens_old_ones,
    a_lease_ending_now_is_taken_over,
);

/// The admin and a member `bob`.
async fn admin_and_bob(server: &TestServer) -> (Login, Login) {
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    (admin, bob)
}

async fn send(from: &Login, to: &Login, extra: Value) -> crate::harness::Reply {
    let mut body = json!({ "recipient_id": to.user_id(), "content": "hello bob" });
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    from.api.post("/messages", body).await
}

fn id_of(reply: &crate::harness::Reply) -> String {
    reply.body["id"].as_str().unwrap().to_owned()
}

async fn a_delayed_message_is_scheduled_then_delivered_to_the_inbox(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (admin, bob) = admin_and_bob(&server).await;
    let mut inbox = server
        .state
        .hub
        .subscribe(
            &bob.tenant_id().parse().unwrap(),
            &bob.user_id().parse().unwrap(),
            dms::domain::ids::SessionId::new(),
        )
        .expect("under the caps");

    let sent = send(
        &admin,
        &bob,
        json!({ "delay_seconds": 5, "metadata": { "subject": "hi" } }),
    )
    .await
    .expect(201);
    let id = id_of(&sent);
    assert!(id.starts_with("msg_"));
    assert_eq!(sent.headers["location"], format!("/messages/{id}"));
    assert_eq!(sent.body["status"], "scheduled");
    assert_eq!(
        ms(&sent.body["deliver_at"]),
        ms(&sent.body["created_at"]) + 5000
    );
    assert_eq!(status(&admin, &id).await["status"], "scheduled");
    // Not yet in bob's inbox: a scheduled message is invisible to its recipient.
    bob.api
        .get(&format!("/messages/{id}"))
        .await
        .problem(404, "not_found");

    assert_eq!(server.dispatch().await.delivered, 0, "not due yet");
    server.clock.advance(5_000);
    let report = server.dispatch().await;
    assert_eq!(report.delivered, 1, "{report:?}");

    let now = status(&admin, &id).await;
    assert_eq!(now["status"], "delivered");
    assert_eq!(now["attempts"], 1);
    assert!(now["delivered_at"].is_string());
    let dms::realtime::Next::Event(event) = inbox.next().await else {
        panic!("pushed to bob's live connection");
    };
    let event = event.to_json();
    assert_eq!(event["type"], "message");
    assert_eq!(event["cursor"], 1);
    assert_eq!(event["message"]["id"], id);
    assert_eq!(event["message"]["content"], "hello bob");

    let received = bob.api.get("/messages?box=received").await.expect(200).body;
    assert_eq!(received["items"][0]["id"], id);
    assert_eq!(received["items"][0]["content"], "hello bob");
    assert_eq!(received["items"][0]["metadata"]["subject"], "hi");

    bob.api
        .post(&format!("/messages/{id}/read"), json!({}))
        .await
        .expect(200);
    let read = status(&admin, &id).await;
    assert_eq!(read["status"], "read");
    assert!(read["read_at"].is_string());
    bob.api
        .post(&format!("/messages/{id}/read"), json!({}))
        .await
        .expect(200);

    let events = admin
        .api
        .get(&format!("/messages/{id}/events"))
        .await
        .expect(200)
        .body;
    let items = events["items"].as_array().unwrap();
    let transitions: Vec<(Value, Value)> = items
        .iter()
        .filter(|e| e["type"] == "transition")
        .map(|e| (e["from"].clone(), e["to"].clone()))
        .collect();
    assert_eq!(
        transitions,
        vec![
            (Value::Null, json!("scheduled")),
            (json!("scheduled"), json!("delivering")),
            (json!("delivering"), json!("delivered")),
            (json!("delivered"), json!("read")),
        ]
    );
    let deciders: Vec<&str> = items
        .iter()
        .filter_map(|e| e["plugin"]["name"].as_str())
        .collect();
    assert_eq!(deciders, ["content-guard", "standard-delay", "inbox"]);
    for plugin in items.iter().filter(|e| e["plugin"].is_object()) {
        assert!(
            plugin["plugin"]["digest"]
                .as_str()
                .unwrap()
                .starts_with("sha256:")
        );
        assert!(plugin["duration_ms"].is_u64());
    }
}

async fn a_webhook_delivery_retries_then_succeeds_signed(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (admin, bob) = admin_and_bob(&server).await;
    let receiver = Receiver::start(vec![
        Answer::status(500),
        Answer::status(429).header("retry-after", "7"),
        Answer::status(200),
    ])
    .await;
    let endpoint = bob
        .api
        .put("/users/me/webhook", json!({ "url": receiver.url }))
        .await
        .expect(200);
    let secret = endpoint.body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));

    let id = id_of(
        &send(&admin, &bob, json!({ "channel": "webhook" }))
            .await
            .expect(201),
    );
    assert_eq!(server.dispatch().await.retried, 1);
    let first = status(&admin, &id).await;
    assert_eq!(first["status"], "retrying");
    assert_eq!(first["last_error"], "HTTP 500: receiver says hi");

    server
        .clock
        .advance(ms(&first["deliver_at"]).saturating_sub(server.clock.now_ms()));
    assert_eq!(server.dispatch().await.retried, 1);
    let second = status(&admin, &id).await;
    assert_eq!(second["last_error"], "HTTP 429: receiver says hi");
    assert!(
        ms(&second["deliver_at"]) >= server.clock.now_ms() + 7_000,
        "the retry honours Retry-After"
    );

    server
        .clock
        .advance(ms(&second["deliver_at"]) - server.clock.now_ms());
    assert_eq!(server.dispatch().await.delivered, 1);
    let done = status(&admin, &id).await;
    assert_eq!(done["status"], "delivered");
    assert_eq!(done["attempts"], 3);

    let requests = receiver.received();
    assert_eq!(requests.len(), 3);
    assert!(
        requests
            .iter()
            .all(|r| r.headers["webhook-id"] == id.as_str())
    );
    verify_with_reference_library(&secret, &requests[2])
        .expect("a valid Standard Webhooks signature");
    let body: Value = serde_json::from_slice(&requests[2].body).unwrap();
    assert_eq!(body["data"]["id"], id);
    assert_eq!(body["data"]["content"], "hello bob");
}

async fn cancel_stops_delivery_only_while_the_message_waits(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (admin, bob) = admin_and_bob(&server).await;
    let carol = server.member(&admin, "carol").await;
    let id = id_of(
        &send(&bob, &carol, json!({ "delay_seconds": 60 }))
            .await
            .expect(201),
    );

    carol
        .api
        .delete(&format!("/messages/{id}"))
        .await
        .problem(404, "not_found");
    let cancelled = bob.api.delete(&format!("/messages/{id}")).await.expect(200);
    assert_eq!(cancelled.body["status"], "cancelled");
    server.clock.advance(61_000);
    assert_eq!(server.dispatch().await.delivered, 0);
    let again = bob
        .api
        .delete(&format!("/messages/{id}"))
        .await
        .problem(409, "conflict");
    assert_eq!(again.body["message_status"], "cancelled");
    assert_eq!(
        again.body["detail"],
        "the message is cancelled; it can no longer be changed this way"
    );

    let delivered = id_of_delivered(&server, &bob, &carol).await;
    bob.api
        .delete(&format!("/messages/{delivered}"))
        .await
        .problem(409, "conflict");
    // An admin may cancel anyone's waiting message.
    let waiting = id_of(
        &send(&bob, &carol, json!({ "delay_seconds": 60 }))
            .await
            .expect(201),
    );
    admin
        .api
        .delete(&format!("/messages/{waiting}"))
        .await
        .expect(200);
}

async fn id_of_delivered(server: &TestServer, from: &Login, to: &Login) -> String {
    let id = id_of(&send(from, to, json!({})).await.expect(201));
    server.dispatch().await;
    assert_eq!(status(from, &id).await["status"], "delivered");
    id
}

async fn cancel_racing_the_dispatcher_lets_exactly_one_win(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (admin, bob) = admin_and_bob(&server).await;
    let (mut cancelled, mut delivered) = (0, 0);
    for _ in 0..20 {
        let id = id_of(&send(&admin, &bob, json!({})).await.expect(201));
        let path = format!("/messages/{id}");
        let (cancel, report) = tokio::join!(admin.api.delete(&path), server.dispatch());
        let final_status = status(&admin, &id).await["status"].clone();
        match cancel.status {
            200 => {
                cancelled += 1;
                assert_eq!(final_status, "cancelled");
                assert_eq!(report.delivered, 0);
            }
            409 => {
                delivered += 1;
                assert_ne!(final_status, "cancelled");
            }
            other => panic!("unexpected cancel status {other}: {}", cancel.body),
        }
        // Whatever happened, at most one outcome exists: never both.
        let events = admin
            .api
            .get(&format!("/messages/{id}/events"))
            .await
            .expect(200)
            .body;
        let ends: Vec<_> = events["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["to"] == "cancelled" || e["to"] == "delivered")
            .collect();
        assert_eq!(ends.len(), 1, "exactly one wins: {ends:?}");
    }
    assert_eq!(cancelled + delivered, 20);
}

async fn reschedule_and_deliver_now_go_through_the_delay_policy(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (admin, bob) = admin_and_bob(&server).await;
    let id = id_of(
        &send(&admin, &bob, json!({ "delay_seconds": 3600 }))
            .await
            .expect(201),
    );
    let moved = admin
        .api
        .send(
            reqwest::Method::PATCH,
            &format!("/messages/{id}"),
            Some(json!({ "delay_seconds": 60 })),
        )
        .await
        .expect(200);
    assert_eq!(
        ms(&moved.body["deliver_at"]),
        server.clock.now_ms() + 60_000
    );
    let too_far = admin
        .api
        .send(
            reqwest::Method::PATCH,
            &format!("/messages/{id}"),
            Some(json!({ "delay_seconds": 400 * 86_400 })),
        )
        .await
        .problem(422, "rejected");
    assert_eq!(too_far.body["reason_code"], "delay_too_long");
    assert_eq!(too_far.body["plugin"], "standard-delay");
    admin
        .api
        .send(
            reqwest::Method::PATCH,
            &format!("/messages/{id}"),
            Some(json!({})),
        )
        .await
        .problem(422, "invalid_field");

    admin
        .api
        .post(&format!("/messages/{id}/deliver-now"), json!({}))
        .await
        .expect(200);
    assert_eq!(server.dispatch().await.delivered, 1);
    admin
        .api
        .send(
            reqwest::Method::PATCH,
            &format!("/messages/{id}"),
            Some(json!({ "delay_seconds": 60 })),
        )
        .await
        .problem(409, "conflict");
    admin
        .api
        .post(&format!("/messages/{id}/deliver-now"), json!({}))
        .await
        .problem(409, "conflict");
}

async fn an_idempotency_key_replays_the_first_response(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (admin, bob) = admin_and_bob(&server).await;
    let body = json!({ "recipient_id": bob.user_id(), "content": "once", "delay_seconds": 10 });
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let post = |body: &Value, key: &str| {
        client
            .post(format!("{}/messages", server.url))
            .bearer_auth(&admin.token)
            .header("idempotency-key", key)
            .json(body)
            .send()
    };
    let first = post(&body, "order-42").await.unwrap();
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = serde_json::from_slice(&first.bytes().await.unwrap()).unwrap();

    // The same body, keys reordered: the same request.
    let reordered =
        json!({ "delay_seconds": 10, "content": "once", "recipient_id": bob.user_id() });
    let again = post(&reordered, "order-42").await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = serde_json::from_slice(&again.bytes().await.unwrap()).unwrap();
    assert_eq!(again, first);

    let other_body = json!({ "recipient_id": bob.user_id(), "content": "twice" });
    let refused = post(&other_body, "order-42").await.unwrap();
    assert_eq!(refused.status(), 422);
    let refused: Value = serde_json::from_slice(&refused.bytes().await.unwrap()).unwrap();
    assert_eq!(refused["code"], "idempotency_key_reused");

    assert_eq!(post(&other_body, "order-43").await.unwrap().status(), 201);
    let sent = admin.api.get("/messages?box=sent").await.expect(200).body;
    assert_eq!(
        sent["items"].as_array().unwrap().len(),
        2,
        "one message per key"
    );
}

async fn rejections_name_the_plugin_and_its_code(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (admin, bob) = admin_and_bob(&server).await;
    let empty = send(&admin, &bob, json!({ "content": "" }))
        .await
        .problem(422, "rejected");
    assert_eq!(empty.body["reason_code"], "content_empty");
    assert_eq!(empty.body["plugin"], "content-guard");
    assert_eq!(
        empty.body["detail"],
        "content is empty; send at least one byte"
    );
    let far = send(
        &admin,
        &bob,
        json!({ "deliver_at": "2999-01-01T00:00:00Z" }),
    )
    .await
    .problem(422, "rejected");
    assert_eq!(far.body["reason_code"], "delay_too_long");
    assert!(
        far.body["detail"]
            .as_str()
            .unwrap()
            .contains("the limit (max_delay) is 365d")
    );

    for (extra, field) in [
        (
            json!({ "delay_seconds": 5, "deliver_at": "2030-01-01T00:00:00Z" }),
            "/deliver_at",
        ),
        (json!({ "deliver_at": "tomorrow" }), "/deliver_at"),
        (json!({ "channel": "carrier-pigeon" }), "/channel"),
        (
            json!({ "metadata": { "big": "x".repeat(17 * 1024) } }),
            "/metadata",
        ),
        (json!({ "recipient_id": "usr_nope" }), "/recipient_id"),
        (
            json!({ "recipient_id": "usr_01JZZZZZZZZZZZZZZZZZZZZZZZ" }),
            "/recipient_id",
        ),
        (json!({ "content": 5 }), "/content"),
    ] {
        let reply = send(&admin, &bob, extra.clone())
            .await
            .problem(422, "invalid_field");
        assert_eq!(reply.body["field"], field, "{extra}");
    }
    // Nothing was stored by any of them.
    let sent = admin.api.get("/messages?box=sent").await.expect(200).body;
    assert!(sent["items"].as_array().unwrap().is_empty());
}

async fn max_attempts_dead_letter_then_replay_delivers(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (admin, bob) = admin_and_bob(&server).await;
    let receiver = Receiver::start(
        vec![Answer::status(503); 8]
            .into_iter()
            .chain([Answer::status(200)])
            .collect(),
    )
    .await;
    bob.api
        .put("/users/me/webhook", json!({ "url": receiver.url }))
        .await
        .expect(200);
    let id = id_of(
        &send(&admin, &bob, json!({ "channel": "webhook" }))
            .await
            .expect(201),
    );
    for attempt in 1..=8 {
        server.dispatch().await;
        let now = status(&admin, &id).await;
        assert_eq!(now["attempts"], attempt);
        if attempt < 8 {
            assert_eq!(now["status"], "retrying", "attempt {attempt}");
            server
                .clock
                .advance(ms(&now["deliver_at"]).saturating_sub(server.clock.now_ms()));
        } else {
            assert_eq!(now["status"], "dead");
            assert_eq!(
                now["last_error"],
                "gave up after 8 attempts (max_attempts); last error: HTTP 503: receiver says hi"
            );
        }
    }
    let dead = admin.api.get("/dead-letters").await.expect(200).body;
    assert_eq!(dead["items"][0]["id"], id);
    bob.api
        .get("/dead-letters")
        .await
        .problem(403, "admin_required");

    let replayed = admin
        .api
        .post(&format!("/dead-letters/{id}/replay"), json!({}))
        .await
        .expect(200);
    assert_eq!(replayed.body["status"], "scheduled");
    assert_eq!(replayed.body["attempts"], 0);
    assert_eq!(server.dispatch().await.delivered, 1);
    assert_eq!(status(&admin, &id).await["status"], "delivered");
    admin
        .api
        .post(&format!("/dead-letters/{id}/replay"), json!({}))
        .await
        .problem(404, "not_found");
}

async fn a_410_disables_the_webhook_and_a_302_is_not_followed(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (admin, bob) = admin_and_bob(&server).await;
    let gone = Receiver::start(vec![Answer::status(410)]).await;
    bob.api
        .put("/users/me/webhook", json!({ "url": gone.url }))
        .await
        .expect(200);
    let first = id_of(
        &send(&admin, &bob, json!({ "channel": "webhook" }))
            .await
            .expect(201),
    );
    assert_eq!(server.dispatch().await.dead, 1);
    assert_eq!(
        status(&admin, &first).await["last_error"],
        "the endpoint is gone: HTTP 410: receiver says hi"
    );
    let webhook = bob.api.get("/users/me/webhook").await.expect(200).body;
    assert_eq!(webhook["disabled_reason"], "the endpoint answered 410 Gone");
    let second = id_of(
        &send(&admin, &bob, json!({ "channel": "webhook" }))
            .await
            .expect(201),
    );
    server.dispatch().await;
    assert!(
        status(&admin, &second).await["last_error"]
            .as_str()
            .unwrap()
            .starts_with("the recipient's webhook is disabled")
    );
    assert_eq!(
        gone.received().len(),
        1,
        "nothing more was sent to a gone endpoint"
    );

    let redirecting = Receiver::start(vec![
        Answer::status(302).header("location", "http://127.0.0.1:9/elsewhere"),
    ])
    .await;
    bob.api
        .put("/users/me/webhook", json!({ "url": redirecting.url }))
        .await
        .expect(200);
    let third = id_of(
        &send(&admin, &bob, json!({ "channel": "webhook" }))
            .await
            .expect(201),
    );
    assert_eq!(server.dispatch().await.dead, 1);
    assert_eq!(
        status(&admin, &third).await["last_error"],
        // The location's path stays the receiver's (it may hold a token).
        "HTTP 302: receiver says hi; redirects are not followed (location: http://127.0.0.1:9/…)"
    );
    assert_eq!(redirecting.received().len(), 1);
}

async fn bulk_replay_is_paced(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (admin, bob) = admin_and_bob(&server).await;
    // No webhook set: each webhook message fails permanently.
    for _ in 0..3 {
        send(&admin, &bob, json!({ "channel": "webhook" }))
            .await
            .expect(201);
    }
    assert_eq!(server.dispatch().await.dead, 3);
    let now = server.clock.now_ms();
    let replayed = admin
        .api
        .post(
            "/dead-letters/replay",
            json!({ "recipient_id": bob.user_id(), "limit": 10 }),
        )
        .await
        .expect(202);
    assert_eq!(replayed.body["replayed"], 3);
    // 100 per second by default: 10 ms apart.
    assert_eq!(ms(&replayed.body["last_due_at"]), now + 20);
    admin
        .api
        .post("/dead-letters/replay", json!({ "limit": 0 }))
        .await
        .problem(422, "invalid_field");
    let dead = admin.api.get("/dead-letters").await.expect(200).body;
    assert!(dead["items"].as_array().unwrap().is_empty());
    let scheduled = admin
        .api
        .get("/messages?box=all&status=scheduled")
        .await
        .expect(200)
        .body;
    assert_eq!(scheduled["items"].as_array().unwrap().len(), 3);

    // Deleting a dead letter.
    server.dispatch().await;
    server.clock.advance(100);
    server.dispatch().await;
    let dead = admin.api.get("/dead-letters").await.expect(200).body;
    let victim = dead["items"][0]["id"].as_str().unwrap().to_owned();
    admin
        .api
        .delete(&format!("/dead-letters/{victim}"))
        .await
        .expect(204);
    admin
        .api
        .get(&format!("/messages/{victim}"))
        .await
        .problem(404, "not_found");
}

async fn only_the_sender_the_recipient_and_admins_see_a_message(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (admin, bob) = admin_and_bob(&server).await;
    let carol = server.member(&admin, "carol").await;
    let id = id_of(&send(&carol, &bob, json!({})).await.expect(201));
    carol.api.get(&format!("/messages/{id}")).await.expect(200);
    admin.api.get(&format!("/messages/{id}")).await.expect(200);
    bob.api
        .get(&format!("/messages/{id}"))
        .await
        .problem(404, "not_found");
    server.dispatch().await;
    bob.api.get(&format!("/messages/{id}")).await.expect(200);
    // The recipient does not see the sender's history.
    bob.api
        .get(&format!("/messages/{id}/events"))
        .await
        .problem(404, "not_found");
    let dave = server.member(&admin, "dave").await;
    for path in ["", "/status", "/events"] {
        dave.api
            .get(&format!("/messages/{id}{path}"))
            .await
            .problem(404, "not_found");
    }
    dave.api
        .get("/messages?box=all")
        .await
        .problem(403, "admin_required");
    bob.api
        .post(&format!("/messages/{id}/read"), json!({}))
        .await
        .expect(200);
    carol
        .api
        .post(&format!("/messages/{id}/read"), json!({}))
        .await
        .problem(403, "forbidden");
}

async fn content_is_encrypted_at_rest_and_swapped_ciphertexts_fail_clearly(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (admin, bob) = admin_and_bob(&server).await;
    let secret_text = "the-launch-code-is-0000";
    let a = id_of(
        &send(&admin, &bob, json!({ "content": secret_text }))
            .await
            .expect(201),
    );
    let b = id_of(
        &send(
            &admin,
            &bob,
            json!({ "content": "another message entirely" }),
        )
        .await
        .expect(201),
    );
    let raw = server.raw_bytes().await;
    assert!(!raw.is_empty());
    assert!(
        !raw.windows(secret_text.len())
            .any(|w| w == secret_text.as_bytes()),
        "no plaintext content in the database"
    );
    assert_eq!(
        admin
            .api
            .get(&format!("/messages/{a}"))
            .await
            .expect(200)
            .body["content"],
        secret_text
    );

    // Swap the two sealed contents: each now fails to open, instead of showing the other's.
    server
        .sql(&format!(
            "UPDATE messages SET content = (SELECT content FROM messages WHERE id = '{b}'), \
             nonce = (SELECT nonce FROM messages WHERE id = '{b}') WHERE id = '{a}'"
        ))
        .await;
    let broken = admin
        .api
        .get(&format!("/messages/{a}"))
        .await
        .problem(500, "content_unreadable");
    assert_eq!(
        broken.body["detail"],
        format!(
            "the stored content of {a} cannot be decrypted: the sealed value does not belong to this record or was altered (authentication failed)"
        )
    );
    admin.api.get(&format!("/messages/{b}")).await.expect(200);
    // Status reads never open the content: they still answer for the broken one.
    assert_eq!(status(&admin, &a).await["status"], "scheduled");
    admin
        .api
        .get(&format!("/messages/{a}/events"))
        .await
        .expect(200);
}

async fn webhook_secrets_rotate_with_an_overlap(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (admin, bob) = admin_and_bob(&server).await;
    let receiver = Receiver::start(vec![Answer::status(204)]).await;
    bob.api
        .get("/users/me/webhook")
        .await
        .problem(404, "not_found");
    bob.api
        .post("/users/me/webhook/rotate", json!({}))
        .await
        .problem(404, "not_found");
    for url in [
        "ftp://example.com/hook",
        "not a url",
        "https://",
        "/relative/path",
    ] {
        bob.api
            .put("/users/me/webhook", json!({ "url": url }))
            .await
            .problem(422, "invalid_field");
    }
    let old = bob
        .api
        .put("/users/me/webhook", json!({ "url": receiver.url }))
        .await
        .expect(200);
    let old = old.body["secret"].as_str().unwrap().to_owned();
    let rotated = bob
        .api
        .post("/users/me/webhook/rotate", json!({}))
        .await
        .expect(200);
    let new = rotated.body["secret"].as_str().unwrap().to_owned();
    assert_eq!(
        ms(&rotated.body["previous_secrets_valid_until"]),
        server.clock.now_ms() + 24 * 3_600_000
    );
    let shown = bob.api.get("/users/me/webhook").await.expect(200).body;
    assert_eq!(shown["active_secrets"], 2);
    assert!(shown.get("secret").is_none(), "secrets are shown once");

    send(&admin, &bob, json!({ "channel": "webhook" }))
        .await
        .expect(201);
    server.dispatch().await;
    let during = &receiver.received()[0];
    verify_with_reference_library(&new, during).expect("the new secret verifies");
    verify_with_reference_library(&old, during).expect("the old secret still verifies");
    let signatures = |received: &crate::harness::Received| {
        received.headers["webhook-signature"]
            .to_str()
            .unwrap()
            .split(' ')
            .count()
    };
    assert_eq!(signatures(during), 2);

    server.clock.advance(24 * 3_600_000 + 1);
    // A day later the access tokens have expired: log in again.
    let admin = server.admin().await;
    let bob = server.login("bob", "member-password").await;
    send(&admin, &bob, json!({ "channel": "webhook" }))
        .await
        .expect(201);
    server.dispatch().await;
    // The reference library checks timestamps against the real clock, which this test moved
    // a day past; the retired secret shows as the missing second signature.
    let after = &receiver.received()[1];
    assert_eq!(signatures(after), 1, "the old secret retired");

    bob.api.delete("/users/me/webhook").await.expect(204);
    let orphan = id_of(
        &send(&admin, &bob, json!({ "channel": "webhook" }))
            .await
            .expect(201),
    );
    server.dispatch().await;
    let orphaned = status(&admin, &orphan).await;
    assert_eq!(orphaned["status"], "dead");
    assert!(
        orphaned["last_error"]
            .as_str()
            .unwrap()
            .contains("has no webhook endpoint")
    );
}

async fn listing_is_newest_first_with_offsets_and_cursors(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (admin, bob) = admin_and_bob(&server).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(id_of(
            &send(&admin, &bob, json!({ "content": format!("n{n}") }))
                .await
                .expect(201),
        ));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let newest: Vec<String> = ids.iter().rev().cloned().collect();
    let page = admin
        .api
        .get("/messages?box=sent&limit=2")
        .await
        .expect(200)
        .body;
    let got: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [newest[0].as_str(), newest[1].as_str()]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let next = admin
        .api
        .get(&format!("/messages?box=sent&limit=2&cursor={cursor}"))
        .await
        .expect(200)
        .body;
    assert_eq!(next["items"][0]["id"], newest[2]);
    // An offset with a cursor skips that many after it.
    let skipped = admin
        .api
        .get(&format!(
            "/messages?box=sent&limit=2&cursor={cursor}&offset=1"
        ))
        .await
        .expect(200)
        .body;
    assert_eq!(skipped["items"][0]["id"], newest[3]);
    let offset = admin
        .api
        .get("/messages?box=sent&limit=2&offset=4")
        .await
        .expect(200)
        .body;
    assert_eq!(offset["items"][0]["id"], newest[4]);
    assert!(offset["next_cursor"].is_null());
    admin
        .api
        .get("/messages?box=sent&cursor=abc")
        .await
        .problem(400, "invalid_query");
    admin
        .api
        .get("/messages?box=elsewhere")
        .await
        .problem(400, "invalid_query");
    admin
        .api
        .get("/messages?status=scheduled&limit=100")
        .await
        .expect(200);
    // Bob sees nothing until delivery.
    assert!(
        bob.api.get("/messages?box=received").await.expect(200).body["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    server.dispatch().await;
    assert_eq!(
        bob.api.get("/messages?box=received").await.expect(200).body["items"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
}

async fn a_rotated_key_seals_new_messages_and_opens_old_ones(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (admin, bob) = admin_and_bob(&server).await;
    let old = id_of(
        &send(&admin, &bob, json!({ "content": "sealed with test1" }))
            .await
            .expect(201),
    );

    let new_key = dms::store::crypto::Keyring::generate_entry("test2");
    let old_key = crate::harness::ENCRYPTION_KEYS.to_owned();
    let rotated = format!("{new_key},{old_key}");
    let server = server
        .restart_with(|config| config.encryption_keys = dms::config::Secret::new(rotated))
        .await;
    let admin = server.admin().await;
    let bob = server.login("bob", "member-password").await;
    assert_eq!(
        admin
            .api
            .get(&format!("/messages/{old}"))
            .await
            .expect(200)
            .body["content"],
        "sealed with test1"
    );
    let new = id_of(
        &send(&admin, &bob, json!({ "content": "sealed with test2" }))
            .await
            .expect(201),
    );
    let key_ids = server
        .sql_column(&format!(
            "SELECT key_id FROM messages WHERE id IN ('{old}', '{new}') ORDER BY id"
        ))
        .await;
    assert_eq!(key_ids, ["test1", "test2"]);

    // Dropping the old key too early makes its messages unreadable, and says why.
    let server = server
        .restart_with(|config| config.encryption_keys = dms::config::Secret::new(new_key))
        .await;
    let admin = server.admin().await;
    let unreadable = admin
        .api
        .get(&format!("/messages/{old}"))
        .await
        .problem(500, "content_unreadable");
    assert!(
        unreadable.body["detail"]
            .as_str()
            .unwrap()
            .contains("sealed with key \"test1\", which is not in DMS_ENCRYPTION_KEYS"),
        "{}",
        unreadable.body
    );
    admin.api.get(&format!("/messages/{new}")).await.expect(200);
}

/// The index hands out a lease at the millisecond it ends; the database must agree that it
/// has ended, or the message drops out of the index until the reconciler's next pass.
async fn a_lease_ending_now_is_taken_over(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (admin, bob) = admin_and_bob(&server).await;
    let id = id_of(&send(&admin, &bob, json!({})).await.expect(201));
    let until = server.clock.now_ms() + 5_000;
    server
        .sql(&format!(
            "UPDATE message_states SET status = 'delivering', lease_token = 'a-node-that-died', \
             lease_until_ms = {until} WHERE message_id = '{id}'"
        ))
        .await;
    server.clock.advance(until - server.clock.now_ms());
    let round = server.dispatch().await;
    assert_eq!((round.delivered, round.skipped), (1, 0), "{round:?}");
    assert_eq!(status(&admin, &id).await["status"], "delivered");
}
