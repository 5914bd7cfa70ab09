//! Real-time events and presence, for channel plugins.

/// Pushes `event` (a JSON object, at most 64 KiB) to every live connection of `user_id` in the
/// message's tenant. The host records the event so a reconnecting client can resume from it.
pub fn publish(user_id: &str, event: &str) -> Result<(), String> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::channel::dms::plugin::channel_host::publish(user_id, event)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::testing::with(|host| match &host.publish_error {
            Some(error) => Err(error.clone()),
            None => {
                host.published.push((user_id.to_owned(), event.to_owned()));
                Ok(())
            }
        })
    }
}

/// Whether `user_id` in the message's tenant has a live real-time connection on any node.
pub fn is_online(user_id: &str) -> bool {
    #[cfg(target_arch = "wasm32")]
    {
        crate::channel::dms::plugin::channel_host::is_online(user_id)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::testing::with(|host| host.online.contains(user_id))
    }
}
