//! `plugins.mjs`: uploading a test validator, binding it, dry runs, a message it rejects,
//! refusals shown next to their control, a plugin the host disabled and enabled again, and no
//! plugin or hook page for a member.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::harness::{ADMIN_PASSWORD, Backend, on_both_backends};

async fn plugins(backend: Backend) {
    // The test validator's component, for the page's file input.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-plugins");
    std::fs::create_dir_all(&dir).expect("the target's tmp dir is writable");
    let wasm = dir.join(format!("tenant-validator-{backend:?}.wasm"));
    std::fs::write(&wasm, guest_artifacts::GUEST_TENANT_VALIDATOR)
        .expect("the component is written");
    // A validator that traps on every call, for the host to disable.
    let panic = dir.join(format!("panic-{backend:?}.wasm"));
    std::fs::write(&panic, guest_artifacts::GUEST_PANIC).expect("the component is written");
    browser_suite_with(
        "plugins.mjs",
        backend,
        &[
            ("DMS_TEST_VALIDATOR_WASM", &wasm),
            ("DMS_TEST_PANIC_WASM", &panic),
        ],
    )
    .await;
}

on_both_backends!(plugins);

/// [`super::browser_suite`] with more environment for the runner.
async fn browser_suite_with(file: &str, backend: Backend, env: &[(&str, &Path)]) {
    let (served, _storage) = super::console_server(backend).await;
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
