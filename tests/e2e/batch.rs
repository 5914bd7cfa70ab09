//! `POST /messages/batch` on both deployments: each item decided on its own and answered in
//! order, the accepted ones stored (and delivered) like single submits, the limits on items and
//! bytes named in their problems, an `Idempotency-Key` covering the whole batch, and another
//! tenant's users refused item by item.

use serde_json::{Value, json};

use crate::harness::{Backend, Login, TestServer, on_both_backends, status};

on_both_backends!(
    a_mixed_batch_answers_every_item_in_order,
    a_batch_over_its_limits_is_refused_whole_and_stores_nothing,
    an_idempotency_key_covers_the_whole_batch,
    items_for_another_tenants_users_are_refused,
);

async fn admin_and_bob(server: &TestServer) -> (Login, Login) {
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    (admin, bob)
}

async fn sent(admin: &Login) -> Vec<Value> {
    admin
        .api
        .get("/messages?box=sent&limit=100")
        .await
        .expect(200)
        .body["items"]
        .as_array()
        .unwrap()
        .clone()
}

async fn a_mixed_batch_answers_every_item_in_order(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (admin, bob) = admin_and_bob(&server).await;
    let bob_id = bob.user_id();
    let reply = admin
        .api
        .post(
            "/messages/batch",
            json!({ "messages": [
                { "recipient_id": bob_id, "content": "first", "metadata": { "n": "0" } },
                { "recipient_id": bob_id, "content": "" },
                { "recipient_id": "usr_01JZZZZZZZZZZZZZZZZZZZZZZZ", "content": "to nobody" },
                { "recipient_id": bob_id, "content": "later", "delay_seconds": 60 },
                { "recipient_id": bob_id, "content": "far", "deliver_at": "2999-01-01T00:00:00Z" },
            ]}),
        )
        .await
        .expect(200);
    let body = &reply.body;
    assert_eq!(body["accepted"], 2, "{body}");
    assert_eq!(body["rejected"], 3, "{body}");
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    for (index, item) in items.iter().enumerate() {
        assert_eq!(item["index"], index, "{item}");
    }
    let accepted = |n: usize| {
        assert_eq!(items[n]["status"], 201, "{}", items[n]);
        assert!(items[n].get("problem").is_none());
        items[n]["message"].clone()
    };
    let refused = |n: usize, status: u16, code: &str| {
        let item = &items[n];
        assert_eq!(item["status"], status, "{item}");
        assert!(item.get("message").is_none(), "{item}");
        let problem = &item["problem"];
        assert_eq!(problem["code"], code, "{item}");
        assert_eq!(problem["status"], status, "{item}");
        assert_eq!(problem["type"], format!("/problems/{code}"), "{item}");
        assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()));
        problem.clone()
    };
    let first = accepted(0);
    assert_eq!(first["status"], "scheduled");
    assert_eq!(first["content"], "first");
    assert_eq!(first["metadata"]["n"], "0");
    let empty = refused(1, 422, "rejected");
    assert_eq!(empty["reason_code"], "content_empty");
    assert_eq!(empty["plugin"], "content-guard");
    let nobody = refused(2, 422, "invalid_field");
    assert_eq!(nobody["field"], "/recipient_id");
    assert_eq!(
        nobody["detail"],
        "/recipient_id: there is no such user in your tenant"
    );
    let later = accepted(3);
    assert_eq!(
        crate::harness::ms(&later["deliver_at"]),
        crate::harness::ms(&later["created_at"]) + 60_000
    );
    let far = refused(4, 422, "rejected");
    assert_eq!(far["reason_code"], "delay_too_long");
    assert_eq!(far["plugin"], "standard-delay");

    // Exactly the accepted ones are stored, as the answer showed them.
    let stored = sent(&admin).await;
    assert_eq!(stored.len(), 2);
    for message in [&first, &later] {
        let id = message["id"].as_str().unwrap();
        let got = admin
            .api
            .get(&format!("/messages/{id}"))
            .await
            .expect(200)
            .body;
        assert_eq!(&got, message);
    }
    // And delivered like any other.
    server.dispatch().await;
    assert_eq!(
        status(&admin, first["id"].as_str().unwrap()).await["status"],
        "delivered"
    );
    assert_eq!(
        status(&admin, later["id"].as_str().unwrap()).await["status"],
        "scheduled"
    );
    // Its history names both decisions, like a single submit's.
    let history = admin
        .api
        .get(&format!(
            "/messages/{}/events",
            first["id"].as_str().unwrap()
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
    assert_eq!(plugins, ["content-guard", "standard-delay", "inbox"]);

    // A malformed item refuses the whole batch, naming it within the body; nothing is stored.
    for (item, field) in [
        (
            json!({ "recipient_id": bob_id, "content": 5 }),
            "/messages/1/content",
        ),
        (
            json!({ "recipient_id": "usr_nope", "content": "x" }),
            "/messages/1/recipient_id",
        ),
        (
            json!({ "recipient_id": bob_id, "content": "x", "channel": "carrier-pigeon" }),
            "/messages/1/channel",
        ),
        (
            json!({ "recipient_id": bob_id, "content": "x", "surprise": true }),
            "/messages/1/surprise",
        ),
        (
            json!({ "recipient_id": bob_id, "content": "x", "delay_seconds": 5,
                    "deliver_at": "2030-01-01T00:00:00Z" }),
            "/messages/1/deliver_at",
        ),
        (json!({ "content": "x" }), "/messages/1/recipient_id"),
    ] {
        let refused = admin
            .api
            .post(
                "/messages/batch",
                json!({ "messages": [
                    { "recipient_id": bob_id, "content": "fine" },
                    item.clone(),
                ]}),
            )
            .await
            .problem(422, "invalid_field");
        assert_eq!(refused.body["field"], field, "{item}: {}", refused.body);
    }
    assert_eq!(
        sent(&admin).await.len(),
        2,
        "nothing of the refused batches"
    );
}

async fn a_batch_over_its_limits_is_refused_whole_and_stores_nothing(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.max_batch_body_bytes = 300_000;
    })
    .await;
    let (admin, bob) = admin_and_bob(&server).await;
    let item = json!({ "recipient_id": bob.user_id(), "content": "x" });

    let too_many = admin
        .api
        .post(
            "/messages/batch",
            json!({ "messages": vec![item.clone(); 1001] }),
        )
        .await
        .problem(422, "invalid_field");
    assert_eq!(too_many.body["field"], "/messages");
    assert_eq!(too_many.body["limit"], 1000);
    assert!(
        too_many.body["detail"]
            .as_str()
            .unwrap()
            .contains("1 to 1000 messages; this one has 1001"),
        "{}",
        too_many.body
    );

    let empty = admin
        .api
        .post("/messages/batch", json!({ "messages": [] }))
        .await
        .problem(422, "invalid_field");
    assert_eq!(empty.body["field"], "/messages");
    let missing = admin
        .api
        .post("/messages/batch", json!({}))
        .await
        .problem(422, "invalid_field");
    assert_eq!(missing.body["field"], "/messages");
    let extra = admin
        .api
        .post(
            "/messages/batch",
            json!({ "messages": [item.clone()], "priority": 1 }),
        )
        .await
        .problem(422, "invalid_field");
    assert_eq!(extra.body["field"], "/priority");

    // Over DMS_MAX_BATCH_BODY_BYTES (300,000 here): declared, and sent without a length.
    let big = json!({ "messages": vec![
        json!({ "recipient_id": bob.user_id(), "content": "y".repeat(1_000) });
        400
    ]});
    let declared = admin
        .api
        .post("/messages/batch", big.clone())
        .await
        .problem(413, "payload_too_large");
    assert_eq!(declared.body["limit"], 300_000);
    assert!(
        declared.body["detail"]
            .as_str()
            .unwrap()
            .contains("DMS_MAX_BATCH_BODY_BYTES"),
        "{}",
        declared.body
    );
    let (status, streamed) = post_chunked(
        &server.url,
        &admin.token,
        "/messages/batch",
        big.to_string(),
    )
    .await;
    assert_eq!(status, 413, "{streamed}");
    assert_eq!(streamed["code"], "payload_too_large");
    assert_eq!(streamed["limit"], 300_000);
    let total = server
        .sql_column("SELECT CAST(COUNT(*) AS TEXT) FROM messages")
        .await;
    assert_eq!(total, ["0"], "nothing of the refused batches");

    // Exactly 1,000 items, within the byte limit, go through.
    let fits = json!({ "messages": vec![item; 1000] });
    assert_eq!(
        admin
            .api
            .post("/messages/batch", fits)
            .await
            .expect(200)
            .body["accepted"],
        1000
    );
    let total = server
        .sql_column("SELECT CAST(COUNT(*) AS TEXT) FROM messages")
        .await;
    assert_eq!(total, ["1000"]);
}

/// POSTs `body` without a length (chunked), as a client streaming it would: the limit is
/// found while reading. The status and the JSON answer.
async fn post_chunked(url: &str, token: &str, path: &str, body: String) -> (u16, Value) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let address = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server may answer and close before the whole body is sent.
    for chunk in body.as_bytes().chunks(16 * 1024) {
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
        if stream.write_all(&framed).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

async fn an_idempotency_key_covers_the_whole_batch(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (admin, bob) = admin_and_bob(&server).await;
    let body = json!({ "messages": [
        { "recipient_id": bob.user_id(), "content": "one" },
        { "recipient_id": bob.user_id(), "content": "" },
        { "recipient_id": bob.user_id(), "content": "three", "delay_seconds": 5 },
    ]});
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let post = |body: &Value, key: &str| {
        client
            .post(format!("{}/messages/batch", server.url))
            .bearer_auth(&admin.token)
            .header("idempotency-key", key)
            .json(body)
            .send()
    };
    let first = post(&body, "batch-7").await.unwrap();
    assert_eq!(first.status(), 200);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["accepted"], 2);

    let again = post(&body, "batch-7").await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again, first, "the first answer, refused item included");

    let other = json!({ "messages": [{ "recipient_id": bob.user_id(), "content": "four" }] });
    let refused = post(&other, "batch-7").await.unwrap();
    assert_eq!(refused.status(), 422);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["code"], "idempotency_key_reused");
    assert_eq!(sent(&admin).await.len(), 2, "stored once");

    // A key on a batch whose every item was refused still answers the same way again.
    let none = json!({ "messages": [{ "recipient_id": bob.user_id(), "content": "" }] });
    let answer: Value = post(&none, "batch-8").await.unwrap().json().await.unwrap();
    assert_eq!(answer["accepted"], 0);
    let replay = post(&none, "batch-8").await.unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.json::<Value>().await.unwrap(), answer);
}

async fn items_for_another_tenants_users_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (admin, bob) = admin_and_bob(&server).await;
    let other = server.tenant_admin("other").await;
    let reply = other
        .api
        .post(
            "/messages/batch",
            json!({ "messages": [
                { "recipient_id": bob.user_id(), "content": "not yours" },
                { "recipient_id": other.user_id(), "content": "mine" },
                { "recipient_id": admin.user_id(), "content": "not yours either" },
            ]}),
        )
        .await
        .expect(200);
    let items = reply.body["items"].as_array().unwrap();
    assert_eq!(reply.body["accepted"], 1);
    for n in [0, 2] {
        assert_eq!(items[n]["problem"]["code"], "invalid_field");
        assert_eq!(items[n]["problem"]["field"], "/recipient_id");
        assert_eq!(
            items[n]["problem"]["detail"],
            "/recipient_id: there is no such user in your tenant"
        );
    }
    assert_eq!(items[1]["status"], 201);
    // Nothing reached the first tenant.
    server.dispatch().await;
    let inbox = bob.api.get("/messages?box=received").await.expect(200).body;
    assert!(inbox["items"].as_array().unwrap().is_empty());
    assert_eq!(sent(&admin).await.len(), 0);
}
