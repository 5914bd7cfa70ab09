//! The OpenAPI document: the served copy is the committed `docs/openapi.json`, it lists
//! exactly the operations the router serves, and schemathesis, fuzzing every operation
//! against a live server, never gets a 5xx nor a response the document does not describe.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use crate::harness::{Backend, TestServer};

/// The schemathesis release the tests run (installed by `.ci/run`).
const SCHEMATHESIS: &str = "schemathesis==4.32.5";

/// The committed copy.
fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json")
}

/// The document as the server serves it.
async fn served(server: &TestServer) -> Value {
    let reply = server.api().get("/openapi.json").await.expect(200);
    assert_eq!(reply.headers["content-type"], "application/json");
    reply.body
}

/// Every `(METHOD, path)` the document lists.
fn documented(document: &Value) -> BTreeSet<(String, String)> {
    document["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("a path item")
                .keys()
                .map(|method| (method.to_uppercase(), path.clone()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_document_is_the_committed_one() {
    let server = TestServer::start(Backend::Sqlite).await;
    let document = served(&server).await;
    let version = document["openapi"].as_str().expect("an `openapi` member");
    assert!(version.starts_with("3.1"), "OpenAPI {version}");
    let pretty = format!("{}\n", serde_json::to_string_pretty(&document).unwrap());
    let path = committed_path();
    if std::env::var_os("DMS_UPDATE_OPENAPI").is_some_and(|value| value == "1") {
        std::fs::write(&path, &pretty).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == pretty,
        "docs/openapi.json differs from the document the code generates (GET /openapi.json).\n\
         Regenerate it with:\n\n    DMS_UPDATE_OPENAPI=1 cargo test -p dms --test e2e openapi\n\n\
         and commit the result."
    );
}

/// The `(METHOD, path)` pairs `api::router()` registers, read from its source: each
/// `.route("path", get(..).post(..))` between `Router::new()` and the fallback.
fn routed() -> BTreeSet<(String, String)> {
    let source = include_str!("../../host/src/api/mod.rs");
    let start = source
        .find("Router::new()")
        .expect("router() builds a Router");
    let end = source[start..].find(".fallback(").expect("a fallback") + start;
    let mut routes = BTreeSet::new();
    for chunk in source[start..end].split(".route(").skip(1) {
        let path = chunk
            .split('"')
            .nth(1)
            .expect("a route's path is a string literal");
        for method in ["get", "post", "put", "patch", "delete"] {
            let called = chunk
                .match_indices(&format!("{method}("))
                .any(|(at, _)| at == 0 || !chunk.as_bytes()[at - 1].is_ascii_alphanumeric());
            if called {
                routes.insert((method.to_uppercase(), path.to_owned()));
            }
        }
    }
    routes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_lists_exactly_the_routes_served() {
    let server = TestServer::start(Backend::Sqlite).await;
    let document = served(&server).await;
    let listed = documented(&document);

    // Both ways, against the router's source.
    let routes = routed();
    assert!(routes.len() > 40, "{routes:?}");
    let undocumented: Vec<_> = routes.difference(&listed).collect();
    assert!(
        undocumented.is_empty(),
        "served, not documented: {undocumented:?}"
    );
    let unrouted: Vec<_> = listed.difference(&routes).collect();
    assert!(unrouted.is_empty(), "documented, not routed: {unrouted:?}");

    // And against the running server: every documented operation is routed (no token, so
    // nothing changes: it answers 401, 415 or its own error, never "no such route"), and
    // every other method on a documented path is a 405.
    let api = server.api();
    let paths: BTreeSet<&String> = listed.iter().map(|(_, path)| path).collect();
    for path in paths {
        let concrete = path
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    "x"
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            let reply = api
                .send(
                    Method::from_bytes(method.as_bytes()).unwrap(),
                    &concrete,
                    None,
                )
                .await;
            if listed.contains(&(method.to_owned(), path.clone())) {
                assert!(
                    !matches!(
                        reply.body["code"].as_str(),
                        Some("route_not_found" | "method_not_allowed")
                    ),
                    "{method} {path} is documented but not served: {}",
                    reply.body
                );
            } else {
                assert_eq!(
                    reply.body["code"], "method_not_allowed",
                    "{method} {path} is served but not documented: {} {}",
                    reply.status, reply.body
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn problem_responses_name_their_content_type_and_schema() {
    let server = TestServer::start(Backend::Sqlite).await;
    let document = served(&server).await;
    let problem = &document["components"]["schemas"]["Problem"];
    for member in ["type", "title", "status", "detail", "code"] {
        assert!(problem["properties"][member].is_object(), "{member}");
    }
    // Every 4xx and 5xx of every operation is a problem.
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for (status, response) in operation["responses"].as_object().unwrap() {
                if !(status.starts_with('4') || status.starts_with('5')) {
                    continue;
                }
                let response = match response["$ref"].as_str() {
                    Some(reference) => {
                        let name = reference.rsplit('/').next().unwrap();
                        &document["components"]["responses"][name]
                    }
                    None => response,
                };
                assert_eq!(
                    response["content"]["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem",
                    "{method} {path} {status}"
                );
            }
        }
    }
    // Operations that take a token say so; the public ones do not.
    let security = |method: &str, path: &str| document["paths"][path][method]["security"].clone();
    assert_eq!(
        security("get", "/messages")[0]["bearer"],
        Value::Array(vec![])
    );
    assert!(security("post", "/auth/login").is_null());
    assert!(security("get", "/health").is_null());
}

/// schemathesis's configuration: dictionaries of real ids, drawn for the path and body fields
/// that name a user, a message or a plugin.
fn fuzz_config(user: &str, message: &str, plugin: &str) -> String {
    format!(
        r#"
[dictionaries]
users = {{ values = ["{user}"] }}
messages = {{ values = ["{message}"] }}
plugins = {{ values = ["{plugin}"] }}

[parameters]
"body.recipient_id" = {{ dictionary = "users", probability = 0.8 }}
"body.message.recipient_id" = {{ dictionary = "users", probability = 0.8 }}
"body.message_id" = {{ dictionary = "messages", probability = 0.8 }}
"body.plugin_id" = {{ dictionary = "plugins", probability = 0.8 }}
"body.plugins[*].plugin_id" = {{ dictionary = "plugins", probability = 0.8 }}

# DELETE /messages/{{id}} cancels: the message stays readable, with its history, by design.
[[operations]]
include-path-regex = "^/messages/\\{{id\\}}"
parameters = {{ "path.id" = {{ dictionary = "messages", probability = 0.8 }} }}
checks.use_after_free.enabled = false

[[operations]]
include-path-regex = "^/dead-letters/\\{{id\\}}"
parameters = {{ "path.id" = {{ dictionary = "messages", probability = 0.8 }} }}

[[operations]]
include-path-regex = "^/plugins/\\{{id\\}}"
parameters = {{ "path.id" = {{ dictionary = "plugins", probability = 0.8 }} }}

[[operations]]
include-path-regex = "^/users/\\{{id\\}}"
parameters = {{ "path.id" = {{ dictionary = "users", probability = 0.8 }} }}

# A document describes the shape of a request, not what exists or what a tenant's policy
# decides. These operations answer 422 to well-formed requests for reasons their descriptions
# state in words: a recipient, group member or plugin that does not exist, a validator
# plugin's refusal, two fields of which exactly one may be given (or one only with another: a
# flow limit's `period` with its `rate`), a component that is not one,
# a username, group name or endpoint the rules of OPERATIONS.md refuse, a group at its member
# limit. Everything else stays held to the document.
{unknowable}

# GET /ws is a WebSocket handshake, which schemathesis cannot make: a plain GET is 426.
[[operations]]
include-operation-id = "realtime_upgrade"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "426", "429", "5xx"]
checks.negative_data_rejection.expected-statuses = ["400", "401", "403", "422", "426", "429", "5xx"]
"#,
        unknowable = SEMANTIC_422
            .iter()
            .map(|id| format!(
                "[[operations]]\ninclude-operation-id = \"{id}\"\n\
                 checks.positive_data_acceptance.expected-statuses = \
                 [\"2xx\", \"3xx\", \"401\", \"403\", \"404\", \"409\", \"422\", \"429\", \"5xx\"]\n"
            ))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

/// Operations (by id) whose well-formed requests can answer 422 for what no schema can say;
/// see [`fuzz_config`].
const SEMANTIC_422: &[&str] = &[
    "messages_submit",
    "messages_submit_batch",
    "messages_reschedule",
    "flow_control_put",
    "hooks_dry_run",
    "hooks_put_validators",
    "hooks_put_delay_policy",
    "hooks_put_channel",
    "plugins_upload",
    "schedules_create",
    "schedules_update",
    "users_create",
    "webhooks_set",
    "groups_create",
    "groups_add_members",
    "groups_add_member",
    "callbacks_set",
];

/// Operations schemathesis leaves alone (by operation id), because they would end the session
/// whose token every request of the run carries, and the rest of the run would only see 401s:
/// `POST /auth/logout` always, `DELETE /auth/sessions/{id}` with the id the stateful phase
/// takes from `GET /auth/sessions`. The other risky ones stay in: `DELETE /users/{id}` cannot
/// delete the caller (409), and `PUT /users/me/password` needs the current password, which
/// the run does not know (403).
const NOT_FUZZED: &[&str] = &["auth_logout", "auth_end_session"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_5xx() {
    // SQLite in CI; DMS_SCHEMATHESIS_BACKEND=postgres hunts on PostgreSQL.
    let backend = match std::env::var("DMS_SCHEMATHESIS_BACKEND").as_deref() {
        Ok("postgres") => Backend::Postgres,
        _ => Backend::Sqlite,
    };
    let server = TestServer::start_with(backend, |config| {
        // The run sends far more than a client would; 429s would hide the handlers.
        config.rate_limit_api_per_second = 100_000;
        config.rate_limit_api_burst = 100_000;
        config.rate_limit_login_per_ip = 100_000;
        config.rate_limit_login_per_username = 100_000;
    })
    .await;
    let admin = server.admin().await;
    // Real ids to draw from, so the handlers behind a lookup get tested too: most cases use
    // one of these, the rest a generated id (which is simply not found).
    let bob = server.member(&admin, "bob").await;
    let message = admin
        .api
        .post(
            "/messages",
            serde_json::json!({ "recipient_id": bob.user_id(), "content": "hi", "delay_seconds": 3600 }),
        )
        .await
        .expect(201);
    let plugin = admin
        .api
        .raw(
            Method::POST,
            "/plugins?name=guard",
            Some("application/wasm"),
            plugin_artifacts::CONTENT_GUARD.to_vec(),
        )
        .await
        .expect(201);
    let workdir = tempfile::tempdir().unwrap();
    let config = workdir.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        fuzz_config(
            bob.user_id(),
            message.body["id"].as_str().unwrap(),
            plugin.body["id"].as_str().unwrap(),
        ),
    )
    .unwrap();
    // For a longer local hunt: DMS_SCHEMATHESIS_EXAMPLES=300 DMS_SCHEMATHESIS_SEED=7 (about
    // 5 minutes), or other checks with DMS_SCHEMATHESIS_CHECKS=all.
    let knob = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let examples = knob("DMS_SCHEMATHESIS_EXAMPLES", "50");
    let seed = knob("DMS_SCHEMATHESIS_SEED", "1");
    // Every check: no 5xx, every response one the document describes (status, content type,
    // headers, schema), schema-valid requests accepted and invalid ones refused, and the
    // stateful ones (a deleted resource is gone, a created one can be read).
    let checks = knob("DMS_SCHEMATHESIS_CHECKS", "all");
    // schemathesis keeps a cache in its working directory: not in the repository.
    let mut command = tokio::process::Command::new("schemathesis");
    command
        .current_dir(workdir.path())
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("{}/openapi.json", server.url))
        .args(["--url", &server.url])
        .args(["--checks", &checks])
        .args(["--max-examples", &examples])
        .args(["--workers", "1"])
        .args(["--seed", &seed])
        .args(["--request-timeout", "20"])
        .args(["--generation-database", "none"])
        .arg("--no-color")
        .args([
            "--header",
            &format!("Authorization: Bearer {}", admin.token),
        ]);
    for operation in NOT_FUZZED {
        command.args(["--exclude-operation-id", operation]);
    }
    command
        .env(
            "SCHEMATHESIS_HOOKS",
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/e2e/schemathesis_hooks.py"),
        )
        .env("NO_PROXY", "127.0.0.1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let started = Instant::now();
    let child = command.spawn().unwrap_or_else(|error| {
        panic!("schemathesis must be installed (python3 -m pip install {SCHEMATHESIS}): {error}")
    });
    let output = tokio::time::timeout(Duration::from_secs(600), child.wait_with_output())
        .await
        .expect("schemathesis finishes within 10 minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis found failures ({:?}, {} s):\n{stdout}\n{stderr}",
        output.status,
        started.elapsed().as_secs()
    );
    // Shown with --nocapture: what was covered, and schemathesis's warnings.
    println!("{stdout}");
    // The run did test something: its summary says how many cases it generated.
    let generated: u64 = stdout
        .lines()
        .find_map(|line| line.trim().split_once(" generated, "))
        .and_then(|(count, _)| count.parse().ok())
        .unwrap_or_else(|| panic!("no test case count in schemathesis's summary:\n{stdout}"));
    assert!(generated > 500, "only {generated} test cases:\n{stdout}");
}
