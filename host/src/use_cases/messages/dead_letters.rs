//! Dead letters: messages the delay policy gave up on, or that failed permanently. Admins list
//! them, replay them (one, or many paced over time so a recovered receiver is not flooded),
//! or delete them.

use super::manage::index;
use super::{Error, Messages};

use crate::domain::ids::{MessageId, UserId};
use crate::domain::message::{Channel, Event, Message, Status};
use crate::domain::user::User;
use crate::store::{Change, Mailbox, MessageQuery, Page};

/// The most dead letters one bulk replay takes.
pub const MAX_BULK: u32 = 10_000;

/// Which dead letters a bulk replay takes.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Only those for this recipient.
    #[serde(default)]
    pub recipient_id: Option<UserId>,
    /// Only those of this channel.
    #[serde(default)]
    pub channel: Option<Channel>,
    /// At most this many (default 1000).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 10_000)]
    pub limit: Option<u32>,
}

/// What a bulk replay did.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Replayed {
    /// How many messages were replayed.
    pub replayed: u64,
    /// When the last of them is due.
    pub last_due_at: Option<String>,
}

async fn replay_at(ctx: &Messages, message: &Message, at: u64) -> Result<Message, Error> {
    let mut change = Change::new(&[Status::Dead], Status::Scheduled);
    change.deliver_at_ms = Some(at);
    change.reset_attempts = true;
    change.events = vec![Event::host_decision(
        ctx.clock.now_ms(),
        None,
        "replayed from the dead letters",
    )];
    let changed = ctx
        .store
        .transition(&message.tenant_id, &message.id, &change, ctx.clock.now_ms())
        .await?
        .ok_or(Error::NotFound)?;
    super::manage::index_callbacks(ctx, &changed.callbacks).await;
    index(ctx, &changed.message).await;
    Ok(changed.message)
}

/// A page of the tenant's dead letters, newest first: only `recipient`'s when given, starting
/// after `before` (a cursor).
pub async fn list(
    ctx: &Messages,
    admin: &User,
    recipient: Option<UserId>,
    page: Page,
    before: Option<MessageId>,
) -> Result<Vec<Message>, Error> {
    let query = MessageQuery {
        mailbox: Mailbox::All,
        status: Some(Status::Dead),
        limit: page.limit,
        offset: page.offset,
        before,
        since: None,
        recipient,
    };
    Ok(ctx.store.list_messages(&admin.tenant_id, &query).await?)
}

/// Replays one dead letter now.
pub async fn replay(ctx: &Messages, admin: &User, id: &MessageId) -> Result<Message, Error> {
    let message = ctx
        .store
        .message(&admin.tenant_id, id)
        .await?
        .filter(|message| message.status == Status::Dead)
        .ok_or(Error::NotFound)?;
    replay_at(ctx, &message, ctx.clock.now_ms()).await
}

/// Replays the dead letters matching `filter`, spaced at `per_second`.
pub async fn replay_many(
    ctx: &Messages,
    admin: &User,
    filter: &Filter,
    per_second: u32,
) -> Result<Replayed, Error> {
    let limit = filter.limit.unwrap_or(1000);
    if !(1..=MAX_BULK).contains(&limit) {
        return Err(Error::Invalid {
            field: "/limit".into(),
            reason: format!("limit must be between 1 and {MAX_BULK}"),
        });
    }
    let spacing_ms = 1000 / u64::from(per_second.max(1));
    let start = ctx.clock.now_ms();
    let mut replayed = 0u64;
    let mut last_due = None;
    let mut before = None;
    'pages: loop {
        let page = ctx
            .store
            .list_messages(
                &admin.tenant_id,
                &MessageQuery {
                    mailbox: Mailbox::All,
                    status: Some(Status::Dead),
                    limit: 500,
                    offset: 0,
                    before: before.clone(),
                    since: None,
                    recipient: filter.recipient_id.clone(),
                },
            )
            .await?;
        let Some(last) = page.last() else { break };
        before = Some(last.id.clone());
        for message in &page {
            let matches = filter
                .recipient_id
                .as_ref()
                .is_none_or(|id| &message.recipient_id == id)
                && filter
                    .channel
                    .is_none_or(|channel| message.channel == channel);
            if !matches {
                continue;
            }
            let at = start + replayed * spacing_ms;
            replay_at(ctx, message, at).await?;
            last_due = Some(at);
            replayed += 1;
            if replayed >= u64::from(limit) {
                break 'pages;
            }
        }
    }
    Ok(Replayed {
        replayed,
        last_due_at: last_due.map(crate::clock::rfc3339),
    })
}

/// Deletes a dead letter and its history.
pub async fn delete(ctx: &Messages, admin: &User, id: &MessageId) -> Result<(), Error> {
    if ctx
        .store
        .delete_message(&admin.tenant_id, id, Status::Dead)
        .await?
    {
        Ok(())
    } else {
        Err(Error::NotFound)
    }
}
