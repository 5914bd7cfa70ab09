//! `/dead-letters` (tenant admins): list, replay one, replay many (paced), delete.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, Caller};
use crate::app::AppState;
use crate::domain::message::Status;
use crate::messages::dead_letters::{self, Filter, Replayed};
use crate::messages::view::MessageView;
use crate::store::{Mailbox, MessageQuery};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PageQuery {
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    offset: Option<u64>,
}

#[derive(Debug, Serialize)]
pub(super) struct DeadLetters {
    items: Vec<MessageView>,
    limit: u32,
    offset: u64,
}

/// `GET /dead-letters`, newest first.
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
    let offset = query.offset.unwrap_or(0);
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
pub(super) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    dead_letters::delete(&state, &caller.user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
