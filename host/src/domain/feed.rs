//! A user's feed: the events their live connections receive, each with a per-user `cursor`
//! that only grows, so a client that reconnects asks for everything after the last cursor it
//! saw and misses nothing.
//!
//! Three kinds come from the host: `message` (a message delivered to the user's inbox, with
//! its content; published by the `inbox` channel plugin), `status` (a message the user sent
//! changed status) and `read` (its recipient read it). A channel plugin may publish other
//! kinds; the event's `type` field names the kind.

use dms_plugin_sdk::payload::MessagePayload;
use serde_json::{Value, json};

use super::ids::{MessageId, TenantId, UserId};
use super::message::{Message, Status};

/// An event to append to a user's feed (its cursor is assigned when it is stored).
#[derive(Debug, Clone, PartialEq)]
pub struct NewFeedEvent {
    /// The user whose feed it joins.
    pub user_id: UserId,
    /// When it happened (Unix ms).
    pub at_ms: u64,
    /// The event as clients see it, without its cursor: a JSON object with a `type`.
    pub body: Value,
    /// The message whose content the body carries exactly as [`embeds`] checks: the store
    /// keeps the body without it and refers to the message instead of sealing a second copy.
    pub refers_to: Option<MessageId>,
}

/// A stored feed event.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedEvent {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The user.
    pub user_id: UserId,
    /// Its position in the user's feed: 1, 2, 3, … with no gaps.
    pub cursor: u64,
    /// When it happened (Unix ms).
    pub at_ms: u64,
    /// The event without its cursor.
    pub body: Value,
}

impl FeedEvent {
    /// The event as sent to clients: the body with its `cursor` and, unless it has one, the
    /// time it happened (`at_ms`: for a `message`, when the delivery was made).
    pub fn to_json(&self) -> Value {
        let mut value = self.body.clone();
        if let Some(object) = value.as_object_mut() {
            object.insert("cursor".to_owned(), Value::from(self.cursor));
            object
                .entry("at_ms")
                .or_insert_with(|| Value::from(self.at_ms));
        }
        value
    }

    /// The event's kind (its `type`), `event` when it has none.
    pub fn kind(&self) -> &str {
        kind_of(&self.body)
    }
}

/// The `type` of an event body, `event` when it has none.
pub fn kind_of(body: &Value) -> &str {
    body.get("type").and_then(Value::as_str).unwrap_or("event")
}

/// A `status` event for the sender of `message`, which is now `status`.
pub fn status(message: &Message, status: Status, error: Option<&str>, at_ms: u64) -> NewFeedEvent {
    NewFeedEvent {
        user_id: message.sender_id.clone(),
        at_ms,
        refers_to: None,
        body: json!({
            "type": "status",
            "message_id": message.id,
            "recipient_id": message.recipient_id,
            "status": status.as_str(),
            "error": error,
            "at_ms": at_ms,
        }),
    }
}

/// A `read` event for the sender of `message`: its recipient read it.
pub fn read(message: &Message, at_ms: u64) -> NewFeedEvent {
    NewFeedEvent {
        user_id: message.sender_id.clone(),
        at_ms,
        refers_to: None,
        body: json!({
            "type": "read",
            "message_id": message.id,
            "reader_id": message.recipient_id,
            "at_ms": at_ms,
        }),
    }
}

/// What the sender of a message learns when it becomes `status`: `read` for a read, `status`
/// for the rest. `delivering` is internal (a claim) and tells the sender nothing.
pub fn for_sender(
    message: &Message,
    status: Status,
    error: Option<&str>,
    at_ms: u64,
) -> Option<NewFeedEvent> {
    // A status callback is the sender's own notification: it tells nobody's feed about itself.
    if super::callback::is_callback(message) {
        return None;
    }
    match status {
        Status::Delivering => None,
        Status::Read => Some(read(message, at_ms)),
        _ => Some(self::status(message, status, error, at_ms)),
    }
}

/// How a `message` event carries content: as the SDK's [`MessagePayload`] does (the text
/// itself, or standard base64 with `content_encoding: base64`), since the `inbox` channel
/// publishes that payload. `content_encoding` is `None` when the event has none.
fn encoded(content: &[u8]) -> (Value, Option<Value>) {
    let (content, encoding) = MessagePayload::encode_content(content);
    let encoding = encoding.map(|encoding| {
        serde_json::to_value(encoding).expect("an encoding serialises to a string")
    });
    (Value::from(content), encoding)
}

/// Whether `body` is a `message` event about `message` that carries its content exactly as
/// [`embed_content`] would put it back (`message.content` and `message.content_encoding`), so
/// it can be stored without them.
pub fn embeds(body: &Value, message: &Message) -> bool {
    let Some(inner) = body.get("message") else {
        return false;
    };
    let (content, encoding) = encoded(&message.content);
    kind_of(body) == "message"
        && inner.get("id").and_then(Value::as_str) == Some(message.id.as_str())
        && inner.get("content") == Some(&content)
        && inner.get("content_encoding") == encoding.as_ref()
}

/// `body` without the content [`embeds`] found in it.
pub fn without_content(body: &Value) -> Value {
    let mut body = body.clone();
    if let Some(inner) = body.get_mut("message").and_then(Value::as_object_mut) {
        inner.remove("content");
        inner.remove("content_encoding");
    }
    body
}

/// Puts a message's content back into a body stored [`without_content`].
pub fn embed_content(body: &mut Value, content: &[u8]) {
    if let Some(inner) = body.get_mut("message").and_then(Value::as_object_mut) {
        let (content, encoding) = encoded(content);
        inner.insert("content".to_owned(), content);
        if let Some(encoding) = encoding {
            inner.insert("content_encoding".to_owned(), encoding);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_joins_the_body_and_the_type_names_the_kind() {
        let event = FeedEvent {
            tenant_id: TenantId::new(),
            user_id: UserId::new(),
            cursor: 7,
            at_ms: 1,
            body: json!({ "type": "status", "message_id": "msg_1" }),
        };
        assert_eq!(event.kind(), "status");
        assert_eq!(
            event.to_json(),
            json!({ "type": "status", "message_id": "msg_1", "cursor": 7, "at_ms": 1 })
        );
        assert_eq!(kind_of(&json!({ "x": 1 })), "event");
    }

    #[test]
    fn a_message_event_is_stored_without_its_content_and_read_back_whole() {
        let message = Message {
            id: crate::domain::ids::MessageId::new(),
            tenant_id: TenantId::new(),
            sender_id: UserId::new(),
            recipient_id: UserId::new(),
            channel: crate::domain::message::Channel::Inbox,
            content: vec![0xff, 0x00],
            content_type: "application/octet-stream".into(),
            metadata: Default::default(),
            requested: crate::domain::message::Requested::Unspecified,
            flow_key: None,
            status: Status::Delivering,
            deliver_at_ms: 0,
            attempts: 1,
            last_error: None,
            created_at_ms: 0,
            delivered_at_ms: None,
            read_at_ms: None,
            fan_out_id: None,
        };
        let body = json!({ "type": "message", "message": {
            "id": message.id, "content": "/wA=", "content_encoding": "base64", "metadata": {}
        }});
        assert!(embeds(&body, &message));
        let stored = without_content(&body);
        assert_eq!(stored["message"].get("content"), None);
        let mut read = stored.clone();
        embed_content(&mut read, &message.content);
        assert_eq!(read, body);
        // Another message's event, another encoding, or altered content: kept whole.
        let mut other = body.clone();
        other["message"]["content_encoding"] = json!("utf8");
        assert!(!embeds(&other, &message));
        other["message"]
            .as_object_mut()
            .unwrap()
            .remove("content_encoding");
        assert!(!embeds(&other, &message));
        other = body.clone();
        other["message"]["id"] = json!("msg_other");
        assert!(!embeds(&other, &message));
        assert!(!embeds(
            &json!({ "type": "status", "message": body["message"] }),
            &message
        ));
        // Text travels as itself, with no encoding, as the SDK's payload carries it.
        let text = Message {
            content: b"hello".to_vec(),
            ..message
        };
        let body = json!({ "type": "message", "message": {
            "id": text.id, "content": "hello", "metadata": {}
        }});
        assert!(embeds(&body, &text));
        let mut read = without_content(&body);
        embed_content(&mut read, &text.content);
        assert_eq!(read, body);
    }
}
