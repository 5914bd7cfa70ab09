//! The use cases: what a user or an operator can ask of DMS, decided once whoever asks. The
//! HTTP API, the CLI (and the console) parse a request, call one of these, and map its result;
//! none of them holds a rule of its own.
//!
//! Each area is a small struct of exactly what it needs (the store, the policies, the clock,
//! the schedule), built once at start-up ([`crate::state`]) or by a CLI command:
//! - [`accounts`]: tenants, users, passwords, logins, refreshes and sessions;
//! - [`messages`]: submit (one, a batch, or to a group), list, view, history, cancel,
//!   reschedule, deliver now, read, dead letters, webhook endpoints, fan-out summaries;
//! - [`groups`]: a tenant's groups and their members;
//! - [`policies`]: a tenant's plugins, hooks and dry runs;
//! - [`flow`]: flow-control limits per key pattern;
//! - [`operations`]: the queue report and retention;
//! - [`schedules`]: recurring schedules and the runner that creates their occurrences.

pub mod accounts;
pub mod flow;
pub mod groups;
pub mod messages;
pub mod operations;
pub mod policies;
pub mod schedules;
