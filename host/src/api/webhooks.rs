//! `/users/me/webhook`: the caller's webhook endpoint for the `webhook` channel.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::{ApiJson, Caller};
use crate::app::AppState;
use crate::clock::rfc3339;
use crate::messages::{self, endpoint};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SetWebhook {
    url: String,
}

/// `GET /users/me/webhook`: the endpoint, without its secrets.
pub(super) async fn get(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let webhook = state
        .store
        .webhook(caller.tenant(), &caller.user.id, state.clock.now_ms())
        .await?
        .ok_or_else(|| ApiError::not_found("webhook"))?;
    Ok(Json(json!({
        "url": webhook.url,
        "created_at": rfc3339(webhook.created_at_ms),
        "active_secrets": webhook.secrets.len(),
        "disabled_reason": webhook.disabled,
    })))
}

/// `PUT /users/me/webhook`: sets the endpoint and returns its new secret, once.
pub(super) async fn set(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<SetWebhook>,
) -> Result<Json<Value>, ApiError> {
    let secret = endpoint::set(&state, &caller.user, &body.url).await?;
    Ok(Json(json!({
        "url": body.url,
        "secret": secret,
        "created_at": rfc3339(state.clock.now_ms()),
    })))
}

/// `POST /users/me/webhook/rotate`: a new secret; the old ones sign for 24 more hours.
pub(super) async fn rotate(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let (secret, until) =
        endpoint::rotate(&state, &caller.user)
            .await
            .map_err(|error| match error {
                messages::Error::NotFound => ApiError::not_found("webhook"),
                other => other.into(),
            })?;
    Ok(Json(json!({
        "secret": secret,
        "previous_secrets_valid_until": rfc3339(until),
    })))
}

/// `DELETE /users/me/webhook`.
pub(super) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    if state
        .store
        .delete_webhook(caller.tenant(), &caller.user.id)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("webhook"))
    }
}
