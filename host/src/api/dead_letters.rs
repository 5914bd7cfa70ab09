//! `/dead-letters` (tenant admins): list, replay one, replay many (paced), delete.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::{Admin, ApiJson, Id, NoFilter, PageParams, Paged};
use super::openapi::{PROBLEM, Problem};
use crate::domain::ids::MessageId;
use crate::state::AppState;
use crate::store::Page;
use crate::use_cases::messages::dead_letters::{self, Filter, Replayed};
use crate::use_cases::messages::view::MessageView;

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
    params(PageParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Dead letters, newest first.", body = DeadLetters),
        (status = 403, description = "`admin_required`: only an admin of the tenant may do this.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn list(
    State(state): State<AppState>,
    admin: Admin,
    Paged { page, .. }: Paged<NoFilter>,
) -> Result<Json<DeadLetters>, ApiError> {
    let items = dead_letters::list(&state.messages, &admin.user, None, page, None).await?;
    let Page { limit, offset } = page;
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
    admin: Admin,
    Id(id): Id<MessageId>,
) -> Result<Json<MessageView>, ApiError> {
    let message = dead_letters::replay(&state.messages, &admin.user, &id).await?;
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
    admin: Admin,
    ApiJson(filter): ApiJson<Filter>,
) -> Result<(StatusCode, Json<Replayed>), ApiError> {
    let replayed = dead_letters::replay_many(
        &state.messages,
        &admin.user,
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
    admin: Admin,
    Id(id): Id<MessageId>,
) -> Result<StatusCode, ApiError> {
    dead_letters::delete(&state.messages, &admin.user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
