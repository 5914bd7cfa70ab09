//! DMS: a delayed messaging server whose every policy decision is a sandboxed WebAssembly
//! component.
//!
//! Layout, in the layers of docs/ARCHITECTURE.md (a module uses only those above it in that
//! table; `tests/e2e/architecture.rs` checks it):
//! - foundation: [`text`], [`random`], [`private_files`], [`clock`], [`domain`] (pure types:
//!   ids, tenants, users, sessions, messages and their transition table, plugins and bindings);
//! - infrastructure: [`redis_link`], [`sandbox`] (wasmtime: loading, checking and calling
//!   plugins under limits), [`store`] (SQLite or PostgreSQL, the source of truth), [`config`],
//!   [`auth`] (passwords, tokens, rate limits), [`schedule`] (the index of due messages),
//!   [`flow`] (flow control per key: the limiter), [`realtime`] (live events and presence), [`metrics`];
//! - engines: [`policies`] (which plugin serves each hook for a tenant, and the fail-safes),
//!   [`dispatch`] (claims due messages, delivers them, commits the outcome);
//! - [`use_cases`]: accounts, messages, policies, flow-control limits, operations — the rules, whoever asks;
//! - serving: [`connections`] (HTTP connections under caps and timeouts), [`tls`], [`state`]
//!   (the running server's shared state and start-up);
//! - edge: [`api`] (routes, extractors, the one error table, the OpenAPI document),
//!   [`console`] (the web console at `/console/`), [`app`]
//!   (serving and background work), [`cli`] (the `dms` command line).

pub mod api;
pub mod app;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connections;
pub mod console;
pub mod dispatch;
pub mod domain;
pub mod flow;
pub mod metrics;
pub mod policies;
pub mod private_files;
pub mod random;
pub mod realtime;
pub mod redis_link;
pub mod sandbox;
pub mod schedule;
pub mod state;
pub mod store;
pub mod text;
pub mod tls;
pub mod use_cases;
