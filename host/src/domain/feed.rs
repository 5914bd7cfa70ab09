//! A user's feed: the events their live connections receive, each with a per-user `cursor`
//! that only grows, so a client that reconnects asks for everything after the last cursor it
//! saw and misses nothing.
//!
//! Three kinds come from the host: `message` (a message delivered to the user's inbox, with
//! its content; published by the `inbox` channel plugin), `status` (a message the user sent
//! changed status) and `read` (its recipient read it). A channel plugin may publish other
//! kinds; the event's `type` field names the kind.

use serde_json::{Value, json};

use super::ids::{TenantId, UserId};
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
    match status {
        Status::Delivering => None,
        Status::Read => Some(read(message, at_ms)),
        _ => Some(self::status(message, status, error, at_ms)),
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
}
