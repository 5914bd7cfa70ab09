//! What people do to a message after submitting it: read it, cancel it, reschedule it, have it
//! delivered now, mark it read — and who may see it at all.
//!
//! Visibility: the sender and the tenant's admins see a message from the start; its recipient
//! sees it once it is delivered (a scheduled message is a surprise until then). Anyone else,
//! including every other tenant, gets "not found".

use super::{Error, Messages};

use crate::domain::ids::{MessageId, UserId};
use crate::domain::message::{Event, Message, MessageState, Requested, Status};
use crate::domain::user::{Role, User};
use crate::store::{Change, Mailbox, MessageQuery, Page};

/// Whether `caller` may see the message in `state` (the one visibility rule).
fn sees(caller: &User, state: &MessageState) -> bool {
    let delivered = matches!(state.status, Status::Delivered | Status::Read);
    caller.role == Role::Admin
        || state.sender_id == caller.id
        || (state.recipient_id == caller.id && delivered)
}

/// The message, content opened, if `caller` may see it.
pub async fn visible(ctx: &Messages, caller: &User, id: &MessageId) -> Result<Message, Error> {
    let message = ctx
        .store
        .message(&caller.tenant_id, id)
        .await?
        .ok_or(Error::NotFound)?;
    if sees(caller, &MessageState::from(&message)) {
        Ok(message)
    } else {
        Err(Error::NotFound)
    }
}

/// Where the message is, if `caller` may see it; its content is not read.
pub async fn visible_state(
    ctx: &Messages,
    caller: &User,
    id: &MessageId,
) -> Result<MessageState, Error> {
    let state = ctx
        .store
        .message_state(&caller.tenant_id, id)
        .await?
        .filter(|state| sees(caller, state))
        .ok_or(Error::NotFound)?;
    Ok(state)
}

/// Which of the caller's messages a listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BoxName {
    /// The messages they sent.
    Sent,
    /// The messages they received (delivered ones only are visible; see `sees`).
    Received,
    /// The whole tenant's (admins only).
    All,
}

/// What a listing narrows to, besides its box. Every part keeps the listing a range of one
/// index: the recipient is a column of `messages_received`, and creation times are bounds on
/// the ids (which begin with their creation time).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only messages with this status.
    pub status: Option<Status>,
    /// Only messages to this recipient.
    pub recipient: Option<UserId>,
    /// Only messages created at or after this time (Unix ms).
    pub created_from_ms: Option<u64>,
    /// Only messages created before this time (Unix ms).
    pub created_to_ms: Option<u64>,
    /// Only this message and newer ones: where a [`search`] stops.
    pub floor: Option<MessageId>,
}

/// Messages a status-filtered [`search`] walks at most for one page.
pub const SEARCH_WINDOW: u64 = 10_000;

/// A page of the messages in `caller`'s `mailbox` that match `filter`, newest first, starting
/// after `before` (a cursor).
pub async fn list(
    ctx: &Messages,
    caller: &User,
    mailbox: BoxName,
    filter: &ListFilter,
    page: Page,
    before: Option<MessageId>,
) -> Result<Vec<Message>, Error> {
    let mailbox = mailbox_of(caller, mailbox)?;
    if let (Some(from), Some(to)) = (filter.created_from_ms, filter.created_to_ms)
        && to <= from
    {
        // A period that ends before it starts holds no message.
        return Ok(Vec::new());
    }
    // "Created before `to`" is "older than the first id made at `to`": the tighter of that
    // and the cursor bounds the page.
    let before = match (before, filter.created_to_ms.map(MessageId::first_at)) {
        (Some(cursor), Some(to)) => Some(cursor.min(to)),
        (cursor, to) => cursor.or(to),
    };
    let query = MessageQuery {
        mailbox,
        status: filter.status,
        limit: page.limit,
        offset: page.offset,
        before,
        since: filter
            .created_from_ms
            .map(MessageId::first_at)
            .max(filter.floor.clone()),
        recipient: filter.recipient.clone(),
    };
    Ok(ctx.store.list_messages(&caller.tenant_id, &query).await?)
}

/// [`list`] for a person paging through a listing filtered by status: each page walks at most
/// [`SEARCH_WINDOW`] messages from `before`, so a status that is rare among millions of
/// messages costs a bounded walk per page, not one over all of them. With the page, the id the
/// search stopped at when the page is not full and older messages remain: the next page goes
/// on below it.
pub async fn search(
    ctx: &Messages,
    caller: &User,
    mailbox: BoxName,
    filter: &ListFilter,
    page: Page,
    before: Option<MessageId>,
) -> Result<(Vec<Message>, Option<MessageId>), Error> {
    if filter.status.is_none() {
        return Ok((
            list(ctx, caller, mailbox, filter, page, before).await?,
            None,
        ));
    }
    let floor = ctx
        .store
        .nth_message_id(
            &caller.tenant_id,
            &mailbox_of(caller, mailbox)?,
            before.as_ref(),
            SEARCH_WINDOW - 1,
        )
        .await?;
    let bounded = ListFilter {
        floor: floor.clone(),
        ..filter.clone()
    };
    let messages = list(ctx, caller, mailbox, &bounded, page, before).await?;
    let stopped = floor.filter(|_| messages.len() < page.limit as usize);
    Ok((messages, stopped))
}

fn mailbox_of(caller: &User, mailbox: BoxName) -> Result<Mailbox, Error> {
    match mailbox {
        BoxName::Sent => Ok(Mailbox::Sent(caller.id.clone())),
        BoxName::Received => Ok(Mailbox::Received(caller.id.clone())),
        BoxName::All if caller.role == Role::Admin => Ok(Mailbox::All),
        BoxName::All => Err(Error::AdminRequired),
    }
}

/// A message's history, oldest first: for its sender and admins (a recipient sees the message,
/// not how it was decided).
pub async fn history(ctx: &Messages, caller: &User, id: &MessageId) -> Result<Vec<Event>, Error> {
    let message = visible_state(ctx, caller, id).await?;
    if message.sender_id != caller.id && caller.role != Role::Admin {
        return Err(Error::NotFound);
    }
    Ok(ctx
        .store
        .message_events(&caller.tenant_id, &message.id)
        .await?)
}

fn require_sender_or_admin(caller: &User, message: &MessageState) -> Result<(), Error> {
    if caller.role == Role::Admin || message.sender_id == caller.id {
        Ok(())
    } else {
        Err(Error::Forbidden(
            "only the sender or an admin may change a message",
        ))
    }
}

/// Applies `change` or reports the status that prevents it.
async fn apply(ctx: &Messages, message: &MessageState, change: Change) -> Result<Message, Error> {
    let changed = ctx
        .store
        .transition(&message.tenant_id, &message.id, &change, ctx.clock.now_ms())
        .await?;
    match changed {
        Some(changed) => {
            index_callbacks(ctx, &changed.callbacks).await;
            Ok(changed.message)
        }
        None => {
            let current = ctx
                .store
                .message_state(&message.tenant_id, &message.id)
                .await?
                .ok_or(Error::NotFound)?;
            Err(Error::NotPending(current.status))
        }
    }
}

/// Cancels a message that is still waiting (sender or admin).
pub async fn cancel(ctx: &Messages, caller: &User, id: &MessageId) -> Result<Message, Error> {
    let message = visible_state(ctx, caller, id).await?;
    require_sender_or_admin(caller, &message)?;
    let cancelled = apply(
        ctx,
        &message,
        Change::new(&[Status::Scheduled, Status::Retrying], Status::Cancelled),
    )
    .await?;
    if let Err(error) = ctx.schedule.remove(&cancelled.id).await {
        // The dispatcher skips it anyway: it is no longer pending in the database.
        tracing::warn!(message = "Could not remove a cancelled message from the index.", %error);
    }
    Ok(cancelled)
}

/// Moves a waiting message to a new time, decided by the delay policy.
pub async fn reschedule(
    ctx: &Messages,
    caller: &User,
    id: &MessageId,
    requested: Requested,
) -> Result<Message, Error> {
    let message = visible(ctx, caller, id).await?;
    let state = MessageState::from(&message);
    require_sender_or_admin(caller, &state)?;
    if !message.status.is_pending() {
        return Err(Error::NotPending(message.status));
    }
    let now = ctx.clock.now_ms();
    let asked = Message {
        requested,
        created_at_ms: now,
        ..message.clone()
    };
    let hooks = ctx.policies.hooks(&message.tenant_id).await?;
    let (planned, events) = ctx.policies.plan(&hooks, &asked).await;
    let at = planned.map_err(Error::Rejected)?;
    let mut change = Change::new(&[Status::Scheduled, Status::Retrying], Status::Scheduled);
    change.deliver_at_ms = Some(at);
    change.events = events;
    let changed = apply(ctx, &state, change).await?;
    index(ctx, &changed).await;
    Ok(changed)
}

/// Makes a waiting message due now.
pub async fn deliver_now(ctx: &Messages, caller: &User, id: &MessageId) -> Result<Message, Error> {
    let message = visible_state(ctx, caller, id).await?;
    require_sender_or_admin(caller, &message)?;
    let mut change = Change::new(&[Status::Scheduled, Status::Retrying], Status::Scheduled);
    change.deliver_at_ms = Some(ctx.clock.now_ms());
    let changed = apply(ctx, &message, change).await?;
    index(ctx, &changed).await;
    Ok(changed)
}

/// The recipient marks a delivered message read. Marking it again changes nothing.
pub async fn read(ctx: &Messages, caller: &User, id: &MessageId) -> Result<Message, Error> {
    let message = visible_state(ctx, caller, id).await?;
    if message.recipient_id != caller.id {
        return Err(Error::Forbidden(
            "only the recipient may mark a message read",
        ));
    }
    if message.status == Status::Read {
        return visible(ctx, caller, id).await;
    }
    apply(
        ctx,
        &message,
        Change::new(&[Status::Delivered], Status::Read),
    )
    .await
}

/// Puts a message back in the schedule index at its due time.
/// Puts the status callbacks a change stored into the schedule index (when that fails, the
/// reconciler, or the next start's rebuild, finds them in the database).
pub(super) async fn index_callbacks(ctx: &Messages, callbacks: &[(MessageId, u64)]) {
    if callbacks.is_empty() {
        return;
    }
    if let Err(error) = ctx.schedule.add_many(callbacks).await {
        tracing::warn!(
            message = "Status callbacks stored but not yet indexed; the reconciler indexes them.",
            callbacks = callbacks.len(),
            %error,
        );
    }
}

pub(super) async fn index(ctx: &Messages, message: &Message) {
    if let Err(error) = ctx.schedule.add(&message.id, message.deliver_at_ms).await {
        tracing::warn!(
            message = "Message updated but not yet indexed; it will be indexed when the schedule is back.",
            message_id = %message.id,
            %error,
        );
    }
}
