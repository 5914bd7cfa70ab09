//! A user's webhook endpoint: where the `webhook` channel delivers their messages, and the
//! Standard Webhooks secrets it signs with. A secret is shown once, when it is made; rotating
//! adds a new secret and keeps the old one signing for 24 hours, so a receiver can switch
//! without missing a delivery.

use base64::Engine as _;

use super::Error;
use crate::app::AppState;
use crate::domain::user::User;

/// How long a replaced secret keeps signing after a rotation.
pub const ROTATION_OVERLAP_MS: u64 = 24 * 3_600_000;
/// The longest endpoint URL.
const MAX_URL: usize = 2048;

/// A new `whsec_` secret: 24 random bytes, base64.
pub fn new_secret() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(crate::auth::random_bytes::<24>())
    )
}

/// Checks an endpoint URL: absolute http(s) with a host. Whether its address may be reached is
/// decided at every delivery, where DNS answers cannot be swapped in between.
pub fn check_url(text: &str) -> Result<(), Error> {
    let invalid = |reason: &str| Error::Invalid {
        field: "/url",
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
    if url.host().is_none() {
        return Err(invalid("the URL has no host"));
    }
    Ok(())
}

/// Sets the caller's endpoint and returns its new secret.
pub async fn set(app: &AppState, caller: &User, url: &str) -> Result<String, Error> {
    check_url(url)?;
    let secret = new_secret();
    app.store
        .set_webhook(
            &caller.tenant_id,
            &caller.id,
            url,
            &secret,
            app.clock.now_ms(),
        )
        .await?;
    Ok(secret)
}

/// Adds a new secret; the current ones sign until the returned time.
pub async fn rotate(app: &AppState, caller: &User) -> Result<(String, u64), Error> {
    let secret = new_secret();
    let now = app.clock.now_ms();
    let until = now + ROTATION_OVERLAP_MS;
    if app
        .store
        .add_webhook_secret(&caller.tenant_id, &caller.id, &secret, now, until)
        .await?
    {
        Ok((secret, until))
    } else {
        Err(Error::NotFound)
    }
}
