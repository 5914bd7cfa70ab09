//! `inbox`: the default channel.
//!
//! The host stores every delivered message in its recipient's inbox (the received box of
//! `GET /messages`); this channel's job is to push it at once to the recipient's live
//! connections. It publishes a `message` event carrying the whole message and reports the
//! message delivered; the host appends the event to the recipient's feed with the delivery's
//! commit and then pushes it. When the host refuses the event, it asks for a retry in
//! `publish_retry_after` (default 1s) rather than report a delivery nobody can see.
//!
//! Content that is valid UTF-8 travels as a string (`"content_encoding": "utf8"`); anything
//! else as standard base64 (`"content_encoding": "base64"`).

use base64::Engine as _;
use dms_plugin_sdk::{
    Address, DeliveryResult, Message, RetryLater, channel::Guest, config, realtime,
};
use serde_json::{Map, Value, json};

/// The real-time event for `message`, as a JSON object.
pub fn event(message: &Message) -> Value {
    let (content, encoding) = match std::str::from_utf8(&message.content) {
        Ok(text) => (text.to_owned(), "utf8"),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(&message.content),
            "base64",
        ),
    };
    let metadata: Map<String, Value> = message
        .metadata
        .iter()
        .map(|(key, value)| (key.clone(), Value::String(value.clone())))
        .collect();
    json!({
        "type": "message",
        "message": {
            "id": message.id,
            "sender_id": message.sender_id,
            "recipient_id": message.recipient_id,
            "content": content,
            "content_encoding": encoding,
            "content_type": message.content_type,
            "metadata": metadata,
            "created_at_ms": message.created_at_ms,
        }
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
        assert_eq!(event["message"]["content_encoding"], "utf8");
        assert_eq!(event["message"]["metadata"]["subject"], "hi");
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
