//! Groups and fan-out on both deployments: the tenant's groups managed by its admins (read by
//! every user), members added one by one and in bulk (all or nothing, within the member
//! limit), a message sent to a group delivered to every member's inbox, live connection and
//! webhook as ordinary messages that name their fan-out, the fan-out's summary following
//! them, every refusal with its exact problem and nothing written, and a group of 10,000
//! accepted in one request.

use serde_json::{Value, json};

use crate::harness::{Answer, Backend, Login, Receiver, TestServer, WsClient, on_both_backends};

on_both_backends!(
    groups_are_managed_by_admins_and_read_by_every_user,
    the_member_limit_refuses_whole_requests,
    a_fan_out_reaches_every_member_and_its_summary_follows,
    a_fan_out_to_webhooks_signs_one_request_per_member,
    bad_fan_outs_are_refused_and_store_nothing,
    an_idempotency_key_replays_a_fan_out,
    ten_thousand_members_are_accepted_in_one_request,
);

const NO_GROUP: &str = "there is no such group in your tenant";

async fn create_group(admin: &Login, name: &str) -> String {
    let reply = admin
        .api
        .post("/groups", json!({ "name": name }))
        .await
        .expect(201);
    let id = reply.body["id"].as_str().unwrap().to_owned();
    assert_eq!(reply.headers["location"], format!("/groups/{id}").as_str());
    id
}

async fn count(server: &TestServer, table: &str) -> i64 {
    server.storage().count(table).await
}

fn member_ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| user["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn groups_are_managed_by_admins_and_read_by_every_user(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    let carol = server.member(&admin, "carol").await;
    let dave = server.member(&admin, "dave").await;
    let other = server.tenant_admin("other").await;

    let reply = admin
        .api
        .post("/groups", json!({ "name": "on-call" }))
        .await
        .expect(201);
    let group = reply.body["id"].as_str().unwrap().to_owned();
    assert!(group.starts_with("grp_"), "{}", reply.body);
    assert_eq!(reply.body["name"], "on-call");
    assert_eq!(reply.body["members"], 0);
    assert_eq!(
        admin
            .api
            .get(&format!("/groups/{group}"))
            .await
            .expect(200)
            .body,
        reply.body
    );

    // Names follow the display-name rules; a refusal writes nothing.
    for (name, detail) in [
        (json!("  "), "/name: a group name may not be blank"),
        (
            json!("x".repeat(201)),
            "/name: a group name must have at most 200 characters",
        ),
        (
            json!("a\u{0}b"),
            "/name: a group name may not contain NUL characters",
        ),
    ] {
        let refused = admin
            .api
            .post("/groups", json!({ "name": name }))
            .await
            .problem(422, "invalid_field");
        assert_eq!(refused.body["field"], "/name");
        assert_eq!(refused.body["detail"], detail);
    }
    // Only admins change groups: 403 before anything is looked at or written.
    let path = format!("/groups/{group}/members/{}", carol.user_id());
    for refused in [
        bob.api.post("/groups", json!({ "name": "mine" })).await,
        bob.api.put(&path, json!({})).await,
        bob.api.delete(&path).await,
        bob.api
            .post(
                &format!("/groups/{group}/members"),
                json!({ "user_ids": [bob.user_id()] }),
            )
            .await,
        bob.api.delete(&format!("/groups/{group}")).await,
    ] {
        let refused = refused.problem(403, "admin_required");
        assert_eq!(
            refused.body["detail"],
            "only an admin of your tenant may do this"
        );
    }
    assert_eq!(count(&server, "groups").await, 1);
    assert_eq!(count(&server, "group_members").await, 0);

    // One member, idempotently.
    for _ in 0..2 {
        let group_now = admin.api.put(&path, json!({})).await.expect(200).body;
        assert_eq!(group_now["members"], 1);
    }
    // In bulk: one unknown or other-tenant user refuses the whole request.
    for (ids, field) in [
        (
            json!([bob.user_id(), "usr_01JZZZZZZZZZZZZZZZZZZZZZZZ"]),
            "/user_ids/1",
        ),
        (json!([other.user_id(), bob.user_id()]), "/user_ids/0"),
        (json!([bob.user_id(), dave.user_id(), "bob"]), "/user_ids/2"),
    ] {
        let refused = admin
            .api
            .post(
                &format!("/groups/{group}/members"),
                json!({ "user_ids": ids }),
            )
            .await
            .problem(422, "invalid_field");
        assert_eq!(refused.body["field"], field);
        assert_eq!(
            refused.body["detail"],
            format!("{field}: there is no such user in your tenant")
        );
    }
    let refused = admin
        .api
        .post(
            &format!("/groups/{group}/members"),
            json!({ "user_ids": [] }),
        )
        .await
        .problem(422, "invalid_field");
    assert_eq!(refused.body["field"], "/user_ids");
    assert_eq!(count(&server, "group_members").await, 1);
    let bulk = admin
        .api
        .post(
            &format!("/groups/{group}/members"),
            json!({ "user_ids": [bob.user_id(), dave.user_id(), carol.user_id()] }),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(bulk["members"], 3);

    // Every user of the tenant reads groups and members, paged.
    let listing = bob.api.get("/groups").await.expect(200).body;
    assert_eq!(listing["total"], 1);
    assert_eq!(listing["items"][0]["id"], group.as_str());
    assert_eq!(listing["items"][0]["members"], 3);
    let mut expected = vec![
        bob.user_id().to_owned(),
        carol.user_id().to_owned(),
        dave.user_id().to_owned(),
    ];
    expected.sort();
    let first = bob
        .api
        .get(&format!("/groups/{group}/members?limit=2"))
        .await
        .expect(200)
        .body;
    assert_eq!(first["total"], 3);
    assert_eq!(first["limit"], 2);
    let second = bob
        .api
        .get(&format!("/groups/{group}/members?limit=2&offset=2"))
        .await
        .expect(200)
        .body;
    let mut seen = member_ids(&first);
    seen.extend(member_ids(&second));
    assert_eq!(seen, expected);
    assert!(first["items"][0]["username"].as_str().is_some());
    bob.api
        .get(&format!("/groups/{group}/members?limit=0"))
        .await
        .problem(400, "invalid_query");

    // Another tenant's group is exactly an unknown one, for reads and changes alike.
    let unknown = "grp_01JZZZZZZZZZZZZZZZZZZZZZZZ";
    for id in [group.as_str(), unknown, "not-a-group"] {
        for reply in [
            other.api.get(&format!("/groups/{id}")).await,
            other.api.get(&format!("/groups/{id}/members")).await,
            other
                .api
                .put(
                    &format!("/groups/{id}/members/{}", other.user_id()),
                    json!({}),
                )
                .await,
            other.api.delete(&format!("/groups/{id}")).await,
        ] {
            let reply = reply.problem(404, "not_found");
            assert_eq!(reply.body["detail"], NO_GROUP);
        }
    }
    assert_eq!(other.api.get("/groups").await.expect(200).body["total"], 0);
    // An unknown or other-tenant user in the path is not found either.
    for user in [other.user_id(), "usr_01JZZZZZZZZZZZZZZZZZZZZZZZ"] {
        let reply = admin
            .api
            .put(&format!("/groups/{group}/members/{user}"), json!({}))
            .await
            .problem(404, "not_found");
        assert_eq!(reply.body["detail"], "there is no such user in your tenant");
    }

    // Removing: once, then not a member.
    admin.api.delete(&path).await.expect(204);
    admin.api.delete(&path).await.problem(404, "not_found");
    // A deleted user leaves its groups.
    admin
        .api
        .delete(&format!("/users/{}", dave.user_id()))
        .await
        .expect(204);
    let left = admin
        .api
        .get(&format!("/groups/{group}/members"))
        .await
        .expect(200)
        .body;
    assert_eq!(member_ids(&left), vec![bob.user_id().to_owned()]);
    assert_eq!(left["total"], 1);

    // Deleting the group deletes its memberships.
    admin
        .api
        .delete(&format!("/groups/{group}"))
        .await
        .expect(204);
    admin
        .api
        .get(&format!("/groups/{group}"))
        .await
        .problem(404, "not_found");
    assert_eq!(count(&server, "groups").await, 0);
    assert_eq!(count(&server, "group_members").await, 0);
}

async fn the_member_limit_refuses_whole_requests(backend: Backend) {
    let server = TestServer::start_with(backend, |config| config.group_max_members = 3).await;
    let admin = server.admin().await;
    let mut users = Vec::new();
    for name in ["u1", "u2", "u3", "u4"] {
        users.push(server.member(&admin, name).await.user_id().to_owned());
    }
    let group = create_group(&admin, "small").await;
    let refused = admin
        .api
        .post(
            &format!("/groups/{group}/members"),
            json!({ "user_ids": users }),
        )
        .await
        .problem(422, "invalid_field");
    assert_eq!(refused.body["field"], "/user_ids");
    assert_eq!(refused.body["limit"], 3);
    assert_eq!(
        refused.body["detail"],
        "/user_ids: the group would have 4 members; a group has at most 3"
    );
    assert_eq!(count(&server, "group_members").await, 0);

    admin
        .api
        .post(
            &format!("/groups/{group}/members"),
            json!({ "user_ids": users[..2] }),
        )
        .await
        .expect(200);
    // Two more would be four, though each alone would fit: nothing is added.
    let refused = admin
        .api
        .post(
            &format!("/groups/{group}/members"),
            json!({ "user_ids": users[1..] }),
        )
        .await
        .problem(422, "invalid_field");
    assert_eq!(refused.body["limit"], 3);
    assert_eq!(
        refused.body["detail"],
        "/user_ids: the group would have 4 members; a group has at most 3"
    );
    assert_eq!(count(&server, "group_members").await, 2);
    admin
        .api
        .put(&format!("/groups/{group}/members/{}", users[2]), json!({}))
        .await
        .expect(200);
    let refused = admin
        .api
        .put(&format!("/groups/{group}/members/{}", users[3]), json!({}))
        .await
        .problem(422, "invalid_field");
    assert_eq!(refused.body["field"], "user_id");
    assert_eq!(refused.body["limit"], 3);
    assert_eq!(
        refused.body["detail"],
        "user_id: the group would have 4 members; a group has at most 3"
    );
    // A member added again is not counted twice.
    admin
        .api
        .put(&format!("/groups/{group}/members/{}", users[0]), json!({}))
        .await
        .expect(200);
    assert_eq!(count(&server, "group_members").await, 3);
}

/// A group of bob, carol and dave, created by the admin.
async fn team(server: &TestServer, admin: &Login) -> (String, Vec<Login>) {
    let mut members = Vec::new();
    for name in ["bob", "carol", "dave"] {
        members.push(server.member(admin, name).await);
    }
    let group = create_group(admin, "team").await;
    let ids: Vec<&str> = members.iter().map(Login::user_id).collect();
    admin
        .api
        .post(
            &format!("/groups/{group}/members"),
            json!({ "user_ids": ids }),
        )
        .await
        .expect(200);
    (group, members)
}

async fn summary(who: &Login, fan_out: &str) -> Value {
    who.api
        .get(&format!("/fan-outs/{fan_out}"))
        .await
        .expect(200)
        .body
}

async fn a_fan_out_reaches_every_member_and_its_summary_follows(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let (group, members) = team(&server, &admin).await;
    let (mut carols_socket, _) = WsClient::connect(&server.url, &members[1].token).await;

    // A member (not only an admin) may send to a group.
    let sender = &members[0];
    let reply = sender
        .api
        .post(
            "/messages",
            json!({ "group_id": group, "content": "stand-up in 5", "metadata": { "k": "v" } }),
        )
        .await
        .expect(201);
    let answer = reply.body.clone();
    let fan_out = answer["fan_out_id"].as_str().unwrap().to_owned();
    assert!(fan_out.starts_with("fan_"), "{answer}");
    assert_eq!(
        reply.headers["location"],
        format!("/fan-outs/{fan_out}").as_str()
    );
    assert_eq!(answer["group_id"], group.as_str());
    assert_eq!(answer["count"], 3);
    assert_eq!(answer["status"], "scheduled");
    let first = summary(sender, &fan_out).await;
    assert_eq!(first["id"], fan_out.as_str());
    assert_eq!(first["group_id"], group.as_str());
    assert_eq!(first["sender_id"], sender.user_id());
    assert_eq!(first["total"], 3);
    assert_eq!(first["statuses"], json!({ "scheduled": 3 }));
    assert_eq!(first["pruned"], 0);
    assert_eq!(first["created_at"], answer["created_at"]);

    // One ordinary message per member, each naming the fan-out.
    let sent = sender.api.get("/messages?box=sent").await.expect(200).body;
    let sent = sent["items"].as_array().unwrap();
    assert_eq!(sent.len(), 3);
    let mut recipients: Vec<&str> = sent
        .iter()
        .map(|message| message["recipient_id"].as_str().unwrap())
        .collect();
    recipients.sort();
    let mut expected: Vec<&str> = members.iter().map(Login::user_id).collect();
    expected.sort();
    assert_eq!(recipients, expected);
    for message in sent {
        assert_eq!(message["fan_out_id"], fan_out.as_str(), "{message}");
        assert_eq!(message["status"], "scheduled");
        assert_eq!(message["content"], "stand-up in 5");
        assert_eq!(message["metadata"]["k"], "v");
        // Each has its own history, decided by the tenant's plugins.
        let history = sender
            .api
            .get(&format!(
                "/messages/{}/events",
                message["id"].as_str().unwrap()
            ))
            .await
            .expect(200)
            .body;
        let plugins: Vec<&str> = history["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|event| event["plugin"]["name"].as_str())
            .collect();
        assert_eq!(plugins, ["content-guard", "standard-delay"]);
    }
    // A single submit names no fan-out.
    let single = sender
        .api
        .post(
            "/messages",
            json!({ "recipient_id": members[2].user_id(), "content": "just you" }),
        )
        .await
        .expect(201)
        .body;
    assert!(single.get("fan_out_id").is_none(), "{single}");

    // Delivered to every inbox, and live to a connected member.
    server.dispatch().await;
    let event = carols_socket.next().await;
    assert_eq!(event["type"], "message", "{event}");
    assert_eq!(event["message"]["content"], "stand-up in 5");
    assert_eq!(event["message"]["recipient_id"], members[1].user_id());
    for member in &members {
        let inbox = member
            .api
            .get("/messages?box=received")
            .await
            .expect(200)
            .body;
        let from_fan_out: Vec<&Value> = inbox["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|message| message["fan_out_id"] == fan_out.as_str())
            .collect();
        assert_eq!(from_fan_out.len(), 1, "{inbox}");
        assert_eq!(from_fan_out[0]["status"], "delivered");
    }
    let delivered = summary(sender, &fan_out).await;
    assert_eq!(delivered["statuses"], json!({ "delivered": 3 }));
    assert_eq!(delivered["total"], 3);

    // A member reads theirs: the summary moves again.
    let carols = members[1]
        .api
        .get("/messages?box=received")
        .await
        .expect(200)
        .body["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    members[1]
        .api
        .post(&format!("/messages/{carols}/read"), json!({}))
        .await
        .expect(200);
    let read = summary(&admin, &fan_out).await;
    assert_eq!(read["statuses"], json!({ "delivered": 2, "read": 1 }));

    // Its sender and the tenant's admins see the summary; nobody else does.
    let other = server.tenant_admin("other").await;
    for who in [&members[1], &other] {
        let refused = who
            .api
            .get(&format!("/fan-outs/{fan_out}"))
            .await
            .problem(404, "not_found");
        assert_eq!(
            refused.body["detail"],
            "there is no such fan-out in your tenant"
        );
    }
    for id in ["fan_01JZZZZZZZZZZZZZZZZZZZZZZZ", "nope"] {
        admin
            .api
            .get(&format!("/fan-outs/{id}"))
            .await
            .problem(404, "not_found");
    }

    // Deleting the group keeps what was sent to it.
    admin
        .api
        .delete(&format!("/groups/{group}"))
        .await
        .expect(204);
    assert_eq!(summary(sender, &fan_out).await["total"], 3);
}

async fn a_fan_out_to_webhooks_signs_one_request_per_member(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let (group, members) = team(&server, &admin).await;
    let receiver = Receiver::start(vec![Answer::status(200)]).await;
    let mut secrets = Vec::new();
    for member in &members {
        let endpoint = member
            .api
            .put("/users/me/webhook", json!({ "url": receiver.url }))
            .await
            .expect(200);
        secrets.push(endpoint.body["secret"].as_str().unwrap().to_owned());
    }
    let answer = admin
        .api
        .post(
            "/messages",
            json!({ "group_id": group, "content": "to your hooks", "channel": "webhook", "delay_seconds": 30 }),
        )
        .await
        .expect(201)
        .body;
    let fan_out = answer["fan_out_id"].as_str().unwrap().to_owned();
    // Not due yet: nothing leaves.
    server.dispatch().await;
    assert!(receiver.received().is_empty());
    assert_eq!(
        summary(&admin, &fan_out).await["statuses"],
        json!({ "scheduled": 3 })
    );
    server.clock.advance(30_000);
    assert_eq!(server.dispatch().await.delivered, 3);
    let requests = receiver.received();
    assert_eq!(requests.len(), 3);
    let mut recipients = Vec::new();
    let mut ids = std::collections::BTreeSet::new();
    for request in &requests {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["data"]["content"], "to your hooks");
        let recipient = body["data"]["recipient_id"].as_str().unwrap().to_owned();
        let index = members
            .iter()
            .position(|member| member.user_id() == recipient)
            .expect("a member");
        crate::webhook_signature::verify_with_reference_library(&secrets[index], request)
            .expect("signed with the member's own secret");
        ids.insert(request.headers["webhook-id"].to_str().unwrap().to_owned());
        recipients.push(recipient);
    }
    assert_eq!(ids.len(), 3, "one message id per member");
    recipients.sort();
    let mut expected: Vec<String> = members.iter().map(|m| m.user_id().to_owned()).collect();
    expected.sort();
    assert_eq!(recipients, expected);
    assert_eq!(
        summary(&admin, &fan_out).await["statuses"],
        json!({ "delivered": 3 })
    );
}

async fn bad_fan_outs_are_refused_and_store_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let (group, members) = team(&server, &admin).await;
    let empty = create_group(&admin, "nobody").await;
    let other = server.tenant_admin("other").await;
    let others = create_group(&other, "theirs").await;
    other
        .api
        .put(
            &format!("/groups/{others}/members/{}", other.user_id()),
            json!({}),
        )
        .await
        .expect(200);

    let refuse = |body: Value, status: u16, code: &'static str| {
        let api = admin.api.clone();
        async move { api.post("/messages", body).await.problem(status, code).body }
    };
    let both = refuse(
        json!({ "group_id": group, "recipient_id": members[0].user_id(), "content": "x" }),
        422,
        "invalid_field",
    )
    .await;
    assert_eq!(both["field"], "/group_id");
    assert_eq!(
        both["detail"],
        "/group_id: give recipient_id or group_id, not both"
    );
    let neither = refuse(json!({ "content": "x" }), 422, "invalid_field").await;
    assert_eq!(neither["field"], "/recipient_id");
    assert_eq!(
        neither["detail"],
        "/recipient_id: give the recipient (recipient_id) or a group (group_id)"
    );
    for id in [
        others.as_str(),
        "grp_01JZZZZZZZZZZZZZZZZZZZZZZZ",
        "not-a-group",
    ] {
        let missing = refuse(json!({ "group_id": id, "content": "x" }), 404, "not_found").await;
        assert_eq!(missing["detail"], NO_GROUP);
    }
    let nobody = refuse(
        json!({ "group_id": empty, "content": "x" }),
        422,
        "invalid_field",
    )
    .await;
    assert_eq!(nobody["field"], "/group_id");
    assert_eq!(
        nobody["detail"],
        "/group_id: the group has no members; add some with PUT /groups/{id}/members/{user_id}"
    );
    // A field, or a validator, refusing the message refuses it for every member.
    let malformed = refuse(
        json!({ "group_id": group, "content": "x", "deliver_at": "soon" }),
        422,
        "invalid_field",
    )
    .await;
    assert_eq!(malformed["field"], "/deliver_at");
    let rejected = refuse(json!({ "group_id": group, "content": "" }), 422, "rejected").await;
    assert_eq!(rejected["reason_code"], "content_empty");
    assert_eq!(rejected["plugin"], "content-guard");
    // A batch sends to recipients only.
    let batch = admin
        .api
        .post(
            "/messages/batch",
            json!({ "messages": [{ "group_id": group, "content": "x" }] }),
        )
        .await
        .problem(422, "invalid_field");
    assert_eq!(batch.body["field"], "/messages/0/group_id");
    assert_eq!(
        batch.body["detail"],
        "/messages/0/group_id: send to a group with POST /messages, one submission at a time"
    );

    assert_eq!(count(&server, "messages").await, 0);
    assert_eq!(count(&server, "message_states").await, 0);
    assert_eq!(count(&server, "fan_outs").await, 0);
    assert_eq!(server.dispatch().await.delivered, 0);
}

async fn an_idempotency_key_replays_a_fan_out(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let (group, _) = team(&server, &admin).await;
    let body = json!({ "group_id": group, "content": "once" });
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let send = |key: &str, body: Value| {
        client
            .post(format!("{}/messages", server.url))
            .bearer_auth(&admin.token)
            .header("idempotency-key", key)
            .json(&body)
            .send()
    };
    let first = send("fan-1", body.clone()).await.unwrap();
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let again = send("fan-1", body.clone()).await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again, first);
    assert_eq!(count(&server, "messages").await, 3);
    assert_eq!(count(&server, "fan_outs").await, 1);

    let changed = send("fan-1", json!({ "group_id": group, "content": "twice" }))
        .await
        .unwrap();
    assert_eq!(changed.status(), 422);
    let changed: Value = changed.json().await.unwrap();
    assert_eq!(changed["code"], "idempotency_key_reused");
    assert_eq!(count(&server, "messages").await, 3);
}

/// Users made straight in the database (argon2 for 10,000 logins would take minutes): live
/// users of the tenant with usernames `bulk-N`.
async fn bulk_users(server: &TestServer, tenant: &str, count: usize) -> Vec<String> {
    let ids: Vec<String> = (0..count)
        .map(|_| dms::domain::ids::UserId::new().to_string())
        .collect();
    for (chunk_index, chunk) in ids.chunks(1_000).enumerate() {
        let rows: Vec<String> = chunk
            .iter()
            .enumerate()
            .map(|(n, id)| {
                let name = format!("bulk-{}", chunk_index * 1_000 + n);
                format!(
                    "('{id}', '{tenant}', '{name}', NULL, 'member', 'x', 0, '{name}', '{name}')"
                )
            })
            .collect();
        server
            .sql(&format!(
                "INSERT INTO users (id, tenant_id, username, display_name, role, password_hash, \
                 created_at_ms, username_key, username_skeleton) VALUES {}",
                rows.join(", ")
            ))
            .await;
    }
    ids
}

async fn ten_thousand_members_are_accepted_in_one_request(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let ids = bulk_users(&server, admin.tenant_id(), 10_000).await;
    let group = create_group(&admin, "everyone").await;
    // A request body holds about 7,000 ids (DMS_MAX_BODY_BYTES): two requests.
    for half in ids.chunks(5_000) {
        admin
            .api
            .post(
                &format!("/groups/{group}/members"),
                json!({ "user_ids": half }),
            )
            .await
            .expect(200);
    }
    let started = std::time::Instant::now();
    let answer = admin
        .api
        .post(
            "/messages",
            json!({ "group_id": group, "content": "all hands" }),
        )
        .await
        .expect(201)
        .body;
    eprintln!(
        "fan-out of 10,000 accepted in {:?} ({backend:?}, this build)",
        started.elapsed()
    );
    assert_eq!(answer["count"], 10_000);
    let fan_out = answer["fan_out_id"].as_str().unwrap();
    let summary = summary(&admin, fan_out).await;
    assert_eq!(summary["total"], 10_000);
    assert_eq!(summary["statuses"], json!({ "scheduled": 10_000 }));
    assert_eq!(count(&server, "messages").await, 10_000);
    assert_eq!(count(&server, "message_events").await, 10_000);
}
