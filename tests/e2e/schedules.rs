//! Recurring schedules end to end on both deployments: the API (create, list, read, change,
//! pause, resume, delete, next occurrences), bad input, tenant isolation, daylight saving time,
//! occurrences delivered as ordinary messages to a real webhook receiver, `max_runs`, two nodes
//! creating each occurrence once, and missed occurrences across a restart. Time is the test
//! server's manual clock; the runner is driven by hand (`pass`) besides running on its own.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{
    Answer, Backend, Cluster, Login, Receiver, TestServer, eventually, ms, on_both_backends,
};

on_both_backends!(
    create_list_change_pause_resume_next_and_delete,
    bad_input_is_a_422_naming_the_field_and_stores_nothing,
    another_tenants_schedule_is_not_found,
    next_crosses_daylight_saving_changes_in_both_directions,
    a_seconds_pattern_delivers_real_messages_until_max_runs,
    two_nodes_create_each_occurrence_once,
    missed_occurrences_are_skipped_or_sent_once_after_a_restart,
    a_schedule_to_a_group_fans_out_each_occurrence,
);

/// Moves the manual clock to 12:00:30 UTC of a coming day: far from the morning times the
/// tests schedule.
fn align_to_noon(server: &TestServer) -> u64 {
    let now = server.clock.now_ms();
    server
        .clock
        .advance(86_400_000 - now % 86_400_000 + 12 * 3_600_000 + 30_000);
    server.clock.now_ms()
}

/// Moves the manual clock to second 30 of a minute, so minute patterns fall at known times.
fn align_to_half_minute(server: &TestServer) -> u64 {
    let now = server.clock.now_ms();
    server.clock.advance(90_000 - now % 60_000);
    server.clock.now_ms()
}

async fn pass(server: &TestServer) {
    server
        .state
        .schedules
        .pass(server.clock.now_ms())
        .await
        .expect("a runner pass");
}

fn schedule_body(to: &Login, cron: &str, extra: Value) -> Value {
    let mut body = json!({
        "cron": cron,
        "timezone": "Europe/Berlin",
        "message": { "recipient_id": to.user_id(), "content": "standup" },
    });
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    body
}

async fn patch(who: &Login, path: &str, body: Value) -> crate::harness::Reply {
    who.api.send(Method::PATCH, path, Some(body)).await
}

/// The messages `who` sent, oldest first.
async fn sent(who: &Login) -> Vec<Value> {
    let mut items = who
        .api
        .get("/messages?box=sent&limit=100")
        .await
        .expect(200)
        .body["items"]
        .as_array()
        .unwrap()
        .clone();
    items.reverse();
    items
}

async fn create_list_change_pause_resume_next_and_delete(backend: Backend) {
    let server = TestServer::start(backend).await;
    let now = align_to_noon(&server);
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    let carol = server.member(&admin, "carol").await;

    // Every day at 09:00 in Berlin, for bob.
    let created = bob
        .api
        .post(
            "/schedules",
            schedule_body(&carol, "0 9 * * *", json!({ "max_runs": 5 })),
        )
        .await
        .expect(201);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("sch_"), "{}", created.body);
    assert_eq!(created.headers["location"], format!("/schedules/{id}"));
    let body = &created.body;
    assert_eq!(body["owner_id"], bob.user_id());
    assert_eq!(body["cron"], "0 9 * * *");
    assert_eq!(body["timezone"], "Europe/Berlin");
    assert_eq!(body["message"]["recipient_id"], carol.user_id());
    assert_eq!(body["message"]["content"], "standup");
    assert_eq!(body["message"]["channel"], "inbox");
    assert_eq!(body["message"]["content_type"], "text/plain");
    assert_eq!(body["missed"], "skip");
    assert_eq!(body["state"], "active");
    assert_eq!(body["runs"], 0);
    assert_eq!(body["max_runs"], 5);
    assert_eq!(body["last_run_at"], Value::Null);
    let next = ms(&body["next_at"]);
    assert!(next > now && next - now <= 25 * 3_600_000, "{body}");
    // 09:00 in Berlin is 07:00 or 08:00 UTC.
    let hour = (next / 3_600_000) % 24;
    assert!(
        next.is_multiple_of(3_600_000) && (hour == 7 || hour == 8),
        "{body}"
    );

    let read = bob.api.get(&format!("/schedules/{id}")).await.expect(200);
    assert_eq!(read.body, created.body);

    // The next five, computed: exactly a day apart (no DST change this week), nothing created.
    let times = bob
        .api
        .get(&format!("/schedules/{id}/next?count=7"))
        .await
        .expect(200)
        .body["items"]
        .clone();
    let times: Vec<u64> = times.as_array().unwrap().iter().map(ms).collect();
    assert_eq!(times.len(), 5, "max_runs bounds it: {times:?}");
    assert_eq!(times[0], next);
    assert_eq!(server.storage().count("messages").await, 0);
    for count in ["0", "101", "x"] {
        bob.api
            .get(&format!("/schedules/{id}/next?count={count}"))
            .await
            .problem(400, "invalid_query");
    }

    // Listing: a member sees their own, an admin the tenant's.
    let carols = carol
        .api
        .post("/schedules", schedule_body(&bob, "*/5 * * * *", json!({})))
        .await
        .expect(201)
        .body["id"]
        .clone();
    let listed = |items: &Value| -> Vec<Value> {
        items["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["id"].clone())
            .collect()
    };
    let bobs = bob.api.get("/schedules").await.expect(200).body;
    assert_eq!(listed(&bobs), vec![json!(id)]);
    assert_eq!(bobs["limit"], 20);
    let all = admin.api.get("/schedules").await.expect(200).body;
    assert_eq!(listed(&all), vec![json!(id), carols.clone()]);
    let one = admin
        .api
        .get("/schedules?limit=1&offset=1")
        .await
        .expect(200)
        .body;
    assert_eq!(listed(&one), vec![carols.clone()]);
    // Carol does not see bob's schedule.
    carol
        .api
        .get(&format!("/schedules/{id}"))
        .await
        .problem(404, "not_found");

    // Change: a new content and pattern; `null` clears max_runs.
    let changed = patch(
        &bob,
        &format!("/schedules/{id}"),
        json!({ "cron": "30 8 * * MON-FRI", "max_runs": null,
                "message": { "recipient_id": carol.user_id(), "content": "new", "channel": "webhook" } }),
    )
    .await
    .expect(200)
    .body;
    assert_eq!(changed["cron"], "30 8 * * MON-FRI");
    assert_eq!(changed["max_runs"], Value::Null);
    assert_eq!(changed["message"]["content"], "new");
    assert_eq!(changed["message"]["channel"], "webhook");
    assert_eq!(changed["state"], "active");
    let next = ms(&changed["next_at"]);
    assert_eq!((next / 60_000) % 60, 30, "{changed}");

    // Pause: no next occurrence until resumed; /next shows what resuming now would give.
    let paused = bob
        .api
        .post(&format!("/schedules/{id}/pause"), json!({}))
        .await
        .expect(200)
        .body;
    assert_eq!(paused["state"], "paused");
    assert_eq!(paused["next_at"], Value::Null);
    let would = bob
        .api
        .get(&format!("/schedules/{id}/next?count=1"))
        .await
        .expect(200)
        .body;
    assert_eq!(would["items"][0], changed["next_at"]);
    // A runner pass three days on (past its next weekday 08:30) creates nothing for it.
    server
        .state
        .schedules
        .pass(server.clock.now_ms() + 3 * 86_400_000)
        .await
        .unwrap();
    assert_eq!(sent(&bob).await.len(), 0, "paused: nothing created");
    let resumed = bob
        .api
        .post(&format!("/schedules/{id}/resume"), json!({}))
        .await
        .expect(200)
        .body;
    assert_eq!(resumed["state"], "active");
    assert_eq!(resumed["next_at"], changed["next_at"]);

    // Delete: gone for everyone; its id is then like any unknown id.
    bob.api
        .delete(&format!("/schedules/{id}"))
        .await
        .expect(204);
    bob.api
        .get(&format!("/schedules/{id}"))
        .await
        .problem(404, "not_found");
    bob.api
        .delete(&format!("/schedules/{id}"))
        .await
        .problem(404, "not_found");
    assert_eq!(server.storage().count("schedules").await, 1);

    // Deleting a user deletes the schedules they own.
    admin
        .api
        .delete(&format!("/users/{}", carol.user_id()))
        .await
        .expect(204);
    assert_eq!(server.storage().count("schedules").await, 0);
}

async fn bad_input_is_a_422_naming_the_field_and_stores_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    let cases: Vec<(Value, &str, String)> = vec![
        (
            schedule_body(&bob, "61 * * * *", json!({})),
            "/cron",
            "/cron: \"61 * * * *\" is not a cron pattern (Component error: Number out of bounds.); each field takes a number in its range, `*`, a list `1,5`, a range `1-5` or a step `*/10` (minute 0-59, hour 0-23, day of month 1-31, month 1-12 or JAN-DEC, day of week 0-7 or SUN-SAT)".into(),
        ),
        (
            schedule_body(&bob, "* * *", json!({})),
            "/cron",
            "/cron: \"* * *\" has 3 fields; give 5 (minute hour day-of-month month day-of-week) or 6 with seconds first, such as \"0 9 * * MON-FRI\" or \"*/2 * * * * *\"".into(),
        ),
        (
            schedule_body(&bob, "0 0 30 2 *", json!({})),
            "/cron",
            "/cron: the pattern has no occurrence from now on (such as February 30)".into(),
        ),
        (
            schedule_body(&bob, "0 9 * * *", json!({ "timezone": "Mars/Olympus" })),
            "/timezone",
            "/timezone: \"Mars/Olympus\" is not a time zone of the IANA database; give a name such as \"Europe/Berlin\", \"America/New_York\" or \"UTC\"".into(),
        ),
        (
            schedule_body(&bob, "0 9 * * *", json!({ "starts_at": "tomorrow" })),
            "/starts_at",
            "/starts_at: \"tomorrow\" is not an RFC 3339 time from 1970 to 9999 such as 2030-01-02T03:04:05Z".into(),
        ),
        (
            schedule_body(
                &bob,
                "0 9 * * *",
                json!({ "starts_at": "2030-01-02T00:00:00Z", "ends_at": "2030-01-01T00:00:00Z" }),
            ),
            "/ends_at",
            "/ends_at: ends_at (2030-01-01T00:00:00.000Z) is before starts_at (2030-01-02T00:00:00.000Z)".into(),
        ),
        (
            schedule_body(
                &bob,
                "0 9 * * *",
                json!({ "starts_at": "2030-01-01T10:00:00Z", "ends_at": "2030-01-01T11:00:00Z", "timezone": "UTC" }),
            ),
            "/ends_at",
            "/ends_at: the pattern has no occurrence from now until ends_at (2030-01-01T11:00:00.000Z)".into(),
        ),
        (
            schedule_body(&bob, "0 9 * * *", json!({ "max_runs": 0 })),
            "/max_runs",
            "/max_runs: max_runs must be at least 1".into(),
        ),
        (
            json!({ "cron": "0 9 * * *", "timezone": "UTC",
                    "message": { "recipient_id": "usr_01JD8X3Z6Q9R2V4T7W5Y0B1C3E", "content": "x" } }),
            "/message/recipient_id",
            "/message/recipient_id: there is no such user in your tenant".into(),
        ),
        (
            json!({ "cron": "0 9 * * *", "timezone": "UTC",
                    "message": { "recipient_id": bob.user_id(), "content": "x", "channel": "pigeon" } }),
            "/message/channel",
            "/message/channel: unknown channel \"pigeon\"; expected inbox or webhook".into(),
        ),
    ];
    for (body, field, detail) in cases {
        let reply = admin
            .api
            .post("/schedules", body.clone())
            .await
            .problem(422, "invalid_field");
        assert_eq!(reply.body["field"], field, "{body}");
        assert_eq!(reply.body["detail"], detail.as_str(), "{body}");
    }
    // Fields the body may not have, or of the wrong kind: 422 naming them too.
    for (body, field) in [
        (
            schedule_body(&bob, "0 9 * * *", json!({ "missed": "never" })),
            "/missed",
        ),
        (
            schedule_body(&bob, "0 9 * * *", json!({ "group_id": "grp_1" })),
            "/group_id",
        ),
    ] {
        let reply = admin
            .api
            .post("/schedules", body)
            .await
            .problem(422, "invalid_field");
        assert_eq!(reply.body["field"], field, "{}", reply.body);
    }
    assert_eq!(
        server.storage().count("schedules").await,
        0,
        "nothing stored"
    );

    // A change is checked the same way, and a refused change changes nothing.
    let id = admin
        .api
        .post("/schedules", schedule_body(&bob, "0 9 * * *", json!({})))
        .await
        .expect(201)
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = admin
        .api
        .get(&format!("/schedules/{id}"))
        .await
        .expect(200)
        .body;
    for (change, field) in [
        (json!({ "cron": "0 25 * * *" }), "/cron"),
        (json!({ "timezone": "Berlin" }), "/timezone"),
        (json!({ "max_runs": 0 }), "/max_runs"),
    ] {
        let reply = patch(&admin, &format!("/schedules/{id}"), change)
            .await
            .problem(422, "invalid_field");
        assert_eq!(reply.body["field"], field, "{}", reply.body);
    }
    let after = admin
        .api
        .get(&format!("/schedules/{id}"))
        .await
        .expect(200)
        .body;
    assert_eq!(before, after);
}

async fn another_tenants_schedule_is_not_found(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    let id = bob
        .api
        .post("/schedules", schedule_body(&bob, "0 9 * * *", json!({})))
        .await
        .expect(201)
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = server.tenant_admin("other").await;
    for malformed in [id.as_str(), "sch_nope", "msg_01JD8X3Z6Q9R2V4T7W5Y0B1C3E"] {
        let path = format!("/schedules/{malformed}");
        let replies = [
            other.api.get(&path).await,
            patch(&other, &path, json!({ "cron": "0 10 * * *" })).await,
            other.api.delete(&path).await,
            other.api.post(&format!("{path}/pause"), json!({})).await,
            other.api.post(&format!("{path}/resume"), json!({})).await,
            other.api.get(&format!("{path}/next")).await,
        ];
        for reply in replies {
            let reply = reply.problem(404, "not_found");
            assert_eq!(
                reply.body["detail"],
                "there is no such schedule in your tenant"
            );
        }
    }
    assert_eq!(
        other.api.get("/schedules").await.expect(200).body["items"],
        json!([])
    );
    let still = bob
        .api
        .get(&format!("/schedules/{id}"))
        .await
        .expect(200)
        .body;
    assert_eq!(still["cron"], "0 9 * * *");
    assert_eq!(still["state"], "active");
}

async fn next_times(
    who: &Login,
    to: &Login,
    cron: &str,
    zone: &str,
    from: &str,
    n: u32,
) -> Vec<String> {
    let created = who
        .api
        .post(
            "/schedules",
            json!({ "cron": cron, "timezone": zone, "starts_at": from,
                    "message": { "recipient_id": to.user_id(), "content": "dst" } }),
        )
        .await
        .expect(201)
        .body;
    let times = who
        .api
        .get(&format!(
            "/schedules/{}/next?count={n}",
            created["id"].as_str().unwrap()
        ))
        .await
        .expect(200)
        .body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|time| time.as_str().unwrap().to_owned())
        .collect::<Vec<_>>();
    assert_eq!(
        created["next_at"].as_str(),
        times.first().map(String::as_str)
    );
    times
}

async fn next_crosses_daylight_saving_changes_in_both_directions(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    // Berlin springs forward on 2027-03-28 (02:00 CET → 03:00 CEST): 02:30 does not exist
    // that day, and the occurrence is the first instant after the gap, 03:00 CEST.
    assert_eq!(
        next_times(
            &admin,
            &bob,
            "30 2 * * *",
            "Europe/Berlin",
            "2027-03-27T00:00:00Z",
            3
        )
        .await,
        [
            "2027-03-27T01:30:00.000Z",
            "2027-03-28T01:00:00.000Z",
            "2027-03-29T00:30:00.000Z"
        ]
    );
    // Berlin falls back on 2027-10-31 (03:00 CEST → 02:00 CET): 02:30 happens twice, and the
    // occurrence happens once, at the first of them (CEST).
    assert_eq!(
        next_times(
            &admin,
            &bob,
            "30 2 * * *",
            "Europe/Berlin",
            "2027-10-30T00:00:00Z",
            3
        )
        .await,
        [
            "2027-10-30T00:30:00.000Z",
            "2027-10-31T00:30:00.000Z",
            "2027-11-01T01:30:00.000Z"
        ]
    );
    // An interval pattern runs at every real instant that matches: through both passes of
    // the doubled hour, every 30 minutes of elapsed time.
    assert_eq!(
        next_times(
            &admin,
            &bob,
            "0,30 * * * *",
            "Europe/Berlin",
            "2027-10-30T23:45:00Z",
            6
        )
        .await,
        [
            "2027-10-31T00:00:00.000Z",
            "2027-10-31T00:30:00.000Z",
            "2027-10-31T01:00:00.000Z",
            "2027-10-31T01:30:00.000Z",
            "2027-10-31T02:00:00.000Z",
            "2027-10-31T02:30:00.000Z"
        ]
    );
    // New York: spring forward 2027-03-14, fall back 2027-11-07 (01:30 twice).
    assert_eq!(
        next_times(
            &admin,
            &bob,
            "30 2 * * *",
            "America/New_York",
            "2027-03-13T00:00:00Z",
            3
        )
        .await,
        [
            "2027-03-13T07:30:00.000Z",
            "2027-03-14T07:00:00.000Z",
            "2027-03-15T06:30:00.000Z"
        ]
    );
    assert_eq!(
        next_times(
            &admin,
            &bob,
            "30 1 * * *",
            "America/New_York",
            "2027-11-06T00:00:00Z",
            3
        )
        .await,
        [
            "2027-11-06T05:30:00.000Z",
            "2027-11-07T05:30:00.000Z",
            "2027-11-08T06:30:00.000Z"
        ]
    );
    // Seconds first, in UTC; the occurrence at starts_at itself counts.
    assert_eq!(
        next_times(
            &admin,
            &bob,
            "*/20 * * * * *",
            "UTC",
            "2027-01-01T00:00:00Z",
            4
        )
        .await,
        [
            "2027-01-01T00:00:00.000Z",
            "2027-01-01T00:00:20.000Z",
            "2027-01-01T00:00:40.000Z",
            "2027-01-01T00:01:00.000Z"
        ]
    );
    assert_eq!(
        server.storage().count("messages").await,
        0,
        "nothing created"
    );
}

async fn a_seconds_pattern_delivers_real_messages_until_max_runs(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    let receiver = Receiver::start(vec![Answer::status(200)]).await;
    bob.api
        .put("/users/me/webhook", json!({ "url": receiver.url }))
        .await
        .expect(200);
    let created = admin
        .api
        .post(
            "/schedules",
            json!({ "cron": "*/2 * * * * *", "timezone": "UTC", "max_runs": 3,
                    "message": { "recipient_id": bob.user_id(), "content": "tick",
                                 "channel": "webhook", "metadata": { "kind": "tick" } } }),
        )
        .await
        .expect(201)
        .body;
    let id = created["id"].as_str().unwrap().to_owned();
    let first = ms(&created["next_at"]);
    assert_eq!(first % 2_000, 0);

    // Created ahead of time (one period ahead for a pattern this frequent), due at its
    // occurrence: nothing is delivered before then.
    pass(&server).await;
    let messages = sent(&admin).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(ms(&messages[0]["deliver_at"]), first);
    assert_eq!(server.dispatch().await.delivered, 0, "not due yet");

    for _ in 0..10 {
        server.clock.advance(1_000);
        pass(&server).await;
        server.dispatch().await;
    }
    let messages = sent(&admin).await;
    assert_eq!(messages.len(), 3, "max_runs: {messages:?}");
    let received = receiver.received();
    assert_eq!(received.len(), 3);
    let mut occurrences = Vec::new();
    for (n, message) in messages.iter().enumerate() {
        let message_id = message["id"].as_str().unwrap();
        let view = admin
            .api
            .get(&format!("/messages/{message_id}"))
            .await
            .expect(200)
            .body;
        assert_eq!(view["status"], "delivered");
        assert_eq!(view["content"], "tick");
        assert_eq!(view["metadata"]["kind"], "tick");
        assert_eq!(view["sender_id"], admin.user_id());
        assert_eq!(view["schedule"]["schedule_id"], id.as_str());
        let occurrence = ms(&view["schedule"]["occurrence_at"]);
        assert_eq!(occurrence, first + 2_000 * n as u64);
        assert_eq!(ms(&view["deliver_at"]), occurrence);
        occurrences.push(occurrence);
        // The history names the schedule and the occurrence.
        let events = admin
            .api
            .get(&format!("/messages/{message_id}/events"))
            .await
            .expect(200)
            .body;
        let accepted = events["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|event| event["to"] == "scheduled")
            .unwrap();
        assert_eq!(
            accepted["result"],
            format!(
                "accepted: occurrence {} of schedule {id}",
                dms::clock::rfc3339(occurrence)
            )
        );
        let body: Value = serde_json::from_slice(&received[n].body).unwrap();
        assert_eq!(body["data"]["id"], message_id, "{body}");
    }
    let finished = admin
        .api
        .get(&format!("/schedules/{id}"))
        .await
        .expect(200)
        .body;
    assert_eq!(finished["state"], "finished");
    assert_eq!(finished["runs"], 3);
    assert_eq!(finished["next_at"], Value::Null);
    assert_eq!(ms(&finished["last_run_at"]), *occurrences.last().unwrap());
    assert_eq!(
        admin
            .api
            .get(&format!("/schedules/{id}/next"))
            .await
            .expect(200)
            .body["items"],
        json!([])
    );
    admin
        .api
        .post(&format!("/schedules/{id}/pause"), json!({}))
        .await
        .problem(409, "conflict");
    server.clock.advance(60_000);
    pass(&server).await;
    assert_eq!(sent(&admin).await.len(), 3, "finished: nothing more");
}

async fn two_nodes_create_each_occurrence_once(backend: Backend) {
    let first = TestServer::start(backend).await;
    let second = TestServer::start_beside(&first, |_| {}).await;
    let admin = first.admin().await;
    let bob = first.member(&admin, "bob").await;
    let id = admin
        .api
        .post(
            "/schedules",
            json!({ "cron": "* * * * * *", "timezone": "UTC", "max_runs": 20,
                    "message": { "recipient_id": bob.user_id(), "content": "both" } }),
        )
        .await
        .expect(201)
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..30 {
        first.clock.advance(1_000);
        let now = first.clock.now_ms();
        let (a, b) = tokio::join!(
            first.state.schedules.pass(now),
            second.state.schedules.pass(now),
        );
        a.unwrap();
        b.unwrap();
    }
    let messages = sent(&admin).await;
    assert_eq!(messages.len(), 20);
    let mut occurrences = BTreeSet::new();
    for message in &messages {
        let view = admin
            .api
            .get(&format!("/messages/{}", message["id"].as_str().unwrap()))
            .await
            .expect(200)
            .body;
        occurrences.insert(
            view["schedule"]["occurrence_at"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(occurrences.len(), 20, "one message per occurrence");
    assert_eq!(first.storage().count("schedule_runs").await, 20);
    let done = admin
        .api
        .get(&format!("/schedules/{id}"))
        .await
        .expect(200)
        .body;
    assert_eq!(done["runs"], 20);
    assert_eq!(done["state"], "finished");
}

async fn missed_occurrences_are_skipped_or_sent_once_after_a_restart(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let created_at = align_to_half_minute(&server);
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    let mut ids = Vec::new();
    for missed in ["skip", "once"] {
        // Every minute, at second 0.
        let body = json!({ "cron": "0 * * * * *", "timezone": "UTC", "missed": missed,
                           "message": { "recipient_id": bob.user_id(), "content": missed } });
        ids.push(
            admin.api.post("/schedules", body).await.expect(201).body["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    pass(&server).await;
    let minute = |n: u64| created_at - 30_000 + n * 60_000;
    assert_eq!(
        sent(&admin).await.len(),
        2,
        "the first occurrence of each, ahead"
    );

    // No node runs for five minutes: the occurrences at minutes 2 to 5 pass unseen.
    server.stop().await;
    server.clock.advance(5 * 60_000);
    let server = server.restart().await;
    let admin = server.admin().await;
    pass(&server).await;
    let now = server.clock.now_ms();

    let mut by_schedule: std::collections::BTreeMap<String, Vec<(u64, u64, String)>> =
        Default::default();
    for message in sent(&admin).await {
        let id = message["id"].as_str().unwrap();
        let view = admin
            .api
            .get(&format!("/messages/{id}"))
            .await
            .expect(200)
            .body;
        by_schedule
            .entry(view["schedule"]["schedule_id"].as_str().unwrap().to_owned())
            .or_default()
            .push((
                ms(&view["schedule"]["occurrence_at"]),
                ms(&view["deliver_at"]),
                id.to_owned(),
            ));
    }
    // skip: minute 1 (before the stop), then minute 6, the next still to come.
    let skipped = &by_schedule[&ids[0]];
    assert_eq!(
        skipped
            .iter()
            .map(|(at, due, _)| (*at, *due))
            .collect::<Vec<_>>(),
        vec![(minute(1), minute(1)), (minute(6), minute(6))]
    );
    // once: minute 1, one message now for minutes 2 to 5 (named by the last), then minute 6.
    let once = &by_schedule[&ids[1]];
    assert_eq!(
        once.iter()
            .map(|(at, due, _)| (*at, *due))
            .collect::<Vec<_>>(),
        vec![
            (minute(1), minute(1)),
            (minute(5), now),
            (minute(6), minute(6))
        ]
    );
    let events = admin
        .api
        .get(&format!("/messages/{}/events", once[1].2))
        .await
        .expect(200)
        .body;
    let accepted = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|event| event["to"] == "scheduled")
        .unwrap()
        .clone();
    assert_eq!(
        accepted["result"],
        format!(
            "accepted: the occurrences of schedule {} from {} to {}, missed while no node ran, sent once",
            ids[1],
            dms::clock::rfc3339(minute(2)),
            dms::clock::rfc3339(minute(5))
        )
    );
    let skip_view = admin
        .api
        .get(&format!("/schedules/{}", ids[0]))
        .await
        .expect(200)
        .body;
    assert_eq!(skip_view["runs"], 2);
    assert_eq!(ms(&skip_view["next_at"]), minute(7));
    let once_view = admin
        .api
        .get(&format!("/schedules/{}", ids[1]))
        .await
        .expect(200)
        .body;
    assert_eq!(once_view["runs"], 3);
    assert_eq!(ms(&once_view["next_at"]), minute(7));
}

/// Two `dms serve` processes on one PostgreSQL and Redis, each running its schedule runner
/// on the real clock: every occurrence reaches the receiver once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_of_two_nodes_delivers_each_occurrence_once() {
    let mut cluster = Cluster::start(Answer::status(200)).await;
    let (first, _) = cluster.node(&[]).await;
    let (second, _) = cluster.node(&[]).await;
    let (admin, bob) = cluster.prepare(&first).await;
    let created = admin
        .post(
            "/schedules",
            json!({ "cron": "* * * * * *", "timezone": "UTC", "max_runs": 6,
                    "message": { "recipient_id": bob, "content": "cluster", "channel": "webhook" } }),
        )
        .await
        .expect(201)
        .body;
    let id = created["id"].as_str().unwrap().to_owned();
    cluster
        .wait_delivered(6, std::time::Duration::from_secs(60))
        .await;
    // A little longer: nothing more comes.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let (received, distinct) = cluster.received();
    assert_eq!((received, distinct), (6, 6));
    assert_eq!(cluster.counts().await.values().sum::<i64>(), 6);
    eventually("the schedule is finished", || {
        let admin = admin.clone();
        let id = id.clone();
        async move {
            admin
                .get(&format!("/schedules/{id}"))
                .await
                .expect(200)
                .body["state"]
                == "finished"
        }
    })
    .await;
    first.terminate().await;
    second.terminate().await;
}

async fn a_schedule_to_a_group_fans_out_each_occurrence(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    let carol = server.member(&admin, "carol").await;
    let group = admin
        .api
        .post("/groups", json!({ "name": "team" }))
        .await
        .expect(201)
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Bad targets: both, or a group that is not the tenant's (404 like POST /messages);
    // nothing is stored.
    let both = admin
        .api
        .post(
            "/schedules",
            json!({ "cron": "*/2 * * * * *", "timezone": "UTC",
                    "message": { "recipient_id": bob.user_id(), "group_id": group,
                                 "content": "tick" } }),
        )
        .await
        .problem(422, "invalid_field");
    assert_eq!(both.body["field"], "/message/group_id");
    assert_eq!(
        both.body["detail"],
        "/message/group_id: give recipient_id or group_id, not both"
    );
    let unknown = admin
        .api
        .post(
            "/schedules",
            json!({ "cron": "*/2 * * * * *", "timezone": "UTC",
                    "message": { "group_id": "grp_01KBQ1JZ7Y6W5V4T3S2R1Q0P9N",
                                 "content": "tick" } }),
        )
        .await
        .problem(404, "not_found");
    assert_eq!(
        unknown.body["detail"],
        "there is no such group in your tenant"
    );
    let listed = admin.api.get("/schedules").await.expect(200).body;
    assert_eq!(listed["items"], json!([]), "nothing stored: {listed}");

    // Members are read at each occurrence: carol joins after the schedule is made.
    admin
        .api
        .put(
            &format!("/groups/{group}/members/{}", bob.user_id()),
            json!({}),
        )
        .await
        .expect(200);
    let created = admin
        .api
        .post(
            "/schedules",
            json!({ "cron": "*/2 * * * * *", "timezone": "UTC", "max_runs": 2,
                    "message": { "group_id": group, "content": "team tick",
                                 "flow_key": "team-ticks" } }),
        )
        .await
        .expect(201)
        .body;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["message"]["group_id"], group.as_str());
    assert_eq!(created["message"]["flow_key"], "team-ticks");
    assert!(
        created["message"].get("recipient_id").is_none(),
        "{created}"
    );
    pass(&server).await;
    admin
        .api
        .put(
            &format!("/groups/{group}/members/{}", carol.user_id()),
            json!({}),
        )
        .await
        .expect(200);
    for _ in 0..10 {
        server.clock.advance(1_000);
        pass(&server).await;
        server.dispatch().await;
    }

    let messages = sent(&admin).await;
    // The first occurrence went to bob alone, the second to bob and carol.
    assert_eq!(messages.len(), 3, "max_runs 2: {messages:?}");
    let mut fan_outs = Vec::new();
    for message in &messages {
        let view = admin
            .api
            .get(&format!("/messages/{}", message["id"].as_str().unwrap()))
            .await
            .expect(200)
            .body;
        assert_eq!(view["status"], "delivered", "{view}");
        assert_eq!(view["content"], "team tick");
        assert_eq!(view["flow_key"], "team-ticks");
        assert_eq!(view["schedule"]["schedule_id"], id.as_str(), "{view}");
        let fan_out = view["fan_out_id"].as_str().unwrap().to_owned();
        if !fan_outs.contains(&fan_out) {
            fan_outs.push(fan_out);
        }
    }
    assert_eq!(fan_outs.len(), 2, "one fan-out per occurrence");
    let recipients: Vec<&str> = messages
        .iter()
        .map(|message| message["recipient_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        recipients.iter().filter(|r| **r == bob.user_id()).count(),
        2
    );
    assert_eq!(
        recipients.iter().filter(|r| **r == carol.user_id()).count(),
        1
    );
    for (fan_out, total) in fan_outs.iter().zip([1, 2]) {
        let summary = admin
            .api
            .get(&format!("/fan-outs/{fan_out}"))
            .await
            .expect(200)
            .body;
        assert_eq!(summary["total"], total, "{summary}");
        assert_eq!(summary["group_id"], group.as_str());
    }
    let schedule = admin
        .api
        .get(&format!("/schedules/{id}"))
        .await
        .expect(200)
        .body;
    assert_eq!(schedule["runs"], 2);
    assert_eq!(schedule["state"], "finished");
}
