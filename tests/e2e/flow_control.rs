//! Flow control per key (issue 16 §1): limits per key pattern set by tenant admins
//! (`/flow-control`), a message's `flow_key`, and the dispatcher holding a message over its
//! key's limit back (not an attempt) while other keys and tenants go on; a receiver's
//! `Retry-After` pausing its whole key; two nodes sharing a limit through Redis. And one
//! conformance suite run against both limiters (in process, and Redis).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dms::clock::Clock;
use dms::domain::ids::{MessageId, TenantId};
use dms::flow::local::LocalLimiter;
use dms::flow::redis::RedisLimiter;
use dms::flow::{Ask, FlowKey, Limiter, Spacing, Verdict};
use dms::redis_link::RedisLink;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::harness::{
    Answer, Backend, Login, Receiver, TestServer, TestStorage, eventually, on_both_backends, status,
};

on_both_backends!(
    limits_are_set_read_listed_and_removed_by_the_tenants_admins_only,
    a_flow_key_over_128_bytes_is_refused_and_nothing_is_stored,
    a_rate_spaces_a_keys_deliveries_and_waiting_is_not_an_attempt,
    parallelism_caps_a_keys_deliveries_in_flight_at_the_receiver,
    a_receivers_retry_after_pauses_its_whole_key_and_the_history_says_so,
    a_saturated_key_does_not_hold_up_other_keys_or_tenants,
    limiter_conformance,
    a_fifo_key_delivers_one_at_a_time_in_due_order_and_a_retry_holds_it,
);

/// `/flow-control/{key}` for a pattern, percent-encoded.
fn path(pattern: &str) -> String {
    format!(
        "/flow-control/{}",
        url::form_urlencoded::byte_serialize(pattern.as_bytes())
            .collect::<String>()
            .replace('+', "%20")
    )
}

async fn put(who: &Login, pattern: &str, body: Value) -> crate::harness::Reply {
    who.api.put(&path(pattern), body).await
}

/// The body without its times, which the test cannot know.
fn timeless(mut body: Value) -> Value {
    let object = body.as_object_mut().unwrap();
    assert!(object.remove("created_at").unwrap().is_string());
    assert!(object.remove("updated_at").unwrap().is_string());
    body
}

async fn limits_are_set_read_listed_and_removed_by_the_tenants_admins_only(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    let other = server.tenant_admin("other").await;

    let created = put(&admin, "*", json!({ "rate": 10 })).await.expect(201);
    assert_eq!(
        timeless(created.body),
        json!({ "key": "*", "rate": 10, "period": 1, "parallelism": null, "ordering": "any" })
    );
    let replaced = put(&admin, "*", json!({ "parallelism": 2 }))
        .await
        .expect(200);
    assert_eq!(
        timeless(replaced.body),
        json!({ "key": "*", "rate": null, "period": null, "parallelism": 2, "ordering": "any" })
    );
    let url = "https://api.example.com/*";
    put(
        &admin,
        url,
        json!({ "rate": 5, "period": 60, "parallelism": 1 }),
    )
    .await
    .expect(201);
    let one = admin.api.get(&path(url)).await.expect(200);
    assert_eq!(
        timeless(one.body),
        json!({ "key": url, "rate": 5, "period": 60, "parallelism": 1, "ordering": "any" })
    );
    let listed = admin.api.get("/flow-control").await.expect(200).body;
    let keys: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["*", url]);
    assert_eq!(
        (listed["limit"].clone(), listed["offset"].clone()),
        (json!(20), json!(0))
    );

    // Bad input: an exact 422 naming the field, and nothing written.
    let stored = server.storage().count("flow_limits").await;
    let cases = [
        (
            "k",
            json!({}),
            "/rate",
            "/rate: give a `rate` (with an optional `period`), a `parallelism`, an `ordering` of \"fifo\", or several",
        ),
        (
            "k",
            json!({ "ordering": "lifo" }),
            "/ordering",
            "/ordering: \"lifo\" is not an ordering; use \"fifo\" or \"any\"",
        ),
        (
            "k",
            json!({ "ordering": "fifo", "parallelism": 2 }),
            "/parallelism",
            "/parallelism: a \"fifo\" key delivers one message at a time; leave `parallelism` out or make it 1",
        ),
        (
            "k",
            json!({ "rate": 0 }),
            "/rate",
            "/rate: must be between 1 and 1000000 deliveries per period",
        ),
        (
            "k",
            json!({ "rate": 1_000_001 }),
            "/rate",
            "/rate: must be between 1 and 1000000 deliveries per period",
        ),
        (
            "k",
            json!({ "period": 5, "parallelism": 1 }),
            "/period",
            "/period: is only meaningful with a `rate`",
        ),
        (
            "k",
            json!({ "rate": 1, "period": 86_401 }),
            "/period",
            "/period: must be between 1 and 86400 seconds",
        ),
        (
            "k",
            json!({ "parallelism": 0 }),
            "/parallelism",
            "/parallelism: must be between 1 and 100000 deliveries in flight",
        ),
        (
            "a*b",
            json!({ "rate": 1 }),
            "/key",
            "/key: `*` may only end a pattern (a prefix match) or stand alone (the tenant-wide default)",
        ),
        (
            &"k".repeat(129),
            json!({ "rate": 1 }),
            "/key",
            "/key: is 129 bytes; the limit is 128",
        ),
        (
            "bad\u{1}key",
            json!({ "rate": 1 }),
            "/key",
            "/key: must not contain control characters",
        ),
    ];
    for (pattern, body, field, detail) in cases {
        let refused = put(&admin, pattern, body.clone())
            .await
            .problem(422, "invalid_field");
        assert_eq!(refused.body["field"], field, "{body}");
        assert_eq!(refused.body["detail"], detail, "{body}");
    }
    put(&admin, "k", json!({ "rate": "ten" }))
        .await
        .problem(422, "invalid_field");
    put(&admin, "k", json!({ "rate": 1, "burst": 3 }))
        .await
        .problem(422, "invalid_field");
    assert_eq!(server.storage().count("flow_limits").await, stored);

    // Members may not; another tenant sees none of it and cannot touch it.
    put(&bob, "k", json!({ "rate": 1 }))
        .await
        .problem(403, "admin_required");
    bob.api
        .get("/flow-control")
        .await
        .problem(403, "admin_required");
    bob.api
        .delete(&path("*"))
        .await
        .problem(403, "admin_required");
    assert_eq!(server.storage().count("flow_limits").await, stored);
    let theirs = other.api.get("/flow-control").await.expect(200).body;
    assert_eq!(theirs["items"], json!([]));
    let missing = other.api.get(&path("*")).await.problem(404, "not_found");
    assert_eq!(
        missing.body["detail"],
        "there is no such flow-control key in your tenant"
    );
    other.api.delete(&path(url)).await.problem(404, "not_found");
    admin.api.get(&path(url)).await.expect(200);

    admin.api.delete(&path(url)).await.expect(204);
    admin.api.get(&path(url)).await.problem(404, "not_found");
    admin.api.delete(&path(url)).await.problem(404, "not_found");
    assert_eq!(server.storage().count("flow_limits").await, stored - 1);
}

async fn a_flow_key_over_128_bytes_is_refused_and_nothing_is_stored(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    let before = server.storage().count("messages").await;
    for (key, detail) in [
        ("k".repeat(129), "/flow_key: is 129 bytes; the limit is 128"),
        (String::new(), "/flow_key: must not be empty"),
        (
            "a*".to_owned(),
            "/flow_key: must not contain `*`, which flow-control patterns reserve",
        ),
    ] {
        let refused = admin
            .api
            .post(
                "/messages",
                json!({ "recipient_id": bob.user_id(), "content": "hi", "flow_key": key }),
            )
            .await
            .problem(422, "invalid_field");
        assert_eq!(refused.body["field"], "/flow_key");
        assert_eq!(refused.body["detail"], detail);
    }
    assert_eq!(server.storage().count("messages").await, before);
    let key = "é".repeat(64);
    let accepted = admin
        .api
        .post(
            "/messages",
            json!({ "recipient_id": bob.user_id(), "content": "hi", "flow_key": key }),
        )
        .await
        .expect(201);
    assert_eq!(accepted.body["flow_key"], key.as_str());
    let id = accepted.body["id"].as_str().unwrap();
    let read = admin.api.get(&format!("/messages/{id}")).await.expect(200);
    assert_eq!(read.body["flow_key"], key.as_str());
}

/// Sends a webhook message with `flow_key` from `from` to `to`; returns its id.
async fn send(from: &Login, to: &Login, flow_key: Option<&str>) -> String {
    let mut body =
        json!({ "recipient_id": to.user_id(), "content": "hello", "channel": "webhook" });
    if let Some(key) = flow_key {
        body["flow_key"] = json!(key);
    }
    from.api.post("/messages", body).await.expect(201).body["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The message ids a receiver got, in order.
fn delivered_ids(receiver: &Receiver) -> Vec<String> {
    receiver
        .received()
        .iter()
        .map(|received| received.headers["webhook-id"].to_str().unwrap().to_owned())
        .collect()
}

async fn a_rate_spaces_a_keys_deliveries_and_waiting_is_not_an_attempt(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    let receiver = Receiver::start(vec![Answer::status(200)]).await;
    bob.api
        .put("/users/me/webhook", json!({ "url": receiver.url }))
        .await
        .expect(200);
    // A prefix pattern: `orders:*` covers `orders:42`, one delivery per 10 s.
    put(&admin, "orders:*", json!({ "rate": 1, "period": 10 }))
        .await
        .expect(201);
    let mut keyed = Vec::new();
    for _ in 0..3 {
        keyed.push(send(&admin, &bob, Some("orders:42")).await);
    }
    let free = send(&admin, &bob, Some("invoices:7")).await;

    let report = server.dispatch().await;
    assert_eq!(report.delivered, 2, "{report:?}");
    let mut first = delivered_ids(&receiver);
    first.sort();
    let mut expected = vec![keyed[0].clone(), free.clone()];
    expected.sort();
    assert_eq!(first, expected);
    for waiting in &keyed[1..] {
        let state = status(&admin, waiting).await;
        assert_eq!(state["status"], "scheduled", "{state}");
        assert_eq!(state["attempts"], 0, "waiting is not an attempt: {state}");
    }

    // Not before its slot; then one per period, in due order.
    server.clock.advance(9_900);
    assert_eq!(server.dispatch().await.delivered, 0);
    server.clock.advance(100);
    assert_eq!(server.dispatch().await.delivered, 1);
    assert_eq!(server.dispatch().await.delivered, 0);
    server.clock.advance(10_000);
    assert_eq!(server.dispatch().await.delivered, 1);
    assert_eq!(
        delivered_ids(&receiver)[2..],
        [keyed[1].clone(), keyed[2].clone()]
    );
    for id in &keyed {
        let state = status(&admin, id).await;
        assert_eq!(
            (state["status"].clone(), state["attempts"].clone()),
            (json!("delivered"), json!(1))
        );
    }

    // Without the limit, the key is free again.
    admin.api.delete(&path("orders:*")).await.expect(204);
    for _ in 0..3 {
        send(&admin, &bob, Some("orders:42")).await;
    }
    assert_eq!(server.dispatch().await.delivered, 3);
}

/// A receiver that holds each request `hold` and records the most requests it held at once.
struct Holding {
    url: String,
    most: Arc<AtomicUsize>,
    count: Arc<AtomicUsize>,
}

impl Holding {
    async fn start(hold: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let now = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let count = Arc::new(AtomicUsize::new(0));
        let app = axum::Router::new().fallback({
            let (now, most, count) = (now.clone(), most.clone(), count.clone());
            move || {
                let (now, most, count) = (now.clone(), most.clone(), count.clone());
                async move {
                    let held = now.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(held, Ordering::SeqCst);
                    tokio::time::sleep(hold).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                    count.fetch_add(1, Ordering::SeqCst);
                    "ok"
                }
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, most, count }
    }
}

async fn parallelism_caps_a_keys_deliveries_in_flight_at_the_receiver(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    let holding = Holding::start(Duration::from_millis(300)).await;
    bob.api
        .put("/users/me/webhook", json!({ "url": holding.url }))
        .await
        .expect(200);

    // Without a limit, the dispatcher sends them all at once.
    for _ in 0..6 {
        send(&admin, &bob, None).await;
    }
    assert_eq!(server.dispatch().await.delivered, 6);
    assert!(holding.most.load(Ordering::SeqCst) >= 3);

    // The key is the endpoint when the messages carry none.
    holding.most.store(0, Ordering::SeqCst);
    put(&admin, &holding.url, json!({ "parallelism": 2 }))
        .await
        .expect(201);
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(send(&admin, &bob, None).await);
    }
    assert_eq!(server.dispatch().await.delivered, 6);
    assert_eq!(holding.most.load(Ordering::SeqCst), 2);
    assert_eq!(holding.count.load(Ordering::SeqCst), 12);
    for id in &ids {
        assert_eq!(status(&admin, id).await["attempts"], 1);
    }
}

async fn events(who: &Login, id: &str) -> Vec<Value> {
    who.api
        .get(&format!("/messages/{id}/events"))
        .await
        .expect(200)
        .body["items"]
        .as_array()
        .unwrap()
        .clone()
}

async fn a_receivers_retry_after_pauses_its_whole_key_and_the_history_says_so(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    let receiver = Receiver::start(vec![
        Answer::status(429).header("retry-after", "30"),
        Answer::status(200),
    ])
    .await;
    bob.api
        .put("/users/me/webhook", json!({ "url": receiver.url }))
        .await
        .expect(200);
    // No limit is set: the pause is the receiver's alone.
    let first = send(&admin, &bob, Some("tenant-api")).await;
    assert_eq!(server.dispatch().await.retried, 1);
    let paused_at = server.clock.now_ms();
    let history = events(&admin, &first).await;
    let pause = history
        .iter()
        .find(|event| {
            event["result"]
                .as_str()
                .unwrap()
                .starts_with("flow key \"tenant-api\" paused until ")
        })
        .unwrap_or_else(|| panic!("no pause in the history: {history:?}"));
    assert_eq!(
        pause["result"],
        format!(
            "flow key \"tenant-api\" paused until {}: the receiver asked to wait (Retry-After); its other messages wait too",
            dms::clock::rfc3339(paused_at + 30_000)
        )
    );

    // Another message of the key waits (not an attempt); another key goes.
    let second = send(&admin, &bob, Some("tenant-api")).await;
    let other = send(&admin, &bob, Some("elsewhere")).await;
    assert_eq!(server.dispatch().await.delivered, 1);
    assert_eq!(status(&admin, &other).await["status"], "delivered");
    let waiting = status(&admin, &second).await;
    assert_eq!(
        (waiting["status"].clone(), waiting["attempts"].clone()),
        (json!("scheduled"), json!(0))
    );
    server.clock.advance(29_000);
    assert_eq!(server.dispatch().await.delivered, 0);
    server.clock.advance(1_000);
    assert_eq!(server.dispatch().await.delivered, 2);
    assert_eq!(status(&admin, &first).await["attempts"], 2);
    assert_eq!(status(&admin, &second).await["attempts"], 1);
    assert_eq!(receiver.received().len(), 4);
}

/// A live node (its own dispatcher on the system clock).
async fn live(backend: Backend) -> TestServer {
    let storage = TestStorage::create(backend).await;
    TestServer::start_on(storage, Clock::System, |config| {
        config.worker_enabled = true;
    })
    .await
}

/// Submits `count` inbox messages to `to` with `flow_key`, in batches of 1,000.
async fn burst(from: &Login, to: &Login, flow_key: &str, count: usize) {
    let mut left = count;
    while left > 0 {
        let take = left.min(1_000);
        let messages: Vec<Value> = (0..take)
            .map(|n| json!({ "recipient_id": to.user_id(), "content": format!("burst {n}"), "flow_key": flow_key }))
            .collect();
        let reply = from
            .api
            .post("/messages/batch", json!({ "messages": messages }))
            .await
            .expect(200);
        assert_eq!(reply.body["accepted"], take);
        left -= take;
    }
}

/// Waits until `id` is delivered; returns how long that took from `since`.
async fn delivered_after(who: &Login, id: &str, since: Instant) -> Duration {
    eventually(&format!("{id} is delivered"), || async {
        status(who, id).await["status"] == "delivered"
    })
    .await;
    since.elapsed()
}

async fn a_saturated_key_does_not_hold_up_other_keys_or_tenants(backend: Backend) {
    const BURST: usize = 3_000;
    let server = live(backend).await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    let other = server.tenant_admin("other").await;
    let carol = server.member(&other, "carol").await;
    // One delivery an hour: all but the first of the burst wait, each at its own slot.
    put(&admin, "hot", json!({ "rate": 1, "period": 3600 }))
        .await
        .expect(201);
    let started = Instant::now();
    burst(&admin, &bob, "hot", BURST).await;
    let submitted = started.elapsed();

    let since = Instant::now();
    let cool = admin
        .api
        .post(
            "/messages",
            json!({ "recipient_id": bob.user_id(), "content": "cool", "flow_key": "cool" }),
        )
        .await
        .expect(201)
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let theirs = other
        .api
        .post(
            "/messages",
            json!({ "recipient_id": carol.user_id(), "content": "theirs" }),
        )
        .await
        .expect(201)
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cool_after = delivered_after(&admin, &cool, since).await;
    let theirs_after = delivered_after(&other, &theirs, since).await;
    eprintln!(
        "burst of {BURST} submitted in {submitted:?}; another key delivered after {cool_after:?}, another tenant after {theirs_after:?}"
    );
    // Generous: the burst's admissions pass through the dispatcher once each, ahead of them.
    assert!(cool_after < Duration::from_secs(10), "{cool_after:?}");
    assert!(theirs_after < Duration::from_secs(10), "{theirs_after:?}");

    // The hot key delivered once; the rest wait, not as attempts, and do not spin the loop.
    let counts = server.state.store.status_counts().await.unwrap();
    let of = |status: &str| {
        counts
            .iter()
            .filter(|count| count.status.as_str() == status)
            .map(|count| count.count)
            .sum::<u64>()
    };
    assert_eq!(of("delivered"), 3, "{counts:?}");
    assert_eq!(of("scheduled"), BURST as u64 - 1, "{counts:?}");
    let (top, total) = server
        .state
        .flow
        .limiter()
        .waiting(Clock::System.now_ms(), 5)
        .await
        .unwrap();
    assert_eq!(total, BURST as u64 - 1);
    assert_eq!(top[0].0.key, "hot");
    assert_eq!(top[0].1, BURST as u64 - 1);
}

/// A limiter under test; a Redis one under a prefix of its own.
fn limiters() -> Vec<(&'static str, Arc<dyn Limiter>)> {
    let prefix = format!("test-flow-{}", TenantId::new().as_str()[4..].to_lowercase());
    let link = RedisLink::new("redis://127.0.0.1:6379", &prefix).unwrap();
    vec![
        ("local", Arc::new(LocalLimiter::new())),
        ("redis", Arc::new(RedisLimiter::new(link))),
    ]
}

fn ask(tenant: &TenantId, key: &str, id: &MessageId, order: u64) -> Ask {
    Ask {
        key: FlowKey {
            tenant: tenant.clone(),
            key: key.to_owned(),
        },
        id: id.clone(),
        order,
        rate: None,
        parallelism: None,
        fifo: false,
    }
}

/// One suite, both limiters: the `backend` only says which run this is, so both run twice.
async fn limiter_conformance(backend: Backend) {
    let _ = backend;
    for (name, limiter) in limiters() {
        conformance(name, limiter.as_ref()).await;
    }
}

async fn conformance(name: &str, limiter: &dyn Limiter) {
    const NOW: u64 = 1_000_000;
    const LEASE: u64 = 30_000;
    let tenant = TenantId::new();
    let ids: Vec<MessageId> = (0..4).map(|_| MessageId::new()).collect();
    // One a second, no burst.
    let rate = |id: &MessageId| Ask {
        rate: Some(Spacing {
            interval_us: 1_000_000,
            tolerance_us: 0,
        }),
        ..ask(&tenant, "rated", id, 0)
    };
    let asks: Vec<Ask> = ids[..3].iter().map(rate).collect();

    // A rate: the first goes, the others reserve the next slots, in order.
    let verdicts = limiter.admit(NOW, LEASE, &asks).await.unwrap();
    assert_eq!(
        verdicts,
        [
            Verdict::Go,
            Verdict::Wait(NOW + 1_000),
            Verdict::Wait(NOW + 2_000)
        ],
        "{name}"
    );
    // Back at their slots they go, without taking a new one; early, they keep theirs.
    assert_eq!(
        limiter.admit(NOW + 1_000, LEASE, &asks[1..]).await.unwrap(),
        [Verdict::Go, Verdict::Wait(NOW + 2_000)],
        "{name}"
    );
    assert_eq!(
        limiter.admit(NOW + 2_000, LEASE, &asks[2..]).await.unwrap(),
        [Verdict::Go],
        "{name}"
    );
    // A burst of the rate's count goes at once after a quiet period, then one per interval.
    let burst = |id: &MessageId| Ask {
        rate: Some(Spacing {
            interval_us: 333_334,
            tolerance_us: 666_668,
        }),
        ..ask(&tenant, "bursty", id, 0)
    };
    let bursty: Vec<Ask> = ids.iter().map(burst).collect();
    assert_eq!(
        limiter.admit(NOW, LEASE, &bursty).await.unwrap(),
        [
            Verdict::Go,
            Verdict::Go,
            Verdict::Go,
            Verdict::Wait(NOW + 334)
        ],
        "{name}"
    );
    // The same key of another tenant is another key.
    let elsewhere = Ask {
        key: FlowKey {
            tenant: TenantId::new(),
            key: "rated".to_owned(),
        },
        ..rate(&ids[3])
    };
    assert_eq!(
        limiter
            .admit(NOW + 2_000, LEASE, &[elsewhere])
            .await
            .unwrap(),
        [Verdict::Go],
        "{name}"
    );

    // Parallelism: the second waits for the first's slot, which finishing hands over.
    let capped = |id: &MessageId, order| Ask {
        parallelism: Some(1),
        ..ask(&tenant, "capped", id, order)
    };
    let (a, b, c) = (capped(&ids[0], 1), capped(&ids[1], 2), capped(&ids[2], 3));
    assert_eq!(
        limiter
            .admit(NOW, LEASE, &[a.clone(), c.clone(), b.clone()])
            .await
            .unwrap(),
        [
            Verdict::Go,
            Verdict::Wait(NOW + LEASE),
            Verdict::Wait(NOW + LEASE)
        ],
        "{name}"
    );
    let woken = limiter
        .finish(&[(a.key.clone(), a.id.clone(), false)])
        .await
        .unwrap();
    assert_eq!(
        woken,
        std::slice::from_ref(&b.id),
        "{name}: the first in due order is woken"
    );
    assert_eq!(
        limiter
            .admit(NOW, LEASE, std::slice::from_ref(&b))
            .await
            .unwrap(),
        [Verdict::Go],
        "{name}"
    );
    // A holder that never finishes loses its slot when its lease ends.
    assert_eq!(
        limiter
            .admit(NOW + LEASE, LEASE, std::slice::from_ref(&c))
            .await
            .unwrap(),
        [Verdict::Go],
        "{name}"
    );

    // FIFO: one at a time; nobody passes the first waiter, even when claimed first; a retry
    // holds the key.
    let fifo = |id: &MessageId, order| Ask {
        fifo: true,
        ..ask(&tenant, "ordered", id, order)
    };
    let (x, y, z) = (fifo(&ids[0], 1), fifo(&ids[1], 2), fifo(&ids[2], 3));
    assert_eq!(
        limiter
            .admit(NOW, LEASE, &[x.clone(), y.clone(), z.clone()])
            .await
            .unwrap(),
        [
            Verdict::Go,
            Verdict::Wait(NOW + LEASE),
            Verdict::Wait(NOW + LEASE)
        ],
        "{name}"
    );
    let woken = limiter
        .finish(&[(x.key.clone(), x.id.clone(), true)])
        .await
        .unwrap();
    assert_eq!(woken, std::slice::from_ref(&y.id), "{name}");
    assert_eq!(
        limiter
            .admit(NOW, LEASE, &[z.clone(), y.clone()])
            .await
            .unwrap(),
        [Verdict::Wait(NOW + LEASE), Verdict::Go],
        "{name}: z does not pass y"
    );
    limiter.hold(&y.key, &y.id, NOW + 10 * LEASE).await.unwrap();
    assert_eq!(
        limiter
            .admit(NOW + 2 * LEASE, LEASE, std::slice::from_ref(&z))
            .await
            .unwrap(),
        [Verdict::Wait(NOW + 3 * LEASE)],
        "{name}: a retrying message holds the key past its lease"
    );
    assert_eq!(
        limiter
            .admit(NOW + 2 * LEASE, LEASE, std::slice::from_ref(&y))
            .await
            .unwrap(),
        [Verdict::Go],
        "{name}: the holder comes back"
    );
    let woken = limiter
        .finish(&[(y.key.clone(), y.id.clone(), true)])
        .await
        .unwrap();
    assert_eq!(woken, std::slice::from_ref(&z.id), "{name}");
    assert_eq!(
        limiter.admit(NOW + 2 * LEASE, LEASE, &[z]).await.unwrap(),
        [Verdict::Go],
        "{name}"
    );

    // A pause holds the key, and only it, until its end.
    let paused = ask(&tenant, "paused", &ids[3], 0);
    limiter.pause(&paused.key, NOW, NOW + 5_000).await.unwrap();
    limiter.pause(&paused.key, NOW, NOW + 1_000).await.unwrap();
    assert_eq!(
        limiter
            .admit(
                NOW,
                LEASE,
                &[paused.clone(), ask(&tenant, "free", &ids[0], 0)]
            )
            .await
            .unwrap(),
        [Verdict::Wait(NOW + 5_000), Verdict::Go],
        "{name}: the later pause wins"
    );
    let (top, total) = limiter.waiting(NOW, 10).await.unwrap();
    assert_eq!(total, 2, "{name}: {top:?}");
    let mut keys: Vec<(String, u64)> = top
        .into_iter()
        .map(|(key, count)| (key.key, count))
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [("bursty".to_owned(), 1), ("paused".to_owned(), 1)],
        "{name}"
    );
    assert_eq!(
        limiter.admit(NOW + 5_000, LEASE, &[paused]).await.unwrap(),
        [Verdict::Go],
        "{name}"
    );
}

async fn a_fifo_key_delivers_one_at_a_time_in_due_order_and_a_retry_holds_it(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    // The first attempt fails; every later one succeeds.
    let receiver = Receiver::start(vec![Answer::status(503), Answer::status(200)]).await;
    bob.api
        .put("/users/me/webhook", json!({ "url": receiver.url }))
        .await
        .expect(200);
    let created = put(&admin, "queue:*", json!({ "ordering": "fifo" }))
        .await
        .expect(201);
    assert_eq!(created.body["ordering"], "fifo");
    assert_eq!(created.body["parallelism"], Value::Null);
    let ids: Vec<String> = {
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(send(&admin, &bob, Some("queue:a")).await);
        }
        ids
    };
    // The first fails and retries; the key is held: the others wait, another key goes.
    let report = server.dispatch().await;
    assert_eq!(
        (report.retried, report.delivered, report.waiting),
        (1, 0, 2),
        "{report:?}"
    );
    let elsewhere = send(&admin, &bob, Some("queue:b")).await;
    assert_eq!(server.dispatch().await.delivered, 1);
    assert_eq!(status(&admin, &elsewhere).await["status"], "delivered");
    let retry_at = crate::harness::ms(&status(&admin, &ids[0]).await["deliver_at"]);
    for waiting in &ids[1..] {
        let state = status(&admin, waiting).await;
        assert_eq!(
            (state["status"].clone(), state["attempts"].clone()),
            (json!("scheduled"), json!(0))
        );
    }
    // Until the first's retry, the key waits for it.
    server.clock.advance(retry_at - server.clock.now_ms() - 1);
    assert_eq!(server.dispatch().await.delivered, 0);
    server.clock.advance(1);
    assert_eq!(server.dispatch().await.delivered, 3);
    let order: Vec<String> = delivered_ids(&receiver)
        .into_iter()
        .filter(|id| *id != elsewhere)
        .collect();
    assert_eq!(
        order,
        [
            ids[0].clone(),
            ids[0].clone(),
            ids[1].clone(),
            ids[2].clone()
        ]
    );
}

/// Two nodes on one PostgreSQL and Redis: a retrying message of a FIFO key holds the key on
/// both; when it is delivered, the next goes, on whichever node claims it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_a_fifo_keys_hold() {
    let a = TestServer::start(Backend::Postgres).await;
    let b = TestServer::start_beside(&a, |_| {}).await;
    let admin = a.admin().await;
    let bob = a.member(&admin, "bob").await;
    let receiver = Receiver::start(vec![Answer::status(503), Answer::status(200)]).await;
    bob.api
        .put("/users/me/webhook", json!({ "url": receiver.url }))
        .await
        .expect(200);
    put(&admin, "fifo", json!({ "ordering": "fifo" }))
        .await
        .expect(201);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(send(&admin, &bob, Some("fifo")).await);
    }
    assert_eq!(a.dispatch().await.retried, 1);
    assert_eq!(b.dispatch().await.delivered, 0);
    let retry_at = crate::harness::ms(&status(&admin, &ids[0]).await["deliver_at"]);
    a.clock.advance(retry_at - a.clock.now_ms() + 20_000);
    assert_eq!(
        b.dispatch().await.delivered + a.dispatch().await.delivered,
        3
    );
    assert_eq!(
        delivered_ids(&receiver),
        [
            ids[0].clone(),
            ids[0].clone(),
            ids[1].clone(),
            ids[2].clone()
        ]
    );
}

/// Two nodes on one PostgreSQL and Redis share a key's rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_a_keys_limit() {
    let a = TestServer::start(Backend::Postgres).await;
    let b = TestServer::start_beside(&a, |_| {}).await;
    let admin = a.admin().await;
    let bob = a.member(&admin, "bob").await;
    let receiver = Receiver::start(vec![Answer::status(200)]).await;
    bob.api
        .put("/users/me/webhook", json!({ "url": receiver.url }))
        .await
        .expect(200);
    put(&admin, "shared", json!({ "rate": 1, "period": 60 }))
        .await
        .expect(201);
    for _ in 0..4 {
        send(&admin, &bob, Some("shared")).await;
    }
    assert_eq!(a.dispatch().await.delivered, 1);
    assert_eq!(b.dispatch().await.delivered, 0);
    a.clock.advance(60_000);
    assert_eq!(b.dispatch().await.delivered, 1);
    assert_eq!(a.dispatch().await.delivered, 0);
    a.clock.advance(60_000);
    let both = a.dispatch().await.delivered + b.dispatch().await.delivered;
    assert_eq!(both, 1);
    assert_eq!(receiver.received().len(), 3);
}
