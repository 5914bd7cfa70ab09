//! Submitting a message: validate the request, run the tenant's validators and delay policy,
//! store the message (the commit point: a 201 means the row is committed), then index it.
//!
//! If the schedule index is unavailable (Redis down) after the commit, the message is still
//! accepted: the dispatcher rebuilds the index from the database when Redis returns, and the
//! periodic reconciler catches anything else. Nothing is ever half-written.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::Error;
use super::view::MessageView;
use crate::app::AppState;
use crate::clock::parse_rfc3339;
use crate::domain::ids::{MessageId, UserId};
use crate::domain::message::{Channel, Event, Message, Requested, Status};
use crate::domain::user::User;
use crate::store::{IDEMPOTENCY_TTL_MS, Idempotency, NewMessage, StoreError};

/// The most metadata a message may carry: keys and values together, in bytes.
pub const MAX_METADATA_BYTES: usize = 16 << 10;
/// The longest metadata key.
const MAX_METADATA_KEY: usize = 128;
/// The longest `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// A message as submitted (`POST /messages`).
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Submission {
    /// The recipient, a user of the sender's tenant.
    #[schema(value_type = UserId)]
    pub recipient_id: String,
    /// The content (text).
    pub content: String,
    /// Its media type (default `text/plain`).
    #[serde(default)]
    pub content_type: Option<String>,
    /// Deliver this many seconds from now (ending by 9999-12-31T23:59:59.999Z).
    #[serde(default)]
    pub delay_seconds: Option<u64>,
    /// Deliver at this time (RFC 3339, up to 9999-12-31T23:59:59.999Z).
    #[serde(default)]
    #[schema(format = DateTime)]
    pub deliver_at: Option<String>,
    /// `inbox` (default) or `webhook`.
    #[serde(default)]
    #[schema(value_type = Option<Channel>)]
    pub channel: Option<String>,
    /// Free-form string pairs, at most 16 KiB.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// What a submission produced.
#[derive(Debug, Clone)]
pub enum Submitted {
    /// A new message, and its response body.
    Created(Box<Message>, String),
    /// The body stored for an `Idempotency-Key` seen before with the same request.
    Replayed(String),
}

/// The SHA-256 of a request body in canonical form (object keys sorted), so the same request
/// with other whitespace or key order matches its idempotency key.
pub fn request_hash(body: &serde_json::Value) -> String {
    hex::encode(Sha256::digest(body.to_string().as_bytes()))
}

/// Submits a message from `sender`. `idempotency` is the key and the request's hash.
pub async fn submit(
    app: &AppState,
    sender: &User,
    submission: Submission,
    idempotency: Option<(String, String)>,
) -> Result<Submitted, Error> {
    let now = app.clock.now_ms();
    let tenant = &sender.tenant_id;
    if let Some((key, hash)) = &idempotency {
        if key.is_empty()
            || key.len() > MAX_IDEMPOTENCY_KEY
            || !key.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(Error::Invalid {
                field: "Idempotency-Key",
                reason: format!(
                    "the key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
                ),
            });
        }
        if let Some(replay) = replayed(app, sender, key, hash, now).await? {
            return Ok(replay);
        }
    }

    let mut message = draft(app, sender, submission, now).await?;
    let requested = message.requested;
    let channel = message.channel;
    // One snapshot of the tenant's hooks decides the whole submission.
    let hooks = app.policies.hooks(tenant).await?;
    let (validated, mut events) = app.policies.validate(&hooks, &message).await;
    validated.map_err(Error::Rejected)?;
    let (planned, planned_events) = app.policies.plan(&hooks, &message).await;
    events.extend(planned_events);
    message.deliver_at_ms = planned.map_err(Error::Rejected)?;
    events.push(Event::transition(
        app.clock.now_ms(),
        None,
        Status::Scheduled,
        "accepted",
    ));

    let body = serde_json::to_string(&MessageView::from(&message)).expect("a view is JSON");
    let record = idempotency.as_ref().map(|(key, hash)| Idempotency {
        user_id: sender.id.clone(),
        key: key.clone(),
        request_hash: hash.clone(),
        response: body.clone(),
    });
    let new = NewMessage {
        id: message.id.clone(),
        tenant_id: message.tenant_id.clone(),
        sender_id: message.sender_id.clone(),
        recipient_id: message.recipient_id.clone(),
        channel,
        content: message.content.clone(),
        content_type: message.content_type.clone(),
        metadata: message.metadata.clone(),
        requested,
        deliver_at_ms: message.deliver_at_ms,
        created_at_ms: now,
    };
    let stored = match app.store.insert_message(new, events, record).await {
        Ok(stored) => stored,
        // A concurrent request with the same key committed first: answer as it did.
        Err(StoreError::Conflict(_)) if idempotency.is_some() => {
            let (key, hash) = idempotency.as_ref().expect("checked");
            return replayed(app, sender, key, hash, now)
                .await?
                .ok_or_else(|| Error::Store(StoreError::Conflict("idempotency key race".into())));
        }
        Err(error) => return Err(error.into()),
    };
    if let Err(error) = app.schedule.add(&stored.id, stored.deliver_at_ms).await {
        tracing::warn!(
            message = "Message stored but not yet indexed; it will be indexed when the schedule is back.",
            message_id = %stored.id,
            %error,
        );
    }
    Ok(Submitted::Created(Box::new(stored), body))
}

/// Checks a submission and makes the message it asks for, before any plugin has seen it: the
/// first step of a submit, and the sample of a dry run.
pub async fn draft(
    app: &AppState,
    sender: &User,
    submission: Submission,
    now: u64,
) -> Result<Message, Error> {
    let tenant = &sender.tenant_id;
    let recipient: UserId = submission
        .recipient_id
        .parse()
        .map_err(|_| Error::Invalid {
            field: "/recipient_id",
            reason: format!("{:?} is not a user id", submission.recipient_id),
        })?;
    if app.store.user(tenant, &recipient).await?.is_none() {
        return Err(Error::Invalid {
            field: "/recipient_id",
            reason: "there is no such user in your tenant".into(),
        });
    }
    let requested = match (submission.delay_seconds, &submission.deliver_at) {
        (Some(_), Some(_)) => {
            return Err(Error::Invalid {
                field: "/deliver_at",
                reason: "give delay_seconds or deliver_at, not both".into(),
            });
        }
        (Some(seconds), None) => {
            let delay = seconds.saturating_mul(1000);
            crate::clock::after(now, delay).ok_or_else(|| Error::Invalid {
                field: "/delay_seconds",
                reason: format!(
                    "{seconds} seconds from now is past {}, the latest time the API can write",
                    crate::clock::rfc3339(crate::clock::LATEST_MS)
                ),
            })?;
            Requested::DelayMs(delay)
        }
        (None, Some(at)) => Requested::AtMs(parse_rfc3339(at).ok_or_else(|| Error::Invalid {
            field: "/deliver_at",
            reason: format!(
                "{at:?} is not an RFC 3339 time from 1970 to 9999 such as 2030-01-02T03:04:05Z"
            ),
        })?),
        (None, None) => Requested::Unspecified,
    };
    let channel: Channel = match &submission.channel {
        None => Channel::Inbox,
        Some(name) => name.parse().map_err(|reason| Error::Invalid {
            field: "/channel",
            reason,
        })?,
    };
    let content_type = submission
        .content_type
        .unwrap_or_else(|| "text/plain".into());
    if content_type.is_empty() || content_type.len() > 255 {
        return Err(Error::Invalid {
            field: "/content_type",
            reason: "the content type must be 1 to 255 characters".into(),
        });
    }
    // A media type has none, and PostgreSQL text cannot hold a NUL.
    if content_type.chars().any(char::is_control) {
        return Err(Error::Invalid {
            field: "/content_type",
            reason: "the content type may not contain control characters".into(),
        });
    }
    check_metadata(&submission.metadata)?;

    Ok(Message {
        id: MessageId::new(),
        tenant_id: tenant.clone(),
        sender_id: sender.id.clone(),
        recipient_id: recipient,
        channel,
        content: submission.content.into_bytes(),
        content_type,
        metadata: submission.metadata,
        requested,
        status: Status::Scheduled,
        deliver_at_ms: now,
        attempts: 0,
        last_error: None,
        created_at_ms: now,
        delivered_at_ms: None,
        read_at_ms: None,
    })
}

async fn replayed(
    app: &AppState,
    sender: &User,
    key: &str,
    hash: &str,
    now: u64,
) -> Result<Option<Submitted>, Error> {
    let since = now.saturating_sub(IDEMPOTENCY_TTL_MS);
    match app
        .store
        .idempotency(&sender.tenant_id, &sender.id, key, since)
        .await?
    {
        Some((stored_hash, response)) if stored_hash == hash => {
            Ok(Some(Submitted::Replayed(response)))
        }
        Some(_) => Err(Error::IdempotencyMismatch),
        None => Ok(None),
    }
}

fn check_metadata(metadata: &BTreeMap<String, String>) -> Result<(), Error> {
    let size: usize = metadata
        .iter()
        .map(|(key, value)| key.len() + value.len())
        .sum();
    if size > MAX_METADATA_BYTES {
        return Err(Error::Invalid {
            field: "/metadata",
            reason: format!("metadata is {size} bytes; the limit is {MAX_METADATA_BYTES}"),
        });
    }
    if let Some(key) = metadata
        .keys()
        .find(|key| key.is_empty() || key.chars().count() > MAX_METADATA_KEY)
    {
        return Err(Error::Invalid {
            field: "/metadata",
            reason: format!("metadata key {key:?} must have 1 to {MAX_METADATA_KEY} characters"),
        });
    }
    Ok(())
}
