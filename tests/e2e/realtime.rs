//! Real-time delivery end to end, with real clients: the `/ws` protocol (a Rust WebSocket
//! client) and Socket.IO (the npm `socket.io-client`), on both storage backends, and two nodes
//! sharing PostgreSQL and a Redis that restarts.

use std::time::Duration;

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{
    Backend, Login, RedisServer, SioClient, TestServer, WsClient, eventually, on_both_backends,
};

on_both_backends!(
    a_delayed_message_reaches_every_open_socket_and_the_sender_sees_status_then_read,
    a_client_that_was_away_resumes_all_100_in_order_without_duplicates,
    a_cursor_past_retention_gets_resync_required,
    socket_io_clients_get_the_same_events,
);

async fn admin_and_bob(server: &TestServer) -> (Login, Login) {
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    (admin, bob)
}

/// Sends `count` messages from `from` to `to`, due now, and delivers them.
async fn deliver(server: &TestServer, from: &Login, to: &Login, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..count {
        let reply = from
            .api
            .post(
                "/messages",
                json!({ "recipient_id": to.user_id(), "content": format!("message {i}") }),
            )
            .await
            .expect(201);
        ids.push(reply.body["id"].as_str().unwrap().to_owned());
    }
    let report = server.dispatch().await;
    assert_eq!(report.delivered, count, "{report:?}");
    ids
}

async fn a_delayed_message_reaches_every_open_socket_and_the_sender_sees_status_then_read(
    backend: Backend,
) {
    let server = TestServer::start(backend).await;
    let (admin, bob) = admin_and_bob(&server).await;
    let (mut sender, ready) = WsClient::connect(&server.url, &admin.token).await;
    assert_eq!(ready["cursor"], 0);
    assert_eq!(ready["user_id"], admin.user_id());
    let (mut phone, _) = WsClient::connect(&server.url, &bob.token).await;
    // A browser authenticates with the query parameter.
    let (mut laptop, _) =
        WsClient::try_connect(&server.url, &format!("/ws?token={}", bob.token), &[])
            .await
            .map(|client| (client, ()))
            .unwrap();
    assert_eq!(laptop.next().await["type"], "ready");

    let sent = admin
        .api
        .post(
            "/messages",
            json!({ "recipient_id": bob.user_id(), "content": "see you at 5", "delay_seconds": 5 }),
        )
        .await
        .expect(201);
    let id = sent.body["id"].as_str().unwrap().to_owned();
    assert_eq!(server.dispatch().await.delivered, 0, "not due yet");
    phone.expect_quiet().await;

    server.clock.advance(5_000);
    assert_eq!(server.dispatch().await.delivered, 1);
    for socket in [&mut phone, &mut laptop] {
        let event = socket.next().await;
        assert_eq!(event["type"], "message", "{event}");
        assert_eq!(event["cursor"], 1);
        assert_eq!(event["message"]["id"], id);
        assert_eq!(event["message"]["content"], "see you at 5");
        assert_eq!(event["message"]["sender_id"], admin.user_id());
    }
    let status = sender.next().await;
    assert_eq!(
        (
            &status["type"],
            &status["status"],
            &status["message_id"],
            &status["cursor"]
        ),
        (&json!("status"), &json!("delivered"), &json!(id), &json!(1)),
        "{status}"
    );

    phone.send(json!({ "type": "ack", "message_id": id })).await;
    assert_eq!(
        phone.next().await,
        json!({ "type": "acked", "message_id": id })
    );
    let read = sender.next().await;
    assert_eq!(read["type"], "read", "{read}");
    assert_eq!(read["message_id"], id);
    assert_eq!(read["reader_id"], bob.user_id());
    assert_eq!(read["cursor"], 2);
    let stored = bob
        .api
        .get(&format!("/messages/{id}"))
        .await
        .expect(200)
        .body;
    assert_eq!(stored["status"], "read");

    // Acking someone else's message, or nothing, is an error frame; the connection goes on.
    sender
        .send(json!({ "type": "ack", "message_id": id }))
        .await;
    let refused = sender.next().await;
    assert_eq!(
        (&refused["type"], &refused["code"], &refused["message_id"]),
        (&json!("error"), &json!("forbidden"), &json!(id))
    );
    phone
        .send(json!({ "type": "ack", "message_id": "msg_nope" }))
        .await;
    assert_eq!(phone.next().await["code"], "not_found");
    phone.send(json!({ "type": "dance" })).await;
    let invalid = phone.next().await;
    assert_eq!(invalid["code"], "invalid_frame", "{invalid}");
    phone
        .send_raw(Message::Text("{not json".into()))
        .await
        .unwrap();
    assert_eq!(phone.next().await["code"], "invalid_frame");
    phone.expect_quiet().await;
    laptop.expect_quiet().await;
    sender.expect_quiet().await;
}

async fn a_client_that_was_away_resumes_all_100_in_order_without_duplicates(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (admin, bob) = admin_and_bob(&server).await;
    let ids = deliver(&server, &admin, &bob, 1).await;
    let (bob_socket, ready) = WsClient::connect(&server.url, &bob.token).await;
    assert_eq!(ready["cursor"], 1);
    drop(bob_socket);

    let away = deliver(&server, &admin, &bob, 100).await;
    let (mut bob_socket, ready) = WsClient::connect(&server.url, &bob.token).await;
    assert_eq!(ready["cursor"], 101);
    bob_socket
        .send(json!({ "type": "resume", "cursor": 1 }))
        .await;
    let mut seen = Vec::new();
    for cursor in 2..=101 {
        let event = bob_socket.next().await;
        assert_eq!(
            (&event["type"], &event["cursor"]),
            (&json!("message"), &json!(cursor)),
            "{event}"
        );
        seen.push(event["message"]["id"].as_str().unwrap().to_owned());
    }
    let mut sorted_seen = seen.clone();
    sorted_seen.sort();
    let mut sorted_away = away.clone();
    sorted_away.sort();
    assert_eq!(sorted_seen, sorted_away, "every message once");
    assert_eq!(
        bob_socket.next().await,
        json!({ "type": "resumed", "cursor": 101 })
    );
    bob_socket.expect_quiet().await;

    // Live events continue after the replay, and a cursor given at connect replays at once.
    deliver(&server, &admin, &bob, 1).await;
    assert_eq!(bob_socket.next().await["cursor"], 102);
    let (mut again, _) = WsClient::connect_at(&server.url, "/ws?cursor=100", &bob.token).await;
    assert_eq!(again.next().await["cursor"], 101);
    assert_eq!(again.next().await["cursor"], 102);
    assert_eq!(
        again.next().await,
        json!({ "type": "resumed", "cursor": 102 })
    );
    assert_eq!(ids.len(), 1);

    // Nothing to replay is fine; a cursor never handed out is not.
    again.send(json!({ "type": "resume", "cursor": 102 })).await;
    assert_eq!(
        again.next().await,
        json!({ "type": "resumed", "cursor": 102 })
    );
    again.send(json!({ "type": "resume", "cursor": 500 })).await;
    let resync = again.next().await;
    assert_eq!(
        (&resync["type"], &resync["cursor"]),
        (&json!("resync_required"), &json!(102)),
        "{resync}"
    );
}

async fn a_cursor_past_retention_gets_resync_required(backend: Backend) {
    let server = TestServer::start_with(backend, |config| config.feed_retention_seconds = 1).await;
    let (admin, bob) = admin_and_bob(&server).await;
    deliver(&server, &admin, &bob, 3).await;
    // Past retention on the server's clock; the pruner runs every second.
    server.clock.advance(10_000);
    eventually("the pruner removed the old events", || async {
        server
            .sql_column("SELECT CAST(COUNT(*) AS TEXT) FROM feed_events")
            .await[0]
            == "0"
    })
    .await;
    deliver(&server, &admin, &bob, 1).await;

    let (mut socket, ready) = WsClient::connect(&server.url, &bob.token).await;
    assert_eq!(ready["cursor"], 4);
    socket.send(json!({ "type": "resume", "cursor": 1 })).await;
    let resync = socket.next().await;
    assert_eq!(resync["type"], "resync_required", "{resync}");
    assert_eq!(resync["cursor"], 4);
    assert!(
        resync["detail"]
            .as_str()
            .unwrap()
            .contains("past retention"),
        "{resync}"
    );
    // The cursor after the pruned ones still replays.
    socket.send(json!({ "type": "resume", "cursor": 3 })).await;
    assert_eq!(socket.next().await["cursor"], 4);
    assert_eq!(
        socket.next().await,
        json!({ "type": "resumed", "cursor": 4 })
    );
}

async fn socket_io_clients_get_the_same_events(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (admin, bob) = admin_and_bob(&server).await;
    let mut refused = SioClient::connect(&server.url, json!({ "token": "nope" })).await;
    let (event, data) = refused.next().await;
    assert_eq!(event, "connect_error");
    assert!(
        data["message"].as_str().unwrap().contains("invalid"),
        "{data}"
    );
    refused.close().await;

    let mut sender = SioClient::connect(&server.url, json!({ "token": admin.token })).await;
    let mut recipient = SioClient::connect(&server.url, json!({ "token": bob.token })).await;
    for client in [&mut sender, &mut recipient] {
        assert_eq!(client.next().await.0, "connect");
        let (event, data) = client.next().await;
        assert_eq!(event, "ready", "{data}");
        assert_eq!(data["cursor"], 0);
    }
    let ids = deliver(&server, &admin, &bob, 1).await;
    let (event, data) = recipient.next().await;
    assert_eq!(event, "message");
    assert_eq!(data["message"]["id"], ids[0]);
    assert_eq!(data["cursor"], 1);
    let (event, data) = sender.next().await;
    assert_eq!(
        (event.as_str(), &data["status"]),
        ("status", &json!("delivered"))
    );

    recipient.emit("ack", json!({ "message_id": ids[0] })).await;
    assert_eq!(
        recipient.next().await,
        (
            "acked".to_owned(),
            json!({ "type": "acked", "message_id": ids[0] })
        )
    );
    let (event, data) = sender.next().await;
    assert_eq!(
        (event.as_str(), &data["message_id"]),
        ("read", &json!(ids[0]))
    );

    // Resume from the handshake's cursor.
    let more = deliver(&server, &admin, &bob, 2).await;
    assert_eq!(recipient.next().await.1["cursor"], 2);
    assert_eq!(recipient.next().await.1["cursor"], 3);
    let mut late =
        SioClient::connect(&server.url, json!({ "token": bob.token, "cursor": 1 })).await;
    assert_eq!(late.next().await.0, "connect");
    assert_eq!(late.next().await.0, "ready");
    for (cursor, id) in [(2, &more[0]), (3, &more[1])] {
        let (event, data) = late.next().await;
        assert_eq!(
            (event.as_str(), &data["cursor"]),
            ("message", &json!(cursor))
        );
        assert!(
            more.contains(
                data["message"]["id"]
                    .as_str()
                    .map(str::to_owned)
                    .as_ref()
                    .unwrap()
            ),
            "{id}"
        );
    }
    assert_eq!(late.next().await.0, "resumed");
    late.emit("ping", Value::Null).await;
    assert_eq!(late.next().await.0, "pong");
    late.emit("resume", json!("seven")).await;
    let (event, data) = late.next().await;
    assert_eq!(
        (event.as_str(), &data["code"]),
        ("error", &json!("invalid_frame")),
        "{data}"
    );

    // Logging out ends the Socket.IO connection with the same code as /ws.
    bob.api.post("/auth/logout", json!({})).await.expect(204);
    for client in [&mut recipient, &mut late] {
        let (event, data) = client.next().await;
        assert_eq!(
            (event.as_str(), &data["code"]),
            ("close", &json!(4003)),
            "{data}"
        );
        assert_eq!(client.next().await.0, "disconnect");
    }
    for client in [sender, recipient, late] {
        client.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_before_the_upgrade_are_problems() {
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.allowed_origins = "https://app.example".into();
    })
    .await;
    let admin = server.admin().await;
    let bearer = format!("Bearer {}", admin.token);

    let refused = WsClient::try_connect(&server.url, "/ws", &[("authorization", "Bearer nope")])
        .await
        .err()
        .unwrap();
    assert_eq!(refused.status, 401);
    assert_eq!(refused.content_type, "application/problem+json");
    assert_eq!(refused.body["code"], "invalid_token");

    let refused = WsClient::try_connect(
        &server.url,
        "/ws",
        &[
            ("authorization", &bearer),
            ("origin", "https://evil.example"),
        ],
    )
    .await
    .err()
    .unwrap();
    assert_eq!(refused.status, 403);
    assert_eq!(refused.body["code"], "origin_not_allowed");
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap()
            .contains("https://evil.example")
    );

    for origin in ["https://app.example", &server.url] {
        let mut client = WsClient::try_connect(
            &server.url,
            "/ws",
            &[("authorization", &bearer), ("origin", origin)],
        )
        .await
        .unwrap_or_else(|refused| panic!("{origin}: {refused:?}"));
        assert_eq!(client.next().await["type"], "ready");
    }

    let plain = server.api().get("/ws").await;
    assert_eq!(plain.status, 426, "{:?}", plain.body);
    assert_eq!(plain.body["code"], "websocket_required");
    let bad_query = WsClient::try_connect(
        &server.url,
        "/ws?cursor=minus-one",
        &[("authorization", &bearer)],
    )
    .await
    .err()
    .unwrap();
    assert_eq!(bad_query.status, 400);
    assert_eq!(bad_query.body["code"], "invalid_query");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_frame_auth_and_token_expiry() {
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.access_token_ttl_seconds = 2;
    })
    .await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;

    // A first auth frame.
    let mut client = WsClient::try_connect(&server.url, "/ws", &[])
        .await
        .unwrap();
    client
        .send(json!({ "type": "auth", "token": bob.token }))
        .await;
    let ready = client.next().await;
    assert_eq!(
        (&ready["type"], &ready["user_id"]),
        (&json!("ready"), &json!(bob.user_id()))
    );
    // Another user's token in band is refused and closes.
    client
        .send(json!({ "type": "auth", "token": admin.token }))
        .await;
    assert_eq!(client.closed().await.0, 4002);

    // A bad first frame closes; so does the token running out without a refresh.
    let mut client = WsClient::try_connect(&server.url, "/ws", &[])
        .await
        .unwrap();
    client.send(json!({ "type": "ping" })).await;
    assert_eq!(client.closed().await.0, 4002);
    let (mut client, _) = WsClient::connect(&server.url, &bob.token).await;
    let (code, reason) = client.closed().await;
    assert_eq!(code, 4001, "{reason}");
    assert!(reason.contains("expired"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_band_refresh_moves_the_expiry_and_revocation_closes_the_connection() {
    let server = TestServer::start(Backend::Sqlite).await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    let (mut client, ready) = WsClient::connect(&server.url, &bob.token).await;
    server.clock.advance(60_000);
    let refreshed = server
        .api()
        .post(
            "/auth/refresh",
            json!({ "refresh_token": bob.refresh_token }),
        )
        .await
        .expect(200);
    let fresh = Login::from_reply(&server.url, refreshed.body);
    client
        .send(json!({ "type": "auth", "token": fresh.token }))
        .await;
    let refreshed = client.next().await;
    assert_eq!(refreshed["type"], "authenticated");
    assert!(refreshed["expires_at_ms"].as_u64() > ready["expires_at_ms"].as_u64());

    // Logout ends the session's connections; deleting the user ends all of theirs.
    let (mut other, _) = WsClient::connect(&server.url, &fresh.token).await;
    fresh.api.post("/auth/logout", json!({})).await.expect(204);
    for socket in [&mut client, &mut other] {
        let (code, reason) = socket.closed().await;
        assert_eq!(code, 4003, "{reason}");
        assert!(reason.contains("logged out"), "{reason}");
    }
    // A stolen refresh token presented twice revokes its session, and its connections.
    let dave = server.member(&server.admin().await, "dave").await;
    let (mut socket, _) = WsClient::connect(&server.url, &dave.token).await;
    let refresh = json!({ "refresh_token": dave.refresh_token });
    server
        .api()
        .post("/auth/refresh", refresh.clone())
        .await
        .expect(200);
    server
        .api()
        .post("/auth/refresh", refresh)
        .await
        .problem(401, "refresh_token_reused");
    let (code, reason) = socket.closed().await;
    assert_eq!(code, 4003, "{reason}");
    assert!(reason.contains("used twice"), "{reason}");

    let admin = server.admin().await;
    let carol = server.member(&admin, "carol").await;
    let (mut socket, _) = WsClient::connect(&server.url, &carol.token).await;
    admin
        .api
        .delete(&format!("/users/{}", carol.user_id()))
        .await
        .expect(204);
    assert_eq!(socket.closed().await.0, 4003);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_answering_heartbeats_is_dropped_and_goes_offline() {
    let server =
        TestServer::start_with(Backend::Sqlite, |config| config.ws_heartbeat_ms = 200).await;
    let admin = server.admin().await;
    let (mut silent, _) = WsClient::connect(&server.url, &admin.token).await;
    let online = || async {
        dms::sandbox::Presence::is_online(
            server.state.hub.as_ref(),
            admin.tenant_id(),
            admin.user_id(),
        )
        .await
    };
    assert!(online().await);
    // Not reading means not answering pings (the client answers them as it reads).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (code, reason) = silent.closed().await;
    assert_eq!(code, 4009, "{reason}");
    eventually("the dropped peer no longer counts as online", || async {
        !online().await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutting_down_closes_connections_with_going_away() {
    let mut server = TestServer::start(Backend::Sqlite).await;
    let admin = server.admin().await;
    let (mut socket, _) = WsClient::connect(&server.url, &admin.token).await;
    let mut sio = SioClient::connect(&server.url, json!({ "token": admin.token })).await;
    assert_eq!(sio.next().await.0, "connect");
    assert_eq!(sio.next().await.0, "ready");
    server.stop().await;
    let (code, reason) = socket.closed().await;
    assert_eq!(code, 1001, "{reason}");
    let (event, data) = sio.next().await;
    assert_eq!(
        (event.as_str(), &data["code"]),
        ("close", &json!(1001)),
        "{data}"
    );
    sio.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_auth_frame_within_five_seconds_closes() {
    let server = TestServer::start(Backend::Sqlite).await;
    let mut client = WsClient::try_connect(&server.url, "/ws", &[])
        .await
        .unwrap();
    let (code, reason) = client.closed().await;
    assert_eq!(code, 4000, "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_frames_floods_and_slow_readers_are_closed() {
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.ws_frames_per_second = 5;
        config.ws_outbound_queue = 1;
        config.rate_limit_api_per_second = 10_000;
        config.rate_limit_api_burst = 10_000;
    })
    .await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;

    let (mut client, _) = WsClient::connect(&server.url, &bob.token).await;
    let huge = json!({ "type": "ping", "pad": "x".repeat(70 << 10) });
    let _ = client
        .send_raw(Message::Text(huge.to_string().into()))
        .await;
    assert_eq!(client.closed().await.0, 1009);

    let (mut client, _) = WsClient::connect(&server.url, &bob.token).await;
    for _ in 0..30 {
        if client
            .send_raw(Message::Text(json!({ "type": "ping" }).to_string().into()))
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(client.closed().await.0, 4029);

    // With a queue of one event, 200 deliveries committed in groups leave the reader behind:
    // it is closed, and resumes from its last cursor without losing anything.
    let (mut client, _) = WsClient::connect(&server.url, &bob.token).await;
    deliver(&server, &admin, &bob, 200).await;
    let mut last = 0;
    let code = loop {
        match client.next_or_close().await {
            Ok(event) => last = event["cursor"].as_u64().unwrap(),
            Err((code, _)) => break code,
        }
    };
    assert_eq!(code, 4008);
    assert!(last < 200);
    let (mut client, _) =
        WsClient::connect_at(&server.url, &format!("/ws?cursor={last}"), &bob.token).await;
    let mut cursor = last;
    loop {
        let event = client.next().await;
        if event["type"] == "resumed" {
            break;
        }
        cursor += 1;
        assert_eq!(event["cursor"], cursor);
    }
    assert_eq!(cursor, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_events_and_presence_through_redis_also_after_it_restarts() {
    let mut redis = RedisServer::start().await;
    let url = redis.url();
    let a = TestServer::start_with(Backend::Postgres, |config| {
        config.redis_url = dms::config::Secret::new(url.clone());
        config.redis_prefix = format!("test:{}", dms::domain::ids::TenantId::new());
    })
    .await;
    let b = TestServer::start_beside(&a, |_| {}).await;
    let admin = a.admin().await;
    let bob = a.member(&admin, "bob").await;
    let (mut on_a, _) = WsClient::connect(&a.url, &bob.token).await;
    let bob_tenant = bob.tenant_id().to_owned();
    let online = |server: &TestServer| {
        let (hub, tenant, user) = (
            server.state.hub.clone(),
            bob_tenant.clone(),
            bob.user_id().to_owned(),
        );
        async move { dms::sandbox::Presence::is_online(hub.as_ref(), &tenant, &user).await }
    };
    // Presence reaches node B through Redis.
    eventually("node B sees bob online on node A", || online(&b)).await;

    // Node B delivers; the event reaches bob's socket on node A.
    let ids = deliver(&b, &admin, &bob, 1).await;
    let event = on_a.next().await;
    assert_eq!(
        (&event["message"]["id"], &event["cursor"]),
        (&json!(ids[0]), &json!(1))
    );

    // Redis restarts (empty). What B delivers meanwhile reaches A once A resubscribes: the
    // connection catches up from the feed, without a gap.
    redis.stop().await;
    let mut during = Vec::new();
    for i in 0..2 {
        let reply = admin
            .api
            .post(
                "/messages",
                json!({ "recipient_id": bob.user_id(), "content": format!("during {i}") }),
            )
            .await
            .expect(201);
        during.push(reply.body["id"].as_str().unwrap().to_owned());
    }
    redis.start_again().await;
    // Node B's dispatcher rebuilds the empty index and delivers (rounds fail while its
    // connection to Redis comes back).
    eventually("node B delivers once Redis is back", || async {
        let _ = b.state.dispatcher.dispatch_until_idle().await;
        for id in &during {
            let status = admin
                .api
                .get(&format!("/messages/{id}/status"))
                .await
                .expect(200);
            if status.body["status"] != "delivered" {
                return false;
            }
        }
        true
    })
    .await;
    let mut got = Vec::new();
    while got.len() < 2 {
        let event = on_a.next().await;
        got.push(event["message"]["id"].as_str().unwrap().to_owned());
        assert_eq!(event["cursor"], 1 + got.len() as u64);
    }
    got.sort();
    during.sort();
    assert_eq!(got, during);
    // And live traffic flows again.
    let after = deliver(&b, &admin, &bob, 1).await;
    let event = on_a.next().await;
    assert_eq!(
        (&event["message"]["id"], &event["cursor"]),
        (&json!(after[0]), &json!(4))
    );
    on_a.expect_quiet().await;
    drop(on_a);
    eventually("node B sees bob go offline", || async { !online(&b).await }).await;
}
