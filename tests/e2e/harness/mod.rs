//! Shared test helpers:
//! - `sandbox`: a plugin sandbox per test, sample messages, a scripted webhook receiver;
//! - `server`: a DMS server per test (in process, on a loopback port) with its own SQLite
//!   directory or PostgreSQL database, and an API client that checks every status;
//! - `live`: real-time clients (WebSocket, and npm socket.io-client through Node.js);
//! - `process`: the real `dms` binary;
//! - `cluster`: a scale-out deployment (PostgreSQL, a Redis of its own, `dms` processes) for
//!   fault tests;
//! - `old_schema`: a database rewritten to the schema before the narrow message rows.

#![allow(
    dead_code,
    unused_imports,
    reason = "each test module uses a different subset"
)]

mod cluster;
mod live;
mod old_schema;
mod process;
mod sandbox;
mod server;

pub(crate) use cluster::*;
pub(crate) use live::*;
pub(crate) use old_schema::*;
pub(crate) use process::*;
pub(crate) use sandbox::*;
pub(crate) use server::*;

/// Runs each listed `async fn(Backend)` as two tests: on SQLite and on PostgreSQL.
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(crate::harness::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(crate::harness::Backend::Postgres).await
                }
            )*
        }
    };
}
pub(crate) use on_both_backends;
