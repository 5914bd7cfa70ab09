//! `inbox`: the default channel.
//!
//! The host stores every delivered message in its recipient's inbox (the received box of
//! `GET /messages`); this channel's job is to push it at once to the recipient's live
//! connections. It publishes a `message` event carrying the whole message and reports the
//! message delivered; the host appends the event to the recipient's feed with the delivery's
//! commit and then pushes it. When the host refuses the event, it asks for a retry in
//! `publish_retry_after` (default 1s) rather than report a delivery nobody can see.
//!
//! The event is `{"type": "message", "message": {…}}`, where the message is the SDK's
//! [`MessagePayload`], the shape the HTTP API and the webhook channel use too: content that is
//! valid UTF-8 travels as itself, anything else as standard base64 with
//! `"content_encoding": "base64"`.

use dms_plugin_sdk::payload::MessagePayload;
use dms_plugin_sdk::{
    Address, DeliveryResult, Message, RetryLater, channel::Guest, config, realtime,
};
use serde_json::{Value, json};

/// The real-time event for `message`, as a JSON object.
pub fn event(message: &Message) -> Value {
    json!({
        "type": "message",
        "message": MessagePayload::from(message),
    })
}

/// The channel exported by this component.
pub struct Inbox;

impl Guest for Inbox {
    fn deliver(message: Message, address: Address) -> DeliveryResult {
        let retry_after = match config::duration_ms("publish_retry_after", 1_000) {
            Ok(ms) => ms,
            Err(error) => return DeliveryResult::Failed(error.to_string()),
        };
        match realtime::publish(&address.recipient_id, &event(&message).to_string()) {
            Ok(()) => DeliveryResult::Delivered,
            Err(error) => DeliveryResult::Retry(RetryLater {
                reason: format!("could not publish the inbox event: {error}"),
                after_ms: Some(retry_after),
            }),
        }
    }
}

dms_plugin_sdk::export_channel!(Inbox);

#[cfg(test)]
mod tests {
    use super::*;
    use dms_plugin_sdk::{RequestedTime, testing};

    fn message(content: &[u8]) -> Message {
        Message {
            id: "msg_1".into(),
            tenant_id: "ten_1".into(),
            sender_id: "usr_a".into(),
            recipient_id: "usr_b".into(),
            content: content.to_vec(),
            content_type: "text/plain".into(),
            metadata: vec![("subject".into(), "hi".into())],
            requested: RequestedTime::Unspecified,
            created_at_ms: 42,
        }
    }

    fn address() -> Address {
        Address {
            recipient_id: "usr_b".into(),
            url: None,
            signing_secrets: Vec::new(),
        }
    }

    #[test]
    fn publishes_the_message_to_the_recipient() {
        testing::FakeHost::new().install();
        assert_eq!(
            Inbox::deliver(message(b"hello"), address()),
            DeliveryResult::Delivered
        );
        let host = testing::take();
        assert_eq!(host.published.len(), 1);
        let (user, event) = &host.published[0];
        assert_eq!(user, "usr_b");
        let event: Value = serde_json::from_str(event).unwrap();
        assert_eq!(event["type"], "message");
        assert_eq!(event["message"]["id"], "msg_1");
        assert_eq!(event["message"]["content"], "hello");
        assert_eq!(event["message"].get("content_encoding"), None);
        assert_eq!(event["message"]["metadata"]["subject"], "hi");
        assert_eq!(event["message"]["created_at"], "1970-01-01T00:00:00.042Z");
    }

    #[test]
    fn binary_content_travels_as_base64() {
        let event = event(&message(&[0xff, 0x00]));
        assert_eq!(event["message"]["content"], "/wA=");
        assert_eq!(event["message"]["content_encoding"], "base64");
    }

    #[test]
    fn a_failed_publish_asks_for_a_retry() {
        testing::FakeHost {
            publish_error: Some("database unavailable".into()),
            ..testing::FakeHost::new()
        }
        .install();
        assert_eq!(
            Inbox::deliver(message(b"hello"), address()),
            DeliveryResult::Retry(RetryLater {
                reason: "could not publish the inbox event: database unavailable".into(),
                after_ms: Some(1_000),
            })
        );
    }
}
