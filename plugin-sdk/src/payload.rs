//! The message payload: one shape for a message wherever DMS hands it out.
//!
//! A [`MessagePayload`] is what the sender wrote and who it is between. The same type travels
//! in three places:
//!
//! - the HTTP API's message view (`GET /messages/{id}` and every answer that shows a message)
//!   is this payload with where the message stands added beside it: `channel`, `status`,
//!   `deliver_at`, `attempts`, `last_error`, `delivered_at`, `read_at`;
//! - the `inbox` channel publishes it to the recipient's feed as the `message` event,
//!   `{"type": "message", "message": {payload}}` (the host adds `cursor` and `at_ms`);
//! - the `webhook` channel POSTs it as the `data` of
//!   `{"type": "message", "timestamp": "…", "data": {payload}}`.
//!
//! A channel plugin of your own that publishes or posts a message should send this payload too
//! ([`MessagePayload::from`] a [`Message`](crate::Message)), so that clients parse one shape.
//! Receivers written in Rust can deserialize it.
//!
//! This module needs only serde (and base64 for binary content): the host uses it without the
//! guest bindings. With the `schema` feature the types also derive `utoipa::ToSchema`, which is
//! how the host's OpenAPI document describes them.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// A message as DMS shows it: to API clients, to live connections and to webhook receivers.
///
/// Times are RFC 3339 in UTC with milliseconds (`2026-12-05T16:00:00.000Z`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct MessagePayload {
    /// The message id: the same in every delivery of the message, so receivers can
    /// de-duplicate.
    #[cfg_attr(
        feature = "schema",
        schema(
            pattern = "^msg_[0-7][0-9A-HJKMNP-TV-Z]{25}$",
            example = "msg_01JD8X3Z6Q9R2V4T7W5Y0B1C3E"
        )
    )]
    pub id: String,
    /// The user who sent it.
    #[cfg_attr(
        feature = "schema",
        schema(
            pattern = "^usr_[0-7][0-9A-HJKMNP-TV-Z]{25}$",
            example = "usr_01JD8X3Z6Q9R2V4T7W5Y0B1C3E"
        )
    )]
    pub sender_id: String,
    /// The user it is for.
    #[cfg_attr(
        feature = "schema",
        schema(
            pattern = "^usr_[0-7][0-9A-HJKMNP-TV-Z]{25}$",
            example = "usr_01JD8X3Z6Q9R2V4T7W5Y0B1C3E"
        )
    )]
    pub recipient_id: String,
    /// The content: the text itself when it is valid UTF-8, else its bytes in standard base64
    /// (and `content_encoding` is `base64`).
    #[cfg_attr(feature = "schema", schema(example = "see you at 5"))]
    pub content: String,
    /// `base64` when `content` holds the bytes in base64; absent when it is the text itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schema(nullable = false))]
    pub content_encoding: Option<ContentEncoding>,
    /// The content's media type, as the sender gave it.
    #[cfg_attr(feature = "schema", schema(example = "text/plain"))]
    pub content_type: String,
    /// Free-form metadata the sender attached, by key.
    pub metadata: BTreeMap<String, String>,
    /// When the host accepted the message.
    #[cfg_attr(feature = "schema", schema(format = DateTime))]
    pub created_at: String,
}

/// How [`MessagePayload::content`] holds bytes that are not UTF-8 text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ContentEncoding {
    /// Standard base64, with padding.
    Base64,
}

impl MessagePayload {
    /// `content` as the payload carries it: the text itself when it is valid UTF-8 (no
    /// encoding), else standard base64 ([`ContentEncoding::Base64`]).
    pub fn encode_content(content: &[u8]) -> (String, Option<ContentEncoding>) {
        match std::str::from_utf8(content) {
            Ok(text) => (text.to_owned(), None),
            Err(_) => (
                base64::engine::general_purpose::STANDARD.encode(content),
                Some(ContentEncoding::Base64),
            ),
        }
    }

    /// The content's bytes: `content` decoded as its `content_encoding` says.
    pub fn content_bytes(&self) -> Result<Vec<u8>, base64::DecodeError> {
        match self.content_encoding {
            None => Ok(self.content.clone().into_bytes()),
            Some(ContentEncoding::Base64) => {
                base64::engine::general_purpose::STANDARD.decode(&self.content)
            }
        }
    }
}

/// `ms` (Unix milliseconds) as RFC 3339 in UTC with milliseconds, as the host writes times
/// (`2026-12-05T16:00:00.000Z`).
#[cfg(feature = "guest")]
pub fn rfc3339(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(at).to_string()
}

#[cfg(feature = "guest")]
impl From<&crate::Message> for MessagePayload {
    /// The payload of a message a channel delivers.
    fn from(message: &crate::Message) -> Self {
        let (content, content_encoding) = Self::encode_content(&message.content);
        Self {
            id: message.id.clone(),
            sender_id: message.sender_id.clone(),
            recipient_id: message.recipient_id.clone(),
            content,
            content_encoding,
            content_type: message.content_type.clone(),
            metadata: message.metadata.iter().cloned().collect(),
            created_at: rfc3339(message.created_at_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(content: &[u8]) -> MessagePayload {
        let (content, content_encoding) = MessagePayload::encode_content(content);
        MessagePayload {
            id: "msg_1".into(),
            sender_id: "usr_a".into(),
            recipient_id: "usr_b".into(),
            content,
            content_encoding,
            content_type: "text/plain".into(),
            metadata: BTreeMap::from([("subject".into(), "hi".into())]),
            created_at: "1970-01-01T00:00:00.042Z".into(),
        }
    }

    #[test]
    fn text_travels_as_itself_without_an_encoding() {
        let json = serde_json::to_value(payload(b"hello")).unwrap();
        assert_eq!(json["content"], "hello");
        assert_eq!(json.get("content_encoding"), None);
        assert_eq!(payload(b"hello").content_bytes().unwrap(), b"hello");
    }

    #[test]
    fn binary_content_travels_as_base64_and_comes_back() {
        let binary = payload(&[0xff, 0x00]);
        let json = serde_json::to_value(&binary).unwrap();
        assert_eq!(json["content"], "/wA=");
        assert_eq!(json["content_encoding"], "base64");
        let back: MessagePayload = serde_json::from_value(json).unwrap();
        assert_eq!(back, binary);
        assert_eq!(back.content_bytes().unwrap(), [0xff, 0x00]);
    }

    #[cfg(feature = "guest")]
    #[test]
    fn a_delivered_message_becomes_its_payload() {
        let message = crate::Message {
            id: "msg_1".into(),
            tenant_id: "ten_1".into(),
            sender_id: "usr_a".into(),
            recipient_id: "usr_b".into(),
            content: b"hello".to_vec(),
            content_type: "text/plain".into(),
            metadata: vec![("subject".into(), "hi".into())],
            requested: crate::RequestedTime::Unspecified,
            created_at_ms: 42,
        };
        assert_eq!(MessagePayload::from(&message), payload(b"hello"));
    }
}
