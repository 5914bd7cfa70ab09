//! The console in a real browser: each file of `tests/e2e/js/console/` (node's test runner,
//! playwright-core driving Debian's chromium, axe-core) runs against a real `dms serve` on a
//! loopback port, on both deployments. Screenshots of every page at 390 and 1280 px wide are
//! written under `target/tmp/console-screenshots/` for a person to look at.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::harness::{ADMIN_PASSWORD, Backend, Served, TEST_REDIS_URL, TestStorage, serve};

/// A real `dms serve` on `backend`, with the first-run admin's password set, the worker on,
/// and webhook receivers allowed on loopback.
pub(crate) async fn console_server(backend: Backend) -> (Served, TestStorage) {
    let storage = TestStorage::create(backend).await;
    let mut command = storage.dms();
    command
        .env("DMS_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("DMS_ALLOW_PRIVATE_NETWORKS", "true")
        .env("DMS_PLUGIN_CACHE_DIR", crate::harness::cache_dir());
    if backend == Backend::Postgres {
        command.env("REDIS_URL", TEST_REDIS_URL).env(
            "DMS_REDIS_PREFIX",
            format!("test:{}", dms::domain::ids::TenantId::new()),
        );
    }
    (serve(command).await, storage)
}

/// Runs `tests/e2e/js/console/{file}` against a new server on `backend`; fails with the
/// runner's output unless every test in it passes.
pub(crate) async fn browser_suite(file: &str, backend: Backend) {
    browser_suite_with(file, backend, &[]).await;
}

/// [`browser_suite`] with more environment for the runner (paths the tests read).
pub(crate) async fn browser_suite_with(file: &str, backend: Backend, env: &[(&str, &Path)]) {
    let (served, _storage) = console_server(backend).await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/e2e/js/console");
    let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("console-screenshots")
        .join(format!("{backend:?}").to_lowercase());
    let mut command = tokio::process::Command::new("node");
    command
        .arg("--test")
        .arg("--test-concurrency=1")
        .arg(root.join(file))
        .current_dir(&root)
        .env("DMS_URL", &served.url)
        .env("DMS_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("DMS_SCREENSHOTS", &screenshots)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = tokio::time::timeout(Duration::from_secs(600), command.output())
        .await
        .expect("the browser tests finish within 10 minutes")
        .expect("node runs (the README's test setup installs it with the npm packages)");
    let printed = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "browser tests in {file} failed:\n{printed}"
    );
    assert!(
        printed.contains("# fail 0") && !printed.contains("# pass 0"),
        "{printed}"
    );
    served.terminate().await;
}

// Sign-in, sessions, users, the anti-forgery rule, the 404 page.
mod sign_in;

// Messages, a message's page, dead letters.
mod messages;

// Plugins, hooks and dry runs; the webhook endpoint.
mod plugins;
mod webhook;

// The overview, the live feed, groups, schedules and flow control.
mod groups;
mod live;
mod overview;
