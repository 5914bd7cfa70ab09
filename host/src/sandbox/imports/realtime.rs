//! The seam between channel plugins and the real-time hub: `publish` and `is-online` go
//! through a [`Realtime`], so the sandbox does not know how events travel (in-process hub,
//! Redis fan-out across nodes, or a recorder in tests and `dms plugin run`).

use std::collections::HashSet;
use std::sync::Mutex;

/// Real-time events and presence, per tenant.
#[async_trait::async_trait]
pub trait Realtime: Send + Sync + 'static {
    /// Records `event` for `user_id` in `tenant_id` and pushes it to the user's connections.
    async fn publish(
        &self,
        tenant_id: &str,
        user_id: &str,
        event: serde_json::Value,
    ) -> Result<(), String>;

    /// Whether `user_id` in `tenant_id` has a live connection on any node.
    async fn is_online(&self, tenant_id: &str, user_id: &str) -> bool;
}

/// A [`Realtime`] that records what is published instead of sending it anywhere: for
/// `dms plugin run` and tests.
#[derive(Debug, Default)]
pub struct Recorder {
    events: Mutex<Vec<(String, String, serde_json::Value)>>,
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

    /// Takes the events published so far, as `(tenant id, user id, event)`.
    pub fn take(&self) -> Vec<(String, String, serde_json::Value)> {
        std::mem::take(&mut *self.events.lock().expect("recorder lock"))
    }
}

#[async_trait::async_trait]
impl Realtime for Recorder {
    async fn publish(
        &self,
        tenant_id: &str,
        user_id: &str,
        event: serde_json::Value,
    ) -> Result<(), String> {
        self.events.lock().expect("recorder lock").push((
            tenant_id.to_owned(),
            user_id.to_owned(),
            event,
        ));
        Ok(())
    }

    async fn is_online(&self, tenant_id: &str, user_id: &str) -> bool {
        self.online
            .lock()
            .expect("recorder lock")
            .contains(&(tenant_id.to_owned(), user_id.to_owned()))
    }
}
