//! The message core's commit and index rules, on both deployments: a stale outcome inside a
//! committed group is refused alone, a claim of a message the index had too early puts it back
//! at its real time, ended messages are pruned after their retention (with their history and
//! their counts), the counts kept per status agree with the messages, and a database written
//! before the narrow message rows is migrated with its messages intact.

use std::collections::BTreeMap;

use dms::domain::feed;
use dms::domain::ids::MessageId;
use dms::domain::message::{Event, Status};
use dms::store::Outcome;
use serde_json::{Value, json};

use crate::harness::{Backend, Login, OldDatabase, TestServer, on_both_backends, status};

on_both_backends!(
    a_stale_outcome_in_a_committed_group_is_refused_alone,
    a_claim_of_a_message_not_due_yet_puts_it_back_at_its_time,
    ended_messages_are_pruned_after_their_retention,
    the_kept_counts_agree_with_the_messages,
);

async fn admin_and_bob(server: &TestServer) -> (Login, Login) {
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    (admin, bob)
}

async fn send(from: &Login, to: &Login, extra: Value) -> String {
    let mut body = json!({ "recipient_id": to.user_id(), "content": "hello bob" });
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    let reply = from.api.post("/messages", body).await.expect(201);
    reply.body["id"].as_str().unwrap().to_owned()
}

async fn a_stale_outcome_in_a_committed_group_is_refused_alone(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (admin, bob) = admin_and_bob(&server).await;
    let ids: Vec<MessageId> = [
        send(&admin, &bob, json!({})).await,
        send(&admin, &bob, json!({})).await,
    ]
    .iter()
    .map(|id| id.parse().unwrap())
    .collect();
    let now = server.clock.now_ms();
    let store = &server.state.store;
    let claimed = store
        .begin_deliveries(&ids, "token-a", now, now + 30_000)
        .await
        .unwrap();
    assert_eq!(claimed.messages.len(), 2);
    let outcome = |n: usize, token: &str| {
        let (message, previous) = &claimed.messages[n];
        Outcome {
            id: message.id.clone(),
            tenant_id: message.tenant_id.clone(),
            token: token.to_owned(),
            status: Status::Delivered,
            deliver_at_ms: None,
            error: None,
            events: vec![
                Event::transition(now, Some(*previous), Status::Delivering, "claimed"),
                Event::transition(
                    now,
                    Some(Status::Delivering),
                    Status::Delivered,
                    "delivered",
                ),
            ],
            feed: feed::for_sender(message, Status::Delivered, None, now)
                .into_iter()
                .collect(),
            at_ms: now,
            callback: None,
        }
    };
    // One group: the first under its claim's token, the second under a token no claim holds.
    let committed = store
        .finish_deliveries(&[outcome(0, "token-a"), outcome(1, "a-stale-token")])
        .await
        .unwrap()
        .committed;
    assert_eq!(committed, [true, false]);
    let (first, second) = (&claimed.messages[0].0.id, &claimed.messages[1].0.id);
    assert_eq!(status(&admin, first.as_str()).await["status"], "delivered");
    assert_eq!(
        status(&admin, second.as_str()).await["status"],
        "delivering"
    );
    let history = |id: &MessageId| {
        let admin = &admin;
        let id = id.clone();
        async move {
            admin
                .api
                .get(&format!("/messages/{id}/events"))
                .await
                .expect(200)
                .body["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|event| event["to"].as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        history(first).await,
        ["scheduled", "delivering", "delivered"]
    );
    assert_eq!(
        history(second).await,
        ["scheduled"],
        "nothing of the stale one"
    );
    // The sender's feed got the committed one's status event only.
    let page = store
        .feed_after(
            &admin.tenant_id().parse().unwrap(),
            &admin.user_id().parse().unwrap(),
            0,
            100,
        )
        .await
        .unwrap();
    let about: Vec<&str> = page
        .events
        .iter()
        .filter_map(|event| event.body["message_id"].as_str())
        .collect();
    assert_eq!(about, [first.as_str()]);
    let (truth, kept) = server.status_counts().await;
    assert_eq!(truth, kept);
    assert_eq!(kept["delivered"], 1);
    assert_eq!(kept["delivering"], 1);
}

async fn a_claim_of_a_message_not_due_yet_puts_it_back_at_its_time(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (admin, bob) = admin_and_bob(&server).await;
    let id = send(&admin, &bob, json!({ "delay_seconds": 60 })).await;
    let due = crate::harness::ms(&status(&admin, &id).await["deliver_at"]);
    // The index has it too early (an index written before a reschedule, say).
    let message: MessageId = id.parse().unwrap();
    server
        .state
        .schedule
        .add(&message, server.clock.now_ms())
        .await
        .unwrap();
    let round = server.dispatch().await;
    assert_eq!((round.claimed, round.delivered), (1, 0), "{round:?}");
    assert_eq!(status(&admin, &id).await["status"], "scheduled");
    assert_eq!(status(&admin, &id).await["attempts"], 0);
    assert_eq!(
        server.state.schedule.next_due().await.unwrap(),
        Some(due),
        "back in the index at its real time"
    );
    server.clock.advance(due - server.clock.now_ms());
    let round = server.dispatch().await;
    assert_eq!(round.delivered, 1, "{round:?}");
    assert_eq!(status(&admin, &id).await["status"], "delivered");
}

async fn ended_messages_are_pruned_after_their_retention(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (admin, bob) = admin_and_bob(&server).await;
    let delivered = send(&admin, &bob, json!({})).await;
    let cancelled = send(&admin, &bob, json!({ "delay_seconds": 60 })).await;
    admin
        .api
        .delete(&format!("/messages/{cancelled}"))
        .await
        .expect(200);
    // Waiting a long time is not ending: kept however old.
    let waiting = send(&admin, &bob, json!({ "delay_seconds": 90 * 86_400 })).await;
    server.dispatch().await;
    assert_eq!(status(&admin, &delivered).await["status"], "delivered");

    let retention_ms = server.state.config.message_retention_days * 86_400_000;
    let store = &server.state.store;
    // Not yet: they ended just now.
    let horizon = server.clock.now_ms() - retention_ms;
    assert_eq!(store.prune_messages(horizon, 100).await.unwrap(), 0);

    // (An hour more: message ids carry the real time they were made, the test's clock only
    // starts there.)
    server.clock.advance(retention_ms + 3_600_000);
    let horizon = server.clock.now_ms() - retention_ms;
    // In slices: one, then the other, then nothing.
    assert_eq!(store.prune_messages(horizon, 1).await.unwrap(), 1);
    assert_eq!(store.prune_messages(horizon, 100).await.unwrap(), 1);
    assert_eq!(store.prune_messages(horizon, 100).await.unwrap(), 0);
    // A month later the admin logs in again.
    let admin = server.admin().await;
    for id in [&delivered, &cancelled] {
        admin
            .api
            .get(&format!("/messages/{id}"))
            .await
            .problem(404, "not_found");
        let rows = server
            .sql_column(&format!(
                "SELECT message_id FROM message_events WHERE message_id = '{id}' \
                 UNION ALL SELECT message_id FROM message_states WHERE message_id = '{id}'"
            ))
            .await;
        assert!(rows.is_empty(), "{id}: {rows:?}");
    }
    assert_eq!(status(&admin, &waiting).await["status"], "scheduled");
    let (truth, kept) = server.status_counts().await;
    assert_eq!(truth, kept);
    assert_eq!(kept, BTreeMap::from([("scheduled".to_owned(), 1)]));
}

async fn the_kept_counts_agree_with_the_messages(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (admin, bob) = admin_and_bob(&server).await;
    let read = send(&admin, &bob, json!({})).await;
    send(&admin, &bob, json!({})).await;
    let cancelled = send(&admin, &bob, json!({ "delay_seconds": 600 })).await;
    send(&admin, &bob, json!({ "delay_seconds": 600 })).await;
    // A webhook message to a recipient without an endpoint: dead at its first attempt.
    let dead = send(&admin, &bob, json!({ "channel": "webhook" })).await;
    let replayed = send(&admin, &bob, json!({ "channel": "webhook" })).await;
    let batch = admin
        .api
        .post(
            "/messages/batch",
            json!({ "messages": [
                { "recipient_id": bob.user_id(), "content": "one", "delay_seconds": 30 },
                { "recipient_id": "usr_01JZZZZZZZZZZZZZZZZZZZZZZZ", "content": "refused" },
            ]}),
        )
        .await
        .expect(200);
    assert_eq!(batch.body["accepted"], 1);
    server.dispatch().await;
    admin
        .api
        .delete(&format!("/messages/{cancelled}"))
        .await
        .expect(200);
    bob.api
        .post(&format!("/messages/{read}/read"), json!({}))
        .await
        .expect(200);
    assert_eq!(status(&admin, &dead).await["status"], "dead");
    admin
        .api
        .post(&format!("/dead-letters/{replayed}/replay"), json!({}))
        .await
        .expect(200);
    admin
        .api
        .delete(&format!("/dead-letters/{dead}"))
        .await
        .expect(204);
    let (truth, kept) = server.status_counts().await;
    assert_eq!(truth, kept);
    let expected: BTreeMap<String, u64> = [
        ("read", 1),
        ("delivered", 1),
        ("cancelled", 1),
        ("scheduled", 3),
    ]
    .into_iter()
    .map(|(status, count)| (status.to_owned(), count))
    .collect();
    assert_eq!(kept, expected);
    // What /metrics reports.
    let metrics = server.api().get("/metrics").await;
    assert_eq!(metrics.status, 200);
}

/// A database at the migrations before the narrow message rows, holding messages in every
/// state (written as that schema had them), migrates to the new one with each message's
/// status, history and content intact, the counts filled, and the pending ones delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_database_of_the_previous_schema_migrates_with_its_messages() {
    a_database_of_the_previous_schema_migrates_with_its_messages(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_database_of_the_previous_schema_migrates_with_its_messages() {
    a_database_of_the_previous_schema_migrates_with_its_messages(Backend::Postgres).await;
}

async fn a_database_of_the_previous_schema_migrates_with_its_messages(backend: Backend) {
    // A server on the current schema makes the tenant, the users and a delivered message the
    // usual way; the rows are then rewritten as the previous schema held them.
    let server = TestServer::start(backend).await;
    let (admin, bob) = admin_and_bob(&server).await;
    let delivered = send(&admin, &bob, json!({ "metadata": { "k": "v" } })).await;
    server.dispatch().await;
    let storage = server.storage();
    let mut server = server;
    server.stop().await;
    drop(server);
    let old = OldDatabase::open(&storage).await;
    old.downgrade().await;
    let waiting = old.insert_waiting(&admin, &bob).await;

    let server = TestServer::start_on(storage, dms::clock::Clock::manual(now()), |_| {}).await;
    let admin = server.admin().await;
    let message = admin
        .api
        .get(&format!("/messages/{delivered}"))
        .await
        .expect(200);
    assert_eq!(message.body["status"], "delivered");
    assert_eq!(message.body["content"], "hello bob");
    assert_eq!(message.body["metadata"]["k"], "v");
    let history: Vec<String> = admin
        .api
        .get(&format!("/messages/{delivered}/events"))
        .await
        .expect(200)
        .body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["result"].as_str().unwrap().to_owned())
        .collect();
    assert!(history.contains(&"accepted".to_owned()), "{history:?}");
    assert_eq!(history.last().unwrap(), "delivered", "{history:?}");
    let (truth, kept) = server.status_counts().await;
    assert_eq!(truth, kept);
    assert_eq!(kept["delivered"], 1);
    assert_eq!(kept["scheduled"], 1);
    assert_eq!(status(&admin, &waiting).await["status"], "scheduled");
    let round = server.dispatch().await;
    assert_eq!(round.delivered, 1, "{round:?}");
    assert_eq!(status(&admin, &waiting).await["status"], "delivered");
}

fn now() -> u64 {
    dms::clock::Clock::System.now_ms()
}
