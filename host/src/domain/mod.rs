//! Pure domain types, no I/O: ids, tenants, users, sessions, messages. Everything else speaks
//! in these.

pub mod ids;
pub mod message;
pub mod user;
