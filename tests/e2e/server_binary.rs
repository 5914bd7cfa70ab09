//! The real `dms` binary: first run, graceful shutdown, the operator commands, the health
//! check, and configuration errors.

use serde_json::json;

use crate::harness::{Api, JWT_SECRET, TestDb, dms, run, serve};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn the_first_run_admin_logs_in_and_sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(dms(dir.path())).await;
    assert_eq!(
        served.printed[0],
        "First run: created the tenant \"default\" and its admin user \"admin\"."
    );
    let password = served.printed[1]
        .strip_prefix("  admin password: ")
        .unwrap()
        .to_owned();
    let file = dir.path().join("initial-admin-password");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), password);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for secret in ["initial-admin-password", "jwt-secret"] {
            let mode = std::fs::metadata(dir.path().join(secret))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{secret}");
        }
    }

    let api = Api::new(&served.url);
    let login = api
        .post(
            "/auth/login",
            json!({ "username": "admin", "password": password }),
        )
        .await
        .expect(200);
    let admin = api.with_token(login.body["token"].as_str().unwrap());
    admin
        .post(
            "/users",
            json!({ "username": "bob", "password": "bob-password" }),
        )
        .await
        .expect(201);
    api.post(
        "/auth/login",
        json!({ "username": "bob", "password": "bob-password" }),
    )
    .await
    .expect(200);

    assert!(served.terminate().await.success(), "exit 0 after SIGTERM");

    // A second start keeps everything and creates nothing.
    let again = serve(dms(dir.path())).await;
    assert!(again.printed.is_empty(), "{:?}", again.printed);
    Api::new(&again.url)
        .post(
            "/auth/login",
            json!({ "username": "admin", "password": password }),
        )
        .await
        .expect(200);
    assert!(again.terminate().await.success());
}

#[tokio::test]
async fn dms_admin_password_sets_the_first_admin_and_is_not_printed() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = dms(dir.path());
    command.env("DMS_ADMIN_PASSWORD", "chosen-admin-password");
    let served = serve(command).await;
    assert_eq!(
        served.printed[1],
        "  admin password: the one in DMS_ADMIN_PASSWORD"
    );
    assert!(!dir.path().join("initial-admin-password").exists());
    Api::new(&served.url)
        .post(
            "/auth/login",
            json!({ "username": "admin", "password": "chosen-admin-password" }),
        )
        .await
        .expect(200);
    served.terminate().await;
}

#[tokio::test]
async fn operators_manage_tenants_and_users_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let migrated = run(dms(dir.path()), &["migrate"], None).await;
    assert!(migrated.status.success(), "{}", text(&migrated.stderr));
    assert_eq!(
        text(&migrated.stdout).trim(),
        "Migrations applied (sqlite)."
    );

    let created = run(dms(dir.path()), &["tenant", "create", "acme"], None).await;
    assert!(created.status.success(), "{}", text(&created.stderr));
    assert!(text(&created.stdout).starts_with("Created tenant acme (ten_"));
    let again = run(dms(dir.path()), &["tenant", "create", "acme"], None).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("a tenant named \"acme\" exists already"));
    let listed = run(dms(dir.path()), &["tenant", "list"], None).await;
    assert!(text(&listed.stdout).contains("\tacme\t"));

    let args = [
        "user",
        "create",
        "--tenant",
        "acme",
        "--username",
        "carol",
        "--role",
        "admin",
        "--password-stdin",
    ];
    let user = run(dms(dir.path()), &args, Some("carol-password\n")).await;
    assert!(user.status.success(), "{}", text(&user.stderr));
    assert!(text(&user.stdout).starts_with("Created admin carol in tenant acme (usr_"));

    let no_stdin = run(dms(dir.path()), &args[..8], None).await;
    assert!(text(&no_stdin.stderr).contains("pass --password-stdin"));
    let short = run(
        dms(dir.path()),
        &[
            "user",
            "create",
            "--tenant",
            "acme",
            "--username",
            "dave",
            "--password-stdin",
        ],
        Some("short"),
    )
    .await;
    assert!(text(&short.stderr).contains("at least 8 characters"));
    let nowhere = run(
        dms(dir.path()),
        &[
            "user",
            "create",
            "--tenant",
            "nope",
            "--username",
            "erin",
            "--password-stdin",
        ],
        Some("erin-password"),
    )
    .await;
    assert!(text(&nowhere.stderr).contains("there is no tenant named \"nope\""));
    // The command line applies the account rules `POST /users` applies (one use case).
    let long_name = "n".repeat(201);
    let named = run(
        dms(dir.path()),
        &[
            "user",
            "create",
            "--tenant",
            "acme",
            "--username",
            "frank",
            "--display-name",
            &long_name,
            "--password-stdin",
        ],
        Some("frank-password"),
    )
    .await;
    assert_eq!(named.status.code(), Some(1));
    assert!(
        text(&named.stderr)
            .contains("--display-name: the display name must have at most 200 characters"),
        "{}",
        text(&named.stderr)
    );
    let blank = run(dms(dir.path()), &["tenant", "create", "  "], None).await;
    assert_eq!(blank.status.code(), Some(1));
    assert!(
        text(&blank.stderr).contains("error: a tenant name may not be blank"),
        "{}",
        text(&blank.stderr)
    );

    let served = serve(dms(dir.path())).await;
    let login = Api::new(&served.url)
        .post(
            "/auth/login",
            json!({ "username": "carol", "password": "carol-password" }),
        )
        .await
        .expect(200);
    assert_eq!(login.body["user"]["role"], "admin");
    served.terminate().await;
}

#[tokio::test]
async fn healthcheck_says_whether_the_server_answers() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(dms(dir.path())).await;
    let url = format!("{}/health", served.url);
    let up = run(dms(dir.path()), &["healthcheck", &url], None).await;
    assert!(up.status.success(), "{}", text(&up.stderr));
    assert!(text(&up.stdout).starts_with("healthy: "));
    served.terminate().await;

    let down = run(dms(dir.path()), &["healthcheck", &url], None).await;
    assert_eq!(down.status.code(), Some(1));
    assert!(
        text(&down.stderr).contains("connection refused or unreachable (is the server running?)"),
        "{}",
        text(&down.stderr)
    );
}

#[tokio::test]
async fn unusable_settings_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    for (variable, value, expected) in [
        (
            "JWT_SECRET",
            "short",
            "invalid setting JWT_SECRET: it is 5 bytes; use at least 32",
        ),
        (
            "DATABASE_URL",
            "mysql://db/dms",
            "invalid setting DATABASE_URL",
        ),
        (
            "DMS_PORT",
            "eighty",
            "expected u16 for key \"PORT\" in `DMS_` environment variable",
        ),
    ] {
        let mut command = dms(dir.path());
        command.env(variable, value);
        let output = run(command, &["serve"], None).await;
        assert_eq!(output.status.code(), Some(1), "{variable}");
        assert!(
            text(&output.stderr).contains(expected),
            "{variable}: {}",
            text(&output.stderr)
        );
    }
    let mut command = dms(dir.path());
    command.env("DATABASE_URL", "postgres://127.0.0.1:5432/dms");
    let output = run(command, &["serve"], None).await;
    assert!(text(&output.stderr).contains("JWT_SECRET: it is required with DATABASE_URL"));
}

#[tokio::test]
async fn migrate_works_on_postgresql_too() {
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let mut command = dms(dir.path());
    command
        .env("DATABASE_URL", &db.url)
        .env("JWT_SECRET", JWT_SECRET)
        .env("DMS_ENCRYPTION_KEYS", crate::harness::ENCRYPTION_KEYS);
    let output = run(command, &["migrate"], None).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout).trim(),
        "Migrations applied (postgres)."
    );
}
