//! The operator commands through the real binary: `dms db check`, `dms redis check`,
//! `dms queue status` and `dms db reset`, against live services and stopped ones. Exit codes:
//! 0 passed, 1 the service is unreachable or unusable, 2 the command cannot run as asked.

use serde_json::{Value, json};

use crate::harness::{
    Backend, ENCRYPTION_KEYS, JWT_SECRET, TestDb, TestServer, dms, on_both_backends, run,
};

on_both_backends!(
    queue_status_matches_the_database,
    db_reset_refuses_without_confirmation_then_empties_the_database,
);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Migrations this build has for `backend` (the files under migrations/).
fn known_migrations(backend: &str) -> usize {
    std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations/").to_owned() + backend)
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|ext| ext == "sql")
        })
        .count()
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn db_check_reports_sqlite_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = run(dms(dir.path()), &["db", "check"], None).await;
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing.stderr));
    assert!(
        text(&missing.stderr).starts_with("database: unavailable: there is no database at "),
        "{}",
        text(&missing.stderr)
    );
    assert!(
        !dir.path().join("dms.sqlite3").exists(),
        "a check creates nothing"
    );

    let migrated = run(dms(dir.path()), &["migrate"], None).await;
    assert!(migrated.status.success(), "{}", text(&migrated.stderr));
    let checked = run(dms(dir.path()), &["db", "check"], None).await;
    assert_eq!(checked.status.code(), Some(0), "{}", text(&checked.stderr));
    let out = text(&checked.stdout);
    assert!(out.starts_with("database: ok (sqlite)\n"), "{out}");
    assert!(out.contains("  version: SQLite 3."), "{out}");
    assert!(out.contains("  latency: "), "{out}");
    let known = known_migrations("sqlite");
    assert!(
        out.contains(&format!(
            "  schema: {known} of {known} migrations applied\n"
        )),
        "{out}"
    );
}

#[tokio::test]
async fn db_check_reports_postgres_and_fails_clearly_when_it_is_down() {
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let with_url = |url: &str| {
        let mut command = dms(dir.path());
        command
            .env("DATABASE_URL", url)
            .env("JWT_SECRET", JWT_SECRET)
            .env("DMS_ENCRYPTION_KEYS", ENCRYPTION_KEYS);
        command
    };

    let fresh = run(with_url(&db.url), &["db", "check"], None).await;
    assert_eq!(fresh.status.code(), Some(0), "{}", text(&fresh.stderr));
    let out = text(&fresh.stdout);
    assert!(out.starts_with("database: ok (postgres)\n"), "{out}");
    assert!(out.contains("  version: PostgreSQL "), "{out}");
    let known = known_migrations("postgres");
    assert!(
        out.contains(&format!(
            "  schema: 0 of {known} migrations applied (run `dms migrate`"
        )),
        "{out}"
    );
    assert!(
        run(with_url(&db.url), &["migrate"], None)
            .await
            .status
            .success()
    );
    let migrated = run(with_url(&db.url), &["db", "check"], None).await;
    assert!(
        text(&migrated.stdout).contains(&format!(
            "  schema: {known} of {known} migrations applied\n"
        )),
        "{}",
        text(&migrated.stdout)
    );

    let down = format!("postgres://postgres@127.0.0.1:{}/dms", closed_port());
    let failed = run(with_url(&down), &["db", "check"], None).await;
    assert_eq!(failed.status.code(), Some(1));
    let err = text(&failed.stderr);
    assert!(
        err.starts_with("database: unavailable: cannot connect to PostgreSQL: "),
        "{err}"
    );
    assert!(err.to_lowercase().contains("refused"), "{err}");
    assert!(failed.stdout.is_empty());
}

#[tokio::test]
async fn redis_check_reports_the_server_and_fails_clearly_when_it_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let unset = run(dms(dir.path()), &["redis", "check"], None).await;
    assert_eq!(unset.status.code(), Some(2));
    assert!(
        text(&unset.stderr).starts_with("redis: not configured: REDIS_URL is empty"),
        "{}",
        text(&unset.stderr)
    );

    let prefix = format!("dms-test-{}", dms::domain::ids::TenantId::new().as_str());
    let mut live = dms(dir.path());
    live.env("REDIS_URL", "redis://127.0.0.1:6379")
        .env("DMS_REDIS_PREFIX", &prefix);
    let checked = run(live, &["redis", "check"], None).await;
    assert_eq!(checked.status.code(), Some(0), "{}", text(&checked.stderr));
    let out = text(&checked.stdout);
    assert!(out.starts_with("redis: ok\n  version: "), "{out}");
    assert!(
        out.contains(&format!("  schedule index (prefix {prefix:?}): 0 messages")),
        "{out}"
    );

    let mut down = dms(dir.path());
    down.env("REDIS_URL", format!("redis://127.0.0.1:{}", closed_port()));
    let failed = run(down, &["redis", "check"], None).await;
    assert_eq!(failed.status.code(), Some(1));
    let err = text(&failed.stderr);
    assert!(err.starts_with("redis: unavailable: "), "{err}");
    assert!(err.to_lowercase().contains("refused"), "{err}");

    let mut invalid = dms(dir.path());
    invalid.env("REDIS_URL", "redis://[::1");
    let refused = run(invalid, &["redis", "check"], None).await;
    assert_ne!(refused.status.code(), Some(0), "{}", text(&refused.stderr));
}

async fn queue_status_matches_the_database(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    let other = server.tenant_admin("other").await;
    let send = |from: &crate::harness::Login, to: String, extra: Value| {
        let mut body = json!({ "recipient_id": to, "content": "hello" });
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        let api = from.api.clone();
        async move { api.post("/messages", body).await.expect(201) }
    };
    // Delivered, then read.
    let read = send(&admin, bob.user_id().to_owned(), json!({})).await;
    send(&admin, bob.user_id().to_owned(), json!({})).await;
    server.dispatch().await;
    bob.api
        .post(
            &format!("/messages/{}/read", read.body["id"].as_str().unwrap()),
            json!({}),
        )
        .await
        .expect(200);
    // Waiting: within the minute, within the hour, later; one overdue (due now, undispatched).
    send(
        &admin,
        bob.user_id().to_owned(),
        json!({ "delay_seconds": 30 }),
    )
    .await;
    send(
        &admin,
        bob.user_id().to_owned(),
        json!({ "delay_seconds": 1800 }),
    )
    .await;
    send(
        &admin,
        bob.user_id().to_owned(),
        json!({ "delay_seconds": 86_400 }),
    )
    .await;
    let cancelled = send(
        &admin,
        bob.user_id().to_owned(),
        json!({ "delay_seconds": 600 }),
    )
    .await;
    admin
        .api
        .delete(&format!(
            "/messages/{}",
            cancelled.body["id"].as_str().unwrap()
        ))
        .await
        .expect(200);
    send(&other, other.user_id().to_owned(), json!({})).await;
    let leased = send(
        &other,
        other.user_id().to_owned(),
        json!({ "delay_seconds": 7200 }),
    )
    .await;
    // A delivery in flight on some node: its lease ends in a minute. (The store keeps the
    // counts per status as it changes a status; a test that edits the row edits them too.)
    let lease_until = dms::clock::Clock::System.now_ms() + 60_000;
    server
        .sql(&format!(
            "UPDATE message_states SET status = 'delivering', lease_token = 'elsewhere', \
             lease_until_ms = {lease_until} WHERE message_id = '{}'",
            leased.body["id"].as_str().unwrap()
        ))
        .await;
    server
        .sql(&format!(
            "INSERT INTO message_counts (tenant_id, status, shard, count) \
             VALUES ('{tenant}', 'scheduled', 99, -1), ('{tenant}', 'delivering', 99, 1)",
            tenant = other.tenant_id()
        ))
        .await;

    let mut command = dms(std::path::Path::new("/nonexistent"));
    server.operator_env(&mut command);
    let output = run(command, &["queue", "status", "--json"], None).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["backend"], backend_name(backend));

    // Every count matches what the database holds.
    let rows = server
        .sql_column(
            "SELECT t.name || ':' || s.status || ':' || CAST(COUNT(*) AS TEXT) \
             FROM message_states s JOIN tenants t ON t.id = s.tenant_id GROUP BY t.name, s.status",
        )
        .await;
    assert!(!rows.is_empty());
    let tenants = report["tenants"].as_array().unwrap();
    for row in &rows {
        let mut parts = row.split(':');
        let (tenant, status, count) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap().parse::<u64>().unwrap(),
        );
        let summary = tenants.iter().find(|t| t["tenant"] == tenant).unwrap();
        assert_eq!(
            summary["statuses"][status], count,
            "{tenant} {status}: {report}"
        );
    }
    let total: u64 = rows
        .iter()
        .map(|row| row.rsplit(':').next().unwrap().parse::<u64>().unwrap())
        .sum();
    let statuses = report["total"]["statuses"].as_object().unwrap();
    assert_eq!(statuses.len(), 7, "every status, zeros included");
    assert_eq!(
        statuses.values().map(|v| v.as_u64().unwrap()).sum::<u64>(),
        total
    );

    let default = tenants.iter().find(|t| t["tenant"] == "default").unwrap();
    assert_eq!(default["statuses"]["delivered"], 1);
    assert_eq!(default["statuses"]["read"], 1);
    assert_eq!(default["statuses"]["scheduled"], 3);
    assert_eq!(default["statuses"]["cancelled"], 1);
    assert_eq!(default["due_next_minute"], 1);
    assert_eq!(default["due_next_hour"], 2);
    assert_eq!(default["overdue"], 0);
    let other = tenants.iter().find(|t| t["tenant"] == "other").unwrap();
    assert_eq!(other["overdue"], 1);
    assert!(other["oldest_overdue"].as_str().unwrap().ends_with('Z'));
    assert_eq!(other["leases_held"], 1);
    assert_eq!(other["statuses"]["delivering"], 1);
    assert_eq!(report["total"]["leases_held"], 1);
    assert_eq!(report["total"]["dead_letters"], 0);
    match backend {
        // The embedded default has no Redis, so no index size.
        Backend::Sqlite => assert!(report["schedule_index"].is_null(), "{report}"),
        // Every waiting message: four scheduled, and the one this test leased in the
        // database only (the index still has it as due).
        Backend::Postgres => assert_eq!(report["schedule_index"], 5, "{report}"),
    }

    // The table form says the same.
    let mut command = dms(std::path::Path::new("/nonexistent"));
    server.operator_env(&mut command);
    let table = run(command, &["queue", "status"], None).await;
    assert!(table.status.success());
    let out = text(&table.stdout);
    let header = out.lines().nth(1).unwrap();
    assert!(header.starts_with("tenant"), "{out}");
    assert!(header.contains("scheduled  delivering  delivered"), "{out}");
    assert!(out.lines().any(|line| line.starts_with("(all)")), "{out}");
    assert!(out.contains("dead letters: 0"), "{out}");
}

fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    }
}

async fn db_reset_refuses_without_confirmation_then_empties_the_database(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let admin = server.admin().await;
    admin
        .api
        .post(
            "/messages",
            json!({ "recipient_id": admin.user_id(), "content": "keep me" }),
        )
        .await
        .expect(201);
    server.stop().await;

    let mut command = dms(std::path::Path::new("/nonexistent"));
    server.operator_env(&mut command);
    let refused = run(command, &["db", "reset"], None).await;
    assert_eq!(refused.status.code(), Some(2));
    let err = text(&refused.stderr);
    assert!(err.starts_with("refusing to reset the "), "{err}");
    assert!(err.contains("--yes-i-know"), "{err}");
    assert_eq!(
        server
            .sql_column("SELECT CAST(COUNT(*) AS TEXT) FROM messages")
            .await,
        ["1"],
        "nothing changed"
    );

    let mut command = dms(std::path::Path::new("/nonexistent"));
    server.operator_env(&mut command);
    let reset = run(command, &["db", "reset", "--yes-i-know"], None).await;
    assert!(reset.status.success(), "{}", text(&reset.stderr));
    assert!(
        text(&reset.stdout).contains("migrated an empty schema"),
        "{}",
        text(&reset.stdout)
    );
    for table in ["messages", "users", "tenants", "plugins"] {
        assert_eq!(
            server
                .sql_column(&format!("SELECT CAST(COUNT(*) AS TEXT) FROM {table}"))
                .await,
            ["0"],
            "{table} is empty"
        );
    }
    // The next start is a first run again.
    let server = server.restart().await;
    server.admin().await;
}
