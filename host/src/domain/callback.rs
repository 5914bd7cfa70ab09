//! Status callbacks: a sender's endpoint told of the statuses of the messages they send.
//!
//! A callback is itself a message: a `webhook` message from and to the endpoint's owner whose
//! content is the callback's whole JSON body and whose media type is [`CONTENT_TYPE`] (which
//! the API refuses on submit). The dispatcher delivers it like any webhook message, to the
//! owner's callback endpoint with the callback's own secrets, through the built-in `webhook`
//! channel, which posts such content as it is. A callback never produces a callback.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::ids::{MessageId, TenantId, UserId};
use super::message::{Channel, Message, Status};

/// The media type that marks a message as a status callback.
pub const CONTENT_TYPE: &str = "application/vnd.dms.callback+json";

/// A status a sender may be told of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallbackEvent {
    /// The channel delivered the message.
    Delivered,
    /// An attempt failed; the message waits for its retry.
    Retrying,
    /// The message was dead-lettered.
    Dead,
    /// The recipient read the message.
    Read,
    /// The message was cancelled before delivery.
    Cancelled,
}

impl CallbackEvent {
    /// Every event, in the order the API lists them.
    pub const ALL: [CallbackEvent; 5] = [
        Self::Delivered,
        Self::Retrying,
        Self::Dead,
        Self::Read,
        Self::Cancelled,
    ];

    /// The event's name: the status it follows.
    pub fn as_str(self) -> &'static str {
        self.status().as_str()
    }

    /// The status that produces it.
    pub fn status(self) -> Status {
        match self {
            Self::Delivered => Status::Delivered,
            Self::Retrying => Status::Retrying,
            Self::Dead => Status::Dead,
            Self::Read => Status::Read,
            Self::Cancelled => Status::Cancelled,
        }
    }

    /// The event a change to `status` produces, if any.
    pub fn of(status: Status) -> Option<Self> {
        Self::ALL.into_iter().find(|event| event.status() == status)
    }
}

impl FromStr for CallbackEvent {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|event| event.as_str() == value)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|event| event.as_str()).collect();
                format!(
                    "unknown event {value:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// What a callback's body says about the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CallbackData {
    /// The message the callback is about.
    #[schema(example = "msg_01JEXAMPLE0000000000000000")]
    pub message_id: String,
    /// Its new status.
    #[schema(value_type = String, example = "delivered")]
    pub status: Status,
    /// Its recipient.
    pub recipient_id: String,
    /// Its channel.
    #[schema(value_type = String, example = "webhook")]
    pub channel: Channel,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// When the status changed (RFC 3339).
    #[schema(format = DateTime)]
    pub at: String,
    /// The last attempt's error, for `retrying` and `dead`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The next attempt's time, for `retrying` (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub retry_at: Option<String>,
}

/// The JSON body POSTed to a callback endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CallbackBody {
    /// `message.<status>`, for example `message.delivered`.
    #[serde(rename = "type")]
    #[schema(example = "message.delivered")]
    pub kind: String,
    /// When the callback was made (RFC 3339).
    #[schema(format = DateTime)]
    pub timestamp: String,
    /// The message and its new status.
    pub data: CallbackData,
}

/// A callback to make if the message's sender asked for `event`: stored in the same
/// transaction as the status change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The sender, whose callback endpoint is told.
    pub sender_id: UserId,
    /// The message it is about.
    pub message_id: MessageId,
    /// What happened.
    pub event: CallbackEvent,
    /// The body to POST.
    pub body: Vec<u8>,
}

/// What a change of `message` to `status` tells its sender, if the status is an event: never
/// for a callback itself.
pub fn notice(
    message: &Message,
    status: Status,
    error: Option<&str>,
    retry_at_ms: Option<u64>,
    at_ms: u64,
) -> Option<Notice> {
    if is_callback(message) {
        return None;
    }
    let event = CallbackEvent::of(status)?;
    let body = CallbackBody {
        kind: format!("message.{}", event.as_str()),
        timestamp: crate::clock::rfc3339(at_ms),
        data: CallbackData {
            message_id: message.id.to_string(),
            status,
            recipient_id: message.recipient_id.to_string(),
            channel: message.channel,
            attempts: message.attempts,
            at: crate::clock::rfc3339(at_ms),
            last_error: error.map(str::to_owned),
            retry_at: retry_at_ms.map(crate::clock::rfc3339),
        },
    };
    Some(Notice {
        tenant_id: message.tenant_id.clone(),
        sender_id: message.sender_id.clone(),
        message_id: message.id.clone(),
        event,
        body: serde_json::to_vec(&body).expect("a callback body serializes"),
    })
}

/// Whether `message` is a status callback.
pub fn is_callback(message: &Message) -> bool {
    message.channel == Channel::Webhook && message.content_type == CONTENT_TYPE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_named_after_their_statuses() {
        for event in CallbackEvent::ALL {
            assert_eq!(event.as_str().parse::<CallbackEvent>(), Ok(event));
            assert_eq!(CallbackEvent::of(event.status()), Some(event));
        }
        assert_eq!(CallbackEvent::of(Status::Scheduled), None);
        assert_eq!(CallbackEvent::of(Status::Delivering), None);
        assert!("sent".parse::<CallbackEvent>().is_err());
    }
}
