//! Builds the test guests (hostile ones, and ones tenants upload in the tests) for wasm32-wasip2; see `tools/guest-builder`.

fn main() {
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..");
    guest_builder::build_and_embed(
        &workspace,
        &[
            "guest-spin-loop",
            "guest-host-call-loop",
            "guest-memory-bomb",
            "guest-panic",
            "guest-huge-output",
            "guest-deep-recursion",
            "guest-sleepy",
            "guest-forbidden-import",
            "guest-wrong-world",
            "guest-tenant-validator",
            "guest-tenant-delay",
            "guest-tenant-channel",
        ],
    );
}
