//! Messages as the server sees them: their status and the one table of allowed transitions,
//! the channel they go through, and the history entries recorded for every step.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::ids::{FanOutId, MessageId, TenantId, UserId};

/// Where a message is in its life.
///
/// ```text
/// scheduled ──► delivering ──► delivered ──► read
///    ▲  │           │  ▲
///    │  │           ▼  │ (lease expired: claimed again)
///    │  │        retrying ──► … ──► dead ──(replay)──► scheduled
///    │  ▼
///    └─ cancelled   (also from retrying)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Accepted and waiting for its delivery time.
    Scheduled,
    /// A node holds a lease on it and is delivering it now.
    Delivering,
    /// The channel delivered it.
    Delivered,
    /// The recipient read it.
    Read,
    /// A delivery attempt failed; it waits for its retry time.
    Retrying,
    /// The delay policy gave up, or the channel failed permanently (dead-lettered).
    Dead,
    /// The sender (or an admin) cancelled it before delivery.
    Cancelled,
}

impl Status {
    /// Every status.
    pub const ALL: [Status; 7] = [
        Self::Scheduled,
        Self::Delivering,
        Self::Delivered,
        Self::Read,
        Self::Retrying,
        Self::Dead,
        Self::Cancelled,
    ];

    /// The status as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Delivering => "delivering",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Retrying => "retrying",
            Self::Dead => "dead",
            Self::Cancelled => "cancelled",
        }
    }

    /// The one transition table. Every status change in the server goes through a
    /// conditional update that only matches statuses from which the change is allowed here.
    pub fn can_transition_to(self, next: Status) -> bool {
        use Status::*;
        matches!(
            (self, next),
            (Scheduled, Delivering | Cancelled | Scheduled)
                | (Retrying, Delivering | Cancelled | Retrying | Scheduled)
                | (Delivering, Delivered | Retrying | Dead | Delivering)
                | (Delivered, Read)
                | (Dead, Scheduled)
        )
    }

    /// The statuses from which `next` may be reached.
    pub fn sources(next: Status) -> Vec<Status> {
        Self::ALL
            .into_iter()
            .filter(|from| from.can_transition_to(next))
            .collect()
    }

    /// Whether the message still waits for a delivery attempt (and so may be cancelled or
    /// rescheduled).
    pub fn is_pending(self) -> bool {
        matches!(self, Self::Scheduled | Self::Retrying)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == value)
            .ok_or_else(|| {
                format!("unknown status {value:?}; expected one of scheduled, delivering, delivered, read, retrying, dead, cancelled")
            })
    }
}

impl TryFrom<String> for Status {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        value.parse()
    }
}

/// The channels a message can be delivered through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// The recipient's inbox, pushed to their live connections.
    Inbox,
    /// An HTTP POST to the recipient's webhook endpoint, signed per Standard Webhooks.
    Webhook,
}

impl Channel {
    /// The channel's name, as stored and in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbox => "inbox",
            Self::Webhook => "webhook",
        }
    }
}

impl FromStr for Channel {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        match value {
            "inbox" => Ok(Self::Inbox),
            "webhook" => Ok(Self::Webhook),
            other => Err(format!(
                "unknown channel {other:?}; expected inbox or webhook"
            )),
        }
    }
}

impl TryFrom<String> for Channel {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        value.parse()
    }
}

/// What the sender asked for as the delivery time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requested {
    /// Nothing: as soon as possible.
    Unspecified,
    /// This long after creation, in ms.
    DelayMs(u64),
    /// At this Unix time, in ms.
    AtMs(u64),
}

/// A stored message, content decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its id.
    pub id: MessageId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// Who sent it.
    pub sender_id: UserId,
    /// Who it is for.
    pub recipient_id: UserId,
    /// How it is delivered.
    pub channel: Channel,
    /// The content.
    pub content: Vec<u8>,
    /// The content's media type.
    pub content_type: String,
    /// Sender-supplied metadata.
    pub metadata: BTreeMap<String, String>,
    /// What the sender asked for.
    pub requested: Requested,
    /// Its own flow key, if the sender gave one (see `domain::flow`).
    pub flow_key: Option<String>,
    /// Where it is in its life.
    pub status: Status,
    /// When it is (or was) due, Unix ms: the planned delivery, or the next retry.
    pub deliver_at_ms: u64,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// When it was accepted.
    pub created_at_ms: u64,
    /// When it was delivered.
    pub delivered_at_ms: Option<u64>,
    /// When the recipient read it.
    pub read_at_ms: Option<u64>,
    /// The fan-out that created it, when it was sent to a group.
    pub fan_out_id: Option<FanOutId>,
}

/// Where a message is: a [`Message`] without its content, for status reads (which never
/// open the sealed content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageState {
    /// Its id.
    pub id: MessageId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// Who sent it.
    pub sender_id: UserId,
    /// Who it is for.
    pub recipient_id: UserId,
    /// Where it is in its life.
    pub status: Status,
    /// When it is (or was) due, Unix ms.
    pub deliver_at_ms: u64,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// When it was delivered.
    pub delivered_at_ms: Option<u64>,
    /// When the recipient read it.
    pub read_at_ms: Option<u64>,
}

impl From<&Message> for MessageState {
    fn from(message: &Message) -> Self {
        Self {
            id: message.id.clone(),
            tenant_id: message.tenant_id.clone(),
            sender_id: message.sender_id.clone(),
            recipient_id: message.recipient_id.clone(),
            status: message.status,
            deliver_at_ms: message.deliver_at_ms,
            attempts: message.attempts,
            last_error: message.last_error.clone(),
            delivered_at_ms: message.delivered_at_ms,
            read_at_ms: message.read_at_ms,
        }
    }
}

/// What kind of step a history entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A plugin decided something (validation, the planned time, a retry time).
    Decision,
    /// A status change.
    Transition,
    /// A delivery attempt and its result.
    Attempt,
}

impl EventKind {
    /// The kind as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Decision => "decision",
            Self::Transition => "transition",
            Self::Attempt => "attempt",
        }
    }
}

impl TryFrom<String> for EventKind {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        match value.as_str() {
            "decision" => Ok(Self::Decision),
            "transition" => Ok(Self::Transition),
            "attempt" => Ok(Self::Attempt),
            other => Err(format!("unknown event kind {other:?}")),
        }
    }
}

/// The plugin that decided a step, by name and content digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PluginRef {
    /// Its name.
    pub name: String,
    /// The SHA-256 of its component.
    pub digest: String,
}

/// One entry of a message's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// When, Unix ms.
    pub at_ms: u64,
    /// What kind of step.
    pub kind: EventKind,
    /// The status before (transitions).
    pub from: Option<Status>,
    /// The status after (transitions).
    pub to: Option<Status>,
    /// The attempt number (attempts, retry decisions).
    pub attempt: Option<u32>,
    /// The result, in a word or a sentence: `accepted`, `delivered`, `retry`, `HTTP 503`, …
    /// Made by the constructors with [`crate::text::cleaned`]: it often quotes a receiver or a
    /// plugin, and must be storable and safe to show.
    pub result: String,
    /// How long the step took, in ms (plugin calls).
    pub duration_ms: Option<u64>,
    /// The plugin that decided it.
    pub plugin: Option<PluginRef>,
}

impl Event {
    /// A status change.
    pub fn transition(
        at_ms: u64,
        from: Option<Status>,
        to: Status,
        result: impl Into<String>,
    ) -> Self {
        Self {
            at_ms,
            kind: EventKind::Transition,
            from,
            to: Some(to),
            attempt: None,
            result: crate::text::cleaned(result),
            duration_ms: None,
            plugin: None,
        }
    }

    /// A decision the host made itself (a fail-safe with no plugin left to ask).
    pub fn host_decision(at_ms: u64, attempt: Option<u32>, result: impl Into<String>) -> Self {
        Self {
            at_ms,
            kind: EventKind::Decision,
            from: None,
            to: None,
            attempt,
            result: crate::text::cleaned(result),
            duration_ms: None,
            plugin: None,
        }
    }

    /// A plugin's decision or attempt.
    pub fn plugin(
        at_ms: u64,
        kind: EventKind,
        plugin: PluginRef,
        attempt: Option<u32>,
        duration_ms: u64,
        result: impl Into<String>,
    ) -> Self {
        Self {
            at_ms,
            kind,
            from: None,
            to: None,
            attempt,
            result: crate::text::cleaned(result),
            duration_ms: Some(duration_ms),
            plugin: Some(plugin),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transition_table_matches_the_lifecycle() {
        use Status::*;
        assert!(Scheduled.can_transition_to(Delivering));
        assert!(Scheduled.can_transition_to(Cancelled));
        assert!(Retrying.can_transition_to(Cancelled));
        assert!(Delivering.can_transition_to(Delivered));
        assert!(Delivering.can_transition_to(Retrying));
        assert!(Delivering.can_transition_to(Dead));
        assert!(Delivered.can_transition_to(Read));
        assert!(Dead.can_transition_to(Scheduled));
        for terminal in [Read, Cancelled] {
            assert!(
                Status::ALL
                    .iter()
                    .all(|next| !terminal.can_transition_to(*next))
            );
        }
        for done in [Delivering, Delivered, Read, Dead, Cancelled] {
            assert!(
                !done.can_transition_to(Cancelled),
                "{done} cannot be cancelled"
            );
        }
        assert!(
            !Delivered.can_transition_to(Delivered),
            "never delivered twice"
        );
        assert_eq!(Status::sources(Cancelled), vec![Scheduled, Retrying]);
    }

    #[test]
    fn statuses_and_channels_round_trip() {
        for status in Status::ALL {
            assert_eq!(status.as_str().parse::<Status>(), Ok(status));
        }
        assert_eq!("webhook".parse::<Channel>(), Ok(Channel::Webhook));
        assert!("sms".parse::<Channel>().is_err());
    }
}
