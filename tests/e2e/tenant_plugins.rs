//! Tenants' own plugins: upload, bind, use, dry run, hot swap, failure and isolation — against
//! a real server with real components (`tests/guests/tenant-*` and the hostile guests).

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Backend, Login, Reply, TestServer, WsClient, eventually, on_both_backends};

on_both_backends!(
    tenant_validator,
    tenant_delay,
    tenant_channel,
    uploads_and_bindings_are_refused_precisely_and_change_nothing,
    a_hostile_plugin_is_disabled_and_other_tenants_are_unaffected,
    hot_swapping_under_load_loses_nothing_and_never_half_applies,
);

async fn upload(admin: &Login, bytes: &[u8], query: &str) -> Reply {
    admin
        .api
        .raw(
            Method::POST,
            &format!("/plugins{query}"),
            Some("application/wasm"),
            bytes.to_vec(),
        )
        .await
}

async fn uploaded(admin: &Login, bytes: &[u8], name: &str) -> String {
    let reply = upload(admin, bytes, &format!("?name={name}&version=1.0.0"))
        .await
        .expect(201);
    reply.body["id"].as_str().unwrap().to_owned()
}

async fn submit(sender: &Login, to: &Login, content: &str) -> Reply {
    sender
        .api
        .post(
            "/messages",
            json!({ "recipient_id": to.user_id(), "content": content }),
        )
        .await
}

async fn events(api: &Login, id: &str) -> Vec<Value> {
    api.api
        .get(&format!("/messages/{id}/events"))
        .await
        .expect(200)
        .body["items"]
        .as_array()
        .unwrap()
        .clone()
}

/// The plugin names in a message's history, in order.
fn deciders(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| event["plugin"]["name"].as_str().map(str::to_owned))
        .collect()
}

/// Upload, bind, use, restart, unbind and delete a tenant's validator.
pub(crate) async fn tenant_validator(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;

    let reply = upload(
        &admin,
        guest_artifacts::GUEST_TENANT_VALIDATOR,
        "?name=deny-word&version=1.2.0",
    )
    .await
    .expect(201);
    let plugin = reply.body.clone();
    let id = plugin["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("plg_"));
    assert_eq!(plugin["name"], "deny-word");
    assert_eq!(plugin["version"], "1.2.0");
    assert_eq!(plugin["world"], "validator");
    assert_eq!(
        plugin["size"],
        guest_artifacts::GUEST_TENANT_VALIDATOR.len()
    );
    assert!(plugin["digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(plugin["disabled"], Value::Null);
    // The same bytes again: the plugin stored before.
    let again = upload(&admin, guest_artifacts::GUEST_TENANT_VALIDATOR, "")
        .await
        .expect(200);
    assert_eq!(again.body["id"], id.as_str());
    assert_eq!(
        admin.api.get("/plugins").await.expect(200).body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let hooks = admin
        .api
        .put(
            "/hooks/validators",
            json!({ "plugins": [{ "plugin_id": id, "config": { "deny": "spam" } }] }),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(hooks["validators"][0]["name"], "deny-word");
    assert_eq!(hooks["validators"][0]["builtin"], false);
    assert_eq!(hooks["delay-policy"]["name"], "standard-delay");

    let refused = submit(&admin, &bob, "cheap SPAM here")
        .await
        .problem(422, "rejected");
    assert_eq!(refused.body["reason_code"], "denied_word");
    assert_eq!(refused.body["plugin"], "deny-word");
    let accepted = submit(&admin, &bob, "hello").await.expect(201);
    let message = accepted.body["id"].as_str().unwrap().to_owned();
    let history = events(&admin, &message).await;
    assert_eq!(deciders(&history), ["deny-word", "standard-delay"]);
    assert_eq!(history[0]["plugin"]["digest"], plugin["digest"]);
    assert_eq!(
        admin
            .api
            .get(&format!("/plugins/{id}"))
            .await
            .expect(200)
            .body["bound_to"],
        json!(["validators"])
    );

    // A restart loads the plugin from the database (and its code from the compile cache).
    let server = server.restart().await;
    let admin = server.admin().await;
    let bob = server.login("bob", "member-password").await;
    submit(&admin, &bob, "more spam")
        .await
        .problem(422, "rejected");

    // Bound plugins cannot be deleted; unbound they can.
    let conflict = admin
        .api
        .delete(&format!("/plugins/{id}"))
        .await
        .problem(409, "conflict");
    assert_eq!(conflict.body["hooks"], json!(["validators"]));
    let hooks = admin.api.delete("/hooks/validators").await.expect(200).body;
    assert_eq!(hooks["validators"][0]["name"], "content-guard");
    submit(&admin, &bob, "spam is fine again").await.expect(201);
    admin
        .api
        .delete(&format!("/plugins/{id}"))
        .await
        .expect(204);
    admin
        .api
        .get(&format!("/plugins/{id}"))
        .await
        .problem(404, "not_found");
}

/// A tenant's delay policy and a failing channel: the dry run's schedule is the one the
/// dispatcher follows, to the millisecond (the clock is driven by hand).
pub(crate) async fn tenant_delay(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    let delay = uploaded(&admin, guest_artifacts::GUEST_TENANT_DELAY, "fixed-delay").await;
    let channel = uploaded(&admin, guest_artifacts::GUEST_TENANT_CHANNEL, "announce").await;
    admin
        .api
        .put(
            "/hooks/delay-policy",
            json!({ "plugin_id": delay, "config": { "delay": "5s", "step": "2s", "max_attempts": "3" } }),
        )
        .await
        .expect(200);
    admin
        .api
        .put(
            "/hooks/channels/inbox",
            json!({ "plugin_id": channel, "config": { "fail": "retry" } }),
        )
        .await
        .expect(200);

    let created = submit(&admin, &bob, "hello").await.expect(201).body;
    let id = created["id"].as_str().unwrap().to_owned();
    let dry = admin
        .api
        .post("/hooks/dry-run", json!({ "message_id": id, "attempts": 5 }))
        .await
        .expect(200)
        .body;
    assert_eq!(dry["validation"]["accepted"], true);
    assert_eq!(dry["delivery"]["deliver_at"], created["deliver_at"]);
    let retries = dry["retries"].as_array().unwrap();
    assert_eq!(retries.len(), 3, "{dry}");
    assert_eq!(retries[0]["wait_ms"], 2_000);
    assert_eq!(retries[1]["wait_ms"], 4_000);
    assert_eq!(
        retries[2]["give_up"],
        "the tenant's policy gives up after 3 attempts"
    );
    assert_eq!(dry["stored"], false);
    // Nothing was stored or changed by the dry run.
    let message = admin
        .api
        .get(&format!("/messages/{id}"))
        .await
        .expect(200)
        .body;
    assert_eq!(
        (&message["status"], &message["attempts"]),
        (&json!("scheduled"), &json!(0))
    );

    // The dispatcher follows the same schedule.
    let mut due = dms::clock::parse_rfc3339(created["deliver_at"].as_str().unwrap()).unwrap();
    for step in retries {
        server.clock.advance(due - server.clock.now_ms());
        server.dispatch().await;
        let message = admin
            .api
            .get(&format!("/messages/{id}"))
            .await
            .expect(200)
            .body;
        match step["retry_at"].as_str() {
            Some(retry_at) => {
                assert_eq!(message["status"], "retrying");
                assert_eq!(message["deliver_at"], retry_at);
                due = dms::clock::parse_rfc3339(retry_at).unwrap();
            }
            None => {
                assert_eq!(message["status"], "dead");
                assert_eq!(message["last_error"], step["give_up"]);
            }
        }
    }
    let history = events(&admin, &id).await;
    assert!(deciders(&history).iter().any(|name| name == "announce"));
    assert!(
        deciders(&history)
            .iter()
            .all(|name| name != "standard-delay")
    );
}

/// A tenant's channel publishes its own event to the recipient's socket.
pub(crate) async fn tenant_channel(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    let channel = uploaded(&admin, guest_artifacts::GUEST_TENANT_CHANNEL, "announce").await;
    // Only channels take an allow-list, and only host names.
    admin
        .api
        .put(
            "/hooks/channels/inbox",
            json!({ "plugin_id": channel, "allowed_hosts": ["exa mple.com"] }),
        )
        .await
        .problem(422, "invalid_field");
    admin
        .api
        .put(
            "/hooks/channels/inbox",
            json!({ "plugin_id": channel, "allowed_hosts": ["*.example.com"] }),
        )
        .await
        .expect(200);
    let (mut socket, _) = WsClient::connect(&server.url, &bob.token).await;
    let id = submit(&admin, &bob, "hi bob").await.expect(201).body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    server.dispatch().await;
    let event = socket.next().await;
    assert_eq!(event["type"], "tenant-channel");
    assert_eq!(event["message_id"], id.as_str());
    assert_eq!(event["content"], "hi bob");
    let message = admin
        .api
        .get(&format!("/messages/{id}"))
        .await
        .expect(200)
        .body;
    assert_eq!(message["status"], "delivered");
    // The webhook channel is still the built-in.
    let hooks = admin.api.get("/hooks").await.expect(200).body;
    assert_eq!(hooks["channels"]["webhook"]["name"], "webhook");
    assert_eq!(
        hooks["channels"]["inbox"]["allowed_hosts"],
        json!(["*.example.com"])
    );
}

/// Every refusal with its status and code, and no trace of it afterwards.
pub(crate) async fn uploads_and_bindings_are_refused_precisely_and_change_nothing(
    backend: Backend,
) {
    let server = TestServer::start_with(backend, |config| config.plugin_max_upload_mb = 1).await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    let validator = uploaded(&admin, guest_artifacts::GUEST_TENANT_VALIDATOR, "deny-word").await;
    let wasm = |bytes: &[u8]| bytes.to_vec();

    // Who may upload.
    server
        .api()
        .raw(
            Method::POST,
            "/plugins",
            Some("application/wasm"),
            wasm(b"\0asm"),
        )
        .await
        .problem(401, "unauthenticated");
    upload(&bob, guest_artifacts::GUEST_TENANT_VALIDATOR, "")
        .await
        .problem(403, "admin_required");
    // What may be uploaded.
    admin
        .api
        .raw(
            Method::POST,
            "/plugins",
            Some("application/json"),
            wasm(b"{}"),
        )
        .await
        .problem(415, "unsupported_media_type");
    upload(&admin, b"hello", "")
        .await
        .problem(422, "not_a_component");
    upload(&admin, b"", "")
        .await
        .problem(422, "not_a_component");
    upload(&admin, b"\0asm\x01\0\0\0", "")
        .await
        .problem(422, "core_module");
    // A component header and nothing else exports no world.
    let empty = upload(&admin, b"\0asm\x0d\0\x01\0", "")
        .await
        .problem(422, "unknown_world");
    assert!(empty.body["detail"].as_str().unwrap().contains("validate"));
    upload(&admin, b"\0asm\x0d\0\x01\0garbage", "")
        .await
        .problem(422, "invalid_component");
    let forbidden = upload(&admin, guest_artifacts::GUEST_FORBIDDEN_IMPORT, "")
        .await
        .problem(422, "import_not_granted");
    assert_eq!(forbidden.body["world"], "validator");
    upload(&admin, guest_artifacts::GUEST_WRONG_WORLD, "")
        .await
        .problem(422, "unknown_world");
    let mut large = b"\0asm\x0d\0\x01\0".to_vec();
    large.resize((1 << 20) + 1, 0);
    let too_large = upload(&admin, &large, "")
        .await
        .problem(413, "component_too_large");
    assert_eq!(too_large.body["limit"], 1 << 20);
    let name = upload(
        &admin,
        guest_artifacts::GUEST_TENANT_DELAY,
        "?name=no%20spaces",
    )
    .await
    .problem(422, "invalid_field");
    assert_eq!(name.body["field"], "name");

    // What may be bound.
    let put = |path: &'static str, body: Value| {
        let api = admin.api.clone();
        async move { api.put(path, body).await }
    };
    let field = |reply: Reply| reply.problem(422, "invalid_field").body["field"].clone();
    assert_eq!(
        field(
            put(
                "/hooks/validators",
                json!({ "plugins": [{ "plugin_id": "plg_nope" }] })
            )
            .await
        ),
        "/plugins/0/plugin_id"
    );
    let unknown = dms::domain::ids::PluginId::new().to_string();
    assert_eq!(
        field(put("/hooks/delay-policy", json!({ "plugin_id": unknown })).await),
        "/plugin_id"
    );
    let wrong_world = put("/hooks/delay-policy", json!({ "plugin_id": validator }))
        .await
        .problem(422, "invalid_field");
    assert!(
        wrong_world.body["detail"]
            .as_str()
            .unwrap()
            .contains("is a validator plugin; the delay-policy hook takes delay-policy plugins"),
        "{}",
        wrong_world.body
    );
    let too_high = put(
        "/hooks/validators",
        json!({ "plugins": [{ "plugin_id": validator, "limits": { "decision_deadline_ms": 11 } }] }),
    )
    .await;
    assert_eq!(field(too_high), "/plugins/0/limits/decision_deadline_ms");
    assert_eq!(
        field(
            put(
                "/hooks/validators",
                json!({ "plugins": [{ "plugin_id": validator, "allowed_hosts": ["example.com"] }] })
            )
            .await
        ),
        "/plugins/0/allowed_hosts"
    );
    assert_eq!(
        field(put("/hooks/validators", json!({ "plugins": [] })).await),
        "/plugins"
    );
    assert_eq!(
        field(
            put(
                "/hooks/validators",
                json!({ "plugins": [{ "plugin_id": validator, "extra": 1 }] })
            )
            .await
        ),
        "/plugins/0/extra"
    );
    admin
        .api
        .raw(
            Method::PUT,
            "/hooks/validators",
            Some("application/json"),
            wasm(b"{\"plugins\":"),
        )
        .await
        .problem(400, "malformed_json");
    put("/hooks/channels/sms", json!({ "plugin_id": validator }))
        .await
        .problem(404, "not_found");
    // Lowered limits are fine.
    admin
        .api
        .post(
            "/hooks/dry-run",
            json!({
                "message": { "recipient_id": bob.user_id(), "content": "x" },
                "hooks": { "validators": { "plugins": [{ "plugin_id": validator, "limits": { "decision_deadline_ms": 5 } }] } },
            }),
        )
        .await
        .expect(200);

    // Another tenant sees none of it.
    let acme = server.tenant_admin("acme").await;
    acme.api
        .get(&format!("/plugins/{validator}"))
        .await
        .problem(404, "not_found");
    acme.api
        .delete(&format!("/plugins/{validator}"))
        .await
        .problem(404, "not_found");
    assert_eq!(
        field(
            acme.api
                .put(
                    "/hooks/validators",
                    json!({ "plugins": [{ "plugin_id": validator }] })
                )
                .await
        ),
        "/plugins/0/plugin_id"
    );
    assert_eq!(
        acme.api.get("/plugins").await.expect(200).body["items"],
        json!([])
    );

    // Nothing changed: one plugin, every hook on its built-in.
    let plugins = admin.api.get("/plugins").await.expect(200).body;
    assert_eq!(plugins["items"].as_array().unwrap().len(), 1);
    let hooks = admin.api.get("/hooks").await.expect(200).body;
    assert_eq!(hooks["validators"].as_array().unwrap().len(), 1);
    for hook in [
        &hooks["validators"][0],
        &hooks["delay-policy"],
        &hooks["channels"]["inbox"],
    ] {
        assert_eq!(hook["builtin"], true, "{hooks}");
    }
    let count = server
        .sql_column("SELECT CAST(count(*) AS TEXT) FROM hook_bindings")
        .await;
    assert_eq!(count, ["0"]);
}

/// Tenant A binds a validator that never returns; B's messages are decided as before while A's
/// fail closed, until A's plugin is disabled and A's hook falls back to the built-in.
pub(crate) async fn a_hostile_plugin_is_disabled_and_other_tenants_are_unaffected(
    backend: Backend,
) {
    let server = TestServer::start_with(backend, |config| config.plugin_failure_limit = 5).await;
    let a = server.admin().await;
    let a_bob = server.member(&a, "bob").await;
    let b = server.tenant_admin("acme").await;
    let b_carol = server.member(&b, "carol").await;
    let hostile = uploaded(&a, guest_artifacts::GUEST_SPIN_LOOP, "spin").await;
    a.api
        .put(
            "/hooks/validators",
            json!({ "plugins": [{ "plugin_id": hostile }] }),
        )
        .await
        .expect(200);

    let tenant_b = {
        let (b, carol) = (b.api.clone(), b_carol.user_id().to_owned());
        tokio::spawn(async move {
            let mut results = Vec::new();
            for i in 0..20 {
                let started = std::time::Instant::now();
                let reply = b
                    .post(
                        "/messages",
                        json!({ "recipient_id": carol, "content": format!("b{i}") }),
                    )
                    .await;
                results.push((reply.status, started.elapsed()));
                let empty = b
                    .post("/messages", json!({ "recipient_id": carol, "content": "" }))
                    .await;
                results.push((empty.status, started.elapsed()));
            }
            results
        })
    };
    for _ in 0..5 {
        let refused = submit(&a, &a_bob, "hello").await.problem(422, "rejected");
        assert_eq!(refused.body["reason_code"], "plugin_error");
        assert!(
            refused.body["detail"]
                .as_str()
                .unwrap()
                .contains("deadline"),
            "{}",
            refused.body
        );
    }
    let results = tenant_b.await.unwrap();
    // B's results are what its built-in validator decides: accepted, and empty content refused.
    let statuses: Vec<u16> = results.iter().map(|(status, _)| *status).collect();
    assert_eq!(statuses, [201, 422].repeat(20));
    let slowest = results.iter().map(|(_, took)| *took).max().unwrap();
    println!("tenant B's slowest submit while A's plugin spun: {slowest:?}");

    // A's plugin is disabled, and says why.
    let plugin = a
        .api
        .get(&format!("/plugins/{hostile}"))
        .await
        .expect(200)
        .body;
    let reason = plugin["disabled"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("5 calls in a row failed"), "{plugin}");
    assert_eq!(plugin["stats"]["failures"]["timeout"], 5);
    assert_eq!(plugin["stats"]["calls"], 5);
    // A's messages now fall back to the built-in validator, and their history says so.
    let accepted = submit(&a, &a_bob, "hello").await.expect(201).body;
    let history = events(&a, accepted["id"].as_str().unwrap()).await;
    assert_eq!(deciders(&history), ["content-guard", "standard-delay"]);
    assert!(
        history[0]["result"]
            .as_str()
            .unwrap()
            .contains("is disabled"),
        "{history:?}"
    );
    let hooks = a.api.get("/hooks").await.expect(200).body;
    assert_eq!(hooks["validators"][0]["name"], "content-guard");
    assert!(hooks["validators"][0]["standing_in_because"].is_string());
    // Binding it again is refused until it is enabled; enabling brings it back.
    a.api
        .put(
            "/hooks/validators",
            json!({ "plugins": [{ "plugin_id": hostile }] }),
        )
        .await
        .problem(422, "invalid_field");
    let enabled = a
        .api
        .post(&format!("/plugins/{hostile}/enable"), json!({}))
        .await
        .expect(200)
        .body;
    assert_eq!(enabled["disabled"], Value::Null);
    assert_eq!(enabled["stats"]["failing_streak"], 0);
    submit(&a, &a_bob, "hello").await.problem(422, "rejected");
}

/// Messages submitted while the admin swaps between a one-plugin and a two-plugin chain: each
/// is decided by one chain or the other, never a mix, and every one is delivered.
pub(crate) async fn hot_swapping_under_load_loses_nothing_and_never_half_applies(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.rate_limit_api_per_second = 10_000;
        config.rate_limit_api_burst = 10_000;
    })
    .await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    let validator = uploaded(&admin, guest_artifacts::GUEST_TENANT_VALIDATOR, "deny-word").await;
    let one = json!({ "plugins": [{ "plugin_id": validator, "config": { "deny": "one" } }] });
    let two = json!({ "plugins": [
        { "plugin_id": validator, "config": { "deny": "two" } },
        { "plugin_id": validator, "config": { "deny": "three" } },
    ] });
    admin
        .api
        .put("/hooks/validators", one.clone())
        .await
        .expect(200);

    let senders: Vec<_> = (0..4)
        .map(|sender| {
            let (api, to) = (admin.api.clone(), bob.user_id().to_owned());
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..40 {
                    let reply = api
                        .post(
                            "/messages",
                            json!({ "recipient_id": to, "content": format!("m{sender}-{i}") }),
                        )
                        .await
                        .expect(201);
                    ids.push(reply.body["id"].as_str().unwrap().to_owned());
                }
                ids
            })
        })
        .collect();
    for swap in 0..20 {
        let chain = if swap % 2 == 0 { &two } else { &one };
        admin
            .api
            .put("/hooks/validators", chain.clone())
            .await
            .expect(200);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut ids = Vec::new();
    for sender in senders {
        ids.extend(sender.await.unwrap());
    }
    let mut chains = std::collections::BTreeMap::<usize, usize>::new();
    for id in &ids {
        let history = events(&admin, id).await;
        let validators = deciders(&history)
            .iter()
            .filter(|name| *name == "deny-word")
            .count();
        assert!(validators == 1 || validators == 2, "{id}: {history:?}");
        *chains.entry(validators).or_default() += 1;
    }
    println!("messages decided by the one- and two-validator chains: {chains:?}");
    server.dispatch().await;
    let delivered = server
        .sql_column("SELECT CAST(count(*) AS TEXT) FROM message_states WHERE status = 'delivered'")
        .await;
    assert_eq!(delivered, [ids.len().to_string()]);
}

/// Two nodes on one database and Redis: a binding made on one applies to the next message on
/// the other, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_see_a_new_binding_without_restart() {
    let a = TestServer::start_with(Backend::Postgres, |config| {
        config.redis_url = dms::config::Secret::new("redis://127.0.0.1:6379".to_owned());
        config.redis_prefix = format!("test:{}", dms::domain::ids::TenantId::new());
    })
    .await;
    let b = TestServer::start_beside(&a, |_| {}).await;
    let admin_a = a.admin().await;
    let bob = a.member(&admin_a, "bob").await;
    let admin_b = b.admin().await;
    // Node B resolves (and caches) the tenant's hooks before the change.
    submit(&admin_b, &bob, "spam before").await.expect(201);
    let validator = uploaded(
        &admin_a,
        guest_artifacts::GUEST_TENANT_VALIDATOR,
        "deny-word",
    )
    .await;
    admin_a
        .api
        .put(
            "/hooks/validators",
            json!({ "plugins": [{ "plugin_id": validator, "config": { "deny": "spam" } }] }),
        )
        .await
        .expect(200);
    eventually("node B applies the new validator", || async {
        submit(&admin_b, &bob, "spam after").await.status == 422
    })
    .await;
    // And back, on node B this time.
    admin_b.api.delete("/hooks/validators").await.expect(200);
    eventually("node A returns to the built-in", || async {
        submit(&admin_a, &bob, "spam again").await.status == 201
    })
    .await;
}

/// The Python example (`plugins/examples/python-validator`), built from source with
/// componentize-py, uploaded, bound and deciding messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_plugin_is_uploaded_and_decides() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("python-validator.wasm");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../plugins/examples/python-validator/build.sh"
    );
    let built = tokio::process::Command::new("bash")
        .arg(script)
        .arg(&wasm)
        .output()
        .await
        .expect("bash runs");
    assert!(
        built.status.success(),
        "build.sh failed: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let bytes = std::fs::read(&wasm).unwrap();

    // An 18 MB component carries CPython: the operator raises the upload limit, and the
    // decision deadline too, since a call touches megabytes of the interpreter's heap (close to
    // the default 10 ms of CPU even on an idle machine; over it under load).
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.plugin_max_upload_mb = 32;
        config.plugin_decision_deadline_ms = 250;
    })
    .await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    let plugin = upload(&admin, &bytes, "?name=python-validator")
        .await
        .expect(201)
        .body;
    assert_eq!(plugin["world"], "validator");
    let id = plugin["id"].as_str().unwrap();
    admin
        .api
        .put(
            "/hooks/validators",
            json!({ "plugins": [{ "plugin_id": id, "config": { "required-metadata": "order-id", "deny-words": "spam" } }] }),
        )
        .await
        .expect(200);
    let send = |content: &str, metadata: Value| {
        admin.api.post(
            "/messages",
            json!({ "recipient_id": bob.user_id(), "content": content, "metadata": metadata }),
        )
    };
    let missing = send("hello", json!({})).await.problem(422, "rejected");
    assert_eq!(
        missing.body["reason_code"], "missing_metadata",
        "{}",
        missing.body
    );
    assert_eq!(
        missing.body["detail"],
        "the metadata key 'order-id' is required"
    );
    let denied = send("cheap Spam", json!({ "order-id": "7" }))
        .await
        .problem(422, "rejected");
    assert_eq!(denied.body["reason_code"], "denied_word");
    let accepted = send("hello", json!({ "order-id": "7" }))
        .await
        .expect(201)
        .body;
    let history = events(&admin, accepted["id"].as_str().unwrap()).await;
    assert_eq!(deciders(&history), ["python-validator", "standard-delay"]);
    let stats = &admin
        .api
        .get(&format!("/plugins/{id}"))
        .await
        .expect(200)
        .body["stats"];
    assert_eq!(stats["calls"], 3);
    println!("python-validator: 3 calls in {} µs", stats["time_us"]);
}

/// A dry run whose simulated failures ask for the longest wait answers (the last-resort retry
/// once overflowed and the server dropped the connection; found by schemathesis), and a longer
/// one than any channel may ask for is refused (`input_hardening`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_with_the_longest_retry_after_answers() {
    let server = TestServer::start(Backend::Sqlite).await;
    let admin = server.admin().await;
    let dry_run = |retry_after_ms: u64| {
        admin.api.post(
            "/hooks/dry-run",
            json!({
                "message": { "recipient_id": admin.user_id(), "content": "x" },
                "attempts": 5,
                "retry_after_ms": retry_after_ms,
            }),
        )
    };
    let refused = dry_run(u64::MAX).await.problem(422, "invalid_field");
    assert_eq!(refused.body["field"], "/retry_after_ms");
    let run = dry_run(365 * 86_400_000).await.expect(200);
    let retries = run.body["retries"].as_array().unwrap();
    assert!(!retries.is_empty(), "{}", run.body);
    for step in retries {
        assert!(
            step["retry_at"].is_string() || step["give_up"].is_string(),
            "{step}"
        );
    }
}
