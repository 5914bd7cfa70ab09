//! Messages, their status and their history, as the API shows them.

use dms_plugin_sdk::payload::MessagePayload;
use serde::Serialize;

use crate::clock::rfc3339;
use crate::domain::ids::{FanOutId, MessageId, ScheduleId};
use crate::domain::message::{Channel, Event, EventKind, Message, MessageState, PluginRef, Status};

/// A message: what the sender wrote and who it is between (the payload that the inbox event and
/// the webhook body carry too, `MessagePayload` of the plugin SDK), and where it stands.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MessageView {
    #[serde(flatten)]
    pub(crate) message: MessagePayload,
    /// The channel that delivers it.
    pub(crate) channel: Channel,
    /// Its own flow-control key, when the sender gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) flow_key: Option<String>,
    pub(crate) status: Status,
    /// When it is (or was) due: the time planned for the next delivery attempt.
    #[schema(format = DateTime)]
    pub(crate) deliver_at: String,
    /// Delivery attempts made so far.
    pub(crate) attempts: u32,
    /// What the channel reported when the last attempt failed.
    pub(crate) last_error: Option<String>,
    /// When it was delivered.
    #[schema(format = DateTime)]
    pub(crate) delivered_at: Option<String>,
    /// When its recipient read it.
    #[schema(format = DateTime)]
    pub(crate) read_at: Option<String>,
    /// The fan-out that created it, when it was sent to a group (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) fan_out_id: Option<FanOutId>,
    /// The schedule occurrence it was created for (`GET /messages/{id}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) schedule: Option<OccurrenceView>,
}

/// The schedule occurrence a message was created for.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OccurrenceView {
    /// The schedule.
    pub(crate) schedule_id: ScheduleId,
    /// The occurrence's time.
    #[schema(format = DateTime)]
    pub(crate) occurrence_at: String,
}

/// The payload of a stored message.
pub fn payload(message: &Message) -> MessagePayload {
    let (content, content_encoding) = MessagePayload::encode_content(&message.content);
    MessagePayload {
        id: message.id.to_string(),
        sender_id: message.sender_id.to_string(),
        recipient_id: message.recipient_id.to_string(),
        content,
        content_encoding,
        content_type: message.content_type.clone(),
        metadata: message.metadata.clone(),
        created_at: rfc3339(message.created_at_ms),
    }
}

impl From<&Message> for MessageView {
    fn from(message: &Message) -> Self {
        Self {
            message: payload(message),
            channel: message.channel,
            flow_key: message.flow_key.clone(),
            status: message.status,
            deliver_at: rfc3339(message.deliver_at_ms),
            attempts: message.attempts,
            last_error: message.last_error.clone(),
            delivered_at: message.delivered_at_ms.map(rfc3339),
            read_at: message.read_at_ms.map(rfc3339),
            fan_out_id: message.fan_out_id.clone(),
            schedule: None,
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
    #[schema(nullable = false)]
    pub(crate) from: Option<Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) to: Option<Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) attempt: Option<u32>,
    pub(crate) result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) duration_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
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
