//! `/dead-letters` (tenant admins): list, replay one, replay many (paced), delete.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, Caller};
use super::openapi::{PROBLEM, Problem};
use crate::app::AppState;
use crate::domain::ids::MessageId;
use crate::domain::message::Status;
use crate::messages::dead_letters::{self, Filter, Replayed};
use crate::messages::view::MessageView;
use crate::store::{Mailbox, MessageQuery};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct PageQuery {
    /// Page size, 1 to 100 (default 20).
    #[serde(default)]
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// Items to skip (default 0).
    #[serde(default)]
    #[param(maximum = 9_223_372_036_854_775_807_u64)]
    offset: Option<u64>,
}

/// A page of dead letters, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct DeadLetters {
    items: Vec<MessageView>,
    limit: u32,
    offset: u64,
}

/// `GET /dead-letters`, newest first.
#[utoipa::path(
    get,
    path = "/dead-letters",
    tag = "dead-letters",
    summary = "List dead letters (admin)",
    params(PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Dead letters, newest first.", body = DeadLetters),
        (status = 403, description = "`admin_required`: only an admin of the tenant may do this.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<DeadLetters>, ApiError> {
    caller.require_admin()?;
    let limit = query.limit.unwrap_or(super::users::DEFAULT_LIMIT);
    if !(1..=super::users::MAX_LIMIT).contains(&limit) {
        return Err(ApiError::query(
            "limit",
            format!("limit must be between 1 and {}", super::users::MAX_LIMIT),
        ));
    }
    let offset = super::users::offset(query.offset)?;
    let items = state
        .store
        .list_messages(
            caller.tenant(),
            &MessageQuery {
                mailbox: Mailbox::All,
                status: Some(Status::Dead),
                limit,
                offset,
                before: None,
            },
        )
        .await?;
    Ok(Json(DeadLetters {
        items: items.iter().map(MessageView::from).collect(),
        limit,
        offset,
    }))
}

/// `POST /dead-letters/{id}/replay`: scheduled again, now, with its attempts reset.
#[utoipa::path(
    post,
    path = "/dead-letters/{id}/replay",
    tag = "dead-letters",
    summary = "Replay a dead letter (admin)",
    description = "Schedules it again, now, with its attempts reset.",
    params(("id" = MessageId, Path, description = "A dead message of the tenant.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Scheduled again.", body = MessageView),
        (status = 403, description = "`admin_required`: only an admin of the tenant may do this.", body = Problem, content_type = PROBLEM),
        (status = 404, description = "`not_found`: no such dead letter in your tenant.", body = Problem, content_type = PROBLEM),
        (status = 409, description = "`conflict`: the message is not dead.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn replay(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<MessageView>, ApiError> {
    caller.require_admin()?;
    let message = dead_letters::replay(&state, &caller.user, &id).await?;
    Ok(Json(MessageView::from(&message)))
}

/// `POST /dead-letters/replay`: replays those matching the filter, spread over time.
#[utoipa::path(
    post,
    path = "/dead-letters/replay",
    tag = "dead-letters",
    summary = "Replay many dead letters (admin)",
    description = "Replays the dead letters matching the filter, spread over time (the operator's replay rate).",
    request_body = Filter,
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Scheduled again.", body = Replayed),
        (status = 403, description = "`admin_required`: only an admin of the tenant may do this.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn replay_many(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(filter): ApiJson<Filter>,
) -> Result<(StatusCode, Json<Replayed>), ApiError> {
    caller.require_admin()?;
    let replayed = dead_letters::replay_many(
        &state,
        &caller.user,
        &filter,
        state.config.replay_per_second,
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(replayed)))
}

/// `DELETE /dead-letters/{id}`.
#[utoipa::path(
    delete,
    path = "/dead-letters/{id}",
    tag = "dead-letters",
    summary = "Delete a dead letter (admin)",
    params(("id" = MessageId, Path, description = "A dead message of the tenant.")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted."),
        (status = 403, description = "`admin_required`: only an admin of the tenant may do this.", body = Problem, content_type = PROBLEM),
        (status = 404, description = "`not_found`: no such dead letter in your tenant.", body = Problem, content_type = PROBLEM),
        (status = 409, description = "`conflict`: the message is not dead.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    dead_letters::delete(&state, &caller.user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
