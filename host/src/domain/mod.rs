//! Pure domain types, no I/O: ids, tenants, users, sessions, messages, users' event feeds. Everything else speaks
//! in these.

pub mod feed;
pub mod ids;
pub mod message;
pub mod user;
