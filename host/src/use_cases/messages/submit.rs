//! Submitting messages, one (`POST /messages`) or a batch (`POST /messages/batch`): check each
//! message, run the tenant's validators and delay policy on it, commit (the commit point: a
//! 201 means the rows are committed), then index.
//!
//! Commits are grouped ([`Submitter`]): concurrent submits hand their accepted messages to
//! committer tasks, and one transaction writes whatever has gathered, then one schedule call
//! indexes it all (waking dispatchers only for a due time earlier than they wait for). A
//! request's own messages (a batch's accepted items) are committed together or not at all.
//! Nothing is read back: the answer is built from what was written.
//!
//! If the schedule index is unavailable (Redis down) after the commit, the messages are still
//! accepted: the reconciler indexes messages stored since its last look, and the dispatcher
//! rebuilds the index when Redis returns. Nothing is ever half-written.
//!
//! Traces (debug level): each message is decided in a `dms.submit` span (`message_id`,
//! `tenant_id`) around the plugins' spans, and the commit is a `dms.commit` span naming the
//! messages it writes (`message_ids`); the committer logs each group it writes.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use tracing::Instrument as _;

use super::view::MessageView;
use super::{Error, Messages};

use crate::clock::parse_rfc3339;
use crate::domain::ids::{MessageId, UserId};
use crate::domain::message::{Channel, Event, Message, Requested, Status};
use crate::domain::user::User;
use crate::policies::Hooks;
use crate::schedule::Schedule;
use crate::store::group_commit::{Commit, Committer};
use crate::store::{
    Accepted, IDEMPOTENCY_TTL_MS, Idempotency, NewMessage, Store, StoreError, Stored,
};

/// The most metadata a message may carry: keys and values together, in bytes.
pub const MAX_METADATA_BYTES: usize = 16 << 10;
/// The longest metadata key.
const MAX_METADATA_KEY: usize = 128;
/// The longest `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;
/// The most messages one `POST /messages/batch` carries.
pub const MAX_BATCH: usize = 1_000;
/// Most requests (a message, or a batch) in one transaction.
const MAX_GROUP: usize = 256;

/// A message to one recipient, as submitted (`POST /messages`, and each item of a batch).
/// `POST /messages` also takes `group_id` in place of `recipient_id` (`GroupSubmission`).
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Submission {
    /// The recipient, a user of the sender's tenant.
    #[serde(default)]
    #[schema(value_type = UserId, required = true)]
    pub recipient_id: Option<String>,
    /// A group of the sender's tenant instead of a recipient: one message to each member
    /// (`POST /messages` only; its schema is `GroupSubmission`).
    #[serde(default)]
    #[schema(ignore)]
    pub group_id: Option<String>,
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
    /// The flow-control key (1 to 128 bytes, no `*`); without one, the key is the recipient's
    /// webhook endpoint (webhook channel) or the recipient.
    #[serde(default)]
    pub flow_key: Option<String>,
}

/// A request's `Idempotency-Key` and the hash of its body.
#[derive(Debug, Clone)]
pub struct Key {
    /// The key.
    pub key: String,
    /// SHA-256 of the request body in canonical form (hex).
    pub hash: String,
}

/// What a submission produced.
#[derive(Debug, Clone)]
pub enum Submitted {
    /// Committed: the response body.
    Created(String),
    /// The body stored for an `Idempotency-Key` seen before with the same request.
    Replayed(String),
}

/// Commits accepted messages in groups and indexes them.
#[derive(Debug, Clone)]
pub struct Submitter {
    committer: Committer<Submits>,
}

impl Submitter {
    /// Starts the committer tasks (one per connection the store writes with).
    pub fn start(store: Arc<dyn Store>, schedule: Arc<dyn Schedule>) -> Self {
        let tasks = store.writers();
        Self {
            committer: Committer::start(Submits { store, schedule }, tasks, MAX_GROUP),
        }
    }

    pub(super) async fn commit(&self, accepted: Accepted) -> Result<Stored, StoreError> {
        self.committer.commit(accepted).await
    }
}

struct Submits {
    store: Arc<dyn Store>,
    schedule: Arc<dyn Schedule>,
}

#[async_trait::async_trait]
impl Commit for Submits {
    type Request = Accepted;
    type Answer = Stored;

    async fn commit(&self, requests: &[Accepted]) -> Result<Vec<Stored>, StoreError> {
        let stored = self.store.insert_messages(requests).await?;
        tracing::debug!(
            message = "Submissions committed together.",
            requests = requests.len(),
            messages = requests
                .iter()
                .map(|request| request.messages.len())
                .sum::<usize>(),
        );
        let entries: Vec<(MessageId, u64)> = requests
            .iter()
            .zip(&stored)
            .filter(|(_, stored)| **stored == Stored::Committed)
            .flat_map(|(request, _)| &request.messages)
            .map(|message| (message.id.clone(), message.deliver_at_ms))
            .collect();
        if !entries.is_empty()
            && let Err(error) = self.schedule.add_many(&entries).await
        {
            tracing::warn!(
                message = "Messages stored but not yet indexed; the reconciler indexes them.",
                messages = entries.len(),
                %error,
            );
        }
        Ok(stored)
    }
}

/// Submits a message from `sender`.
pub async fn submit(
    ctx: &Messages,
    sender: &User,
    submission: Submission,
    key: Option<Key>,
) -> Result<Submitted, Error> {
    let now = ctx.clock.now_ms();
    if let Some(key) = &key {
        check_key(&key.key)?;
        if let Some(replay) = replayed(ctx, sender, key, now).await? {
            return Ok(replay);
        }
    }
    if submission.group_id.is_some() {
        if submission.recipient_id.is_some() {
            return Err(Error::Invalid {
                field: "/group_id".into(),
                reason: "give recipient_id or group_id, not both".into(),
            });
        }
        return super::fan_out::submit_to_group(ctx, sender, submission, key, now).await;
    }
    let message = draft(ctx, sender, submission, now).await?;
    let span = submit_span(&message);
    // One snapshot of the tenant's hooks decides the whole submission.
    let hooks = ctx.policies.hooks(&sender.tenant_id).await?;
    let (view, new) = decide(ctx, &hooks, message, "accepted")
        .instrument(span.clone())
        .await?;
    let body = serde_json::to_string(&view).expect("a view is JSON");
    let accepted = Accepted {
        messages: vec![new],
        idempotency: key.as_ref().map(|key| record(sender, key, &body, now)),
        fan_out: None,
        occurrence: None,
    };
    commit(ctx, sender, key.as_ref(), accepted, body, now)
        .instrument(span)
        .await
}

/// The span of one message's submit (debug level: one per item of a batch).
fn submit_span(message: &Message) -> tracing::Span {
    tracing::debug_span!(
        "dms.submit",
        message_id = %message.id,
        tenant_id = %message.tenant_id,
    )
}

/// What became of one item of a batch: its message, or why it was refused.
pub type ItemOutcome = Result<MessageView, Error>;

/// Submits a batch from `sender`. Every item is checked first, and a malformed one refuses
/// the whole batch (its field named within the body, `/messages/3/deliver_at`). Each
/// well-formed item is then decided on its own (its recipient, the tenant's validators and
/// delay policy); the accepted ones are committed together, and `render` makes the response
/// body from every item's outcome, in order. With an `Idempotency-Key`, that body is what a
/// retry gets back. Returns the answer and how many items were accepted.
pub async fn submit_batch(
    ctx: &Messages,
    sender: &User,
    items: Vec<Submission>,
    key: Option<Key>,
    render: impl FnOnce(&[ItemOutcome]) -> String,
) -> Result<(Submitted, usize), Error> {
    let now = ctx.clock.now_ms();
    if let Some(key) = &key {
        check_key(&key.key)?;
        if let Some(replay) = replayed(ctx, sender, key, now).await? {
            return Ok((replay, 0));
        }
    }
    let drafted = items
        .into_iter()
        .enumerate()
        .map(|(index, submission)| {
            parse(sender, submission, now).map_err(|error| match error {
                Error::Invalid { field, reason } => Error::Invalid {
                    field: format!("/messages/{index}{field}").into(),
                    reason,
                },
                other => other,
            })
        })
        .collect::<Result<Vec<Message>, Error>>()?;
    // One lookup for every recipient of the batch.
    let recipients: Vec<UserId> = drafted
        .iter()
        .map(|message| message.recipient_id.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let live = ctx.store.live_users(&sender.tenant_id, &recipients).await?;
    let hooks = ctx.policies.hooks(&sender.tenant_id).await?;
    let mut outcomes = Vec::with_capacity(drafted.len());
    let mut messages = Vec::new();
    for message in drafted {
        let decided = if live.contains(&message.recipient_id) {
            let span = submit_span(&message);
            decide(ctx, &hooks, message, "accepted")
                .instrument(span)
                .await
        } else {
            Err(no_such_recipient())
        };
        outcomes.push(decided.map(|(view, new)| {
            messages.push(new);
            view
        }));
    }
    let accepted_count = messages.len();
    let body = render(&outcomes);
    if messages.is_empty() && key.is_none() {
        return Ok((Submitted::Created(body), 0));
    }
    let accepted = Accepted {
        messages,
        idempotency: key.as_ref().map(|key| record(sender, key, &body, now)),
        fan_out: None,
        occurrence: None,
    };
    let submitted = commit(ctx, sender, key.as_ref(), accepted, body, now).await?;
    let accepted_count = match submitted {
        Submitted::Created(_) => accepted_count,
        Submitted::Replayed(_) => 0,
    };
    Ok((submitted, accepted_count))
}

/// Commits `accepted`; a request that lost its idempotency key to a concurrent one answers as
/// that one did.
pub(super) async fn commit(
    ctx: &Messages,
    sender: &User,
    key: Option<&Key>,
    accepted: Accepted,
    body: String,
    now: u64,
) -> Result<Submitted, Error> {
    let span = tracing::debug_span!(
        "dms.commit",
        tenant_id = %sender.tenant_id,
        message_ids = ?accepted
            .messages
            .iter()
            .map(|message| &message.id)
            .collect::<Vec<_>>(),
    );
    let stored = ctx
        .submitter
        .commit(accepted)
        .instrument(span.clone())
        .await?;
    span.in_scope(|| tracing::debug!(message = "Submission committed.", ?stored));
    match stored {
        Stored::Committed => Ok(Submitted::Created(body)),
        Stored::OccurrenceTaken => Err(Error::Store(StoreError::Conflict(
            "a schedule occurrence without a schedule".into(),
        ))),
        Stored::KeyTaken => {
            let key = key.ok_or_else(|| {
                Error::Store(StoreError::Conflict(
                    "an idempotency key without a key".into(),
                ))
            })?;
            replayed(ctx, sender, key, now)
                .await?
                .ok_or_else(|| Error::Store(StoreError::Conflict("idempotency key race".into())))
        }
    }
}

/// The record that stores `body` under the request's key.
pub(super) fn record(sender: &User, key: &Key, body: &str, now: u64) -> Idempotency {
    Idempotency {
        tenant_id: sender.tenant_id.clone(),
        user_id: sender.id.clone(),
        key: key.key.clone(),
        request_hash: key.hash.clone(),
        response: body.to_owned(),
        created_at_ms: now,
    }
}

fn check_key(key: &str) -> Result<(), Error> {
    if key.is_empty()
        || key.len() > MAX_IDEMPOTENCY_KEY
        || !key.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(Error::Invalid {
            field: "Idempotency-Key".into(),
            reason: format!("the key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"),
        });
    }
    Ok(())
}

/// Runs the tenant's validators and delay policy on `message`: the view to answer with, and
/// the message to store with its history (each decision, then the transition to `scheduled`).
pub(super) async fn decide(
    ctx: &Messages,
    hooks: &Hooks,
    mut message: Message,
    accepted: &str,
) -> Result<(MessageView, NewMessage), Error> {
    let (validated, mut events) = ctx.policies.validate(hooks, &message).await;
    validated.map_err(Error::Rejected)?;
    let (planned, planned_events) = ctx.policies.plan(hooks, &message).await;
    events.extend(planned_events);
    message.deliver_at_ms = planned.map_err(Error::Rejected)?;
    events.push(Event::transition(
        ctx.clock.now_ms(),
        None,
        Status::Scheduled,
        accepted,
    ));
    let view = MessageView::from(&message);
    let new = NewMessage {
        id: message.id,
        tenant_id: message.tenant_id,
        sender_id: message.sender_id,
        recipient_id: message.recipient_id,
        channel: message.channel,
        content: message.content,
        content_type: message.content_type,
        metadata: message.metadata,
        requested: message.requested,
        flow_key: message.flow_key,
        deliver_at_ms: message.deliver_at_ms,
        created_at_ms: message.created_at_ms,
        history: events,
        fan_out_id: message.fan_out_id,
    };
    Ok((view, new))
}

/// Submits one occurrence of a schedule from its owner `sender`, exactly as `POST /messages`
/// would (the recipient checked, the tenant's validators and delay policy run), with `note`
/// (which names the schedule and the occurrence) as its acceptance in the history. It is
/// stored together with `claim`, only if the schedule still waits for that occurrence:
/// `None` when it no longer does (another node created it, or the schedule changed).
pub async fn submit_occurrence(
    ctx: &Messages,
    sender: &User,
    submission: Submission,
    claim: crate::store::OccurrenceClaim,
    note: &str,
) -> Result<Option<MessageView>, Error> {
    let now = ctx.clock.now_ms();
    let message = draft(ctx, sender, submission, now).await?;
    let span = submit_span(&message);
    let hooks = ctx.policies.hooks(&sender.tenant_id).await?;
    let (view, new) = decide(ctx, &hooks, message, note)
        .instrument(span.clone())
        .await?;
    let accepted = Accepted {
        messages: vec![new],
        idempotency: None,
        fan_out: None,
        occurrence: Some(claim),
    };
    match ctx.submitter.commit(accepted).instrument(span).await? {
        Stored::Committed => Ok(Some(view)),
        Stored::OccurrenceTaken | Stored::KeyTaken => Ok(None),
    }
}

fn no_such_recipient() -> Error {
    Error::Invalid {
        field: "/recipient_id".into(),
        reason: "there is no such user in your tenant".into(),
    }
}

/// Checks a submission and makes the message it asks for, before any plugin has seen it: the
/// first step of a submit, and the sample of a dry run.
pub async fn draft(
    ctx: &Messages,
    sender: &User,
    submission: Submission,
    now: u64,
) -> Result<Message, Error> {
    let message = parse(sender, submission, now)?;
    if ctx
        .store
        .user(&sender.tenant_id, &message.recipient_id)
        .await?
        .is_none()
    {
        return Err(no_such_recipient());
    }
    Ok(message)
}

/// The message a submission asks for, checked field by field (the recipient's existence
/// aside).
fn parse(sender: &User, submission: Submission, now: u64) -> Result<Message, Error> {
    if submission.group_id.is_some() {
        return Err(Error::Invalid {
            field: "/group_id".into(),
            reason: "send to a group with POST /messages, one submission at a time".into(),
        });
    }
    let Some(recipient_id) = &submission.recipient_id else {
        return Err(Error::Invalid {
            field: "/recipient_id".into(),
            reason: "give the recipient (recipient_id) or a group (group_id)".into(),
        });
    };
    let recipient: UserId = recipient_id.parse().map_err(|_| Error::Invalid {
        field: "/recipient_id".into(),
        reason: format!("{recipient_id:?} is not a user id"),
    })?;
    parse_for(sender, recipient, submission, now)
}

/// The message a submission asks for, to `recipient`, checked field by field (its recipient
/// or group aside).
pub(super) fn parse_for(
    sender: &User,
    recipient: UserId,
    submission: Submission,
    now: u64,
) -> Result<Message, Error> {
    let requested = match (submission.delay_seconds, &submission.deliver_at) {
        (Some(_), Some(_)) => {
            return Err(Error::Invalid {
                field: "/deliver_at".into(),
                reason: "give delay_seconds or deliver_at, not both".into(),
            });
        }
        (Some(seconds), None) => {
            let delay = seconds.saturating_mul(1000);
            crate::clock::after(now, delay).ok_or_else(|| Error::Invalid {
                field: "/delay_seconds".into(),
                reason: format!(
                    "{seconds} seconds from now is past {}, the latest time the API can write",
                    crate::clock::rfc3339(crate::clock::LATEST_MS)
                ),
            })?;
            Requested::DelayMs(delay)
        }
        (None, Some(at)) => Requested::AtMs(parse_rfc3339(at).ok_or_else(|| Error::Invalid {
            field: "/deliver_at".into(),
            reason: format!(
                "{at:?} is not an RFC 3339 time from 1970 to 9999 such as 2030-01-02T03:04:05Z"
            ),
        })?),
        (None, None) => Requested::Unspecified,
    };
    let channel: Channel = match &submission.channel {
        None => Channel::Inbox,
        Some(name) => name.parse().map_err(|reason| Error::Invalid {
            field: "/channel".into(),
            reason,
        })?,
    };
    let content_type = submission
        .content_type
        .unwrap_or_else(|| "text/plain".into());
    if content_type.is_empty() || content_type.len() > 255 {
        return Err(Error::Invalid {
            field: "/content_type".into(),
            reason: "the content type must be 1 to 255 characters".into(),
        });
    }
    if content_type.eq_ignore_ascii_case(crate::domain::callback::CONTENT_TYPE) {
        return Err(Error::Invalid {
            field: "/content_type".into(),
            reason: format!(
                "{} is reserved for the status callbacks DMS sends (PUT /users/me/callbacks)",
                crate::domain::callback::CONTENT_TYPE
            ),
        });
    }
    // A media type has none, and PostgreSQL text cannot hold a NUL.
    if content_type.chars().any(char::is_control) {
        return Err(Error::Invalid {
            field: "/content_type".into(),
            reason: "the content type may not contain control characters".into(),
        });
    }
    check_metadata(&submission.metadata)?;
    if let Some(key) = &submission.flow_key {
        crate::domain::flow::check_key(key, "/flow_key").map_err(|refused| Error::Invalid {
            field: refused.field.into(),
            reason: refused.reason,
        })?;
    }

    Ok(Message {
        id: MessageId::new(),
        tenant_id: sender.tenant_id.clone(),
        sender_id: sender.id.clone(),
        recipient_id: recipient,
        channel,
        content: submission.content.into_bytes(),
        content_type,
        metadata: submission.metadata,
        requested,
        flow_key: submission.flow_key,
        status: Status::Scheduled,
        deliver_at_ms: now,
        attempts: 0,
        last_error: None,
        created_at_ms: now,
        delivered_at_ms: None,
        read_at_ms: None,
        fan_out_id: None,
    })
}

pub(super) async fn replayed(
    ctx: &Messages,
    sender: &User,
    key: &Key,
    now: u64,
) -> Result<Option<Submitted>, Error> {
    let since = now.saturating_sub(IDEMPOTENCY_TTL_MS);
    match ctx
        .store
        .idempotency(&sender.tenant_id, &sender.id, &key.key, since)
        .await?
    {
        Some((stored_hash, response)) if stored_hash == key.hash => {
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
            field: "/metadata".into(),
            reason: format!("metadata is {size} bytes; the limit is {MAX_METADATA_BYTES}"),
        });
    }
    if let Some(key) = metadata
        .keys()
        .find(|key| key.is_empty() || key.chars().count() > MAX_METADATA_KEY)
    {
        return Err(Error::Invalid {
            field: "/metadata".into(),
            reason: format!("metadata key {key:?} must have 1 to {MAX_METADATA_KEY} characters"),
        });
    }
    Ok(())
}
