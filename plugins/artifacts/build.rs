//! Builds the default plugins for wasm32-wasip2; see `tools/guest-builder`.

fn main() {
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    guest_builder::build_and_embed(
        &workspace,
        &["content-guard", "standard-delay", "inbox", "webhook"],
    );
}
