//! Tenant plugins under pressure: quotas per tenant, compiled code freed on delete, one
//! tenant's uploads do not slow another tenant's submits.
//!
//! Uploads need distinct digests: `distinct` appends a custom section (a component binary may
//! end with custom sections, which the compiler skips) to the tenant validator guest.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Backend, Login, Reply, TestServer, cache_dir, on_both_backends};

on_both_backends!(
    quotas_refuse_uploads_precisely_and_store_nothing,
    deleted_plugins_leave_nothing_behind,
    one_tenants_upload_storm_does_not_slow_another_tenants_submits,
);

/// The tenant validator guest with a custom section named `dms-test-salt` holding `tag` and
/// `padding` more bytes: a valid component with a digest of its own.
fn distinct(tag: &str, padding: usize) -> Vec<u8> {
    let name = b"dms-test-salt";
    let mut payload = Vec::with_capacity(1 + name.len() + tag.len() + padding);
    payload.push(name.len() as u8);
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    payload.resize(payload.len() + padding, 0);
    let mut bytes = guest_artifacts::GUEST_TENANT_VALIDATOR.to_vec();
    bytes.push(0x00);
    // The section's size, in unsigned LEB128.
    let mut size = payload.len();
    loop {
        let byte = (size & 0x7f) as u8;
        size >>= 7;
        if size == 0 {
            bytes.push(byte);
            break;
        }
        bytes.push(byte | 0x80);
    }
    bytes.extend_from_slice(&payload);
    bytes
}

async fn upload(admin: &Login, bytes: Vec<u8>) -> Reply {
    admin
        .api
        .raw(Method::POST, "/plugins", Some("application/wasm"), bytes)
        .await
}

async fn plugin_ids(admin: &Login) -> Vec<String> {
    admin.api.get("/plugins").await.expect(200).body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|plugin| plugin["id"].as_str().unwrap().to_owned())
        .collect()
}

/// `/metrics` as text.
async fn metrics(server: &TestServer) -> String {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the unlabelled gauge `name` in `text`.
fn gauge(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} is not in /metrics"))
        .parse()
        .unwrap()
}

/// The metric lines about the plugin whose digest is `digest` (`sha256:…`).
fn series_of(text: &str, digest: &str) -> Vec<String> {
    let label = format!("digest=\"{}\"", &digest.trim_start_matches("sha256:")[..12]);
    text.lines()
        .filter(|line| line.contains(&label))
        .map(str::to_owned)
        .collect()
}

/// The files of the disk compile cache for `digest` (`sha256:…`).
fn cached_files(digest: &str) -> Vec<std::path::PathBuf> {
    let file = format!("{}.cwasm", digest.trim_start_matches("sha256:"));
    std::fs::read_dir(cache_dir())
        .unwrap()
        .map(|engine| engine.unwrap().path().join(&file))
        .filter(|path| path.exists())
        .collect()
}

/// Both quotas, per tenant: the exact refusal, nothing stored, nothing compiled; the same bytes
/// again are not counted; a delete makes room; a malformed upload is still told so.
pub(crate) async fn quotas_refuse_uploads_precisely_and_store_nothing(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.plugin_max_per_tenant = 3;
        config.plugin_max_upload_mb = 1;
        config.plugin_max_tenant_mb = 1;
    })
    .await;
    let admin = server.admin().await;
    let tag = admin.tenant_id().to_owned();
    let mut ids = Vec::new();
    for i in 0..3 {
        let reply = upload(&admin, distinct(&format!("{tag}-{i}"), 0))
            .await
            .expect(201);
        ids.push(reply.body["id"].as_str().unwrap().to_owned());
    }
    let compiled = server.state.policies.sandbox().cache_usage().components;

    let refused = upload(&admin, distinct(&format!("{tag}-3"), 0))
        .await
        .problem(409, "plugin_quota_exceeded");
    assert_eq!(
        refused.body["detail"],
        "your tenant stores 3 plugins, the most the operator allows; delete one it no longer uses (DELETE /plugins/{id}) and upload again"
    );
    assert_eq!(refused.body["quota"], "plugins");
    assert_eq!(refused.body["limit"], 3);
    // Bytes the tenant has already are the plugin stored then, quota or not.
    let again = upload(&admin, distinct(&format!("{tag}-0"), 0))
        .await
        .expect(200);
    assert_eq!(again.body["id"], ids[0].as_str());
    // Malformed uploads are refused as such, before the quota.
    upload(&admin, b"hello".to_vec())
        .await
        .problem(422, "not_a_component");
    // Nothing stored, nothing compiled.
    assert_eq!(plugin_ids(&admin).await, ids);
    assert_eq!(
        server.state.policies.sandbox().cache_usage().components,
        compiled
    );

    // A delete makes room.
    admin
        .api
        .delete(&format!("/plugins/{}", ids[2]))
        .await
        .expect(204);
    upload(&admin, distinct(&format!("{tag}-3"), 0))
        .await
        .expect(201);

    // Another tenant has its own quota; its bytes quota counts every plugin it stores.
    let acme = server.tenant_admin("acme").await;
    let first = distinct(&format!("{tag}-acme-0"), 600_000);
    let first_size = first.len();
    upload(&acme, first).await.expect(201);
    let second = distinct(&format!("{tag}-acme-1"), 1_048_576 - first_size - 1_000);
    let second_size = second.len();
    assert!(first_size + second_size > 1 << 20);
    let refused = upload(&acme, second)
        .await
        .problem(409, "plugin_quota_exceeded");
    assert_eq!(
        refused.body["detail"],
        format!(
            "the component ({second_size} bytes) does not fit: your tenant's plugins take {first_size} of the 1048576 bytes the operator allows; delete plugins it no longer uses (DELETE /plugins/{{id}}) and upload again"
        )
    );
    assert_eq!(refused.body["quota"], "bytes");
    assert_eq!(refused.body["limit"], 1 << 20);
    assert_eq!(refused.body["used"], first_size);
    assert_eq!(refused.body["size"], second_size);
    assert_eq!(plugin_ids(&acme).await.len(), 1);
    let stored = server
        .sql_column("SELECT CAST(count(*) AS TEXT) FROM plugins")
        .await;
    assert_eq!(stored, ["4"]);
    // A smaller one still fits.
    upload(&acme, distinct(&format!("{tag}-acme-2"), 0))
        .await
        .expect(201);

    // The problem type explains itself.
    let described = server
        .api()
        .get("/problems/plugin_quota_exceeded")
        .await
        .expect(200)
        .body;
    assert_eq!(described["status"], 409);
    assert!(
        described["description"]
            .as_str()
            .unwrap()
            .contains("DMS_PLUGIN_MAX_PER_TENANT"),
        "{described}"
    );
}

/// Many distinct uploads, one of them bound and called, then all deleted: the node holds what
/// it held before (plugins loaded, compiled components in memory), `/metrics` has no series of
/// any of them, and their compiled code is gone from the disk cache too.
pub(crate) async fn deleted_plugins_leave_nothing_behind(backend: Backend) {
    const UPLOADS: usize = 40;
    let server = TestServer::start_with(backend, |config| {
        config.plugin_max_per_tenant = 100;
        config.rate_limit_api_per_second = 10_000;
        config.rate_limit_api_burst = 10_000;
    })
    .await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    let tag = admin.tenant_id().to_owned();
    let sandbox = server.state.policies.sandbox().clone();
    // A message through the built-ins first, so they are loaded and counted.
    admin
        .api
        .post(
            "/messages",
            json!({ "recipient_id": bob.user_id(), "content": "hello" }),
        )
        .await
        .expect(201);
    let loaded = sandbox.plugins().len();
    let cached = sandbox.cache_usage();
    let before = metrics(&server).await;

    let uploads: Vec<_> = (0..UPLOADS)
        .map(|i| {
            let (api, bytes) = (admin.api.clone(), distinct(&format!("{tag}-{i}"), 0));
            tokio::spawn(async move {
                api.raw(Method::POST, "/plugins", Some("application/wasm"), bytes)
                    .await
                    .expect(201)
                    .body
            })
        })
        .collect();
    let mut plugins: Vec<Value> = Vec::new();
    for upload in uploads {
        plugins.push(upload.await.unwrap());
    }
    let digests: Vec<String> = plugins
        .iter()
        .map(|plugin| plugin["digest"].as_str().unwrap().to_owned())
        .collect();
    // One is bound and decides a message: loaded, counted, in /metrics.
    let bound = plugins[0]["id"].as_str().unwrap();
    admin
        .api
        .put(
            "/hooks/validators",
            json!({ "plugins": [{ "plugin_id": bound }] }),
        )
        .await
        .expect(200);
    admin
        .api
        .post(
            "/messages",
            json!({ "recipient_id": bob.user_id(), "content": "hello" }),
        )
        .await
        .expect(201);
    let during = metrics(&server).await;
    assert!(
        series_of(&during, &digests[0])
            .iter()
            .any(|line| line.starts_with("dms_plugin_calls_total{") && line.ends_with(" 1")),
        "{during}"
    );
    assert!(cached_files(&digests[0]).len() == 1);
    println!(
        "after {UPLOADS} uploads: {} plugins loaded, {:?} in memory",
        sandbox.plugins().len(),
        sandbox.cache_usage()
    );

    admin.api.delete("/hooks/validators").await.expect(200);
    for plugin in &plugins {
        admin
            .api
            .delete(&format!("/plugins/{}", plugin["id"].as_str().unwrap()))
            .await
            .expect(204);
    }

    assert_eq!(sandbox.plugins().len(), loaded, "{:?}", sandbox.plugins());
    assert_eq!(sandbox.cache_usage(), cached);
    let after = metrics(&server).await;
    for digest in &digests {
        assert_eq!(series_of(&after, digest), Vec::<String>::new());
        assert_eq!(cached_files(digest), Vec::<std::path::PathBuf>::new());
    }
    for name in [
        "dms_plugins_loaded",
        "dms_plugin_cache_components",
        "dms_plugin_cache_bytes",
    ] {
        assert_eq!(gauge(&after, name), gauge(&before, name), "{name}");
    }
    // The built-ins are still served and counted.
    admin
        .api
        .post(
            "/messages",
            json!({ "recipient_id": bob.user_id(), "content": "hello" }),
        )
        .await
        .expect(201);
}

/// The in-memory cache keeps compiled code within its budget; what it evicted comes back from
/// the disk cache when a tenant binds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_cache_keeps_within_its_budget() {
    const UPLOADS: usize = 12;
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.plugin_cache_memory_mb = 1;
    })
    .await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    let tag = admin.tenant_id().to_owned();
    let sandbox = server.state.policies.sandbox().clone();
    let mut ids = Vec::new();
    for i in 0..UPLOADS {
        let reply = upload(&admin, distinct(&format!("{tag}-{i}"), 0))
            .await
            .expect(201);
        ids.push(reply.body["id"].as_str().unwrap().to_owned());
        let usage = sandbox.cache_usage();
        assert!(usage.bytes <= 1 << 20, "{usage:?}");
    }
    let usage = sandbox.cache_usage();
    assert!(usage.components < UPLOADS, "{usage:?}");
    println!("{UPLOADS} uploads with a 1 MiB budget: {usage:?}");
    // The first upload fell out of memory long ago; bound, it loads from disk and decides.
    admin
        .api
        .put(
            "/hooks/validators",
            json!({ "plugins": [{ "plugin_id": ids[0], "config": { "deny": "spam" } }] }),
        )
        .await
        .expect(200);
    let refused = admin
        .api
        .post(
            "/messages",
            json!({ "recipient_id": bob.user_id(), "content": "spam" }),
        )
        .await
        .problem(422, "rejected");
    assert_eq!(refused.body["reason_code"], "denied_word");
}

/// The p50 of `samples`.
fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// One tenant admin uploads 200 distinct plugins at once while another tenant submits
/// messages: every upload is stored (queued, not refused), every submit succeeds, and the
/// submits' median latency stays within 5 times its baseline plus 25 ms, measured in this
/// test just before. The bound is that wide on purpose: the CI machine has 2 cores, shared,
/// and the point is to catch the uploads starving the other tenant, not to time the server.
/// The compiles take the same CPU queued or not (on main this held, at p50 6 → 16 ms); what
/// fails it is anything the submits need held across compiles: main with its compiles moved
/// onto the async workers answered the other tenant 503 within four submits.
pub(crate) async fn one_tenants_upload_storm_does_not_slow_another_tenants_submits(
    backend: Backend,
) {
    const UPLOADS: usize = 200;
    let server = TestServer::start_with(backend, |config| {
        config.plugin_max_per_tenant = 250;
        config.rate_limit_api_per_second = 10_000;
        config.rate_limit_api_burst = 10_000;
    })
    .await;
    let uploader = server.admin().await;
    let tag = uploader.tenant_id().to_owned();
    let acme = server.tenant_admin("acme").await;
    let carol = server.member(&acme, "carol").await;
    let submit = |i: usize| {
        let (api, to) = (acme.api.clone(), carol.user_id().to_owned());
        async move {
            let started = Instant::now();
            let reply = api
                .post(
                    "/messages",
                    json!({ "recipient_id": to, "content": format!("m{i}") }),
                )
                .await;
            (reply.status, started.elapsed())
        }
    };
    for i in 0..5 {
        assert_eq!(submit(i).await.0, 201);
    }
    let mut baseline = Vec::new();
    for i in 0..40 {
        let (status, took) = submit(i).await;
        assert_eq!(status, 201);
        baseline.push(took);
    }

    let storm = tokio::spawn({
        let api = uploader.api.clone();
        async move {
            let started = Instant::now();
            let uploads: Vec<_> = (0..UPLOADS)
                .map(|i| {
                    let (api, bytes) = (api.clone(), distinct(&format!("{tag}-{i}"), 0));
                    tokio::spawn(async move {
                        api.raw(Method::POST, "/plugins", Some("application/wasm"), bytes)
                            .await
                            .status
                    })
                })
                .collect();
            let mut statuses = Vec::new();
            for upload in uploads {
                statuses.push(upload.await.unwrap());
            }
            (statuses, started.elapsed())
        }
    });
    let mut during = Vec::new();
    let mut i = 0;
    while !storm.is_finished() || during.len() < 20 {
        let (status, took) = submit(i).await;
        assert_eq!(status, 201, "submit {i} during the uploads");
        during.push(took);
        i += 1;
    }
    let (statuses, took) = storm.await.unwrap();
    assert_eq!(statuses, vec![201; UPLOADS]);
    assert_eq!(plugin_ids(&uploader).await.len(), UPLOADS);

    let (base, loaded) = (median(&mut baseline), median(&mut during));
    let at = |samples: &[Duration], q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    println!(
        "{UPLOADS} uploads in {took:?}; the other tenant's submits: p50 {base:?} before, {loaded:?} during; during p90 {:?} p99 {:?} max {:?} ({} submits); before p90 {:?} max {:?}",
        at(&during, 0.9),
        at(&during, 0.99),
        at(&during, 1.0),
        during.len(),
        at(&baseline, 0.9),
        at(&baseline, 1.0),
    );
    assert!(
        loaded <= base * 5 + Duration::from_millis(25),
        "submits slowed from p50 {base:?} to {loaded:?} while another tenant uploaded"
    );
}
