//! `/schedules`: recurring schedules (create, list, read, change, pause, resume, delete, the
//! next occurrences).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, Caller, Id, NoFilter, PageParams, Paged};
use super::openapi::{PROBLEM, Problem};
use crate::domain::ids::ScheduleId;
use crate::state::AppState;
use crate::use_cases::schedules::{MAX_NEXT, NewSchedule, ScheduleChange, ScheduleView};

/// `POST /schedules`.
#[utoipa::path(
    post,
    path = "/schedules",
    tag = "schedules",
    summary = "Create a recurring schedule",
    description = "Each occurrence of the cron pattern (5 fields, or 6 with seconds first), read in the IANA time zone, becomes an ordinary message from the caller: the tenant's validators and delay policy run on it, it is created ahead of its time with `deliver_at` the occurrence, and `GET /messages/{id}` names the schedule and the occurrence. `missed` says what happens to occurrences that passed while no node ran: `skip` (default) or `once` (one message for all of them).",
    request_body = NewSchedule,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created; `location` names it, `next_at` is its first occurrence.", body = ScheduleView,
            headers(("location" = String, description = "`/schedules/{id}`"))),
        (status = 404, description = "`not_found`: `message.group_id` names no group of your tenant.", body = Problem, content_type = PROBLEM),
        (status = 422, description = "`invalid_field` (`field` names it): `/cron` (not a pattern, or never matches), `/timezone` (not an IANA zone), `/starts_at`, `/ends_at`, `/max_runs`, or a field of `/message` (such as `/message/recipient_id`: no such user in your tenant).", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewSchedule>,
) -> Result<Response, ApiError> {
    let schedule = state.schedules.create(&caller.user, body).await?;
    let location = format!("/schedules/{}", schedule.id());
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(schedule),
    )
        .into_response())
}

/// A page of schedules, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SchedulePage {
    items: Vec<ScheduleView>,
    limit: u32,
    offset: u64,
}

/// `GET /schedules`.
#[utoipa::path(
    get,
    path = "/schedules",
    tag = "schedules",
    summary = "List schedules",
    description = "A member's own schedules; an admin's: the whole tenant's.",
    params(PageParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Schedules, oldest first.", body = SchedulePage),
    ),
)]
pub(super) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Paged { page, .. }: Paged<NoFilter>,
) -> Result<Json<SchedulePage>, ApiError> {
    let items = state.schedules.list(&caller.user, page).await?;
    Ok(Json(SchedulePage {
        items,
        limit: page.limit,
        offset: page.offset,
    }))
}

/// `GET /schedules/{id}`.
#[utoipa::path(
    get,
    path = "/schedules/{id}",
    tag = "schedules",
    summary = "A schedule",
    params(("id" = ScheduleId, Path, description = "A schedule the caller created (an admin: of the tenant).")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The schedule.", body = ScheduleView),
        (status = 404, description = "`not_found`: no such schedule visible to you.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id<ScheduleId>,
) -> Result<Json<ScheduleView>, ApiError> {
    Ok(Json(state.schedules.get(&caller.user, &id).await?))
}

/// `PATCH /schedules/{id}`.
#[utoipa::path(
    patch,
    path = "/schedules/{id}",
    tag = "schedules",
    summary = "Change a schedule",
    description = "The fields given replace the schedule's (`null` clears `starts_at`, `ends_at`, `max_runs`); its next occurrence is computed again, after the last one created. A finished schedule that the change gives occurrences again becomes active; a paused one stays paused.",
    params(("id" = ScheduleId, Path, description = "A schedule the caller created (an admin: of the tenant).")),
    request_body = ScheduleChange,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Changed.", body = ScheduleView),
        (status = 404, description = "`not_found`: no such schedule visible to you, or `message.group_id` names no group of your tenant.", body = Problem, content_type = PROBLEM),
        (status = 409, description = "`conflict`: the schedule kept changing meanwhile.", body = Problem, content_type = PROBLEM),
        (status = 422, description = "`invalid_field` (`field` names it), as for `POST /schedules`.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id<ScheduleId>,
    ApiJson(body): ApiJson<ScheduleChange>,
) -> Result<Json<ScheduleView>, ApiError> {
    Ok(Json(state.schedules.update(&caller.user, &id, body).await?))
}

/// `DELETE /schedules/{id}`.
#[utoipa::path(
    delete,
    path = "/schedules/{id}",
    tag = "schedules",
    summary = "Delete a schedule",
    description = "No occurrence is created after this. Messages it created already stay (cancel them with `DELETE /messages/{id}`).",
    params(("id" = ScheduleId, Path, description = "A schedule the caller created (an admin: of the tenant).")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, description = "`not_found`: no such schedule visible to you.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id<ScheduleId>,
) -> Result<StatusCode, ApiError> {
    state.schedules.delete(&caller.user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /schedules/{id}/pause`.
#[utoipa::path(
    post,
    path = "/schedules/{id}/pause",
    tag = "schedules",
    summary = "Pause a schedule",
    description = "No occurrence is created until it is resumed.",
    params(("id" = ScheduleId, Path, description = "A schedule the caller created (an admin: of the tenant).")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Paused.", body = ScheduleView),
        (status = 404, description = "`not_found`: no such schedule visible to you.", body = Problem, content_type = PROBLEM),
        (status = 409, description = "`conflict`: the schedule is finished.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id<ScheduleId>,
) -> Result<Json<ScheduleView>, ApiError> {
    Ok(Json(state.schedules.pause(&caller.user, &id).await?))
}

/// `POST /schedules/{id}/resume`.
#[utoipa::path(
    post,
    path = "/schedules/{id}/resume",
    tag = "schedules",
    summary = "Resume a paused schedule",
    description = "It continues from its next occurrence still to come; the occurrences while it was paused are not sent.",
    params(("id" = ScheduleId, Path, description = "A schedule the caller created (an admin: of the tenant).")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Active again (or finished, when no occurrence is left).", body = ScheduleView),
        (status = 404, description = "`not_found`: no such schedule visible to you.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id<ScheduleId>,
) -> Result<Json<ScheduleView>, ApiError> {
    Ok(Json(state.schedules.resume(&caller.user, &id).await?))
}

/// `GET /schedules/{id}/next` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct NextQuery {
    /// How many occurrences, 1 to 100 (default 10).
    #[serde(default)]
    #[param(minimum = 1, maximum = 100)]
    count: Option<u32>,
}

/// The next occurrences.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct NextOccurrences {
    /// Their times, earliest first (fewer than asked when the schedule ends sooner).
    items: Vec<String>,
}

/// `GET /schedules/{id}/next?count=N`.
#[utoipa::path(
    get,
    path = "/schedules/{id}/next",
    tag = "schedules",
    summary = "A schedule's next occurrences",
    description = "The next `count` occurrences still to be created, computed (nothing is created): of an active schedule from its next one, of a paused one as if resumed now; none for a finished one. `starts_at`, `ends_at` and `max_runs` apply.",
    params(("id" = ScheduleId, Path, description = "A schedule the caller created (an admin: of the tenant)."), NextQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The times, earliest first.", body = NextOccurrences),
        (status = 404, description = "`not_found`: no such schedule visible to you.", body = Problem, content_type = PROBLEM),
    ),
)]
pub(super) async fn next(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id<ScheduleId>,
    ApiQuery(query): ApiQuery<NextQuery>,
) -> Result<Json<NextOccurrences>, ApiError> {
    let count = query.count.unwrap_or(10);
    if !(1..=MAX_NEXT).contains(&count) {
        return Err(ApiError::query(
            "count",
            format!("count must be between 1 and {MAX_NEXT}"),
        ));
    }
    let items = state.schedules.next(&caller.user, &id, count).await?;
    Ok(Json(NextOccurrences { items }))
}
