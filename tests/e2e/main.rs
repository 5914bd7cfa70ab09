//! The end-to-end suite: one test binary, one module per feature. Tests use real Wasm
//! components, real HTTP receivers on loopback and the real `dms` binary.

mod harness;

mod api_conventions;
mod architecture;
mod auth;
mod backup;
mod batch;
mod callbacks;
mod config_docs;
mod connection_limits;
mod console;
mod containers;
mod delivery_hardening;
mod docs;
mod faults;
mod flow_control;
mod groups;
mod input_hardening;
mod logging;
mod message_core;
mod messages;
mod metrics;
mod openapi;
mod operator_cli;
mod plugin_cli;
mod plugin_quotas;
mod realtime;
mod redis_limits;
mod sandbox_defaults;
mod sandbox_hostile;
mod schedule;
mod schedules;
mod server_binary;
mod tenant_plugins;
mod tls;
mod users;
mod webhook_signature;
