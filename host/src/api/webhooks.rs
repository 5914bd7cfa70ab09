//! `/users/me/webhook`: the caller's webhook endpoint for the `webhook` channel.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::{ApiJson, Caller};
use super::openapi::{PROBLEM, Problem};
use crate::clock::rfc3339;
use crate::state::AppState;
use crate::use_cases::messages::{self, endpoint};

/// The endpoint to deliver to.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SetWebhook {
    /// An `https` URL (or `http` where the operator allows it) on a public address.
    #[schema(example = "https://example.com/dms-webhook")]
    url: String,
}

/// The endpoint, as `GET /users/me/webhook` shows it: without its secrets.
#[derive(Serialize, ToSchema)]
pub(super) struct Webhook {
    /// Where deliveries are POSTed.
    #[schema(example = "https://example.com/dms-webhook")]
    url: String,
    /// When it was set.
    #[schema(format = DateTime)]
    created_at: String,
    /// Secrets that sign deliveries now: more than one for 24 hours after a rotation.
    active_secrets: usize,
    /// Why deliveries to it stopped, if they did.
    disabled_reason: Option<String>,
}

/// The endpoint and its new secret, shown once.
#[derive(Serialize, ToSchema)]
pub(super) struct WebhookSet {
    /// Where deliveries are POSTed.
    #[schema(example = "https://example.com/dms-webhook")]
    url: String,
    /// The signing secret (`whsec_…`, Standard Webhooks); it is not shown again.
    secret: String,
    /// When it was set.
    #[schema(format = DateTime)]
    created_at: String,
}

/// A new secret, shown once.
#[derive(Serialize, ToSchema)]
pub(super) struct WebhookRotated {
    /// The new signing secret; it is not shown again.
    secret: String,
    /// Until when the previous secrets still sign deliveries.
    #[schema(format = DateTime)]
    previous_secrets_valid_until: String,
}

/// `GET /users/me/webhook`: the endpoint, without its secrets.
#[utoipa::path(
    get,
    path = "/users/me/webhook",
    tag = "webhooks",
    summary = "The caller's webhook endpoint",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The endpoint, without its secrets.", body = Webhook),
        (status = 404, description = "`not_found`: you have no webhook endpoint.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn get(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Webhook>, ApiError> {
    let webhook = endpoint::get(&state.messages, &caller.user)
        .await
        .map_err(about_the_webhook)?;
    Ok(Json(Webhook {
        url: webhook.url,
        created_at: rfc3339(webhook.created_at_ms),
        active_secrets: webhook.secrets.len(),
        disabled_reason: webhook.disabled,
    }))
}

/// `PUT /users/me/webhook`: sets the endpoint and returns its new secret, once.
#[utoipa::path(
    put,
    path = "/users/me/webhook",
    tag = "webhooks",
    summary = "Set the caller's webhook endpoint",
    description = "Sets the endpoint and returns its new signing secret, once. The URL must not point at a private address unless the operator allows it (`invalid_field`).",
    request_body = SetWebhook,
    security(("bearer" = [])),
    responses((status = 200, description = "Set; the secret is shown once.", body = WebhookSet)),
)]
pub(super) async fn set(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<SetWebhook>,
) -> Result<Json<WebhookSet>, ApiError> {
    let secret = endpoint::set(&state.messages, &caller.user, &body.url).await?;
    Ok(Json(WebhookSet {
        url: body.url,
        secret,
        created_at: rfc3339(state.clock.now_ms()),
    }))
}

/// `POST /users/me/webhook/rotate`: a new secret; the old ones sign for 24 more hours.
#[utoipa::path(
    post,
    path = "/users/me/webhook/rotate",
    tag = "webhooks",
    summary = "Rotate the webhook secret",
    description = "A new signing secret; the old ones keep signing for 24 more hours.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The new secret, shown once.", body = WebhookRotated),
        (status = 404, description = "`not_found`: you have no webhook endpoint.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn rotate(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<WebhookRotated>, ApiError> {
    let (secret, until) = endpoint::rotate(&state.messages, &caller.user)
        .await
        .map_err(about_the_webhook)?;
    Ok(Json(WebhookRotated {
        secret,
        previous_secrets_valid_until: rfc3339(until),
    }))
}

/// `DELETE /users/me/webhook`.
#[utoipa::path(
    delete,
    path = "/users/me/webhook",
    tag = "webhooks",
    summary = "Remove the caller's webhook endpoint",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Removed."),
        (status = 404, description = "`not_found`: you have no webhook endpoint.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    endpoint::delete(&state.messages, &caller.user)
        .await
        .map_err(about_the_webhook)?;
    Ok(StatusCode::NO_CONTENT)
}

/// An endpoint use case's error: "not found" is about the caller's webhook endpoint.
fn about_the_webhook(error: messages::Error) -> ApiError {
    match error {
        messages::Error::NotFound => ApiError::not_found("webhook"),
        other => other.into(),
    }
}
