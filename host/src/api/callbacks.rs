//! `/users/me/callbacks`: the caller's status callback endpoint, told of the statuses of the
//! messages they send.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::{ApiJson, Caller};
use super::openapi::{PROBLEM, Problem};
use crate::clock::rfc3339;
use crate::domain::callback::CallbackEvent;
use crate::state::AppState;
use crate::use_cases::messages::{self, callbacks};

/// The endpoint to tell, and of what.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SetCallbacks {
    /// An `https` URL (or `http` where the operator allows it) on a public address.
    #[schema(example = "https://example.com/dms-callbacks")]
    url: String,
    /// The statuses of your messages to be told of: `delivered`, `retrying`, `dead`, `read`,
    /// `cancelled` (at least one).
    #[schema(example = json!(["delivered", "dead"]))]
    events: Vec<String>,
}

/// The endpoint, as `GET /users/me/callbacks` shows it: without its secrets.
#[derive(Serialize, ToSchema)]
pub(super) struct Callbacks {
    /// Where callbacks are POSTed.
    #[schema(example = "https://example.com/dms-callbacks")]
    url: String,
    /// The statuses that make a callback.
    #[schema(example = json!(["delivered", "dead"]))]
    events: Vec<&'static str>,
    /// When it was set.
    #[schema(format = DateTime)]
    created_at: String,
    /// Secrets that sign callbacks now: more than one for 24 hours after a rotation.
    active_secrets: usize,
}

/// The endpoint and its new secret, shown once.
#[derive(Serialize, ToSchema)]
pub(super) struct CallbacksSet {
    /// Where callbacks are POSTed.
    #[schema(example = "https://example.com/dms-callbacks")]
    url: String,
    /// The statuses that make a callback.
    #[schema(example = json!(["delivered", "dead"]))]
    events: Vec<&'static str>,
    /// The signing secret (`whsec_…`, Standard Webhooks); it is not shown again.
    secret: String,
    /// When it was set.
    #[schema(format = DateTime)]
    created_at: String,
}

/// A new secret, shown once.
#[derive(Serialize, ToSchema)]
pub(super) struct CallbacksRotated {
    /// The new signing secret; it is not shown again.
    secret: String,
    /// Until when the previous secrets still sign callbacks.
    #[schema(format = DateTime)]
    previous_secrets_valid_until: String,
}

fn names(events: &[CallbackEvent]) -> Vec<&'static str> {
    events.iter().map(|event| event.as_str()).collect()
}

/// `GET /users/me/callbacks`: the endpoint, without its secrets.
#[utoipa::path(
    get,
    path = "/users/me/callbacks",
    tag = "callbacks",
    summary = "The caller's status callback endpoint",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The endpoint, without its secrets.", body = Callbacks),
        (status = 404, description = "`not_found`: you have no callback endpoint.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn get(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Callbacks>, ApiError> {
    let callback = callbacks::get(&state.messages, &caller.user)
        .await
        .map_err(about_the_callbacks)?;
    Ok(Json(Callbacks {
        url: callback.url,
        events: names(&callback.events),
        created_at: rfc3339(callback.created_at_ms),
        active_secrets: callback.secrets.len(),
    }))
}

/// `PUT /users/me/callbacks`: sets the endpoint and returns its new secret, once.
#[utoipa::path(
    put,
    path = "/users/me/callbacks",
    tag = "callbacks",
    summary = "Set the caller's status callback endpoint",
    description = "From now on, each change of a message you send to one of `events` POSTs a callback (`{\"type\": \"message.<status>\", \"timestamp\", \"data\": CallbackData}`, signed per Standard Webhooks with this endpoint's own secret) to `url`, delivered and retried like a webhook message. Returns the new signing secret, once. The URL must not point at a private address unless the operator allows it; an unknown event names `/events/N` (`invalid_field`).",
    request_body = SetCallbacks,
    security(("bearer" = [])),
    responses((status = 200, description = "Set; the secret is shown once.", body = CallbacksSet)),
)]
pub(super) async fn set(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<SetCallbacks>,
) -> Result<Json<CallbacksSet>, ApiError> {
    let (events, secret) =
        callbacks::set(&state.messages, &caller.user, &body.url, &body.events).await?;
    Ok(Json(CallbacksSet {
        url: body.url,
        events: names(&events),
        secret,
        created_at: rfc3339(state.clock.now_ms()),
    }))
}

/// `POST /users/me/callbacks/rotate`: a new secret; the old ones sign for 24 more hours.
#[utoipa::path(
    post,
    path = "/users/me/callbacks/rotate",
    tag = "callbacks",
    summary = "Rotate the callback secret",
    description = "A new signing secret; the old ones keep signing for 24 more hours.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The new secret, shown once.", body = CallbacksRotated),
        (status = 404, description = "`not_found`: you have no callback endpoint.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn rotate(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<CallbacksRotated>, ApiError> {
    let (secret, until) = callbacks::rotate(&state.messages, &caller.user)
        .await
        .map_err(about_the_callbacks)?;
    Ok(Json(CallbacksRotated {
        secret,
        previous_secrets_valid_until: rfc3339(until),
    }))
}

/// `DELETE /users/me/callbacks`.
#[utoipa::path(
    delete,
    path = "/users/me/callbacks",
    tag = "callbacks",
    summary = "Remove the caller's status callback endpoint",
    description = "Later status changes make no callback; callbacks not delivered yet are dead-lettered at their next attempt.",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Removed."),
        (status = 404, description = "`not_found`: you have no callback endpoint.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    callbacks::delete(&state.messages, &caller.user)
        .await
        .map_err(about_the_callbacks)?;
    Ok(StatusCode::NO_CONTENT)
}

/// A callbacks use case's error: "not found" is about the caller's callback endpoint.
fn about_the_callbacks(error: messages::Error) -> ApiError {
    match error {
        messages::Error::NotFound => ApiError::not_found("callback endpoint"),
        other => other.into(),
    }
}
