//! Messages, their status and their history, as the API shows them.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Serialize;

use crate::clock::rfc3339;
use crate::domain::ids::{MessageId, UserId};
use crate::domain::message::{Channel, Event, EventKind, Message, MessageState, PluginRef, Status};

/// A message.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MessageView {
    pub(crate) id: MessageId,
    pub(crate) sender_id: UserId,
    pub(crate) recipient_id: UserId,
    pub(crate) channel: Channel,
    pub(crate) status: Status,
    pub(crate) content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) content_encoding: Option<&'static str>,
    pub(crate) content_type: String,
    pub(crate) metadata: BTreeMap<String, String>,
    pub(crate) deliver_at: String,
    pub(crate) created_at: String,
    pub(crate) attempts: u32,
    pub(crate) last_error: Option<String>,
    pub(crate) delivered_at: Option<String>,
    pub(crate) read_at: Option<String>,
}

impl From<&Message> for MessageView {
    fn from(message: &Message) -> Self {
        let (content, content_encoding) = match std::str::from_utf8(&message.content) {
            Ok(text) => (text.to_owned(), None),
            Err(_) => (
                base64::engine::general_purpose::STANDARD.encode(&message.content),
                Some("base64"),
            ),
        };
        Self {
            id: message.id.clone(),
            sender_id: message.sender_id.clone(),
            recipient_id: message.recipient_id.clone(),
            channel: message.channel,
            status: message.status,
            content,
            content_encoding,
            content_type: message.content_type.clone(),
            metadata: message.metadata.clone(),
            deliver_at: rfc3339(message.deliver_at_ms),
            created_at: rfc3339(message.created_at_ms),
            attempts: message.attempts,
            last_error: message.last_error.clone(),
            delivered_at: message.delivered_at_ms.map(rfc3339),
            read_at: message.read_at_ms.map(rfc3339),
        }
    }
}

/// Where a message is: `GET /messages/{id}/status`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StatusView {
    pub(crate) id: MessageId,
    pub(crate) status: Status,
    pub(crate) deliver_at: String,
    pub(crate) attempts: u32,
    pub(crate) last_error: Option<String>,
    pub(crate) delivered_at: Option<String>,
    pub(crate) read_at: Option<String>,
}

impl From<&MessageState> for StatusView {
    fn from(message: &MessageState) -> Self {
        Self {
            id: message.id.clone(),
            status: message.status,
            deliver_at: rfc3339(message.deliver_at_ms),
            attempts: message.attempts,
            last_error: message.last_error.clone(),
            delivered_at: message.delivered_at_ms.map(rfc3339),
            read_at: message.read_at_ms.map(rfc3339),
        }
    }
}

/// One history entry: `GET /messages/{id}/events`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventView {
    pub(crate) at: String,
    #[serde(rename = "type")]
    pub(crate) kind: EventKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) from: Option<Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) to: Option<Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) attempt: Option<u32>,
    pub(crate) result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) duration_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) plugin: Option<PluginRef>,
}

impl From<Event> for EventView {
    fn from(event: Event) -> Self {
        Self {
            at: rfc3339(event.at_ms),
            kind: event.kind,
            from: event.from,
            to: event.to,
            attempt: event.attempt,
            result: event.result,
            duration_ms: event.duration_ms,
            plugin: event.plugin,
        }
    }
}
