//! Hostile test guests as WebAssembly components, built from `tests/guests/*` by `build.rs`.
//! `foreach_guest!` lists them so the test suite can require a test for each.

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
