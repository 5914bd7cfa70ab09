//! `plugins.mjs`: uploading a test validator, binding it, dry runs, a message it rejects,
//! refusals shown next to their control, a plugin the host disabled and enabled again, and no
//! plugin or hook page for a member.

use std::path::Path;

use crate::harness::{Backend, on_both_backends};

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
    super::browser_suite_with(
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
