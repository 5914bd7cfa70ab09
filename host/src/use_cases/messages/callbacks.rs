//! A sender's status callback endpoint: where DMS tells them of the statuses of the messages
//! they send, and the Standard Webhooks secrets it signs with. The same rules as the webhook
//! endpoint ([`super::endpoint`]): the URL checks, a secret shown once, a rotation that keeps
//! the old secrets signing for 24 hours. The callbacks themselves are made by the store, in
//! the transaction of each status change (see [`crate::domain::callback`]).

use super::endpoint::{ROTATION_OVERLAP_MS, check_url, new_secret};
use super::{Error, Messages};

use crate::domain::callback::CallbackEvent;
use crate::domain::user::User;
use crate::store::{Callback, NewCallback};

/// Reads the chosen events: at least one, each a known name (a repeated one counts once).
pub fn parse_events(names: &[String]) -> Result<Vec<CallbackEvent>, Error> {
    if names.is_empty() {
        return Err(Error::Invalid {
            field: "/events".into(),
            reason: format!(
                "choose at least one event of {}",
                CallbackEvent::ALL.map(CallbackEvent::as_str).join(", ")
            ),
        });
    }
    let mut events = Vec::with_capacity(names.len());
    for (index, name) in names.iter().enumerate() {
        let event: CallbackEvent = name.parse().map_err(|reason| Error::Invalid {
            field: format!("/events/{index}").into(),
            reason,
        })?;
        if !events.contains(&event) {
            events.push(event);
        }
    }
    Ok(events)
}

/// Sets the caller's callback endpoint and returns it with its new secret.
pub async fn set(
    ctx: &Messages,
    caller: &User,
    url: &str,
    events: &[String],
) -> Result<(Vec<CallbackEvent>, String), Error> {
    check_url(url, ctx.allow_private_networks)?;
    let events = parse_events(events)?;
    let secret = new_secret();
    ctx.store
        .set_callback(NewCallback {
            tenant_id: &caller.tenant_id,
            user_id: &caller.id,
            url,
            events: &events,
            secret: &secret,
            now_ms: ctx.clock.now_ms(),
        })
        .await?;
    Ok((events, secret))
}

/// The caller's callback endpoint ([`Error::NotFound`] when they have none).
pub async fn get(ctx: &Messages, caller: &User) -> Result<Callback, Error> {
    ctx.store
        .callback(&caller.tenant_id, &caller.id, ctx.clock.now_ms())
        .await?
        .ok_or(Error::NotFound)
}

/// Removes the caller's callback endpoint ([`Error::NotFound`] when they have none): later
/// status changes make no callback, and callbacks still waiting go dead at their attempt.
pub async fn delete(ctx: &Messages, caller: &User) -> Result<(), Error> {
    if ctx
        .store
        .delete_callback(&caller.tenant_id, &caller.id)
        .await?
    {
        Ok(())
    } else {
        Err(Error::NotFound)
    }
}

/// Adds a new secret; the current ones sign until the returned time.
pub async fn rotate(ctx: &Messages, caller: &User) -> Result<(String, u64), Error> {
    let secret = new_secret();
    let now = ctx.clock.now_ms();
    let until = now + ROTATION_OVERLAP_MS;
    if ctx
        .store
        .add_callback_secret(&caller.tenant_id, &caller.id, &secret, now, until)
        .await?
    {
        Ok((secret, until))
    } else {
        Err(Error::NotFound)
    }
}
