//! Pure domain types, no I/O: ids, tenants, users, sessions, messages, users' event feeds,
//! senders' status callbacks, groups and fan-outs, recurring schedules, tenants' plugins and
//! hooks. Everything else speaks in these.

pub mod callback;
pub mod feed;
pub mod flow;
pub mod group;
pub mod ids;
pub mod message;
pub mod plugin;
pub mod schedule;
pub mod user;
