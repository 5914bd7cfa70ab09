//! DMS: a delayed messaging server whose every policy decision is a sandboxed WebAssembly
//! component.
//!
//! Layout:
//! - [`api`]: the HTTP edge — routes, extractors, the error table (problem+json), the OpenAPI
//!   document (`/openapi.json`);
//! - [`app`]: start-up, shared state and serving;
//! - [`connections`]: serving HTTP connections under caps and timeouts;
//! - [`sandbox`]: everything wasmtime — loading, checking and calling plugins under limits;
//! - [`domain`]: pure types — prefixed ids, tenants, users, sessions, messages and their
//!   transition table;
//! - [`messages`]: the message use cases — submit, manage, dead letters, webhook endpoints;
//! - [`policies`]: which plugin serves each hook for a tenant, and the fail-safes;
//! - [`schedule`]: the index of due messages (in process, or Redis) and its rebuild;
//! - [`dispatch`]: claims due messages, delivers them, commits the outcome;
//! - [`realtime`]: live events and presence;
//! - [`metrics`]: the node's Prometheus metrics;
//! - [`store`]: the database (SQLite or PostgreSQL), the source of truth;
//! - [`auth`]: passwords, access and refresh tokens, rate limits;
//! - [`redis_link`]: the shared Redis connection and key prefix;
//! - [`config`]: settings, layered and validated;
//! - [`tls`]: TLS 1.3 termination, when configured;
//! - [`clock`]: the server's clock, manual in tests;
//! - [`text`]: text from receivers and plugins made safe to store, show and log;
//! - [`private_files`]: files and directories only the server's user may read;
//! - [`cli`]: the `dms` command line.

pub mod api;
pub mod app;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connections;
pub mod dispatch;
pub mod domain;

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
