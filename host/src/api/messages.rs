//! `/messages`: submit, list, read, follow, cancel, reschedule, deliver now, mark read.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, Caller, from_json_value};
use crate::app::AppState;
use crate::clock::parse_rfc3339;
use crate::domain::ids::MessageId;
use crate::domain::message::{Requested, Status};
use crate::domain::user::Role;
use crate::messages::submit::{Submission, Submitted, request_hash};
use crate::messages::view::{EventView, MessageView, StatusView};
use crate::messages::{self, manage};
use crate::store::{Mailbox, MessageQuery};

const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// `POST /messages`.
pub(super) async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Response, ApiError> {
    let key = match headers.get(IDEMPOTENCY_KEY) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| {
                    ApiError::field(
                        "Idempotency-Key",
                        "Idempotency-Key: the key must be visible ASCII",
                    )
                })?
                .to_owned(),
        ),
    };
    let hash = request_hash(&body);
    let submission: Submission = from_json_value(body)?;
    let submitted =
        messages::submit::submit(&state, &caller.user, submission, key.map(|key| (key, hash)))
            .await
            .inspect_err(|error| {
                if matches!(error, messages::Error::Rejected(_)) {
                    state.metrics.rejected();
                }
            })?;
    let (body, replayed) = match submitted {
        Submitted::Created(_, body) => {
            state.metrics.submitted();
            (body, false)
        }
        Submitted::Replayed(body) => (body, true),
    };
    let id = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|value| value["id"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let mut response = (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/messages/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// Which messages to list.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum BoxName {
    Sent,
    Received,
    All,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    #[serde(rename = "box", default)]
    mailbox: Option<BoxName>,
    #[serde(default)]
    status: Option<Status>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    offset: Option<u64>,
    #[serde(default)]
    cursor: Option<String>,
}

#[derive(Debug, Serialize)]
pub(super) struct MessagePage {
    items: Vec<MessageView>,
    limit: u32,
    offset: u64,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    next_cursor: Option<MessageId>,
}

/// `GET /messages?box=sent|received|all&status=…&limit=…&offset=…|cursor=…`, newest first.
pub(super) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<MessagePage>, ApiError> {
    let mailbox = match query.mailbox.unwrap_or(BoxName::Sent) {
        BoxName::Sent => Mailbox::Sent(caller.user.id.clone()),
        BoxName::Received => Mailbox::Received(caller.user.id.clone()),
        BoxName::All => {
            caller.require_admin()?;
            Mailbox::All
        }
    };
    let limit = query.limit.unwrap_or(super::users::DEFAULT_LIMIT);
    if !(1..=super::users::MAX_LIMIT).contains(&limit) {
        return Err(ApiError::query(
            "limit",
            format!("limit must be between 1 and {}", super::users::MAX_LIMIT),
        ));
    }
    if query.cursor.is_some() && query.offset.is_some() {
        return Err(ApiError::query("cursor", "give cursor or offset, not both"));
    }
    let before =
        match &query.cursor {
            None => None,
            Some(cursor) => Some(cursor.parse::<MessageId>().map_err(|_| {
                ApiError::query("cursor", "the cursor is not one this API returned")
            })?),
        };
    let items = state
        .store
        .list_messages(
            caller.tenant(),
            &MessageQuery {
                mailbox,
                status: query.status,
                limit,
                offset: query.offset.unwrap_or(0),
                before,
            },
        )
        .await?;
    let next_cursor = (items.len() == limit as usize)
        .then(|| items.last().map(|m| m.id.clone()))
        .flatten();
    Ok(Json(MessagePage {
        items: items.iter().map(MessageView::from).collect(),
        limit,
        offset: query.offset.unwrap_or(0),
        next_cursor,
    }))
}

/// `GET /messages/{id}`.
pub(super) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<MessageView>, ApiError> {
    let message = manage::visible(&state, &caller.user, &id).await?;
    Ok(Json(MessageView::from(&message)))
}

/// `GET /messages/{id}/status`.
pub(super) async fn status(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<StatusView>, ApiError> {
    let message = manage::visible(&state, &caller.user, &id).await?;
    Ok(Json(StatusView::from(&message)))
}

#[derive(Debug, Serialize)]
pub(super) struct EventList {
    items: Vec<EventView>,
}

/// `GET /messages/{id}/events`: the history, oldest first. Recipients see it only as admins.
pub(super) async fn events(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<EventList>, ApiError> {
    let message = manage::visible(&state, &caller.user, &id).await?;
    if message.sender_id != caller.user.id && caller.user.role != Role::Admin {
        return Err(messages::Error::NotFound.into());
    }
    let events = state
        .store
        .message_events(caller.tenant(), &message.id)
        .await?;
    Ok(Json(EventList {
        items: events.into_iter().map(EventView::from).collect(),
    }))
}

/// `DELETE /messages/{id}`: cancels a waiting message.
pub(super) async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<MessageView>, ApiError> {
    let message = manage::cancel(&state, &caller.user, &id).await?;
    Ok(Json(MessageView::from(&message)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Reschedule {
    #[serde(default)]
    delay_seconds: Option<u64>,
    #[serde(default)]
    deliver_at: Option<String>,
}

/// `PATCH /messages/{id}`: a new delivery time, through the delay policy.
pub(super) async fn reschedule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Reschedule>,
) -> Result<Json<MessageView>, ApiError> {
    let requested = match (body.delay_seconds, body.deliver_at) {
        (Some(seconds), None) => Requested::DelayMs(seconds.saturating_mul(1000)),
        (None, Some(at)) => Requested::AtMs(parse_rfc3339(&at).ok_or_else(|| {
            ApiError::field(
                "/deliver_at",
                format!("/deliver_at: {at:?} is not an RFC 3339 time"),
            )
        })?),
        _ => {
            return Err(ApiError::field(
                "/delay_seconds",
                "/delay_seconds: give exactly one of delay_seconds and deliver_at",
            ));
        }
    };
    let message = manage::reschedule(&state, &caller.user, &id, requested).await?;
    Ok(Json(MessageView::from(&message)))
}

/// `POST /messages/{id}/deliver-now`.
pub(super) async fn deliver_now(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<MessageView>, ApiError> {
    let message = manage::deliver_now(&state, &caller.user, &id).await?;
    Ok(Json(MessageView::from(&message)))
}

/// `POST /messages/{id}/read`: the recipient has read it.
pub(super) async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<MessageView>, ApiError> {
    let message = manage::read(&state, &caller.user, &id).await?;
    Ok(Json(MessageView::from(&message)))
}
