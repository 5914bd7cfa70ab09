//! `dms backup` and `dms restore` through the real binary: a backup of a running server with
//! messages in every status restores into a fresh database (same backend or the other) where
//! every pending message is delivered exactly once, the one that was `delivering` after its
//! lease passes; so does a backup of a database at the previous schema, which the restore
//! migrates (all or nothing); restores refuse a database with data, a damaged file, the wrong
//! keys and a backup of a newer dms without writing anything; with Redis the restore fills the
//! schedule index.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use dms::clock::Clock;
use dms::domain::ids::TenantId;
use redis::AsyncCommands as _;
use serde_json::{Value, json};

use crate::harness::{
    Answer, Backend, Login, OldDatabase, PREVIOUS_SCHEMA, Receiver, TestServer, TestStorage, ms,
    on_both_backends, run, status,
};

on_both_backends!(
    a_backup_of_a_running_server_restores_with_every_message_delivered_once,
    restore_refuses_a_database_that_is_not_empty,
    restore_refuses_a_damaged_file_and_writes_nothing,
    restore_refuses_keys_that_cannot_open_the_backup,
    restore_with_redis_fills_the_schedule_index,
    a_backup_taken_during_writes_is_one_snapshot,
    restore_refuses_a_backup_made_at_other_migrations,
    a_restore_that_fails_midway_leaves_no_row,
    a_backup_of_the_previous_schema_restores_migrated,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_backup_restores_into_postgres() {
    round_trip(Backend::Sqlite, Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_backup_restores_into_sqlite() {
    round_trip(Backend::Postgres, Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_backup_of_the_previous_schema_restores_migrated_into_postgres() {
    previous_schema_round_trip(Backend::Sqlite, Backend::Postgres).await;
}

/// How long a claim holds a message in these tests (the server's default lease).
const LEASE_MS: u64 = 30_000;

/// A server with one message in each status, all to webhooks on this machine.
struct Fixture {
    server: TestServer,
    admin: Login,
    /// Bob's receiver: answers 500 once (the `retrying` message), then 200.
    bob_hook: Receiver,
    /// Carol's receiver: always 503 (the `dead` message).
    carol_hook: Receiver,
    /// Message ids by the status they have at backup time.
    ids: BTreeMap<&'static str, String>,
}

async fn send(from: &Login, to: &Login, extra: Value) -> String {
    let mut body = json!({
        "recipient_id": to.user_id(),
        "content": format!("to {}", to.user["username"]),
        "channel": "webhook",
    });
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    let reply = from.api.post("/messages", body).await.expect(201);
    reply.body["id"].as_str().unwrap().to_owned()
}

async fn populate(server: TestServer) -> Fixture {
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    let carol = server.member(&admin, "carol").await;
    let bob_hook = Receiver::start(vec![Answer::status(500), Answer::status(200)]).await;
    let carol_hook = Receiver::start(vec![Answer::status(503)]).await;
    for (user, hook) in [(&bob, &bob_hook), (&carol, &carol_hook)] {
        user.api
            .put("/users/me/webhook", json!({ "url": hook.url }))
            .await
            .expect(200);
    }
    // A tenant plugin bound to the validators: its component and binding are rows too.
    let plugin = admin
        .api
        .raw(
            reqwest::Method::POST,
            "/plugins?name=deny-word&version=1.0.0",
            Some("application/wasm"),
            guest_artifacts::GUEST_TENANT_VALIDATOR.to_vec(),
        )
        .await
        .expect(201);
    admin
        .api
        .put(
            "/hooks/validators",
            json!({ "plugins": [{ "plugin_id": plugin.body["id"], "config": { "deny": "spam" } }] }),
        )
        .await
        .expect(200);
    let mut ids = BTreeMap::new();

    // dead: eight failed attempts (max_attempts), retried on the manual clock.
    let dead = send(&admin, &carol, json!({})).await;
    loop {
        server.dispatch().await;
        let now = status(&admin, &dead).await;
        if now["status"] == "dead" {
            break;
        }
        assert_eq!(now["status"], "retrying");
        server
            .clock
            .advance(ms(&now["deliver_at"]).saturating_sub(server.clock.now_ms()));
    }
    ids.insert("dead", dead);

    // retrying: bob's receiver answers its first request with a 500.
    let retrying = send(&admin, &bob, json!({})).await;
    assert_eq!(server.dispatch().await.retried, 1);
    ids.insert("retrying", retrying);

    // delivered and read (the retry above is not due yet).
    let delivered = send(&admin, &bob, json!({})).await;
    let read = send(&admin, &bob, json!({})).await;
    assert_eq!(server.dispatch().await.delivered, 2);
    bob.api
        .post(&format!("/messages/{read}/read"), json!({}))
        .await
        .expect(200);
    ids.insert("delivered", delivered);
    ids.insert("read", read);

    // cancelled and scheduled: an hour away.
    let cancelled = send(&admin, &bob, json!({ "delay_seconds": 3600 })).await;
    admin
        .api
        .delete(&format!("/messages/{cancelled}"))
        .await
        .expect(200);
    ids.insert("cancelled", cancelled);
    ids.insert(
        "scheduled",
        send(
            &admin,
            &bob,
            json!({ "delay_seconds": 3600, "metadata": { "k": "v" } }),
        )
        .await,
    );

    // delivering: claimed by a node that then died, holding its lease.
    let delivering = send(&admin, &bob, json!({})).await;
    let now = server.clock.now_ms();
    let claimed = server
        .state
        .store
        .begin_deliveries(
            &[delivering.parse().unwrap()],
            "a-node-that-died",
            now,
            now + LEASE_MS,
        )
        .await
        .unwrap();
    assert_eq!(claimed.messages.len(), 1);
    ids.insert("delivering", delivering);

    for (expected, id) in &ids {
        assert_eq!(status(&admin, id).await["status"], *expected, "{id}");
    }
    Fixture {
        server,
        admin,
        bob_hook,
        carol_hook,
        ids,
    }
}

/// Deliveries each receiver got, by message id.
fn deliveries(receiver: &Receiver) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for request in receiver.received() {
        let id = request.headers["webhook-id"].to_str().unwrap().to_owned();
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}

/// Each message as the API shows it, and its history.
async fn snapshot(admin: &Login, ids: &BTreeMap<&'static str, String>) -> Vec<(Value, Value)> {
    let mut all = Vec::new();
    for id in ids.values() {
        let message = admin
            .api
            .get(&format!("/messages/{id}"))
            .await
            .expect(200)
            .body;
        let events = admin
            .api
            .get(&format!("/messages/{id}/events"))
            .await
            .expect(200)
            .body;
        all.push((message, events));
    }
    all
}

fn backup_path(dir: &Path) -> PathBuf {
    dir.join("dms-backup.jsonl.gz")
}

/// `dms backup FILE` on the server's storage; the file.
async fn backup(server: &TestServer, into: &Path) -> PathBuf {
    backup_of(&server.storage(), into).await
}

/// `dms backup FILE` on `storage`; the file.
async fn backup_of(storage: &TestStorage, into: &Path) -> PathBuf {
    let file = backup_path(into);
    let output = run(storage.dms(), &["backup", file.to_str().unwrap()], None).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "dms backup: {}{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.starts_with("Backed up "), "{stdout}");
    assert!(file.is_file());
    assert!(!into.join("dms-backup.jsonl.gz.partial").exists());
    file
}

/// `dms restore FILE` with `command`; its output.
async fn restore(command: tokio::process::Command, file: &Path) -> std::process::Output {
    run(command, &["restore", file.to_str().unwrap()], None).await
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn a_backup_of_a_running_server_restores_with_every_message_delivered_once(backend: Backend) {
    round_trip(backend, backend).await;
}

async fn round_trip(source: Backend, target: Backend) {
    let fixture = populate(TestServer::start(source).await).await;
    let before = snapshot(&fixture.admin, &fixture.ids).await;
    let bob_before = deliveries(&fixture.bob_hook);
    let carol_before = deliveries(&fixture.carol_hook);
    let ids = &fixture.ids;
    assert_eq!(bob_before.get(&ids["retrying"]), Some(&1));

    let files = tempfile::tempdir().unwrap();
    // The server keeps running (and serving) while the backup reads.
    let file = backup(&fixture.server, files.path()).await;
    fixture.server.api().get("/health").await.expect(200);

    let fresh = TestStorage::create(target).await;
    let output = restore(fresh.dms(), &file).await;
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "dms restore: {}{stdout}",
        text(&output.stderr)
    );
    assert!(stdout.contains("messages 7"), "{stdout}");
    assert!(
        stdout.contains(
            "kept in process; dms serve rebuilds it from the database at start (3 pending messages)"
        ),
        "{stdout}"
    );

    let restored =
        TestServer::start_on(fresh, Clock::manual(fixture.server.clock.now_ms()), |_| {}).await;
    let admin = restored.admin().await;
    assert_eq!(
        snapshot(&admin, ids).await,
        before,
        "status, content, history"
    );
    the_tenant_plugin_came_along(&admin, &before).await;
    each_pending_message_is_delivered_once(
        &restored,
        ids,
        (&fixture.bob_hook, &bob_before),
        (&fixture.carol_hook, &carol_before),
    )
    .await;
}

/// The tenant's plugin came along, bound as it was: it refuses a message to the recipient of
/// the first message of `before`.
async fn the_tenant_plugin_came_along(admin: &Login, before: &[(Value, Value)]) {
    let refused = admin
        .api
        .post(
            "/messages",
            json!({ "recipient_id": before[0].0["recipient_id"], "content": "cheap spam" }),
        )
        .await
        .problem(422, "rejected");
    assert_eq!(refused.body["plugin"], "deny-word");
}

/// On a server restored from a backup of the [`populate`]d one: the `delivering` message waits
/// for its lease, then it and the other pending ones reach their receiver exactly once more,
/// and the others not again. Each receiver with its deliveries at backup time.
async fn each_pending_message_is_delivered_once(
    restored: &TestServer,
    ids: &BTreeMap<&'static str, String>,
    (bob_hook, bob_before): (&Receiver, &BTreeMap<String, usize>),
    (carol_hook, carol_before): (&Receiver, &BTreeMap<String, usize>),
) {
    let admin = restored.admin().await;
    // Nothing is due yet: the `delivering` message waits for its lease to pass.
    assert_eq!(restored.dispatch().await.claimed, 0);
    assert_eq!(
        status(&admin, &ids["delivering"]).await["status"],
        "delivering"
    );
    // The lease holds until it passes, then the message is claimed again.
    restored.clock.advance(LEASE_MS - 1);
    restored.dispatch().await;
    assert_eq!(
        status(&admin, &ids["delivering"]).await["status"],
        "delivering"
    );
    restored.clock.advance(2);
    restored.dispatch().await;
    assert_eq!(
        status(&admin, &ids["delivering"]).await["status"],
        "delivered"
    );
    // Then the retry and the scheduled message, an hour on.
    restored.clock.advance(3_600_000);
    restored.dispatch().await;
    // An hour on, the access token has expired.
    let admin = restored.admin().await;
    for name in ["scheduled", "retrying", "delivering", "delivered"] {
        assert_eq!(
            status(&admin, &ids[name]).await["status"],
            "delivered",
            "{name}"
        );
    }
    assert_eq!(status(&admin, &ids["read"]).await["status"], "read");
    assert_eq!(status(&admin, &ids["dead"]).await["status"], "dead");
    assert_eq!(
        status(&admin, &ids["cancelled"]).await["status"],
        "cancelled"
    );
    restored.clock.advance(3_600_000);
    assert_eq!(
        restored.dispatch().await.claimed,
        0,
        "nothing left to deliver"
    );

    // Each pending message reached its receiver exactly once more; the others not again.
    let bob_after = deliveries(bob_hook);
    let more = |name: &str| {
        bob_after.get(&ids[name]).copied().unwrap_or(0)
            - bob_before.get(&ids[name]).copied().unwrap_or(0)
    };
    for name in ["scheduled", "retrying", "delivering"] {
        assert_eq!(more(name), 1, "{name} delivered once after the restore");
    }
    for name in ["delivered", "read", "cancelled"] {
        assert_eq!(more(name), 0, "{name} not delivered again");
    }
    assert_eq!(bob_after[&ids["delivered"]], 1);
    assert_eq!(deliveries(carol_hook), *carol_before);
}

async fn restore_refuses_a_database_that_is_not_empty(backend: Backend) {
    let fixture = populate(TestServer::start(backend).await).await;
    let files = tempfile::tempdir().unwrap();
    let file = backup(&fixture.server, files.path()).await;

    // Another server's database: it has its first-run tenant and admin.
    let other = TestServer::start(backend).await;
    let tenants = || async {
        let mut names: Vec<String> = other
            .state
            .store
            .list_tenants()
            .await
            .unwrap()
            .into_iter()
            .map(|tenant| tenant.name)
            .collect();
        names.sort();
        names
    };
    let before = tenants().await;
    let output = restore(other.storage().dms(), &file).await;
    assert_eq!(output.status.code(), Some(2), "refused as asked");
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("the target database is not empty (table tenants has 1 rows)"),
        "{stderr}"
    );
    assert!(stderr.contains("no row was written"), "{stderr}");
    assert_eq!(tenants().await, before);
    assert!(other.sql_column("SELECT id FROM messages").await.is_empty());
}

async fn restore_refuses_a_damaged_file_and_writes_nothing(backend: Backend) {
    let fixture = populate(TestServer::start(backend).await).await;
    let files = tempfile::tempdir().unwrap();
    let file = backup(&fixture.server, files.path()).await;
    let bytes = std::fs::read(&file).unwrap();

    // Cut short: the last table and the trailer are missing.
    let truncated = files.path().join("truncated.gz");
    std::fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();
    // Altered inside: a valid gzip of valid lines, one status changed.
    let mut plain = String::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_string(&mut plain)
        .unwrap();
    let altered_text = plain.replacen("\"cancelled\"", "\"scheduled\"", 1);
    assert_ne!(altered_text, plain);
    let altered = files.path().join("altered.gz");
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(altered_text.as_bytes()).unwrap();
    std::fs::write(&altered, gzip.finish().unwrap()).unwrap();
    // Not a backup at all.
    let garbage = files.path().join("garbage");
    std::fs::write(&garbage, b"not a backup").unwrap();

    for (path, says) in [
        (&truncated, "truncated"),
        (&altered, "does not match the trailer (altered)"),
        (&garbage, "is not a usable DMS backup"),
    ] {
        let fresh = TestStorage::create(backend).await;
        let output = restore(fresh.dms(), path).await;
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{}", path.display());
        assert!(stderr.contains("is not a usable DMS backup"), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
        assert!(fresh.untouched().await, "{} wrote nothing", path.display());
    }
}

async fn restore_refuses_keys_that_cannot_open_the_backup(backend: Backend) {
    let fixture = populate(TestServer::start(backend).await).await;
    let files = tempfile::tempdir().unwrap();
    let file = backup(&fixture.server, files.path()).await;

    // Another key under another id, then another key under the same id.
    let other_key = dms::store::crypto::Keyring::generate_entry("other");
    let same_id = dms::store::crypto::Keyring::generate_entry("test1");
    for (keys, says) in [
        (other_key.as_str(), "not in DMS_ENCRYPTION_KEYS"),
        (same_id.as_str(), "authentication failed"),
    ] {
        let fresh = TestStorage::create(backend).await;
        let mut command = fresh.dms();
        command.env("DMS_ENCRYPTION_KEYS", keys);
        let output = restore(command, &file).await;
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2));
        assert!(
            stderr.contains(
                "the configured encryption keys cannot open the backup's sealed messages"
            ),
            "{stderr}"
        );
        assert!(stderr.contains(says), "{stderr}");
        assert!(fresh.untouched().await);
    }

    if backend == Backend::Sqlite {
        // No key at all: refused, and no key generated that would hide the loss.
        let fresh = TestStorage::create(backend).await;
        let mut command = fresh.dms();
        command.env_remove("DMS_ENCRYPTION_KEYS");
        let output = restore(command, &file).await;
        assert_eq!(output.status.code(), Some(2));
        assert!(
            text(&output.stderr).contains("no encryption keys"),
            "{}",
            text(&output.stderr)
        );
        assert!(!fresh.data_dir().join("encryption-keys").exists());
        assert!(fresh.untouched().await);
    }
}

fn prefix() -> String {
    format!(
        "test-backup-{}",
        dms::domain::ids::TenantId::new().as_str()[4..].to_lowercase()
    )
}

const REDIS_URL: &str = "redis://127.0.0.1:6379";

async fn restore_with_redis_fills_the_schedule_index(backend: Backend) {
    let source_prefix = prefix();
    let server = TestServer::start_with(backend, |config| {
        config.redis_url = dms::config::Secret::new(REDIS_URL);
        config.redis_prefix = source_prefix.clone();
    })
    .await;
    let fixture = populate(server).await;
    let files = tempfile::tempdir().unwrap();
    let file = backup(&fixture.server, files.path()).await;

    let target_prefix = prefix();
    let fresh = TestStorage::create(backend).await;
    let mut command = fresh.dms();
    command
        .env("REDIS_URL", REDIS_URL)
        .env("DMS_REDIS_PREFIX", &target_prefix);
    let output = restore(command, &file).await;
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}{stdout}", text(&output.stderr));
    assert!(
        stdout.contains(&format!(
            "Schedule index rebuilt in Redis (prefix {target_prefix}): 3 pending messages."
        )),
        "{stdout}"
    );

    // Before any server starts on it, the index holds the three pending messages, each due at
    // the time the database says (the `delivering` one at its lease expiry).
    let mut redis = redis::Client::open(REDIS_URL)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let tag = format!("{{{target_prefix}}}");
    let due: Vec<(Vec<u8>, f64)> = redis
        .zrange_withscores(format!("{tag}:due"), 0, -1)
        .await
        .unwrap();
    let mut scores: Vec<u64> = due.iter().map(|(_, score)| *score as u64).collect();
    scores.sort_unstable();
    let pending = fixture.server.state.store.pending(None, 100).await.unwrap();
    assert_eq!(pending.len(), 3);
    let mut expected: Vec<u64> = pending.iter().map(|(_, due)| *due).collect();
    expected.sort_unstable();
    assert_eq!(scores, expected);
    let intact: bool = redis.exists(format!("{tag}:intact")).await.unwrap();
    assert!(intact, "the index is marked complete");

    // A server on the restored database and that index delivers them once each.
    let restored = TestServer::start_on(
        fresh,
        Clock::manual(fixture.server.clock.now_ms()),
        |config| {
            config.redis_url = dms::config::Secret::new(REDIS_URL);
            config.redis_prefix = target_prefix.clone();
        },
    )
    .await;
    let bob_before = deliveries(&fixture.bob_hook);
    restored.clock.advance(3_600_000);
    let report = restored.dispatch().await;
    assert_eq!(report.delivered, 3, "{report:?}");
    assert_eq!(restored.dispatch().await.claimed, 0);
    let bob_after = deliveries(&fixture.bob_hook);
    for name in ["scheduled", "retrying", "delivering"] {
        let id = &fixture.ids[name];
        assert_eq!(
            bob_after[id] - bob_before.get(id).copied().unwrap_or(0),
            1,
            "{name}"
        );
    }
}

async fn a_backup_taken_during_writes_is_one_snapshot(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    let files = tempfile::tempdir().unwrap();
    let file = backup_path(files.path());

    // Submit one message after another for as long as the backup runs.
    let mut backup = server.storage().dms();
    let mut child = backup
        .args(["backup", file.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut sent = Vec::new();
    while child.try_wait().unwrap().is_none() {
        sent.push(
            send(
                &admin,
                &bob,
                json!({ "channel": "inbox", "delay_seconds": 3600 }),
            )
            .await,
        );
    }
    let output = child.wait_with_output().await.unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(!sent.is_empty());

    let fresh = TestStorage::create(backend).await;
    let output = restore(fresh.dms(), &file).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let restored = TestServer::start_on(fresh, Clock::manual(server.clock.now_ms()), |_| {}).await;
    let restored_admin = restored.admin().await;

    // One instant: the messages submitted before it, each with its whole history, and none of
    // those after it.
    let mut present = Vec::new();
    for id in &sent {
        let reply = restored_admin
            .api
            .get(&format!("/messages/{id}/events"))
            .await;
        present.push(reply.status == 200);
        if reply.status == 200 {
            let source = admin
                .api
                .get(&format!("/messages/{id}/events"))
                .await
                .expect(200)
                .body;
            assert_eq!(reply.body, source, "{id}");
        } else {
            assert_eq!(reply.status, 404);
        }
    }
    let cut = present.iter().take_while(|present| **present).count();
    assert!(
        present[cut..].iter().all(|present| !present),
        "a prefix of the submissions: {present:?}"
    );
}

/// Rewrites a backup's lines with `edit` (the header first, the trailer left out), keeping
/// the file otherwise valid: the trailer's row count and SHA-256 are recomputed.
fn rewrite(file: &Path, into: &Path, edit: impl FnOnce(&mut Vec<String>)) {
    use sha2::Digest as _;
    let mut plain = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(file).unwrap())
        .read_to_string(&mut plain)
        .unwrap();
    let mut lines: Vec<String> = plain.lines().map(str::to_owned).collect();
    let trailer = lines.pop().unwrap();
    edit(&mut lines);
    let header: Value = serde_json::from_str(&lines[0]).unwrap();
    let rows: u64 = header["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|table| table["rows"].as_u64().unwrap())
        .sum();
    let mut trailer: Value = serde_json::from_str(&trailer).unwrap();
    let mut hasher = sha2::Sha256::new();
    for line in &lines {
        hasher.update(line.as_bytes());
        hasher.update(b"\n");
    }
    trailer["end"]["sha256"] = json!(hex::encode(hasher.finalize()));
    trailer["end"]["rows"] = json!(rows);
    lines.push(trailer.to_string());
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for line in &lines {
        gzip.write_all(line.as_bytes()).unwrap();
        gzip.write_all(b"\n").unwrap();
    }
    std::fs::write(into, gzip.finish().unwrap()).unwrap();
}

/// [`rewrite`] of the header alone.
fn rewrite_header(file: &Path, into: &Path, edit: impl FnOnce(&mut Value)) {
    rewrite(file, into, |lines| {
        let mut header: Value = serde_json::from_str(&lines[0]).unwrap();
        edit(&mut header);
        lines[0] = header.to_string();
    });
}

async fn a_restore_that_fails_midway_leaves_no_row(backend: Backend) {
    let fixture = populate(TestServer::start(backend).await).await;
    let files = tempfile::tempdir().unwrap();
    let file = backup(&fixture.server, files.path()).await;

    // A well-formed file whose last message appears twice: the insert of messages fails on
    // its primary key, after tenants, users and sessions went in.
    let doubled = files.path().join("doubled.gz");
    rewrite(&file, &doubled, |lines| {
        let start = lines
            .iter()
            .position(|line| line == r#"{"table":"messages"}"#)
            .unwrap();
        let mut header: Value = serde_json::from_str(&lines[0]).unwrap();
        let messages = header["tables"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|table| table["name"] == "messages")
            .unwrap();
        let rows = messages["rows"].as_u64().unwrap() as usize;
        messages["rows"] = json!(rows + 1);
        lines[0] = header.to_string();
        let last = lines[start + rows].clone();
        lines.insert(start + rows + 1, last);
    });
    let fresh = TestStorage::create(backend).await;
    let output = restore(fresh.dms(), &doubled).await;
    let stderr = text(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "a database failure, not a refusal"
    );
    assert!(stderr.contains("no row was written"), "{stderr}");
    // The file passed its checks: it was the insert that failed.
    assert!(stderr.contains("database error"), "{stderr}");
    for table in ["tenants", "users", "sessions", "messages"] {
        assert_eq!(fresh.count(table).await, 0, "{table}");
    }

    // The same target takes the intact file afterwards.
    let output = restore(fresh.dms(), &file).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(fresh.count("messages").await, 7);
}

async fn restore_refuses_a_backup_made_at_other_migrations(backend: Backend) {
    let server = TestServer::start(backend).await;
    let files = tempfile::tempdir().unwrap();
    let file = backup(&server, files.path()).await;

    // The untouched file restores (so the rewrite itself keeps a file valid)...
    let same = files.path().join("same.gz");
    rewrite_header(&file, &same, |_| {});
    let fresh = TestStorage::create(backend).await;
    let output = restore(fresh.dms(), &same).await;
    assert!(output.status.success(), "{}", text(&output.stderr));

    // ...one from a dms with a newer migration does not.
    let newer = files.path().join("newer.gz");
    let mut last = 0;
    rewrite_header(&file, &newer, |header| {
        let migrations = header["migrations"].as_array_mut().unwrap();
        last = migrations.last().unwrap().as_i64().unwrap();
        migrations.push(json!(20991231000000_i64));
        header["dms_version"] = json!("9.9.9");
    });
    let fresh = TestStorage::create(backend).await;
    let output = restore(fresh.dms(), &newer).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr.contains(&format!(
            "{last}, 20991231000000] (dms 9.9.9), but this dms has migrations [20261125000000"
        )),
        "{stderr}"
    );
    assert!(fresh.untouched().await);

    // ...nor one of another history: a migration this dms has is missing in the middle.
    let other = files.path().join("other.gz");
    rewrite_header(&file, &other, |header| {
        header["migrations"].as_array_mut().unwrap().remove(1);
    });
    let fresh = TestStorage::create(backend).await;
    let output = restore(fresh.dms(), &other).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("but this dms has migrations"), "{stderr}");
    assert!(fresh.untouched().await);

    // A header that claims older migrations than its tables have is not a backup of dms.
    let older = files.path().join("older.gz");
    rewrite_header(&file, &older, |header| {
        // Back past the last migration that adds a table (the newest adds indexes only).
        let migrations = header["migrations"].as_array_mut().unwrap();
        while migrations.last().and_then(serde_json::Value::as_i64) >= Some(20261215000003) {
            migrations.pop();
        }
    });
    let fresh = TestStorage::create(backend).await;
    let output = restore(fresh.dms(), &older).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("is not a usable DMS backup"), "{stderr}");
    assert!(
        stderr.contains("but a database at its migrations has"),
        "{stderr}"
    );
    assert!(fresh.untouched().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_that_fails_midway_keeps_the_previous_file() {
    let fixture = populate(TestServer::start(Backend::Sqlite).await).await;
    let files = tempfile::tempdir().unwrap();
    let file = backup(&fixture.server, files.path()).await;
    let good = std::fs::read(&file).unwrap();

    // SQLite stores what it is given: text in an integer column fails the backup when it
    // reaches the message states, after the header and the first tables were written.
    fixture
        .server
        .sql("UPDATE message_states SET attempts = 'many'")
        .await;
    let output = run(
        fixture.server.storage().dms(),
        &["backup", file.to_str().unwrap()],
        None,
    )
    .await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("backup to"), "{stderr}");
    assert!(
        stderr.contains("cannot read message_states.attempts: mismatched types"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        good,
        "the previous backup stays"
    );
    assert!(!files.path().join("dms-backup.jsonl.gz.partial").exists());

    // Nowhere to write: fails, and leaves nothing behind.
    let nowhere = files.path().join("missing").join("backup.gz");
    let output = run(
        fixture.server.storage().dms(),
        &["backup", nowhere.to_str().unwrap()],
        None,
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("backup.gz.partial: No such file or directory"),
        "{}",
        text(&output.stderr)
    );

    // No database to back up.
    let empty = TestStorage::create(Backend::Sqlite).await;
    let output = run(empty.dms(), &["backup", nowhere.to_str().unwrap()], None).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("there is no database at"),
        "{}",
        text(&output.stderr)
    );
    assert!(empty.untouched().await);
}

/// The migrations a restore of a backup of the previous schema applies after its rows, as the
/// restore names them.
const SINCE_PREVIOUS: &str = "20261214000000 narrow messages, 20261215000000 groups, \
     20261215000001 schedules, 20261215000002 callbacks, 20261215000003 flow control, \
     20261216000000 rare statuses";

async fn a_backup_of_the_previous_schema_restores_migrated(backend: Backend) {
    previous_schema_round_trip(backend, backend).await;
}

/// The header of a backup.
fn header_of(file: &Path) -> Value {
    let mut plain = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(file).unwrap())
        .read_to_string(&mut plain)
        .unwrap();
    serde_json::from_str(plain.lines().next().unwrap()).unwrap()
}

/// A database of the previous schema (the rows of a [`populate`]d server rewritten as that
/// schema held them, history and feeds included) is backed up by `dms backup` as it is, and
/// `dms restore` puts it into an empty database of the current schema: every message with its
/// status, content and history, the kept counts, the feeds, and the pending ones delivered
/// once. On one backend, also: a target migrated past the backup is refused, and a migration
/// that fails after the rows rolls everything back.
async fn previous_schema_round_trip(source: Backend, target: Backend) {
    let Fixture {
        mut server,
        admin,
        bob_hook,
        carol_hook,
        ids,
    } = populate(TestServer::start(source).await).await;
    // And a delivered inbox message: its recipient's feed event carries the content.
    let bob_id = admin
        .api
        .get(&format!("/messages/{}", ids["scheduled"]))
        .await
        .expect(200)
        .body["recipient_id"]
        .clone();
    let inbox = admin
        .api
        .post(
            "/messages",
            json!({ "recipient_id": bob_id, "content": "to bob's inbox", "channel": "inbox" }),
        )
        .await
        .expect(201)
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(server.dispatch().await.delivered, 1);
    let mut all = ids.clone();
    all.insert("inbox", inbox.clone());
    let before = snapshot(&admin, &all).await;
    let store = &server.state.store;
    let tenant: TenantId = admin.tenant_id().parse().unwrap();
    let mut histories = Vec::new();
    for id in all.values() {
        let events = store
            .message_events(&tenant, &id.parse().unwrap())
            .await
            .unwrap();
        histories.push((id.clone(), events));
    }
    let mut feeds = Vec::new();
    for row in server
        .sql_column("SELECT tenant_id || ' ' || user_id FROM feed_heads")
        .await
    {
        let (tenant, user) = row.split_once(' ').unwrap();
        let page = store
            .feed_after(&tenant.parse().unwrap(), &user.parse().unwrap(), 0, 1000)
            .await
            .unwrap();
        feeds.extend(page.events);
    }
    assert!(
        feeds
            .iter()
            .any(|event| event.body["message"]["content"] == "to bob's inbox"),
        "a feed event carries a message's content: {feeds:?}"
    );
    let bob_before = deliveries(&bob_hook);
    let carol_before = deliveries(&carol_hook);
    let now = server.clock.now_ms();
    let storage = server.storage();
    server.stop().await;
    drop(server);

    // The previous schema: history one entry per row, feed bodies sealed whole.
    let old = OldDatabase::open(&storage).await;
    old.downgrade_schema().await;
    for (id, events) in &histories {
        old.insert_history(id, events).await;
    }
    old.reseal_feed(&feeds).await;

    // Backed up as it is, with the tables it has.
    let files = tempfile::tempdir().unwrap();
    let file = backup_of(&storage, files.path()).await;
    let header = header_of(&file);
    let migrations = header["migrations"].as_array().unwrap();
    assert_eq!(migrations.last().unwrap(), PREVIOUS_SCHEMA);
    let tables: Vec<&str> = header["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|table| table["name"].as_str().unwrap())
        .collect();
    assert!(tables.contains(&"messages"), "{tables:?}");
    assert!(
        !tables.contains(&"message_states") && !tables.contains(&"message_counts"),
        "{tables:?}"
    );

    let fresh = TestStorage::create(target).await;
    if source == target {
        // An empty target already at the current schema cannot take the previous schema's
        // rows: refused, and left as it was.
        let migrated = TestStorage::create(target).await;
        let output = run(migrated.dms(), &["migrate"], None).await;
        assert!(output.status.success(), "{}", text(&output.stderr));
        let output = restore(migrated.dms(), &file).await;
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "already migrated past the backup (it has migrations [20261214000000, 20261215000000, 20261215000001, 20261215000002, 20261215000003, 20261216000000]; the backup's last is {PREVIOUS_SCHEMA})"
            )),
            "{stderr}"
        );
        assert_eq!(migrated.count("message_states").await, 0);

        // A later migration that fails on the restored rows (here a stray empty table in its
        // way) rolls the whole restore back: no row, and the target at the backup's schema.
        if target == Backend::Sqlite {
            std::fs::File::create(fresh.data_dir().join("dms.sqlite3")).unwrap();
        }
        fresh
            .execute("CREATE TABLE message_counts (stray BIGINT)")
            .await;
        let output = restore(fresh.dms(), &file).await;
        let stderr = text(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(1),
            "a database failure, not a refusal: {stderr}"
        );
        assert!(stderr.contains("no row was written"), "{stderr}");
        assert!(
            stderr
                .contains("migration 20261214000000 (narrow messages) failed on the restored rows"),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "the restore rolled back, and the target database is empty, migrated only as far as the backup (its last migration, {PREVIOUS_SCHEMA})"
            )),
            "{stderr}"
        );
        for table in [
            "tenants",
            "users",
            "messages",
            "message_events",
            "feed_events",
        ] {
            assert_eq!(fresh.count(table).await, 0, "{table}");
        }
        assert_eq!(
            fresh.count("_sqlx_migrations").await,
            migrations.len() as i64,
            "at the backup's migrations"
        );
        // The cause removed, the same restore runs again into the same target.
        fresh.execute("DROP TABLE message_counts").await;
    }

    let output = restore(fresh.dms(), &file).await;
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "dms restore: {}{stdout}",
        text(&output.stderr)
    );
    assert!(stdout.contains("messages 8"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "The backup was made at older migrations (the last {PREVIOUS_SCHEMA}); applied to its rows in the same transaction: {SINCE_PREVIOUS}."
        )),
        "{stdout}"
    );
    assert!(stdout.contains("(3 pending messages)"), "{stdout}");

    let restored = TestServer::start_on(fresh, Clock::manual(now), |_| {}).await;
    let admin = restored.admin().await;
    // Every message as before: status, content (opened with the keys), history.
    assert_eq!(
        snapshot(&admin, &all).await,
        before,
        "status, content, history"
    );
    for (name, id) in &all {
        let message = admin
            .api
            .get(&format!("/messages/{id}"))
            .await
            .expect(200)
            .body;
        let (status, content) = match *name {
            "inbox" => ("delivered", "to bob's inbox"),
            // (`send` names the recipient by the JSON of their username.)
            "dead" => ("dead", "to \"carol\""),
            other => (other, "to \"bob\""),
        };
        assert_eq!(message["status"], status, "{name}");
        assert_eq!(message["content"], content, "{name}");
    }
    let history = admin
        .api
        .get(&format!("/messages/{}/events", ids["dead"]))
        .await
        .expect(200)
        .body;
    let attempts = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["type"] == "attempt")
        .count();
    assert_eq!(attempts, 8, "{history}");
    // The kept counts were filled from the restored messages.
    let (truth, kept) = restored.status_counts().await;
    assert_eq!(truth, kept);
    let mut expected: BTreeMap<String, u64> =
        ids.keys().map(|status| (status.to_string(), 1)).collect();
    expected.insert("delivered".to_owned(), 2);
    assert_eq!(kept, expected);
    // The feeds read as before; their rows (of the previous schema) refer to no message.
    for event in &feeds {
        let page = restored
            .state
            .store
            .feed_after(&event.tenant_id, &event.user_id, event.cursor - 1, 1)
            .await
            .unwrap();
        assert_eq!(page.events, std::slice::from_ref(event));
    }
    assert_eq!(
        restored
            .sql_column(
                "SELECT CAST(COUNT(*) AS TEXT) FROM feed_events WHERE message_id IS NOT NULL"
            )
            .await,
        ["0"]
    );

    the_tenant_plugin_came_along(&admin, &before).await;
    each_pending_message_is_delivered_once(
        &restored,
        &ids,
        (&bob_hook, &bob_before),
        (&carol_hook, &carol_before),
    )
    .await;
}
