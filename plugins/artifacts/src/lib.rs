//! The default DMS plugins as WebAssembly components, built from `plugins/*` by `build.rs`
//! during the normal cargo build and embedded here: `CONTENT_GUARD`, `STANDARD_DELAY`,
//! `INBOX`, `WEBHOOK`, and `ALL` by package name.

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
