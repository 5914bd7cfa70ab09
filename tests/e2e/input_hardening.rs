//! Ambiguous or hostile input: duplicate JSON keys, look-alike usernames, oracles, login
//! lock-outs, and bounds the API documents.

use std::net::{IpAddr, Ipv4Addr};

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{
    ADMIN_PASSWORD, Backend, Login, Reply, TestServer, on_both_backends, run, status,
};

on_both_backends!(
    wrong_passwords_from_one_address_do_not_lock_the_user_out,
    the_per_username_ceiling_holds_across_addresses,
    a_key_given_twice_is_refused_naming_it_and_nothing_is_stored,
    an_array_where_an_object_is_expected_is_refused_everywhere,
    an_offset_past_the_documented_maximum_is_refused,
    times_past_the_year_9999_are_refused_or_brought_back,
    look_alike_usernames_cannot_coexist_and_log_in_as_one,
    a_taken_username_answers_the_same_in_every_tenant,
    the_command_line_applies_the_same_username_rules,
    users_stored_before_username_keys_keep_working,
);

/// The loopback address 127.0.0.`n`: each is its own client address to the server.
fn address(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// `POST /auth/login` from the client address `from`.
async fn login_from(server: &TestServer, from: IpAddr, username: &str, password: &str) -> Reply {
    let http = reqwest::Client::builder()
        .no_proxy()
        .local_address(from)
        .build()
        .unwrap();
    let response = http
        .post(format!("{}/auth/login", server.url))
        .json(&json!({ "username": username, "password": password }))
        .send()
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
    }
}

/// A 429 with a `retry-after` of 1 to 60 seconds.
#[track_caller]
fn limited(reply: Reply) {
    let reply = reply.problem(429, "rate_limited");
    let seconds: u64 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&seconds), "retry-after: {seconds}");
}

async fn wrong_passwords_from_one_address_do_not_lock_the_user_out(backend: Backend) {
    // The defaults: 10 a minute per username from one address.
    let server = TestServer::start(backend).await;
    let attacker = address(2);
    // All at once, so the minute's allowance is not refilled meanwhile.
    let attempts = futures_util::future::join_all(
        (0..10).map(|_| login_from(&server, attacker, "admin", "wrong-password")),
    )
    .await;
    for reply in attempts {
        reply.problem(401, "invalid_credentials");
    }
    limited(login_from(&server, attacker, "admin", "wrong-password").await);
    // Another spelling of the name is the same name to the limit, and the right password
    // does not get through from the attacker's address either.
    limited(login_from(&server, attacker, "ADMIN", "wrong-password").await);
    limited(login_from(&server, attacker, "admin", ADMIN_PASSWORD).await);

    // The real user, from their own address, logs in.
    let user = login_from(&server, address(3), "admin", ADMIN_PASSWORD).await;
    assert_eq!(user.expect(200).body["user"]["username"], "admin");
    // The attacker may still try other users (up to the per-address limit).
    login_from(&server, attacker, "nobody", "wrong-password")
        .await
        .problem(401, "invalid_credentials");
}

async fn the_per_username_ceiling_holds_across_addresses(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.rate_limit_login_per_username = 3;
        config.rate_limit_login_per_username_global = 5;
    })
    .await;
    for _ in 0..3 {
        login_from(&server, address(2), "admin", "wrong")
            .await
            .problem(401, "invalid_credentials");
    }
    // Refused by its address's limit: not counted against the ceiling.
    limited(login_from(&server, address(2), "admin", "wrong").await);
    for _ in 0..2 {
        login_from(&server, address(3), "admin", "wrong")
            .await
            .problem(401, "invalid_credentials");
    }
    // Five attempts for the name in all: the ceiling holds for every address, even with the
    // right password, until the minute's allowance refills.
    limited(login_from(&server, address(4), "admin", ADMIN_PASSWORD).await);
    limited(login_from(&server, address(3), "Admin", "wrong").await);
    // Other usernames are not affected.
    login_from(&server, address(4), "bob", "wrong")
        .await
        .problem(401, "invalid_credentials");
}

/// The same limits kept in Redis: two nodes share them, and still nobody is locked out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_limits_in_redis_are_shared_and_lock_nobody_out() {
    let prefix = format!(
        "test-{}",
        dms::domain::ids::TenantId::new().as_str()[4..].to_lowercase()
    );
    let a = TestServer::start_with(Backend::Postgres, |config| {
        config.redis_url = dms::config::Secret::new("redis://127.0.0.1:6379");
        config.redis_prefix = prefix.clone();
        config.rate_limit_login_per_username = 3;
        config.rate_limit_login_per_username_global = 5;
    })
    .await;
    let b = TestServer::start_beside(&a, |_| {}).await;
    for node in [&a, &b, &a] {
        login_from(node, address(2), "admin", "wrong")
            .await
            .problem(401, "invalid_credentials");
    }
    // The pair's limit is shared: the attacker's address is refused on the other node too.
    limited(login_from(&b, address(2), "admin", "wrong").await);
    // The user, elsewhere, logs in on either node (4 attempts for the name so far).
    login_from(&b, address(3), "admin", ADMIN_PASSWORD)
        .await
        .expect(200);
    login_from(&a, address(4), "admin", "wrong")
        .await
        .problem(401, "invalid_credentials");
    // The sixth attempt for the name, from a fifth address: over the shared ceiling.
    limited(login_from(&b, address(5), "admin", ADMIN_PASSWORD).await);
    assert_eq!(
        b.api().get("/health/redis").await.expect(200).body["status"],
        "ok"
    );
}

/// Sends `body` as it is, with a JSON content type.
async fn raw_json(api: &crate::harness::Api, method: Method, path: &str, body: &str) -> Reply {
    api.raw(
        method,
        path,
        Some("application/json"),
        body.as_bytes().to_vec(),
    )
    .await
}

#[track_caller]
fn invalid_field(reply: Reply, field: &str) -> Reply {
    let reply = reply.problem(422, "invalid_field");
    assert_eq!(reply.body["field"], field, "{}", reply.body);
    reply
}

async fn a_key_given_twice_is_refused_naming_it_and_nothing_is_stored(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    let carol = server.member(&admin, "carol").await;

    // The finding: the message went to the second recipient.
    let body = format!(
        r#"{{"recipient_id": "{}", "content": "for bob", "recipient_id": "{}"}}"#,
        bob.user_id(),
        carol.user_id()
    );
    let reply = invalid_field(
        raw_json(&admin.api, Method::POST, "/messages", &body).await,
        "/recipient_id",
    );
    assert_eq!(
        reply.body["detail"],
        "/recipient_id: this key is given more than once in its object; give it once"
    );
    assert_eq!(server.storage().count("messages").await, 0);

    // At any depth, with the pointer of the second one (RFC 6901 escapes `~` and `/`).
    let body = format!(
        r#"{{"recipient_id": "{}", "content": "x", "metadata": {{"a/b": "1", "a/b": "2"}}}}"#,
        bob.user_id()
    );
    invalid_field(
        raw_json(&admin.api, Method::POST, "/messages", &body).await,
        "/metadata/a~1b",
    );
    let body = format!(
        r#"{{"message": {{"recipient_id": "{}", "content": "a", "content": "b"}}}}"#,
        bob.user_id()
    );
    invalid_field(
        raw_json(&admin.api, Method::POST, "/hooks/dry-run", &body).await,
        "/message/content",
    );
    invalid_field(
        raw_json(
            &admin.api,
            Method::PUT,
            "/hooks/validators",
            r#"{"plugins": [{"plugin_id": "plg_x", "config": {"k": "1", "k": "2"}}]}"#,
        )
        .await,
        "/plugins/0/config/k",
    );
    // Every JSON endpoint, the anonymous ones too.
    invalid_field(
        raw_json(
            &server.api(),
            Method::POST,
            "/auth/login",
            &format!(
                r#"{{"username": "admin", "password": "{ADMIN_PASSWORD}", "username": "bob"}}"#
            ),
        )
        .await,
        "/username",
    );
    invalid_field(
        raw_json(
            &bob.api,
            Method::PUT,
            "/users/me/webhook",
            r#"{"url": "https://a.example/hook", "url": "https://b.example/hook"}"#,
        )
        .await,
        "/url",
    );
    invalid_field(
        raw_json(
            &admin.api,
            Method::POST,
            "/users",
            r#"{"username": "dave", "password": "dave-password", "role": "member", "role": "admin"}"#,
        )
        .await,
        "/role",
    );

    // Nothing changed.
    assert_eq!(server.storage().count("messages").await, 0);
    bob.api
        .get("/users/me/webhook")
        .await
        .problem(404, "not_found");
    assert_eq!(admin.api.get("/users").await.expect(200).body["total"], 3);
    let hooks = admin.api.get("/hooks").await.expect(200).body;
    assert_eq!(hooks["validators"][0]["builtin"], true, "{hooks}");
    // The same bodies with each key once are fine.
    let body = format!(
        r#"{{"recipient_id": "{}", "content": "for bob"}}"#,
        bob.user_id()
    );
    raw_json(&admin.api, Method::POST, "/messages", &body)
        .await
        .expect(201);
}

async fn an_array_where_an_object_is_expected_is_refused_everywhere(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    let sent = admin
        .api
        .post(
            "/messages",
            json!({ "recipient_id": bob.user_id(), "content": "dead soon" }),
        )
        .await
        .expect(201);
    let id = sent.body["id"].as_str().unwrap().to_owned();
    server
        .sql(&format!(
            "UPDATE message_states SET status = 'dead' WHERE message_id = '{id}'"
        ))
        .await;

    // The finding: `[null, null]` was a filter with no field set, and replayed everything.
    let reply = invalid_field(
        raw_json(
            &admin.api,
            Method::POST,
            "/dead-letters/replay",
            "[null, null]",
        )
        .await,
        "/",
    );
    assert_eq!(
        reply.body["detail"],
        "/: invalid type: sequence, expected a JSON object"
    );
    assert_eq!(status(&admin, &id).await["status"], "dead");

    // Positional bodies are refused on every endpoint, and nested objects too.
    for (api, method, path, body) in [
        (
            &server.api(),
            Method::POST,
            "/auth/login",
            json!(["admin", ADMIN_PASSWORD]),
        ),
        (
            &admin.api,
            Method::POST,
            "/users",
            json!(["dave", "dave-password"]),
        ),
        (
            &admin.api,
            Method::POST,
            "/messages",
            json!([bob.user_id(), "hello"]),
        ),
        (
            &admin.api,
            Method::PATCH,
            &format!("/messages/{id}"),
            json!([5]),
        ),
        (
            &bob.api,
            Method::PUT,
            "/users/me/webhook",
            json!(["https://a.example/hook"]),
        ),
        (
            &bob.api,
            Method::PUT,
            "/users/me/password",
            json!(["member-password", "new-password-1"]),
        ),
        (&admin.api, Method::PUT, "/hooks/validators", json!([[]])),
    ] {
        let reply = raw_json(api, method, path, &body.to_string()).await;
        invalid_field(reply, "/");
    }
    invalid_field(
        admin
            .api
            .put("/hooks/validators", json!({ "plugins": [["plg_x"]] }))
            .await,
        "/plugins/0",
    );
    invalid_field(
        admin
            .api
            .post(
                "/hooks/dry-run",
                json!({ "message": [bob.user_id(), "hi"] }),
            )
            .await,
        "/message",
    );

    // Nothing changed: no user, message or webhook was made, the password is the old one.
    assert_eq!(admin.api.get("/users").await.expect(200).body["total"], 2);
    assert_eq!(server.storage().count("messages").await, 1);
    bob.api
        .get("/users/me/webhook")
        .await
        .problem(404, "not_found");
    server.login("bob", "member-password").await;
}

async fn an_offset_past_the_documented_maximum_is_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let document = server.api().get("/openapi.json").await.expect(200).body;
    for path in ["/users", "/messages", "/dead-letters"] {
        let offset = document["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|parameter| parameter["name"] == "offset")
            .unwrap_or_else(|| panic!("{path} documents offset"));
        let maximum = offset["schema"]["maximum"]
            .as_u64()
            .unwrap_or_else(|| panic!("{path}: offset has a maximum: {offset}"));
        assert_eq!(maximum, i64::MAX as u64, "{path}");
        let page = admin
            .api
            .get(&format!("{path}?offset={maximum}"))
            .await
            .expect(200)
            .body;
        assert_eq!(page["items"], json!([]), "{path}");
        assert_eq!(page["offset"], maximum, "{path}");
        for past in [maximum + 1, u64::MAX] {
            let reply = admin
                .api
                .get(&format!("{path}?offset={past}"))
                .await
                .problem(400, "invalid_query");
            assert_eq!(reply.body["field"], "offset", "{path}");
            assert_eq!(
                reply.body["detail"],
                format!("offset must be between 0 and {maximum}"),
                "{path}"
            );
        }
    }
}

/// RFC 3339 as the API writes it, or a failure naming the value.
#[track_caller]
fn rfc3339(value: &Value) -> u64 {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"));
    dms::clock::parse_rfc3339(text).unwrap_or_else(|| panic!("not RFC 3339: {text}"))
}

const LATEST: &str = "9999-12-31T23:59:59.999Z";

async fn times_past_the_year_9999_are_refused_or_brought_back(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    let message = |extra: Value| {
        let mut body = json!({ "recipient_id": bob.user_id(), "content": "later" });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };

    // What a client asks for: refused, naming the field.
    for (extra, field) in [
        (
            json!({ "delay_seconds": 10_000_000_000_000_u64 }),
            "/delay_seconds",
        ),
        (json!({ "delay_seconds": u64::MAX }), "/delay_seconds"),
        // RFC 3339 has four-digit years, but an offset can still carry it past 9999.
        (
            json!({ "deliver_at": "9999-12-31T23:59:59-01:00" }),
            "/deliver_at",
        ),
    ] {
        invalid_field(
            admin.api.post("/messages", message(extra.clone())).await,
            field,
        );
        invalid_field(
            admin
                .api
                .post("/hooks/dry-run", json!({ "message": message(extra) }))
                .await,
            &format!("/message{field}"),
        );
    }
    let kept = admin
        .api
        .post("/messages", message(json!({ "delay_seconds": 60 })))
        .await
        .expect(201)
        .body;
    let id = kept["id"].as_str().unwrap().to_owned();
    invalid_field(
        admin
            .api
            .send(
                Method::PATCH,
                &format!("/messages/{id}"),
                Some(json!({ "delay_seconds": 10_000_000_000_000_u64 })),
            )
            .await,
        "/delay_seconds",
    );
    invalid_field(
        admin
            .api
            .post(
                "/hooks/dry-run",
                json!({ "message_id": id, "retry_after_ms": 1_000_000_000_000_000_u64 }),
            )
            .await,
        "/retry_after_ms",
    );
    assert_eq!(server.storage().count("messages").await, 1);
    assert_eq!(status(&admin, &id).await["deliver_at"], kept["deliver_at"]);
    let year = 365 * 86_400_000_u64;
    for hint in [year + 1, u64::MAX] {
        let reply = invalid_field(
            admin
                .api
                .post(
                    "/hooks/dry-run",
                    json!({ "message_id": id, "retry_after_ms": hint }),
                )
                .await,
            "/retry_after_ms",
        );
        assert_eq!(
            reply.body["detail"],
            "/retry_after_ms: at most 31536000000 ms (a year), the longest a channel may ask for"
        );
    }

    // A tenant's policy that plans past the year 9999 has failed (the sandbox refuses the
    // output): the built-in decides instead, and every time the API shows is RFC 3339.
    let policy = admin
        .api
        .raw(
            Method::POST,
            "/plugins?name=far-future&version=1.0.0",
            Some("application/wasm"),
            guest_artifacts::GUEST_TENANT_DELAY.to_vec(),
        )
        .await
        .expect(201)
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    admin
        .api
        .put(
            "/hooks/delay-policy",
            json!({ "plugin_id": policy, "config": { "delay": "1000000000000", "step": "1000000000000" } }),
        )
        .await
        .expect(200);
    let far = admin
        .api
        .post(
            "/messages",
            json!({ "recipient_id": bob.user_id(), "content": "far" }),
        )
        .await
        .expect(201)
        .body;
    assert_eq!(rfc3339(&far["deliver_at"]), server.clock.now_ms(), "{far}");
    let far_id = far["id"].as_str().unwrap();
    let events = admin
        .api
        .get(&format!("/messages/{far_id}/events"))
        .await
        .expect(200)
        .body;
    let results: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["result"].as_str().unwrap_or_default())
        .collect();
    assert!(
        results.iter().any(
            |result| result.starts_with("failed: ") && result.contains("before the year 10000")
        ),
        "{events}"
    );
    assert!(
        results
            .iter()
            .any(|result| result.starts_with("fallback: deliver at 2")),
        "{events}"
    );
    let dry = admin
        .api
        .post(
            "/hooks/dry-run",
            json!({ "message_id": far_id, "attempts": 2 }),
        )
        .await
        .expect(200)
        .body;
    rfc3339(&dry["delivery"]["deliver_at"]);
    for retry in dry["retries"].as_array().unwrap() {
        rfc3339(&retry["failed_at"]);
        rfc3339(&retry["retry_at"]);
    }
    // A message due a day before the end of 9999 (the tenant's policy may plan that far), and
    // a channel asking for a year with each failure: no plugin can name a time that late, so
    // the host's last resort decides, and stops at the latest time there is.
    let now = server.clock.now_ms();
    let delay_seconds = (dms::clock::LATEST_MS - now) / 1000 - 86_400;
    admin
        .api
        .put(
            "/hooks/delay-policy",
            json!({ "plugin_id": policy, "config": { "delay": delay_seconds.to_string(), "step": "1000000000000" } }),
        )
        .await
        .expect(200);
    let late = admin
        .api
        .post(
            "/messages",
            json!({ "recipient_id": bob.user_id(), "content": "late" }),
        )
        .await
        .expect(201)
        .body;
    assert!(
        late["deliver_at"]
            .as_str()
            .unwrap()
            .starts_with("9999-12-30T"),
        "{late}"
    );
    let dry = admin
        .api
        .post(
            "/hooks/dry-run",
            json!({ "message_id": late["id"], "attempts": 2, "retry_after_ms": year }),
        )
        .await
        .expect(200)
        .body;
    let retries = dry["retries"].as_array().unwrap();
    assert_eq!(retries.len(), 2, "{dry}");
    assert_eq!(retries[0]["failed_at"], late["deliver_at"], "{dry}");
    assert_eq!(retries[0]["retry_at"], LATEST, "{dry}");
    assert_eq!(retries[1]["failed_at"], LATEST, "{dry}");
    assert_eq!(retries[1]["retry_at"], LATEST, "{dry}");
    for event in dry["events"].as_array().unwrap() {
        rfc3339(&event["at"]);
    }
    let listed = admin.api.get("/messages").await.expect(200).body;
    for item in listed["items"].as_array().unwrap() {
        rfc3339(&item["deliver_at"]);
        rfc3339(&item["created_at"]);
    }
}

/// The 409 for a username that is in use, or one like it, anywhere on the server.
fn taken(username: &str) -> String {
    format!(
        "the username {username:?} is not available: usernames are unique on the whole server, and this one, or one that looks like it, is in use"
    )
}

async fn create(admin: &Login, username: &str) -> Reply {
    admin
        .api
        .post(
            "/users",
            json!({ "username": username, "password": "member-password" }),
        )
        .await
}

async fn look_alike_usernames_cannot_coexist_and_log_in_as_one(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let jose = create(&admin, "Jos\u{e9}").await.expect(201).body;
    create(&admin, "ace").await.expect(201);

    // Equal once normalized (NFKC, case-folded), or alike (UTS #39 skeletons): taken.
    for name in [
        "Admin",
        "ADMIN",
        "\u{ff41}\u{ff44}\u{ff4d}\u{ff49}\u{ff4e}", // fullwidth
        "Jose\u{301}",                              // NFD beside NFC
        "JOS\u{c9}",
        "\u{430}\u{441}\u{435}", // Cyrillic а, с, е: looks like "ace"
    ] {
        let reply = create(&admin, name).await.problem(409, "conflict");
        assert_eq!(reply.body["detail"], taken(name), "{name:?}");
    }
    // Invisible characters and mixed scripts: refused, naming what is wrong.
    for (name, why) in [
        ("ad\u{200b}min", "U+200B"),
        ("ad\u{2060}min", "U+2060"),
        ("ad\u{200d}min", "U+200D"),
        ("\u{202e}nimda", "U+202E"),
        ("admin\u{fe0f}", "U+FE0F"),
        ("\u{430}dmin", "mixes scripts"),
    ] {
        let reply = invalid_field(create(&admin, name).await, "/username");
        let detail = reply.body["detail"].as_str().unwrap();
        assert!(detail.contains(why), "{name:?}: {detail}");
    }
    assert_eq!(admin.api.get("/users").await.expect(200).body["total"], 3);

    // Any equivalent spelling logs in as the one account; a look-alike is not a spelling.
    for name in ["ADMIN", "\u{ff21}dmin"] {
        let login = server.login(name, ADMIN_PASSWORD).await;
        assert_eq!(login.user["id"], admin.user["id"], "{name:?}");
        assert_eq!(login.user["username"], "admin");
    }
    let login = server.login("jose\u{301}", "member-password").await;
    assert_eq!(login.user["id"], jose["id"]);
    assert_eq!(login.user["username"], "Jos\u{e9}");
    server
        .api()
        .post(
            "/auth/login",
            json!({ "username": "\u{430}\u{441}\u{435}", "password": "member-password" }),
        )
        .await
        .problem(401, "invalid_credentials");
    // A deleted user's name, and its look-alikes, are free again.
    let ace = server.login("ace", "member-password").await;
    admin
        .api
        .delete(&format!("/users/{}", ace.user_id()))
        .await
        .expect(204);
    create(&admin, "ACE").await.expect(201);
}

async fn a_taken_username_answers_the_same_in_every_tenant(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let acme = server.tenant_admin("acme").await;
    create(&admin, "bob").await.expect(201);

    // Login takes only a username, so usernames are unique on the server: a name in use in
    // another tenant must be refused. The answer is the one a name in use in the caller's own
    // tenant gets, word for word, and names no tenant (docs/OPERATIONS.md, "Login").
    let expected = |reply: &Reply| {
        json!({
            "type": "/problems/conflict",
            "title": "Conflict",
            "status": 409,
            "detail": taken("Bob"),
            "code": "conflict",
            "request_id": reply.body["request_id"],
        })
    };
    for who in [&admin, &acme] {
        let reply = create(who, "Bob").await.problem(409, "conflict");
        assert_eq!(reply.body, expected(&reply));
    }
    assert_eq!(acme.api.get("/users").await.expect(200).body["total"], 1);
}

async fn the_command_line_applies_the_same_username_rules(backend: Backend) {
    let server = TestServer::start(backend).await;
    let storage = server.storage();
    let create = |username: &'static str| {
        let command = storage.dms();
        async move {
            run(
                command,
                &[
                    "user",
                    "create",
                    "--tenant",
                    "default",
                    "--username",
                    username,
                    "--password-stdin",
                ],
                Some("carol-password\n"),
            )
            .await
        }
    };
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let upper = create("ADMIN").await;
    assert_eq!(upper.status.code(), Some(1), "{}", text(&upper.stderr));
    assert!(
        text(&upper.stderr).contains(&taken("ADMIN")),
        "{}",
        text(&upper.stderr)
    );
    let invisible = create("car\u{200b}ol").await;
    assert!(!invisible.status.success());
    assert!(
        text(&invisible.stderr).contains("U+200B"),
        "{}",
        text(&invisible.stderr)
    );
    let fullwidth = create("\u{ff43}arol").await;
    assert!(fullwidth.status.success(), "{}", text(&fullwidth.stderr));
    // The name is kept as given, and found by any spelling.
    let carol = server.login("CAROL", "carol-password").await;
    assert_eq!(carol.user["username"], "\u{ff43}arol");
}

async fn users_stored_before_username_keys_keep_working(backend: Backend) {
    let server = TestServer::start(backend).await;
    // Rows as the schema before username keys held them, two of them now equal.
    for (name, created) in [("Carol", 1), ("carol", 2), ("\u{430}\u{441}\u{435}", 3)] {
        let id = dms::domain::ids::UserId::new();
        server
            .sql(&format!(
                "INSERT INTO users (id, tenant_id, username, role, password_hash, created_at_ms) \
                 SELECT '{id}', tenant_id, '{name}', 'member', password_hash, {created} \
                 FROM users WHERE username = 'admin'"
            ))
            .await;
    }
    let server = server.restart().await;
    let admin = server.admin().await;
    let keys = server
        .sql_column(
            "SELECT username || '=' || COALESCE(username_key, '-') || '=' || \
             COALESCE(username_skeleton, '-') FROM users ORDER BY created_at_ms",
        )
        .await;
    assert_eq!(
        keys,
        [
            "Carol=carol=carol",
            "carol=-=-",
            "\u{430}\u{441}\u{435}=\u{430}\u{441}\u{435}=ace",
            "admin=admin=adrnin", // UTS #39: `m` looks like `rn`
        ]
    );
    // The older keeps the name's key; the other still logs in by its exact name.
    let older = server.login("CAROL", ADMIN_PASSWORD).await;
    assert_eq!(older.user["username"], "Carol");
    let younger = server.login("carol", ADMIN_PASSWORD).await;
    assert_eq!(younger.user["username"], "carol");
    // New names like either are refused.
    for name in ["cArOl", "ace"] {
        let reply = create(&admin, name).await.problem(409, "conflict");
        assert_eq!(reply.body["detail"], taken(name));
    }
}
