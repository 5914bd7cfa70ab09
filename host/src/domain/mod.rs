//! Pure domain types, no I/O: ids, tenants, users, sessions, messages, users' event feeds, tenants' plugins and hooks, recurring schedules. Everything else speaks
//! in these.

pub mod feed;
pub mod ids;
pub mod message;
pub mod plugin;
pub mod schedule;
pub mod user;
