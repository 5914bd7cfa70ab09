//! Real-time events for users' live connections, and presence.
//!
//! [`Hub`] is the server's [`Realtime`]: channel plugins publish through it (the `inbox`
//! channel pushes each delivered message), and connections subscribe to it. Events go to
//! every live subscription of the user on this node; a user is online while they hold one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::sandbox::Realtime;

/// Events buffered per user for a slow subscriber before it starts missing them.
const BUFFER: usize = 256;

type Key = (String, String);

/// The in-process hub.
#[derive(Default)]
pub struct Hub {
    users: Mutex<HashMap<Key, broadcast::Sender<serde_json::Value>>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

/// A live subscription; the user is online while one exists.
pub struct Subscription {
    /// The events.
    pub events: broadcast::Receiver<serde_json::Value>,
    hub: Arc<Hub>,
    key: Key,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut users = self.hub.users.lock().expect("hub lock");
        if let Some(sender) = users.get(&self.key)
            // This subscription's receiver is dropped after this runs.
            && sender.receiver_count() <= 1
        {
            users.remove(&self.key);
        }
    }
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Subscribes to `user_id`'s events in `tenant_id`.
    pub fn subscribe(self: &Arc<Self>, tenant_id: &str, user_id: &str) -> Subscription {
        let key = (tenant_id.to_owned(), user_id.to_owned());
        let mut users = self.users.lock().expect("hub lock");
        let events = users
            .entry(key.clone())
            .or_insert_with(|| broadcast::channel(BUFFER).0)
            .subscribe();
        Subscription {
            events,
            hub: self.clone(),
            key,
        }
    }
}

#[async_trait::async_trait]
impl Realtime for Hub {
    async fn publish(
        &self,
        tenant_id: &str,
        user_id: &str,
        event: serde_json::Value,
    ) -> Result<(), String> {
        let users = self.users.lock().expect("hub lock");
        if let Some(sender) = users.get(&(tenant_id.to_owned(), user_id.to_owned())) {
            // No receiver left between lookup and send is fine: nobody is listening.
            let _ = sender.send(event);
        }
        Ok(())
    }

    async fn is_online(&self, tenant_id: &str, user_id: &str) -> bool {
        self.users
            .lock()
            .expect("hub lock")
            .get(&(tenant_id.to_owned(), user_id.to_owned()))
            .is_some_and(|sender| sender.receiver_count() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_get_events_and_make_their_user_online() {
        let hub = Hub::new();
        assert!(!hub.is_online("t", "u").await);
        let mut subscription = hub.subscribe("t", "u");
        assert!(hub.is_online("t", "u").await);
        hub.publish("t", "u", serde_json::json!({ "type": "message" }))
            .await
            .unwrap();
        hub.publish("t", "other", serde_json::json!({ "type": "message" }))
            .await
            .unwrap();
        assert_eq!(subscription.events.recv().await.unwrap()["type"], "message");
        drop(subscription);
        assert!(!hub.is_online("t", "u").await);
    }
}
