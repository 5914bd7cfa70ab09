//! What people do to a message after submitting it: read it, cancel it, reschedule it, have it
//! delivered now, mark it read — and who may see it at all.
//!
//! Visibility: the sender and the tenant's admins see a message from the start; its recipient
//! sees it once it is delivered (a scheduled message is a surprise until then). Anyone else,
//! including every other tenant, gets "not found".

use super::Error;
use crate::app::AppState;
use crate::domain::ids::MessageId;
use crate::domain::message::{Message, MessageState, Requested, Status};
use crate::domain::user::{Role, User};
use crate::store::Change;

/// Whether `caller` may see the message in `state` (the one visibility rule).
fn sees(caller: &User, state: &MessageState) -> bool {
    let delivered = matches!(state.status, Status::Delivered | Status::Read);
    caller.role == Role::Admin
        || state.sender_id == caller.id
        || (state.recipient_id == caller.id && delivered)
}

/// The message, content opened, if `caller` may see it.
pub async fn visible(app: &AppState, caller: &User, id: &str) -> Result<Message, Error> {
    let id: MessageId = id.parse().map_err(|_| Error::NotFound)?;
    let message = app
        .store
        .message(&caller.tenant_id, &id)
        .await?
        .ok_or(Error::NotFound)?;
    if sees(caller, &MessageState::from(&message)) {
        Ok(message)
    } else {
        Err(Error::NotFound)
    }
}

/// Where the message is, if `caller` may see it; its content is not read.
pub async fn visible_state(app: &AppState, caller: &User, id: &str) -> Result<MessageState, Error> {
    let id: MessageId = id.parse().map_err(|_| Error::NotFound)?;
    let state = app
        .store
        .message_state(&caller.tenant_id, &id)
        .await?
        .filter(|state| sees(caller, state))
        .ok_or(Error::NotFound)?;
    Ok(state)
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
async fn apply(app: &AppState, message: &MessageState, change: Change) -> Result<Message, Error> {
    let changed = app
        .store
        .transition(&message.tenant_id, &message.id, &change, app.clock.now_ms())
        .await?;
    match changed {
        Some(changed) => Ok(changed),
        None => {
            let current = app
                .store
                .message_state(&message.tenant_id, &message.id)
                .await?
                .ok_or(Error::NotFound)?;
            Err(Error::NotPending(current.status))
        }
    }
}

/// Cancels a message that is still waiting (sender or admin).
pub async fn cancel(app: &AppState, caller: &User, id: &str) -> Result<Message, Error> {
    let message = visible_state(app, caller, id).await?;
    require_sender_or_admin(caller, &message)?;
    let cancelled = apply(
        app,
        &message,
        Change::new(&[Status::Scheduled, Status::Retrying], Status::Cancelled),
    )
    .await?;
    if let Err(error) = app.schedule.remove(&cancelled.id).await {
        // The dispatcher skips it anyway: it is no longer pending in the database.
        tracing::warn!(message = "Could not remove a cancelled message from the index.", %error);
    }
    Ok(cancelled)
}

/// Moves a waiting message to a new time, decided by the delay policy.
pub async fn reschedule(
    app: &AppState,
    caller: &User,
    id: &str,
    requested: Requested,
) -> Result<Message, Error> {
    let message = visible(app, caller, id).await?;
    let state = MessageState::from(&message);
    require_sender_or_admin(caller, &state)?;
    if !message.status.is_pending() {
        return Err(Error::NotPending(message.status));
    }
    let now = app.clock.now_ms();
    let asked = Message {
        requested,
        created_at_ms: now,
        ..message.clone()
    };
    let hooks = app.policies.hooks(&message.tenant_id).await?;
    let (planned, events) = app.policies.plan(&hooks, &asked).await;
    let at = planned.map_err(Error::Rejected)?;
    let mut change = Change::new(&[Status::Scheduled, Status::Retrying], Status::Scheduled);
    change.deliver_at_ms = Some(at);
    change.events = events;
    let changed = apply(app, &state, change).await?;
    index(app, &changed).await;
    Ok(changed)
}

/// Makes a waiting message due now.
pub async fn deliver_now(app: &AppState, caller: &User, id: &str) -> Result<Message, Error> {
    let message = visible_state(app, caller, id).await?;
    require_sender_or_admin(caller, &message)?;
    let mut change = Change::new(&[Status::Scheduled, Status::Retrying], Status::Scheduled);
    change.deliver_at_ms = Some(app.clock.now_ms());
    let changed = apply(app, &message, change).await?;
    index(app, &changed).await;
    Ok(changed)
}

/// The recipient marks a delivered message read. Marking it again changes nothing.
pub async fn read(app: &AppState, caller: &User, id: &str) -> Result<Message, Error> {
    let message = visible_state(app, caller, id).await?;
    if message.recipient_id != caller.id {
        return Err(Error::Forbidden(
            "only the recipient may mark a message read",
        ));
    }
    if message.status == Status::Read {
        return visible(app, caller, id).await;
    }
    apply(
        app,
        &message,
        Change::new(&[Status::Delivered], Status::Read),
    )
    .await
}

/// Puts a message back in the schedule index at its due time.
pub(super) async fn index(app: &AppState, message: &Message) {
    if let Err(error) = app.schedule.add(&message.id, message.deliver_at_ms).await {
        tracing::warn!(
            message = "Message updated but not yet indexed; it will be indexed when the schedule is back.",
            message_id = %message.id,
            %error,
        );
    }
}
