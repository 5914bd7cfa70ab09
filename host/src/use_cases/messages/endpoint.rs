//! A user's webhook endpoint: where the `webhook` channel delivers their messages, and the
//! Standard Webhooks secrets it signs with. A secret is shown once, when it is made; rotating
//! adds a new secret and keeps the old one signing for 24 hours, so a receiver can switch
//! without missing a delivery.

use base64::Engine as _;

use super::{Error, Messages};

use crate::domain::ids::MessageId;
use crate::domain::message::{Channel, EventKind};
use crate::domain::user::User;
use crate::store::{Mailbox, MessageQuery, Webhook};

/// How long a replaced secret keeps signing after a rotation.
pub const ROTATION_OVERLAP_MS: u64 = 24 * 3_600_000;
/// The longest endpoint URL.
const MAX_URL: usize = 2048;

/// A new `whsec_` secret: 24 random bytes, base64.
pub fn new_secret() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(crate::random::random_bytes::<24>())
    )
}

/// Checks an endpoint URL and refuses what could never be delivered to: not absolute http(s),
/// no host, a user name or password in it, port 0, or (unless private networks are allowed) a
/// host that is a loopback, private or otherwise non-public address literal, or `localhost`.
/// Names are resolved at every delivery instead, where DNS answers cannot be swapped in
/// between a check and the connection.
pub fn check_url(text: &str, allow_private: bool) -> Result<(), Error> {
    let invalid = |reason: &str| Error::Invalid {
        field: "/url".into(),
        reason: reason.to_owned(),
    };
    if text.len() > MAX_URL {
        return Err(invalid("the URL is longer than 2048 characters"));
    }
    // The parser would skip or escape them, but the URL is stored as given, and PostgreSQL
    // text cannot hold a NUL.
    if text.chars().any(char::is_control) {
        return Err(invalid("the URL may not contain control characters"));
    }
    let url = url::Url::parse(text).map_err(|error| invalid(&format!("not a URL: {error}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the URL must be http or https"));
    }
    // The parser reads `http:///x` as the host `x`: a URL as given must name its host.
    let authority = text
        .split_once("://")
        .map_or("", |(_, rest)| rest)
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    if authority.is_empty() || url.host().is_none() {
        return Err(invalid("the URL has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "the URL may not contain a user name or password; put a token in the path or query",
        ));
    }
    if url.port() == Some(0) {
        return Err(invalid("the port must be from 1 to 65535"));
    }
    if !allow_private {
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(kind) = ip.and_then(crate::sandbox::imports::http::blocked_kind) {
            return Err(invalid(&format!(
                "the host is a {kind} address, which deliveries may not reach"
            )));
        }
        let host = url.host_str().unwrap_or_default().trim_end_matches('.');
        if host.eq_ignore_ascii_case("localhost")
            || host.to_ascii_lowercase().ends_with(".localhost")
        {
            return Err(invalid(
                "the host is localhost (a loopback address), which deliveries may not reach",
            ));
        }
    }
    Ok(())
}

/// The caller's endpoint ([`Error::NotFound`] when they have none).
pub async fn get(ctx: &Messages, caller: &User) -> Result<Webhook, Error> {
    ctx.store
        .webhook(&caller.tenant_id, &caller.id, ctx.clock.now_ms())
        .await?
        .ok_or(Error::NotFound)
}

/// Removes the caller's endpoint ([`Error::NotFound`] when they have none).
pub async fn delete(ctx: &Messages, caller: &User) -> Result<(), Error> {
    if ctx
        .store
        .delete_webhook(&caller.tenant_id, &caller.id)
        .await?
    {
        Ok(())
    } else {
        Err(Error::NotFound)
    }
}

/// Sets the caller's endpoint and returns its new secret.
pub async fn set(ctx: &Messages, caller: &User, url: &str) -> Result<String, Error> {
    check_url(url, ctx.allow_private_networks)?;
    let secret = new_secret();
    ctx.store
        .set_webhook(
            &caller.tenant_id,
            &caller.id,
            url,
            &secret,
            ctx.clock.now_ms(),
        )
        .await?;
    Ok(secret)
}

/// Adds a new secret; the current ones sign until the returned time.
pub async fn rotate(ctx: &Messages, caller: &User) -> Result<(String, u64), Error> {
    let secret = new_secret();
    let now = ctx.clock.now_ms();
    let until = now + ROTATION_OVERLAP_MS;
    if ctx
        .store
        .add_webhook_secret(&caller.tenant_id, &caller.id, &secret, now, until)
        .await?
    {
        Ok((secret, until))
    } else {
        Err(Error::NotFound)
    }
}

/// The caller's most recent received messages read for [`recent_attempts`]: the bound on the
/// work behind one look (one indexed listing, then one indexed history read per webhook
/// message among them).
pub const RECENT_RECEIVED: u32 = 50;
/// The most webhook messages among those whose histories [`recent_attempts`] reads.
pub const RECENT_WEBHOOK_MESSAGES: usize = 20;

/// One delivery attempt to the caller's webhook endpoint, as its history records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookAttempt {
    /// The message delivered.
    pub message_id: MessageId,
    /// When the attempt ended, Unix ms.
    pub at_ms: u64,
    /// Its number (1 for the first delivery).
    pub attempt: Option<u32>,
    /// What happened: `delivered` (the endpoint answered 2xx), `failed, will retry: HTTP 503`, …
    pub result: String,
    /// How long the attempt took, in ms.
    pub duration_ms: Option<u64>,
}

impl WebhookAttempt {
    /// The HTTP status the endpoint answered, as far as the result says: `2xx` for a delivery,
    /// the code quoted in a failure (`HTTP 503`), or `None` when no answer came (a refused
    /// connection, a timeout).
    pub fn http_status(&self) -> Option<String> {
        if self.result == "delivered" {
            return Some("2xx".into());
        }
        let (_, after) = self.result.split_once("HTTP ")?;
        let code: String = after.chars().take_while(char::is_ascii_digit).collect();
        (code.len() == 3).then_some(code)
    }
}

/// The latest delivery attempts to the caller's endpoint, newest first, at most `limit`: the
/// attempts in the histories of the webhook messages among the caller's
/// [`RECENT_RECEIVED`] latest received messages (at most [`RECENT_WEBHOOK_MESSAGES`] of
/// them). Only the attempts are shown: a recipient sees what reached their endpoint, not how
/// the sender's plugins decided.
pub async fn recent_attempts(
    ctx: &Messages,
    caller: &User,
    limit: usize,
) -> Result<Vec<WebhookAttempt>, Error> {
    let query = MessageQuery {
        mailbox: Mailbox::Received(caller.id.clone()),
        status: None,
        limit: RECENT_RECEIVED,
        offset: 0,
        before: None,
        since: None,
        recipient: None,
    };
    let received = ctx.store.list_messages(&caller.tenant_id, &query).await?;
    let mut attempts = Vec::new();
    for message in received
        .iter()
        .filter(|message| message.channel == Channel::Webhook)
        .take(RECENT_WEBHOOK_MESSAGES)
    {
        let events = ctx
            .store
            .message_events(&caller.tenant_id, &message.id)
            .await?;
        attempts.extend(
            events
                .into_iter()
                .filter(|event| event.kind == EventKind::Attempt)
                .map(|event| WebhookAttempt {
                    message_id: message.id.clone(),
                    at_ms: event.at_ms,
                    attempt: event.attempt,
                    result: event.result,
                    duration_ms: event.duration_ms,
                }),
        );
    }
    attempts.sort_by_key(|attempt| std::cmp::Reverse(attempt.at_ms));
    attempts.truncate(limit);
    Ok(attempts)
}

#[cfg(test)]
mod tests {
    use super::WebhookAttempt;

    fn attempt(result: &str) -> WebhookAttempt {
        WebhookAttempt {
            message_id: crate::domain::ids::MessageId::new(),
            at_ms: 0,
            attempt: Some(1),
            result: result.into(),
            duration_ms: Some(3),
        }
    }

    #[test]
    fn the_http_status_is_read_from_the_result() {
        assert_eq!(attempt("delivered").http_status().as_deref(), Some("2xx"));
        assert_eq!(
            attempt("failed, will retry: HTTP 503: busy")
                .http_status()
                .as_deref(),
            Some("503")
        );
        assert_eq!(
            attempt("failed permanently: HTTP 410")
                .http_status()
                .as_deref(),
            Some("410")
        );
        assert_eq!(
            attempt("failed, will retry: connection refused").http_status(),
            None
        );
        assert_eq!(attempt("failed, will retry: HTTP 5").http_status(), None);
    }
}
