//! A tenant's own channel: publishes a `tenant-channel` event to the recipient and reports
//! the message delivered; with `fail = retry` it reports a temporary failure instead.
use dms_plugin_sdk::{
    Address, DeliveryResult, Message, RetryLater, channel::Guest, config, realtime,
};

/// The channel.
pub struct Announce;

impl Guest for Announce {
    fn deliver(message: Message, address: Address) -> DeliveryResult {
        if config::get("fail").as_deref() == Some("retry") {
            return DeliveryResult::Retry(RetryLater {
                reason: "the tenant channel is configured to fail".into(),
                after_ms: None,
            });
        }
        let event = format!(
            r#"{{"type":"tenant-channel","message_id":"{}","content":{:?}}}"#,
            message.id,
            String::from_utf8_lossy(&message.content)
        );
        match realtime::publish(&address.recipient_id, &event) {
            Ok(()) => DeliveryResult::Delivered,
            Err(error) => DeliveryResult::Failed(error),
        }
    }
}

dms_plugin_sdk::export_channel!(Announce);
