//! Live events and presence, across nodes.
//!
//! - [`hub`]: this node's live connections, per user, under caps per user and tenant. Feed
//!   events reach it after their commit (the store's listener) and go to every connection of
//!   their user, each through a bounded queue; a connection that falls behind is cut off
//!   rather than slowing the others.
//! - [`bridge`]: with Redis, events and revocations travel between nodes over pub/sub, and
//!   presence (who is online on any node) lives in Redis keys that expire with their node.
//!
//! The client protocols (`/ws`, Socket.IO) are in `api::realtime`; this module knows nothing
//! of them.

mod bridge;
pub mod hub;

pub use hub::{Caps, Closed, Full, Hub, Next, Revoke, Subscription, Unauthenticated};
