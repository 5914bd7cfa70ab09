//! The seam between channel plugins and presence: `is-online` asks a [`Presence`], so the
//! sandbox does not know where presence lives (the real-time hub, across nodes through Redis,
//! or a fixed answer in tests and `dms plugin run`).

use std::collections::HashSet;
use std::sync::Mutex;

/// Who is online, per tenant.
#[async_trait::async_trait]
pub trait Presence: Send + Sync + 'static {
    /// Whether `user_id` in `tenant_id` has a live connection on any node.
    async fn is_online(&self, tenant_id: &str, user_id: &str) -> bool;
}

/// A [`Presence`] with a fixed set of online users: for `dms plugin run` and tests.
#[derive(Debug, Default)]
pub struct Recorder {
    online: Mutex<HashSet<(String, String)>>,
}

impl Recorder {
    /// A recorder with nobody online.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks `user_id` in `tenant_id` as online.
    pub fn set_online(&self, tenant_id: &str, user_id: &str) {
        self.online
            .lock()
            .expect("recorder lock")
            .insert((tenant_id.to_owned(), user_id.to_owned()));
    }
}

#[async_trait::async_trait]
impl Presence for Recorder {
    async fn is_online(&self, tenant_id: &str, user_id: &str) -> bool {
        self.online
            .lock()
            .expect("recorder lock")
            .contains(&(tenant_id.to_owned(), user_id.to_owned()))
    }
}
