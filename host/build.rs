//! Rebuilds the server when a migration is added, changed or removed: `sqlx::migrate!` embeds
//! the migrations at build time, and cargo does not otherwise watch their folders.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
